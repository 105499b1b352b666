"""The inverted lists of the related-articles index: term key -> postings, oldest first.

A posting is one uint32: ``slot << 8 | title bit << 7 | quantised weight (1..127)``.

Most postings live in a compressed-row *base*: three numpy arrays (the sorted term keys, where
each key's postings start, and every posting in key order). Recent additions go to a small
*delta* (one ``array('I')`` per key) that is merged into the base once it holds a thirty-second
as many postings as the base (at 100k articles: every 3,000 articles or so, 50 ms each). One
``array`` object plus its dict entry costs about 150 bytes per term; in the base a term costs
12 bytes beside its 4 bytes per posting.

Removing a slot drops its delta postings at once; postings of the slot that are in the base
are marked *stale* (a flag per slot) and skipped until the next merge drops them. A slot
that is reused afterwards has its new postings in the delta, which the flag does not touch.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import numpy as np

_EMPTY = np.zeros(0, np.uint32)
_CHUNK = 1 << 18  # postings copied per step of a merge (bounds its temporary index arrays)


class Postings:
    def __init__(self, *, merge_min: int = 1 << 16) -> None:
        self._keys = np.zeros(0, np.uint32)
        self._start = np.zeros(1, np.int64)
        self._data = np.zeros(0, np.uint32)
        self._delta: dict[int, array] = {}
        self._dcount = 0  # postings in the delta
        self._fresh = np.zeros(0, bool)  # slot's postings are in the delta
        self._stale = np.zeros(0, bool)  # slot's base postings are dead
        self._count = np.zeros(0, np.uint16)  # postings per slot (to count what a removal leaves stale)
        self._nstale = 0
        self._merge_min = int(merge_min)

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        """Live postings."""
        return len(self._data) - self._nstale + self._dcount

    def terms(self) -> int:
        """Distinct term keys with postings (stale ones included until the next merge)."""
        if not self._delta:
            return len(self._keys)
        return len(np.union1d(self._keys, np.fromiter(self._delta, np.uint32, len(self._delta))))

    @property
    def nbytes(self) -> int:
        """Approximate memory held (arrays, plus about 100 bytes per delta term)."""
        arrays = (self._keys, self._start, self._data, self._fresh, self._stale, self._count)
        return sum(a.nbytes for a in arrays) + self._dcount * 4 + len(self._delta) * 100

    def _ensure(self, slot: int) -> None:
        if slot < len(self._fresh):
            return
        cap = max(1024, len(self._fresh) * 5 // 4, slot + 1)
        for name in ("_fresh", "_stale", "_count"):
            old = getattr(self, name)
            new = np.zeros(cap, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    # ------------------------------------------------------------------ changes
    def add(self, slot: int, keys: Iterable[int], values: Iterable[int]) -> None:
        """Add one slot's postings (the slot has none: a removed slot is removed first)."""
        self._ensure(slot)
        delta = self._delta
        n = 0
        for key, value in zip(keys, values):
            arr = delta.get(key)
            if arr is None:
                delta[key] = array("I", (value,))
            else:
                arr.append(value)
            n += 1
        self._fresh[slot] = True
        self._count[slot] = min(n, 0xFFFF)
        self._dcount += n
        if self._dcount > max(self._merge_min, len(self._data) // 32):
            self.merge()

    def remove(self, slot: int, keys: Iterable[int]) -> None:
        """Drop a slot's postings; ``keys`` must include every key it has postings under."""
        if slot >= len(self._fresh):
            return
        if self._fresh[slot]:
            delta = self._delta
            for key in keys:
                arr = delta.get(key)
                if arr is None:
                    continue
                p = np.frombuffer(arr, dtype=np.uint32)
                keep = (p >> 8) != slot
                if keep.all():
                    del p
                    continue
                rest = p[keep]
                del p
                self._dcount -= len(arr) - len(rest)
                if len(rest):
                    new = array("I")
                    new.frombytes(rest.tobytes())
                    delta[key] = new
                else:
                    del delta[key]
            self._fresh[slot] = False
        elif self._count[slot] and not self._stale[slot]:
            self._stale[slot] = True
            self._nstale += int(self._count[slot])
            if self._nstale > max(self._merge_min, len(self._data) // 4):
                self.merge()
        self._count[slot] = 0

    def merge(self) -> None:
        """Fold the delta into the base and drop stale postings."""
        data, keys, start = self._data, self._keys, self._start
        lens = np.diff(start)
        if self._nstale and len(data):
            keep = ~self._stale[data >> 8]
            lens = np.add.reduceat(keep.astype(np.int64), start[:-1])
            data = data[keep]
            del keep
            nz = lens > 0
            keys, lens = keys[nz], lens[nz]
        delta = self._delta
        if delta:
            dkeys = np.array(sorted(delta), np.uint32)
            dlens = np.array([len(delta[k]) for k in dkeys.tolist()], np.int64)
            ddata = np.empty(int(dlens.sum()), np.uint32)
            o = 0
            for k, n in zip(dkeys.tolist(), dlens.tolist()):
                ddata[o: o + n] = np.frombuffer(delta[k], np.uint32)
                o += n
            ukeys = np.union1d(keys, dkeys)
            bi = np.searchsorted(ukeys, keys)
            di = np.searchsorted(ukeys, dkeys)
            blen = np.zeros(len(ukeys), np.int64)
            blen[bi] = lens
            ulen = blen.copy()
            ulen[di] += dlens
            ustart = np.zeros(len(ukeys) + 1, np.int64)
            np.cumsum(ulen, out=ustart[1:])
            out = np.empty(int(ustart[-1]), np.uint32)
            _scatter(out, ustart[bi], lens, data)
            _scatter(out, ustart[di] + blen[di], dlens, ddata)
            keys, data = ukeys, out
            start = ustart
        else:
            start = np.zeros(len(keys) + 1, np.int64)
            np.cumsum(lens, out=start[1:])
        self._keys, self._start, self._data = keys.astype(np.uint32, copy=False), start, data
        self._delta = {}
        self._dcount = 0
        self._fresh[:] = False
        self._stale[:] = False
        self._nstale = 0

    # ------------------------------------------------------------------ reads
    def gather(self, keys: Iterable[int], cap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Postings of each key (the newest ``cap`` of each, when given), concatenated in key
        order, and how many each key contributed. The cap is applied before stale postings are
        skipped: until the next merge, a key may give a few less than ``cap``."""
        keys = np.fromiter(keys, np.uint32)
        lens = np.zeros(len(keys), np.int64)
        if not len(keys):
            return _EMPTY, lens
        base = self._keys
        if len(base):
            i = np.minimum(np.searchsorted(base, keys), len(base) - 1)
            found = (base[i] == keys).tolist()
            starts, ends = self._start[i].tolist(), self._start[i + 1].tolist()
        else:
            found = [False] * len(keys)
        stale = self._stale if self._nstale else None
        parts = []
        for j, key in enumerate(keys.tolist()):
            d = self._delta.get(key)
            dl = len(d) if d is not None else 0
            n = 0
            if found[j]:
                s, e = starts[j], ends[j]
                if cap is not None:
                    s = max(s, e - max(cap - dl, 0))
                if e > s:
                    seg = self._data[s:e]
                    if stale is not None:
                        seg = seg[~stale[seg >> 8]]
                    parts.append(seg)
                    n += len(seg)
            if dl:
                dd = np.frombuffer(d, np.uint32)
                if cap is not None and dl > cap:
                    dd = dd[dl - cap:]
                parts.append(dd)
                n += len(dd)
            lens[j] = n
        if not parts:
            return _EMPTY, lens
        out = np.concatenate(parts)
        del parts  # no view of a delta array may outlive this call (it could not grow)
        return out, lens

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, postings per key, postings) after a merge: for snapshots."""
        self.merge()
        return self._keys, np.diff(self._start), self._data

    @classmethod
    def from_arrays(cls, keys: np.ndarray, lens: np.ndarray, data: np.ndarray, *, slots: int,
                    merge_min: int = 1 << 16) -> Postings:
        new = cls(merge_min=merge_min)
        keys = np.asarray(keys, np.uint32)
        lens = np.asarray(lens, np.int64)
        if len(keys) > 1 and not (np.diff(keys.astype(np.int64)) > 0).all():
            raise ValueError("posting keys are not sorted and unique")
        if int(lens.sum()) != len(data) or (lens <= 0).any():
            raise ValueError("posting lengths do not match the postings")
        new._keys = keys.copy()
        new._start = np.zeros(len(keys) + 1, np.int64)
        np.cumsum(lens, out=new._start[1:])
        new._data = np.asarray(data, np.uint32).copy()
        new._ensure(max(slots - 1, 0))
        if len(new._data):
            new._ensure(int((new._data >> 8).max()))
            np.add.at(new._count, (new._data >> 8).astype(np.int64), 1)
        return new


def _scatter(out: np.ndarray, dest_starts: np.ndarray, lens: np.ndarray, src: np.ndarray) -> None:
    """``out[dest_starts[i]: dest_starts[i] + lens[i]] = next lens[i] items of src``, in steps."""
    n = len(lens)
    if not n:
        return
    ends = np.cumsum(lens)
    i = o = 0
    while i < n:
        j = int(np.searchsorted(ends, o + _CHUNK, side="right"))
        j = max(j, i + 1)
        j = min(j, n)
        ln = lens[i:j]
        total = int(ln.sum())
        rel = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(ln) - ln, ln)
        out[np.repeat(dest_starts[i:j], ln) + rel] = src[o: o + total]
        o += total
        i = j
