"""The teasers linking hands out, kept deflated: about half the memory of their JSON.

Every related list and search hit embeds teasers, so linking keeps one per indexed article
(100k articles: about 45 MB of JSON). Each is deflated on its own with a preset dictionary of
the keys and values all teasers share (about 450 → 210 bytes; 45 µs to pack, 4 µs to unpack),
into one buffer for all of them (about 21 MB at 100k articles).
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator, MutableMapping

from services.linking.idmap import IdTable

_ZDICT = (
    b'{"id":"","slug":"","headline":"","standfirst":"","language":"kk","language":"ru","language":"en",'
    b'"section":{"slug":"","name":""},"published_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z",'
    b'"image":{"href":"https://","alt":"","caption":null,"width":,"height":},'
    b'"section":{"slug":"news","name":"News"},"embargoed_until":null,"image":null,"sources":[]}'
)
_RECORD = struct.Struct("<HI")  # key length, packed value length


def pack(value: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return c.compress(value) + c.flush()


def unpack(packed: bytes) -> bytes:
    d = zlib.decompressobj(-15, _ZDICT)
    return d.decompress(packed) + d.flush()


class Teasers(MutableMapping[str, bytes]):
    """Article id → teaser JSON (bytes), deflated, all in one growing buffer.

    A ``bytes`` object per teaser would cost 33 bytes of header and its own small block beside
    the ~210 deflated bytes; here each costs 12 bytes of offsets and 17 of id table
    (:mod:`services.linking.idmap`). The space of replaced and
    removed teasers is reclaimed once it is half of the buffer."""

    def __init__(self, items: Iterable[tuple[str, bytes]] = (), *, reclaim_after: int = 1 << 20) -> None:
        self._reclaim_after = reclaim_after
        self._ids = IdTable()  # id -> record
        self._off = array("Q")
        self._len = array("I")
        self._buf = bytearray()
        self._garbage = 0
        for key, value in items:
            self[key] = value

    def _put(self, key: str, packed: bytes) -> None:
        r = self._ids.add(key)
        if r == len(self._off):
            self._off.append(0)
            self._len.append(0)
        else:
            self._garbage += self._len[r]  # 0 for a freed record
        self._off[r] = len(self._buf)
        self._len[r] = len(packed)
        self._buf += packed
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._garbage > self._reclaim_after and self._garbage * 2 > len(self._buf):
            self._compact()

    def _compact(self) -> None:
        buf, new = self._buf, bytearray()
        for r in self._ids.live_rows().tolist():
            o, n = self._off[r], self._len[r]
            self._off[r] = len(new)
            new += buf[o: o + n]
        self._buf = new
        self._garbage = 0

    def packed(self, key: str) -> bytes | None:
        """The stored form (equal teasers pack to equal bytes): for comparisons, without unpacking."""
        r = self._ids.get(key)
        if r < 0:
            return None
        o = self._off[r]
        return bytes(self._buf[o: o + self._len[r]])

    def __getitem__(self, key: str) -> bytes:
        r = self._ids.get(key)
        if r < 0:
            raise KeyError(key)
        o = self._off[r]
        return unpack(self._buf[o: o + self._len[r]])

    def __setitem__(self, key: str, value: bytes) -> None:
        self._put(key, pack(value))

    def __delitem__(self, key: str) -> None:
        r = self._ids.discard(key)
        if r < 0:
            raise KeyError(key)
        self._garbage += self._len[r]
        self._len[r] = 0
        self._maybe_compact()

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    @property
    def nbytes(self) -> int:
        """Deflated teasers, their offsets and the id table."""
        return len(self._buf) + len(self._off) * 12 + self._ids.nbytes

    def dump(self) -> Iterator[bytes]:
        """The whole store as binary records (for snapshots), in chunks."""
        for key in self._ids:
            k = key.encode("utf-8")
            value = self.packed(key) or b""
            yield _RECORD.pack(len(k), len(value)) + k + value

    @classmethod
    def load(cls, data: bytes) -> Teasers:
        new = cls()
        view, o, size = memoryview(data), 0, _RECORD.size
        while o < len(data):
            klen, vlen = _RECORD.unpack_from(view, o)
            o += size
            key = bytes(view[o:o + klen]).decode("utf-8")
            o += klen
            new._put(key, bytes(view[o:o + vlen]))
            o += vlen
        return new
