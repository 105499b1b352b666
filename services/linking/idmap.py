"""Article ids without a Python object each: id ↔ row in flat arrays.

Linking numbers every indexed article by a row (the index's slot, the teaser store's record).
A ``dict[str, int]`` for that costs about 170 bytes per article: the id string, the int and
the dict entry, and the index, the teaser store and the list of written lists each held one
(about 50 MB at 100k articles, in small objects that pin memory the allocator cannot give
back). Here an article id, 16 hex characters (a 64-bit hash of the ninjs uri), is kept as its
64-bit value: 8 bytes per row plus the hash table's 8 per row. Any other string (test data,
evaluation corpora) is kept as it is, keyed by a 64-bit hash of it.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Iterable, Iterator

import numpy as np

_HEX = re.compile(r"[0-9a-f]{16}")
_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: the bucket is the top bits of key * _MIX
_M64 = (1 << 64) - 1


def is_hex_id(doc_id: str) -> bool:
    """An article id as the platform makes them: 16 lowercase hex characters."""
    return len(doc_id) == 16 and _HEX.fullmatch(doc_id) is not None


def key_of(doc_id: str) -> tuple[int, bool]:
    """The id's 64-bit key, and whether the id is that key in hex (then the key is the id)."""
    if is_hex_id(doc_id):
        return int(doc_id, 16), True
    digest = hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little"), False


