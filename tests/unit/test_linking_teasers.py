"""Linking's packed teasers and its snapshot: what goes in comes out, in about half the bytes,
and a snapshot restores the index, the teasers and the positions exactly."""

from __future__ import annotations

import json
import zipfile

from hypothesis import given, strategies as st

from services.linking import snapshot
from services.linking.handlers import LinkingState
from services.linking.relatedness import RelatedIndex
from services.linking.teasers import Teasers, pack, unpack
from tests.unit.test_linking_batches import article
from shared.events import teaser_of


def teaser_json(n: int) -> bytes:
    return teaser_of(article(n)).model_dump_json().encode()


@given(st.binary(max_size=2000))
def test_any_bytes_round_trip(value):
    assert unpack(pack(value)) == value


def test_teasers_are_a_mapping_of_their_json_in_about_half_the_bytes():
    t = Teasers()
    raw = {f"{n:016x}": teaser_json(n) for n in range(50)}
    for key, value in raw.items():
        t[key] = value
    assert len(t) == 50 and set(t) == set(raw) and all(t[k] == v for k, v in raw.items())
    assert t.get("missing") is None and "missing" not in t and f"{3:016x}" in t
    packed = sum(len(t.packed(k)) for k in raw)
    assert packed < 0.65 * sum(map(len, raw.values())), packed
    assert t.packed(f"{1:016x}") == pack(raw[f"{1:016x}"])  # equal teasers pack equally
    t.pop(f"{1:016x}")
    assert f"{1:016x}" not in t and len(t) == 49
    restored = Teasers.load(b"".join(t.dump()))
    assert dict(restored.items()) == dict(t.items())


def test_replaced_and_removed_teasers_leave_no_lasting_garbage():
    t = Teasers(reclaim_after=2000)
    raw = {f"{n:016x}": teaser_json(n) for n in range(40)}
    for round_ in range(400):  # each key rewritten 10 times, some removed and re-added
        key = f"{round_ % 40:016x}"
        if round_ % 7 == 0 and key in t:
            del t[key]
        else:
            t[key] = raw[key] if round_ % 2 else raw[key].replace(b'"headline":"', b'"headline":"Updated: ')
    live = sum(len(t.packed(k)) for k in t)
    assert len(t._buf) - t._garbage == live
    assert len(t._buf) < 2 * live + 2000  # without reclaiming, ten times the live teasers
    t._compact()
    assert len(t._buf) == live
    assert all(t[k] in (raw[k], raw[k].replace(b'"headline":"', b'"headline":"Updated: ')) for k in t)
    assert Teasers.load(b"".join(t.dump())).items() == t.items()


def test_a_snapshot_restores_index_teasers_and_positions(tmp_path):
    state = LinkingState(index=RelatedIndex(k=6))
    for n in range(30):
        state.add(article(n))
    path = tmp_path / "linking.snapshot"
    snapshot.save(path, state, {0: 17, 1: 13}, topic="articles.stored")
    loaded = snapshot.load(path, topic="articles.stored")
    assert loaded is not None
    restored, positions = loaded
    assert positions == {0: 17, 1: 13}
    assert dict(restored.teasers.items()) == dict(state.teasers.items())
    for n in range(30):
        doc_id = f"{n:016x}"
        assert [m.id for m in restored.index.related(doc_id)] == [m.id for m in state.index.related(doc_id)]
    assert snapshot.load(path, topic="another.topic") is None  # another topic's positions: rebuild


def test_a_snapshot_of_the_previous_format_is_rebuilt_not_misread(tmp_path):
    path = tmp_path / "old.snapshot"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.json", json.dumps({"format": 1, "topic": "t", "positions": {}, "articles": 0}))
        z.writestr("teasers.jsonl", b"")
    assert snapshot.load(path, topic="t") is None
    path.write_bytes(b"not a zip")
    assert snapshot.load(path, topic="t") is None
