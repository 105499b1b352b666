"""The teasers linking hands out, kept deflated, in memory or in a file read as needed.

Every related list and search hit embeds teasers, so linking keeps one per indexed article
(100k articles: about 45 MB of JSON). Each is deflated on its own with a preset dictionary of
the keys and values all teasers share (about 450 → 210 bytes; 45 µs to pack, 4 µs to unpack),
into one store for all of them (about 21 MB at 100k articles):

- in memory (:class:`MemoryStore`, one ``bytearray``): tests, the evaluation, small corpora;
- in a file (:class:`FileStore`, the service's default): appended with ``pwrite``, read with
  ``pread`` (2 µs). The bytes then live in the operating system's page cache, which keeps the
  teasers read often and can drop the others under memory pressure, not in the process. A list
  or a search page reads at most a few dozen teasers.

Comparing related lists needs no read: each teaser's hash is kept beside its offsets.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from array import array
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Protocol

from services.linking.idmap import IdTable

_ZDICT = (
    b'{"id":"","slug":"","headline":"","standfirst":"","language":"kk","language":"ru","language":"en",'
    b'"section":{"slug":"","name":""},"published_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z",'
    b'"image":{"href":"https://","alt":"","caption":null,"width":,"height":},'
    b'"section":{"slug":"news","name":"News"},"embargoed_until":null,"image":null,"sources":[]}'
)
_RECORD = struct.Struct("<HI")  # key length, packed value length
_COPY = 1 << 20  # bytes copied per step when a file store is compacted


def pack(value: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return c.compress(value) + c.flush()


def unpack(packed: bytes) -> bytes:
    d = zlib.decompressobj(-15, _ZDICT)
    return d.decompress(packed) + d.flush()


class Store(Protocol):
    """Where the packed teasers are: append-only, compacted by copying the live records."""

    def __len__(self) -> int: ...
    def append(self, data: bytes) -> int: ...
    def read(self, offset: int, length: int) -> bytes: ...
    def compacted(self, spans: Iterable[tuple[int, int]]) -> tuple[Store, list[int]]: ...
    def close(self) -> None: ...


class MemoryStore:
    """The packed teasers in one ``bytearray``."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def append(self, data: bytes) -> int:
        offset = len(self._buf)
        self._buf += data
        return offset

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self._buf[offset: offset + length])

    def compacted(self, spans: Iterable[tuple[int, int]]) -> tuple[MemoryStore, list[int]]:
        new, offsets = MemoryStore(), []
        for o, n in spans:
            offsets.append(new.append(self._buf[o: o + n]))
        return new, offsets

    def close(self) -> None:
        self._buf = bytearray()


