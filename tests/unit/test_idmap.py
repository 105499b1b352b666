"""The id table (services/linking/idmap.py): id <-> row without a Python object per id."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from services.linking.idmap import IdTable, IdValues, is_hex_id, key_of


def _hex(i: int) -> str:
    return hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest()


def test_article_ids_are_kept_as_their_value_and_other_ids_as_text():
    assert is_hex_id("0123456789abcdef")
    assert not is_hex_id("0123456789ABCDEF") and not is_hex_id("0123456789abcde") and not is_hex_id("a" * 17)
    assert key_of("00000000000000ff") == (255, True)
    t = IdTable(["00000000000000ff", "saiga", "0123456789ABCDEF"])
    assert [t.id_of(r) for r in range(3)] == ["00000000000000ff", "saiga", "0123456789ABCDEF"]
    assert t._text == {1: "saiga", 2: "0123456789ABCDEF"}  # noqa: SLF001 - the hex id holds no string
    assert "0123456789abcdef" not in t and "00000000000000FF" not in t


def test_a_text_id_whose_hash_equals_an_article_id_is_still_a_different_id():
    key, plain = key_of("saiga")
    assert not plain
    twin = f"{key:016x}"  # an article id with the same 64-bit key
    t = IdTable(["saiga"])
    assert twin not in t and t.get(twin) == -1
    r = t.add(twin)
    assert r == 1 and t.get("saiga") == 0 and t.get(twin) == 1
    assert t.discard("saiga") == 0 and t.get(twin) == 1 and "saiga" not in t


@pytest.mark.parametrize("seed", range(8))
def test_the_table_agrees_with_a_dict_through_adds_removals_and_reuse(seed: int):
    rng = random.Random(seed)
    pool = [_hex(i) for i in range(300)] + [f"doc-{i}" for i in range(100)]
    t, model, free = IdTable(), {}, []
    for step in range(4000):
        doc_id = rng.choice(pool)
        if rng.random() < 0.55:
            expected = model.get(doc_id)
            if expected is None:
                expected = free.pop() if free else len(model) + len(free)
                model[doc_id] = expected
            assert t.add(doc_id) == expected
        else:
            row = model.pop(doc_id, None)
            assert t.discard(doc_id) == (-1 if row is None else row)
            if row is not None:
                free.append(row)
        if step % 97 == 0:
            assert len(t) == len(model)
            assert {d: t.get(d) for d in pool} == {d: model.get(d, -1) for d in pool}
            assert sorted(t) == sorted(model)
            assert t.live_rows().tolist() == sorted(model.values())
            assert all(t.id_of(r) == d for d, r in model.items())
            assert all(t.id_of(r) is None for r in free)
    loaded = IdTable.from_arrays(*t.arrays())
    assert {d: loaded.get(d) for d in pool} == {d: model.get(d, -1) for d in pool}
    assert loaded.add("new-one") == (free[-1] if free else len(model))  # the same next row


def test_removal_keeps_every_other_id_of_a_probe_run_reachable():
    # A small table and many ids: long probe runs, each removal shifts entries back.
    ids = [_hex(i) for i in range(5000)]
    t = IdTable(ids)
    assert len(t._table) == 16384  # noqa: SLF001 - at most half full
    for i, doc_id in enumerate(ids):
        if i % 3 == 0:
            t.discard(doc_id)
    assert all(t.get(d) == i for i, d in enumerate(ids) if i % 3)
    assert all(t.get(d) == -1 for i, d in enumerate(ids) if i % 3 == 0)


def test_a_snapshot_whose_free_rows_and_flags_disagree_is_refused():
    t = IdTable([_hex(i) for i in range(10)])
    t.discard(_hex(4))
    keys, live, free, text = t.arrays()
    with pytest.raises(ValueError):
        IdTable.from_arrays(keys, live, [], text)
    with pytest.raises(ValueError):
        IdTable.from_arrays(keys[:5], live, free, text)
    with pytest.raises(ValueError):
        IdTable.from_arrays(keys, live, free, {"4": "ghost"})
    with pytest.raises(ValueError):
        IdTable.from_arrays(keys.astype(np.int64), live, free, text)


def test_values_by_id():
    v = IdValues()
    v[_hex(1)] = -(1 << 63)
    v["x"] = 7
    assert v.get(_hex(1)) == -(1 << 63) and v.get("x") == 7 and v.get("y") is None
    assert len(v) == 2 and "x" in v
    assert v.pop("x") == 7 and v.pop("x", None) is None and "x" not in v
    v["z"] = 3  # reuses x's row
    assert v.get("z") == 3 and len(v) == 2
