"""Helpers for tests against the real stack."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any


def ninjs(uri: str, *, version: int = 1, headline: str = "Headline", body: str = "<p>Body text.</p>", language: str = "en",
          status: str = "usable", section: str = "Business", tags: tuple[str, ...] = (), standfirst: str | None = "Standfirst.",
          created: str = "2026-11-27T08:00:00+05:00", version_created: str | None = None, **extra: Any) -> dict:
    item: dict[str, Any] = {
        "uri": uri, "type": "text", "version": version,
        "versionCreated": version_created or created, "firstCreated": created,
        "pubStatus": status, "language": language,
        "headlines": [{"role": "main", "value": headline}],
        "subjects": [{"name": section, "rel": "section"}, *({"name": t} for t in tags)],
    }
    if standfirst:
        item["descriptions"] = [{"role": "summary", "value": standfirst}]
    if status != "canceled":
        item["bodies"] = [{"role": "main", "contentType": "text/html", "value": body}]
    item.update(extra)
    return item


async def publish(producer, topic: str, item: dict | bytes, *, key: bytes | None = None) -> None:
    value = item if isinstance(item, bytes) else json.dumps(item).encode()
    if key is None and isinstance(item, dict):
        key = item["uri"].encode()
    await producer.send_and_wait(topic, value, key=key)


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 30, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last result: {last!r}")