class FileStore:
    """The packed teasers in an unnamed temporary file (removed when closed or when the process
    ends) in ``directory``, which should be on disk: on a tmpfs the file would be memory again."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._directory = directory
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=directory, prefix="kazpost-teasers-")
        self._fd = self._file.fileno()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _open_fd(self) -> int:
        if self._fd < 0:
            raise ValueError("the teaser file is closed")
        return self._fd

    def append(self, data: bytes) -> int:
        fd, offset = self._open_fd(), self._size
        written = os.pwrite(fd, data, offset)
        while written < len(data):  # a short write (disk full raises OSError instead)
            written += os.pwrite(fd, data[written:], offset + written)
        self._size += len(data)
        return offset

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._open_fd(), length, offset)
        if len(data) != length:
            raise OSError(f"teaser file: {len(data)} of {length} bytes at {offset}")
        return data

    def compacted(self, spans: Iterable[tuple[int, int]]) -> tuple[FileStore, list[int]]:
        new, offsets = FileStore(self._directory), []
        chunk = bytearray()
        for o, n in spans:
            offsets.append(new._size + len(chunk))
            chunk += self.read(o, n)
            if len(chunk) >= _COPY:
                new.append(bytes(chunk))
                chunk.clear()
        if chunk:
            new.append(bytes(chunk))
        return new, offsets

    def close(self) -> None:
        self._fd = -1  # never read a closed descriptor: its number may belong to another file by then
        self._file.close()


class Teasers(MutableMapping[str, bytes]):
    """Article id → teaser JSON (bytes), deflated, all in one store (in memory by default).

    A ``bytes`` object per teaser would cost 33 bytes of header and its own small block beside
    the ~210 deflated bytes; here each costs 20 bytes of offsets and hash and 17 of id table
    (:mod:`services.linking.idmap`). The space of replaced and removed teasers is reclaimed
    once it is half of the store."""

    def __init__(self, items: Iterable[tuple[str, bytes]] = (), *, reclaim_after: int = 1 << 20,
                 store: Store | None = None) -> None:
        self._reclaim_after = reclaim_after
        self._ids = IdTable()  # id -> record
        self._off = array("Q")
        self._len = array("I")
        self._hash = array("q")
        self._store: Store = store if store is not None else MemoryStore()
        self._garbage = 0
        for key, value in items:
            self[key] = value

    def _put(self, key: str, packed: bytes) -> None:
        r = self._ids.add(key)
        if r == len(self._off):
            self._off.append(0)
            self._len.append(0)
            self._hash.append(0)
        else:
            self._garbage += self._len[r]  # 0 for a freed record
        self._off[r] = self._store.append(packed)
        self._len[r] = len(packed)
        self._hash[r] = hash(packed)
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._garbage > self._reclaim_after and self._garbage * 2 > len(self._store):
            self._compact()

    def _compact(self) -> None:
        rows = self._ids.live_rows().tolist()
        new, offsets = self._store.compacted((self._off[r], self._len[r]) for r in rows)
        for r, o in zip(rows, offsets):
            self._off[r] = o
        self._store.close()
        self._store = new
        self._garbage = 0

    def close(self) -> None:
        """Release the store (a file store's file is removed)."""
        self._store.close()

    def digest(self, key: str) -> int | None:
        """A hash of the stored form, for comparisons without reading it (None: no teaser)."""
        r = self._ids.get(key)
        return self._hash[r] if r >= 0 else None

    def packed(self, key: str) -> bytes | None:
        """The stored form (equal teasers pack to equal bytes): for comparisons, without unpacking."""
        r = self._ids.get(key)
        if r < 0:
            return None
        return self._store.read(self._off[r], self._len[r])

    def __getitem__(self, key: str) -> bytes:
        packed = self.packed(key)
        if packed is None:
            raise KeyError(key)
        return unpack(packed)

    def __setitem__(self, key: str, value: bytes) -> None:
        self._put(key, pack(value))

    def put(self, key: str, value: bytes) -> bool | None:
        """Store a teaser unless the same one is there: None when the key was new, True when
        it replaced another teaser, False when it was the same (nothing written)."""
        packed = pack(value)
        r = self._ids.get(key)
        if r >= 0 and self._hash[r] == hash(packed) and self.packed(key) == packed:
            return False
        self._put(key, packed)
        return None if r < 0 else True

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
        """Memory held by the process: offsets, hashes, the id table, and the deflated teasers
        when they are kept in memory."""
        own = len(self._off) * 20 + self._ids.nbytes
        return own + (len(self._store) if isinstance(self._store, MemoryStore) else 0)

    @property
    def stored_bytes(self) -> int:
        """Size of the store: the deflated teasers, and those replaced since the last compaction."""
        return len(self._store)

    def dump(self) -> Iterator[bytes]:
        """The whole store as binary records (for snapshots), in chunks."""
        for key in self._ids:
            k = key.encode("utf-8")
            value = self.packed(key) or b""
            yield _RECORD.pack(len(k), len(value)) + k + value

    @classmethod
    def load(cls, data: bytes, *, store: Store | None = None) -> Teasers:
        new = cls(store=store)
        view, o, size = memoryview(data), 0, _RECORD.size
        while o < len(data):
            klen, vlen = _RECORD.unpack_from(view, o)
            o += size
            key = bytes(view[o:o + klen]).decode("utf-8")
            o += klen
            new._put(key, bytes(view[o:o + vlen]))
            o += vlen
        return new
