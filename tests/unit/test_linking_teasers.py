"""Linking's packed teasers and its snapshot: what goes in comes out, in about half the bytes,
and a snapshot restores the index, the teasers and the positions exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
from hypothesis import given, strategies as st

from services.linking import snapshot
from services.linking.handlers import LinkingState
from services.linking.relatedness import RelatedIndex
from services.linking.teasers import FileStore, MemoryStore, Store, Teasers, pack, unpack
from tests.unit.test_linking_batches import article
from shared.events import teaser_of


def teaser_json(n: int) -> bytes:
    return teaser_of(article(n)).model_dump_json().encode()


@given(st.binary(max_size=2000))
def test_any_bytes_round_trip(value):
    assert unpack(pack(value)) == value


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path) -> Store:
    return MemoryStore() if request.param == "memory" else FileStore(tmp_path)


def test_teasers_are_a_mapping_of_their_json_in_about_half_the_bytes(store):
    t = Teasers(store=store)
    raw = {f"{n:016x}": teaser_json(n) for n in range(50)}
    for key, value in raw.items():
        t[key] = value
    assert len(t) == 50 and set(t) == set(raw) and all(t[k] == v for k, v in raw.items())
    assert t.get("missing") is None and "missing" not in t and f"{3:016x}" in t
    packed = sum(len(t.packed(k)) for k in raw)
    assert packed < 0.65 * sum(map(len, raw.values())), packed
    assert t.packed(f"{1:016x}") == pack(raw[f"{1:016x}"])  # equal teasers pack equally
    assert t.digest(f"{1:016x}") == hash(pack(raw[f"{1:016x}"])) and t.digest("missing") is None
    t.pop(f"{1:016x}")
    assert f"{1:016x}" not in t and len(t) == 49
    restored = Teasers.load(b"".join(t.dump()))
    assert dict(restored.items()) == dict(t.items())


def test_replaced_and_removed_teasers_leave_no_lasting_garbage(store):
    t = Teasers(reclaim_after=2000, store=store)
    raw = {f"{n:016x}": teaser_json(n) for n in range(40)}
    for round_ in range(400):  # each key rewritten 10 times, some removed and re-added
        key = f"{round_ % 40:016x}"
        if round_ % 7 == 0 and key in t:
            del t[key]
        else:
            t[key] = raw[key] if round_ % 2 else raw[key].replace(b'"headline":"', b'"headline":"Updated: ')
    live = sum(len(t.packed(k)) for k in t)
    assert t.stored_bytes - t._garbage == live
    assert t.stored_bytes < 2 * live + 2000  # without reclaiming, ten times the live teasers
    t._compact()
    assert t.stored_bytes == live
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


def test_a_snapshot_loads_its_teasers_into_the_store_given(tmp_path):
    state = LinkingState(index=RelatedIndex(k=6))
    for n in range(12):
        state.add(article(n))
    path = tmp_path / "linking.snapshot"
    snapshot.save(path, state, {0: 3}, topic="t")
    loaded = snapshot.load(path, topic="t", store=FileStore(tmp_path))
    assert loaded is not None
    assert isinstance(loaded[0].teasers._store, FileStore)
    assert dict(loaded[0].teasers.items()) == dict(state.teasers.items())
    unused = FileStore(tmp_path)
    assert snapshot.load(path, topic="other", store=unused) is None
    with pytest.raises(ValueError):
        unused.append(b"x")  # closed: a snapshot that is not loaded leaves no open file behind


def test_the_file_store_keeps_nothing_of_the_file_open_when_closed(tmp_path):
    tmp_path = tmp_path / "teasers"  # made when missing
    store = FileStore(tmp_path)
    t = Teasers(store=store, reclaim_after=100)
    for n in range(30):
        t[f"{n:016x}"] = teaser_json(n)
    for n in range(25):
        del t[f"{n:016x}"]  # compacted into a new file along the way
    assert t._store is not store and {f"{n:016x}" for n in range(25, 30)} == set(t)
    assert all(t[f"{n:016x}"] == teaser_json(n) for n in range(25, 30))
    assert list(tmp_path.iterdir()) == []  # unnamed files: nothing to clean up after a crash
    t.close()
    with pytest.raises(ValueError):
        t.packed(f"{25:016x}")


# Appends 40 MB of records to a store and prints how much the process grew (MB).
GROWTH = """
import os, sys
from array import array
from services.linking.teasers import FileStore, MemoryStore
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
store = MemoryStore() if sys.argv[1] == "memory" else FileStore(sys.argv[2])
record = os.urandom(250)
before = rss()
offsets = array("Q", (store.append(record) for _ in range(160_000)))
assert store.read(offsets[-1], 250) == record
print(rss() - before - len(offsets) * 8 / 2**20)  # less the offsets
"""


def test_a_file_store_keeps_the_teasers_out_of_the_process(tmp_path):
    def grown(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", GROWTH, mode, str(tmp_path)], capture_output=True, text=True,
                             check=True, timeout=120)
        return float(out.stdout.strip())
    in_memory, on_file = grown("memory"), grown("file")
    assert in_memory > 35, f"the scenario no longer measures the teasers ({in_memory:.0f} MB in memory)"
    assert on_file < 4, f"{on_file:.0f} MB of 40 MB of teasers in a file stayed in the process"


def test_put_tells_a_new_a_replaced_and_an_unchanged_teaser_apart(store):
    t = Teasers(store=store)
    key, first, second = f"{1:016x}", teaser_json(1), teaser_json(2)
    assert t.put(key, first) is None
    size = t.stored_bytes
    assert t.put(key, first) is False and t.stored_bytes == size  # the same teaser: nothing written
    assert t.put(key, second) is True and t[key] == second
