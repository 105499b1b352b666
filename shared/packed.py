"""Teaser lists as the database stores them: one compact JSON string per list.

Listing buckets hold up to 48 teasers and related lists six, each teaser a small object with
nested fields. Stored as nested documents, every read and every update makes the database
parse and re-encode each field of each teaser (FerretDB v1 keeps a type schema beside every
value: a 48-teaser bucket costs it 10.9 ms of CPU per read and write). Stored as one string,
the same bucket costs 2.1 ms, and the services decode it once, here.

:func:`pack` is what writers store; :func:`unpack` is what every reader calls, and it also
accepts a list (documents written before lists were packed), so old data stays readable and
is packed at its next write. Dates travel as ISO 8601 strings and come back as aware
datetimes, exactly as the database client returns dates.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

# Date fields of a teaser (shared.events.Teaser) and of what a list item embeds.
DATE_FIELDS = frozenset({"published_at", "updated_at", "embargoed_until"})


def _default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot pack {type(value).__name__}")


def pack(items: list[dict[str, Any]]) -> str:
    """A list of teasers (or of related items embedding a teaser) as one compact JSON string."""
    return json.dumps(items, default=_default, separators=(",", ":"), ensure_ascii=False)


def _dates(obj: dict[str, Any]) -> dict[str, Any]:
    for key, value in obj.items():
        if key in DATE_FIELDS and isinstance(value, str):
            obj[key] = datetime.fromisoformat(value)
        elif isinstance(value, dict):
            _dates(value)
    return obj


def unpack(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The list a document's packed field holds (a list as is: written before packing)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    items = json.loads(value)
    if not isinstance(items, list):
        raise ValueError("a packed list must be a JSON array")
    return [_dates(item) if isinstance(item, dict) else item for item in items]


# The fields stored packed: listing buckets' and related lists' "items", related lists'
# "also_reported".
PACKED_FIELDS = ("items", "also_reported")


def unpack_document(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A listing bucket or related list as read, with its packed fields as lists."""
    if doc is not None:
        for name in PACKED_FIELDS:
            if isinstance(doc.get(name), str):
                doc[name] = unpack(doc[name])
    return doc