class IdTable:
    """A set of string ids, each numbered by a row; a freed row is reused (the last freed first).

    id → row is an open-addressing hash table of rows (linear probing, at most half full;
    removal shifts the following entries back, so there are no tombstones)."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._key = array("Q")        # row -> 64-bit key
        self._live = bytearray()      # row -> 1 while an id holds it
        self._text: dict[int, str] = {}  # row -> id, for ids that are not 16 hex characters
        self._free: list[int] = []
        self._count = 0
        self._bits = 4
        self._table = array("i", bytes(4 << self._bits))  # bucket -> row + 1 (0: empty)
        for doc_id in ids:
            self.add(doc_id)

    # ------------------------------------------------------------------ lookups
    def _home(self, key: int) -> int:
        return ((key * _MIX) & _M64) >> (64 - self._bits)

    def _find(self, doc_id: str) -> tuple[int, bool, int, int]:
        """(key, hex, bucket, row): the bucket holding the id and its row, or the empty bucket
        where it would go and -1."""
        key, plain = key_of(doc_id)
        mask = (1 << self._bits) - 1
        b = self._home(key)
        table, keys, text = self._table, self._key, self._text
        while True:
            r = table[b] - 1
            if r < 0:
                return key, plain, b, -1
            if keys[r] == key and (r not in text if plain else text.get(r) == doc_id):
                return key, plain, b, r
            b = (b + 1) & mask

    def get(self, doc_id: str) -> int:
        """The id's row, or -1."""
        return self._find(doc_id)[3]

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._find(doc_id)[3] >= 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        """The ids, by row."""
        for r in self.live_rows().tolist():
            yield self.id_of(r)  # type: ignore[misc]

    def id_of(self, row: int) -> str | None:
        """The id holding this row, or None (a free row)."""
        if row < 0 or row >= len(self._live) or not self._live[row]:
            return None
        text = self._text.get(row)
        return text if text is not None else f"{self._key[row]:016x}"

    @property
    def rows(self) -> int:
        """Rows ever used (live and free): every row is below this."""
        return len(self._key)

    def live_rows(self) -> np.ndarray:
        """The rows held by an id, ascending."""
        return np.flatnonzero(np.frombuffer(self._live, np.uint8)) if self._live else np.zeros(0, np.int64)

    @property
    def nbytes(self) -> int:
        return len(self._key) * 8 + len(self._live) + len(self._table) * 4 + len(self._free) * 8

    # ------------------------------------------------------------------ changes
    def add(self, doc_id: str) -> int:
        """The id's row, given a row (a freed one first) when it has none."""
        key, plain, b, r = self._find(doc_id)
        if r >= 0:
            return r
        if (self._count + 1) * 2 > len(self._table):
            self._resize(self._bits + 1)
            key, plain, b, r = self._find(doc_id)
        if self._free:
            r = self._free.pop()
            self._key[r] = key
            self._live[r] = 1
        else:
            r = len(self._key)
            self._key.append(key)
            self._live.append(1)
        if not plain:
            self._text[r] = doc_id
        self._table[b] = r + 1
        self._count += 1
        return r

    def discard(self, doc_id: str) -> int:
        """Free the id's row; returns it, or -1 when the id was not there."""
        _, _, b, r = self._find(doc_id)
        if r < 0:
            return -1
        self._live[r] = 0
        self._key[r] = 0
        self._text.pop(r, None)
        self._free.append(r)
        self._count -= 1
        # Backward shift: move later entries of the same probe run into the hole.
        table, keys, mask = self._table, self._key, (1 << self._bits) - 1
        hole, j = b, b
        table[hole] = 0
        while True:
            j = (j + 1) & mask
            e = table[j]
            if e == 0:
                return r
            home = self._home(keys[e - 1])
            # The entry stays when its home lies cyclically in (hole, j].
            if (hole < j and hole < home <= j) or (hole > j and (home > hole or home <= j)):
                continue
            table[hole], table[j] = e, 0
            hole = j

    def _resize(self, bits: int) -> None:
        self._bits = bits
        mask = (1 << bits) - 1
        table = self._table = array("i", bytes(4 << bits))
        keys, live = self._key, self._live
        for r in range(len(keys)):
            if live[r]:
                b = self._home(keys[r])
                while table[b]:
                    b = (b + 1) & mask
                table[b] = r + 1

    # ------------------------------------------------------------------ snapshots
    def arrays(self) -> tuple[np.ndarray, np.ndarray, list[int], dict[str, str]]:
        """(keys, live flags, free rows, {row: id} of the ids that are not hex) for a snapshot."""
        return (np.frombuffer(self._key, np.uint64).copy(), np.frombuffer(self._live, np.uint8).copy(),
                list(self._free), {str(r): t for r, t in self._text.items()})

    @classmethod
    def from_arrays(cls, keys: np.ndarray, live: np.ndarray, free: list[int], text: dict[str, str]) -> IdTable:
        if len(keys) != len(live) or keys.dtype != np.uint64:
            raise ValueError("id table: keys and live flags disagree")
        new = cls()
        new._key = array("Q", keys.tobytes())
        new._live = bytearray(live.astype(np.uint8).tobytes())
        new._text = {int(r): t for r, t in text.items()}
        new._free = [int(r) for r in free]
        new._count = int(np.count_nonzero(live))
        dead = {r for r in range(len(keys)) if not live[r]} if new._count < len(keys) else set()
        if (set(new._free) != dead or len(new._free) != len(dead)
                or any(not (0 <= r < len(keys)) or not live[r] for r in new._text)):
            raise ValueError("id table: free rows and live flags disagree")
        bits = 4
        while (new._count + 1) * 2 > (1 << bits):
            bits += 1
        new._resize(bits)
        return new


class IdValues:
    """id → int (a 64-bit signed value), on an :class:`IdTable`."""

    def __init__(self) -> None:
        self._ids = IdTable()
        self._values = array("q")

    def get(self, doc_id: str) -> int | None:
        r = self._ids.get(doc_id)
        return self._values[r] if r >= 0 else None

    def __setitem__(self, doc_id: str, value: int) -> None:
        r = self._ids.add(doc_id)
        if r == len(self._values):
            self._values.append(0)
        self._values[r] = value

    def pop(self, doc_id: str, default: int | None = None) -> int | None:
        r = self._ids.discard(doc_id)
        return self._values[r] if r >= 0 else default

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
