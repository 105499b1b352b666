"""Article audio in the database: the storage contract shared by narration (the only writer),
the gateway and the CLI (readers).

- ``audio``: one metadata document per article, ``_id`` = article id::

      {_id, version, language, content_type, duration_s, size, chunk_size, chunks, sha256,
       etag, created_at, words, embargoed_until, replaces, text_sha256}

  ``version`` is the article version the audio was made from; ``etag`` is a quoted string for
  HTTP; ``embargoed_until`` copies the article's embargo (None when there is none) so a reader
  can tell without another lookup; ``replaces`` names the chunks of the version it replaced
  (``{"version", "chunks"}`` or None), kept until they are deleted; ``text_sha256`` identifies
  what was spoken (text, voice, speech settings), so an unchanged text is not spoken again.
- ``audio_chunks``: the bytes, ``_id`` = ``chunk_id(article_id, version, n)``
  (``"<article id>:<version>:<n, 5 digits>"``), ``data`` = BSON Binary of ``chunk_size`` bytes
  (the last chunk shorter).

Writes (narration): every chunk of the new version first, then the metadata (version-guarded
upsert), then the previous version's chunks are deleted. A reader that took the metadata just
before a replacement may find its chunks gone: :func:`read_range` raises
:class:`AudioUnavailable` and the reader reads the metadata again.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

AUDIO = "audio"
AUDIO_CHUNKS = "audio_chunks"
CONTENT_TYPE = "audio/ogg; codecs=opus"
CHUNK_SIZE = 261_120  # 255 KiB, as GridFS
FETCH_BATCH = 16      # chunks per $in query (about 4 MB)


class AudioUnavailable(LookupError):
    """A chunk the metadata names is missing (replaced or deleted meanwhile)."""


class RangeNotSatisfiable(ValueError):
    """An HTTP byte range that selects nothing of the resource (answer 416)."""


def chunk_id(article_id: str, version: int, n: int) -> str:
    return f"{article_id}:{version}:{n:05d}"


def chunk_count(size: int, chunk_size: int = CHUNK_SIZE) -> int:
    return -(-size // chunk_size)


def split_chunks(data: bytes, chunk_size: int = CHUNK_SIZE) -> list[bytes]:
    return [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]


def chunk_ids(article_id: str, version: int, count: int) -> list[str]:
    return [chunk_id(article_id, version, n) for n in range(count)]


def chunk_span(start: int, end_inclusive: int, chunk_size: int = CHUNK_SIZE) -> range:
    """Indices of the chunks holding bytes ``start..end_inclusive``."""
    return range(start // chunk_size, end_inclusive // chunk_size + 1)


def etag_of(sha256_hex: str) -> str:
    return f'"{sha256_hex[:32]}"'


_RANGE = re.compile(r"^bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*$", re.IGNORECASE)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range an HTTP ``Range`` header asks for, as ``(start, end_inclusive)``.

    None: no header, or one that is ignored (several ranges, another unit, malformed), so the
    whole resource is served with 200. Raises :class:`RangeNotSatisfiable` (416) when the range
    selects nothing: ``start`` at or past the end, or ``bytes=-0``. An ``end`` past the last
    byte is clamped; ``bytes=-n`` is the last ``n`` bytes (RFC 9110, section 14.1.2).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as the RFC says
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(int(last), size - 1) if last else size - 1


async def read_meta(db: AsyncDatabase, article_id: str) -> dict[str, Any] | None:
    """The audio metadata of an article, or None (no audio)."""
    return await db[AUDIO].find_one({"_id": article_id})


async def iter_range(db: AsyncDatabase, meta: dict[str, Any], start: int, end_inclusive: int, *,
                     batch: int = FETCH_BATCH) -> AsyncIterator[bytes]:
    """Yield bytes ``start..end_inclusive`` of the audio in pieces, reading only the chunks that
    hold them, ``batch`` chunks per query (``_id`` ``$in``)."""
    size, chunk_size = int(meta["size"]), int(meta["chunk_size"])
    if not 0 <= start <= end_inclusive < size:
        raise ValueError(f"range {start}-{end_inclusive} is outside 0-{size - 1}")
    span = chunk_span(start, end_inclusive, chunk_size)
    article_id, version = meta["_id"], int(meta["version"])
    coll = db[AUDIO_CHUNKS]
    for first in range(span.start, span.stop, batch):
        numbers = range(first, min(first + batch, span.stop))
        ids = [chunk_id(article_id, version, n) for n in numbers]
        found = {doc["_id"]: bytes(doc["data"]) async for doc in coll.find({"_id": {"$in": ids}})}
        for n, cid in zip(numbers, ids):
            data = found.get(cid)
            if data is None:
                raise AudioUnavailable(f"audio chunk {cid} is missing")
            lo = start - n * chunk_size if n == span.start else 0
            hi = end_inclusive - n * chunk_size + 1 if n == span.stop - 1 else len(data)
            if hi > len(data) or lo > hi:
                raise AudioUnavailable(f"audio chunk {cid} is shorter than its metadata says")
            yield data[lo:hi]


async def read_range(db: AsyncDatabase, meta: dict[str, Any], start: int, end_inclusive: int) -> bytes:
    """Bytes ``start..end_inclusive`` (inclusive, as in HTTP) of the audio ``meta`` describes."""
    return b"".join([piece async for piece in iter_range(db, meta, start, end_inclusive)])
