"""The inverted lists of linking's index (services/linking/postings.py) against a plain model:
a dict of lists, oldest first, under random adds, removals, slot reuse and merges."""

from __future__ import annotations

import random

import numpy as np
import pytest

from services.linking.postings import Postings


class Model:
    def __init__(self) -> None:
        self.lists: dict[int, list[int]] = {}

    def add(self, slot: int, keys: list[int], values: list[int]) -> None:
        for k, v in zip(keys, values):
            self.lists.setdefault(k, []).append(v)

    def remove(self, slot: int) -> None:
        for k in list(self.lists):
            self.lists[k] = [v for v in self.lists[k] if v >> 8 != slot]
            if not self.lists[k]:
                del self.lists[k]

    def gather(self, keys: list[int], cap: int | None) -> tuple[list[int], list[int]]:
        out, lens = [], []
        for k in keys:
            vals = self.lists.get(k, [])
            if cap is not None:
                vals = vals[-cap:] if cap else []
            out += vals
            lens.append(len(vals))
        return out, lens


def check(p: Postings, m: Model, keys: list[int], cap: int | None = None) -> None:
    got, lens = p.gather(keys, cap)
    want, want_lens = m.gather(keys, cap)
    assert int(lens.sum()) == len(got)
    if cap is None or p._nstale == 0:
        assert lens.tolist() == want_lens
        assert got.tolist() == want
    else:
        # the cap counts postings before stale ones are skipped: each key gives the newest of
        # its live postings, possibly fewer of them
        o = 0
        for k, n, cap_n in zip(keys, lens.tolist(), want_lens):
            live = m.lists.get(k, [])
            assert n <= cap_n and got[o: o + n].tolist() == (live[len(live) - n:] if n else [])
            o += n


@pytest.mark.parametrize("seed", range(12))
def test_matches_a_dict_of_lists_through_adds_removals_reuse_and_merges(seed: int) -> None:
    rng = random.Random(seed)
    p = Postings(merge_min=rng.choice([8, 32, 200]))
    m = Model()
    keyspace = [rng.randrange(2**32) for _ in range(60)]
    docs: dict[int, list[int]] = {}  # slot -> keys
    free: list[int] = []
    next_slot = 0
    for step in range(400):
        if docs and rng.random() < 0.35:
            slot = rng.choice(list(docs))
            keys = docs.pop(slot)
            p.remove(slot, keys + rng.sample(keyspace, 3))  # extra keys are harmless
            m.remove(slot)
            free.append(slot)
        else:
            slot = free.pop() if free and rng.random() < 0.7 else next_slot
            if slot == next_slot:
                next_slot += 1
            keys = sorted(set(rng.sample(keyspace, rng.randint(1, 12))))
            values = [slot << 8 | rng.randint(1, 255) for _ in keys]
            p.add(slot, keys, values)
            m.add(slot, keys, values)
            docs[slot] = keys
        if step % 7 == 0:
            check(p, m, rng.sample(keyspace, 10) + [12345])
        if step % 11 == 0:
            check(p, m, rng.sample(keyspace, 10), cap=rng.randint(0, 6))
        assert len(p) == sum(len(v) for v in m.lists.values())
    p.merge()
    check(p, m, keyspace)
    check(p, m, keyspace, cap=3)
    assert p.terms() == len(m.lists)


def test_removed_base_postings_are_skipped_then_dropped_by_the_next_merge() -> None:
    p = Postings(merge_min=10**6)
    p.add(1, [5, 9], [1 << 8 | 10, 1 << 8 | 20])
    p.add(2, [5], [2 << 8 | 30])
    p.merge()
    p.remove(1, [5, 9])
    assert p.gather([5, 9])[0].tolist() == [2 << 8 | 30]
    assert len(p) == 1 and p._nstale == 2 and len(p._data) == 3
    p.add(1, [9], [1 << 8 | 40])  # the slot reused: its new posting counts, the old ones do not
    assert p.gather([5, 9])[0].tolist() == [2 << 8 | 30, 1 << 8 | 40]
    p.merge()
    assert p._nstale == 0 and len(p._data) == 2 and p.terms() == 2
    assert p.gather([9, 5])[0].tolist() == [1 << 8 | 40, 2 << 8 | 30]


def test_the_cap_keeps_the_newest_postings_across_base_and_delta() -> None:
    p = Postings(merge_min=10**6)
    for slot in range(5):
        p.add(slot, [7], [slot << 8 | 1])
    p.merge()
    for slot in range(5, 8):
        p.add(slot, [7], [slot << 8 | 1])
    got, lens = p.gather([7], cap=4)
    assert [v >> 8 for v in got.tolist()] == [4, 5, 6, 7] and lens.tolist() == [4]
    got, _ = p.gather([7], cap=2)
    assert [v >> 8 for v in got.tolist()] == [6, 7]


def test_the_delta_is_merged_once_it_is_a_thirty_second_of_the_base() -> None:
    p = Postings(merge_min=16)
    for slot in range(17):
        p.add(slot, [slot], [slot << 8 | 1])
    assert p._dcount == 0 and len(p._data) == 17  # 17 > 16: merged
    p.add(17, range(1000, 1623), [17 << 8 | 1] * 623)
    assert p._dcount == 0 and len(p._data) == 640
    for slot in range(18, 38):  # 640 // 32 = 20 postings may wait in the delta
        p.add(slot, [slot], [slot << 8 | 1])
    assert p._dcount == 20 and len(p._data) == 640
    p.add(38, [38], [38 << 8 | 1])
    assert p._dcount == 0 and len(p._data) == 661


def test_arrays_round_trip_and_bad_arrays_are_refused() -> None:
    rng = np.random.default_rng(3)
    p = Postings(merge_min=50)
    for slot in range(300):
        keys = sorted(set(rng.integers(0, 500, 8).tolist()))
        p.add(slot, keys, [slot << 8 | 3] * len(keys))
    for slot in range(0, 300, 3):
        p.remove(slot, list(range(500)))
    keys, lens, data = p.arrays()
    q = Postings.from_arrays(keys, lens, data, slots=300)
    probe = list(range(500))
    assert q.gather(probe)[0].tolist() == p.gather(probe)[0].tolist()
    q.remove(1, list(range(500)))  # counts were rebuilt: a removal after loading is complete
    assert all(v >> 8 != 1 for v in q.gather(probe)[0].tolist())
    assert len(q) == len(p) - int((data >> 8 == 1).sum())
    with pytest.raises(ValueError):
        Postings.from_arrays(keys[::-1], lens[::-1], data, slots=300)
    with pytest.raises(ValueError):
        Postings.from_arrays(keys, lens + 1, data, slots=300)
