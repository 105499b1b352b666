"""The whole bad-input suite against real services (used by tests/integration/test_badinput.py
with a sample of the corpora, and by ``make badinput`` with all of them).

The caller provides a running pipeline (storage and linking writing the database the gateway
reads). The suite starts, on the same broker and database:
- an ingestion worker of its own, on topics of its own (``<prefix>upstream.articles`` ...), so
  every message it publishes can be accounted for, and nothing it accepts reaches the pipeline;
- a gateway of its own on the pipeline's database, whose MongoDB client records every command
  it sends (PyMongo command monitoring), to prove no request changes a query's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

import services.gateway.app as gateway_app
from services.gateway.settings import GatewaySettings
from services.ingestion.app import create_worker as create_ingestion
from services.ingestion.settings import IngestionSettings
from shared.events import article_id_for
from shared.kafka import all_topics, ensure_topics
from shared.mongo import ARTICLES, make_client
from shared.settings import TOPIC_FIELDS, KafkaSettings, MongoSettings, RetrySettings
from tests.badinput import channels, corpora
from tests.badinput.channels import CommandCapture, Tally

# Below the broker's default message size (1 MB), so "too large" is ingestion's own answer.
MAX_MESSAGE_BYTES = 500_000
FAST_RETRY = RetrySettings(max_attempts=30, initial_backoff_s=0.1, max_backoff_s=2.0)


@dataclass(frozen=True)
class Sizes:
    strings: int | None  # BLNS strings and XSS payloads each (every NoSQL line always); None: all
    bodies: int | None   # BLNS strings as whole bodies (every JSONTestSuite case always); None: all


CI = Sizes(strings=25, bodies=40)
FULL = Sizes(strings=None, bodies=None)


@dataclass
class Report:
    tallies: list[Tally] = field(default_factory=list)
    nosql: list[tuple[str, bool, str]] = field(default_factory=list)  # (check, passed, detail)
    capture: CommandCapture = field(default_factory=CommandCapture)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tallies) and all(passed for _, passed, _ in self.nosql) \
            and not self.capture.problems and self.capture.finds > 0

    def render(self) -> str:
        out = ["Bad-input suite: every channel", "", channels.table(self.tallies), ""]
        for t in self.tallies:
            if t.reasons:
                top = ", ".join(f"{reason} ({n})" for reason, n in t.reasons.most_common(8))
                out.append(f"{t.channel}: top rejection reasons: {top}")
            if t.statuses:
                out.append(f"{t.channel}: statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(t.statuses.items())))
            for p in t.problems:
                out.append(f"  PROBLEM {t.channel}: {p}")
        out += ["", "NoSQL operator injection", "", "| check | result |", "|---|---|"]
        out += [f"| {check} | {'ok' if passed else 'FAILED: ' + detail} |" for check, passed, detail in self.nosql]
        commands = ", ".join(f"{name}: {n}" for name, n in self.capture.commands.most_common())
        out += ["", f"Database commands the gateway sent: {sum(self.capture.commands.values())} ({commands}); "
                    f"filters other than {{\"_id\": <string>}}: {len(self.capture.problems)}"]
        out += [f"  PROBLEM query shape: {p}" for p in self.capture.problems]
        return "\n".join(out)

    def as_json(self) -> dict[str, Any]:
        return {
            "channels": [{"channel": t.channel, "inputs": t.inputs, "rejected": t.rejected, "accepted": t.accepted,
                          "server_errors": t.server_errors, "crashes": t.crashes, "problems": t.problems,
                          "reasons": dict(t.reasons), "statuses": {str(k): v for k, v in t.statuses.items()},
                          "seconds": round(t.seconds, 2)} for t in self.tallies],
            "nosql": [{"check": c, "passed": p, "detail": d} for c, p, d in self.nosql],
            "db_commands": dict(self.capture.commands), "query_shape_problems": self.capture.problems,
        }


def prefixed(kafka: KafkaSettings, prefix: str) -> KafkaSettings:
    return kafka.model_copy(update={name: prefix + getattr(kafka, name) for name in TOPIC_FIELDS})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the suite's own services -----------------------------------------------------------------

@contextlib.asynccontextmanager
async def ingestion(kafka: KafkaSettings, group: str) -> AsyncIterator[asyncio.Task]:
    await ensure_topics(kafka, all_topics(kafka))
    worker = create_ingestion(IngestionSettings(kafka=kafka, retry=FAST_RETRY, group_id=group, ops_port=None,
                                                max_message_bytes=MAX_MESSAGE_BYTES))
    task = asyncio.create_task(worker.serve(install_signals=False), name="badinput-ingestion")
    try:
        await channels.wait_for(_assigned(worker, task), timeout=60, what="ingestion's partitions")
        yield task
    finally:
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=30)


def _assigned(worker, task):
    async def check() -> bool:
        if task.done():
            task.result()
        return worker.runner.assigned
    return check


def gateway_settings(kafka: KafkaSettings, mongo: MongoSettings, linking_url: str) -> GatewaySettings:
    port = free_port()
    extra: dict[str, Any] = {}
    if "newsletter_rate_limit" in GatewaySettings.model_fields:  # let every form input reach validation
        extra["newsletter_rate_limit"] = 1_000_000
    return GatewaySettings(kafka=kafka, mongo=mongo, port=port, ops_port=None, linking_url=linking_url,
                           public_base_url=f"http://127.0.0.1:{port}", **extra)


@contextlib.asynccontextmanager
async def gateway(settings: GatewaySettings, capture: CommandCapture) -> AsyncIterator[str]:
    """A real gateway whose database client also reports every command to ``capture``."""
    with mock.patch.object(gateway_app, "make_client", functools.partial(make_client, listeners=[capture])):
        app = gateway_app.create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        await runner.cleanup()


# --- seeds: valid articles carrying operator-shaped strings and keys ----------------------------

OPERATOR_URI = '{"$gt": ""}'
BRACKET_URI = "[$ne]=1"


def seed_items(run: str) -> list[dict[str, Any]]:
    picture = {"type": "picture", "altText": "alt", "renditions": {"$gt": {"href": "https://img.example/a.jpg"}}}
    first = channels.valid_item(
        OPERATOR_URI, subjects=[{"name": "$where", "rel": "section"}, {"name": "a.b"}, {"name": "$ne"}],
        bodies=[{"role": "main", "contentType": "text/html",
                 "value": '<p>Operators as text: {"$gt": ""}.</p><script>alert(1)</script><img src=x onerror=alert(1)>'}],
        associations={"$gt": picture, "x.y": picture},
    )
    first["headlines"] = [{"role": "main", "value": 'Operator-shaped uri {"$gt": ""}'}]
    first["$where"] = "1 == 1"
    first["a.b"] = {"$ne": 1}
    second = channels.valid_item(BRACKET_URI)
    third = channels.valid_item(f"urn:badinput:{run}:plain")
    return [first, second, third]


async def seed(producer: AIOKafkaProducer, topic: str, http: aiohttp.ClientSession, base_url: str,
               run: str) -> list[str]:
    items = seed_items(run)
    for item in items:
        await producer.send_and_wait(topic, json.dumps(item).encode(), key=item["uri"].encode())
    for item in items:
        url = f"{base_url}/api/v1/articles/{article_id_for(item['uri'])}"

        async def readable(url: str = url) -> bool:
            async with http.get(url) as r:
                return r.status == 200
        await channels.wait_for(readable, timeout=120, what=f"seed article {item['uri']}")
    return [article_id_for(i["uri"]) for i in items]


# --- NoSQL operator injection: behaviour and what reaches the database -------------------------

def _bad_keys(value: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).startswith("$") or "." in str(k):
                found.append(f"{path}.{k}")
            found += _bad_keys(v, f"{path}.{k}")
    elif isinstance(value, list):
        for n, v in enumerate(value):
            found += _bad_keys(v, f"{path}[{n}]")
    return found


async def nosql_checks(http: aiohttp.ClientSession, base_url: str, db: AsyncDatabase,
                       seed_ids: list[str]) -> list[tuple[str, bool, str]]:
    from urllib.parse import quote

    results: list[tuple[str, bool, str]] = []

    async def get(path: str) -> tuple[int, Any]:
        async with http.get(base_url + path, allow_redirects=False) as r:
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, None

    def check(name: str, passed: bool, detail: Any) -> None:
        results.append((name, bool(passed), str(detail)[:300]))

    status, body = await get(f"/api/v1/articles?uri={quote(OPERATOR_URI, safe='')}")
    check('?uri={"$gt": ""} is the article with that literal uri, not "any uri"', status == 200
          and body.get("uri") == OPERATOR_URI, (status, (body or {}).get("uri")))
    status, body = await get(f"/api/v1/articles?uri={quote(BRACKET_URI, safe='')}")
    check("?uri=[$ne]=1 (encoded) is the article with that literal uri", status == 200
          and body.get("uri") == BRACKET_URI, (status, (body or {}).get("uri")))
    for raw in ("uri[$ne]=1", "uri[$gt]=", "section[$ne]=1", "uri.$ne=1", "$where=1", "uri=1&uri[$ne]=1"):
        status, body = await get(f"/api/v1/articles?{raw}")
        check(f"?{raw} is a 400 with a reason", status == 400 and bool((body or {}).get("error", {}).get("message")),
              (status, body))
    for literal in ('{"$ne": null}', '{"$regex": ".*"}', '{"$where": "1 == 1"}', "'; return true; var x='"):
        status, body = await get(f"/api/v1/articles?uri={quote(literal, safe='')}")
        check(f"?uri={literal} matches nothing (404)", status == 404, (status, body))
    status, body = await get("/api/v1/articles?section=where&limit=100")
    check("section named '$where' is the plain slug 'where'", status == 200
          and seed_ids[0] in [i["id"] for i in body.get("items", [])], status)
    for path in (f"/api/v1/articles/{quote(OPERATOR_URI, safe='')}", "/api/v1/articles/%24where",
                 "/articles/%7B%22%24ne%22%3A%201%7D/x"):
        status, _ = await get(path)
        check(f"path {path} is a 404", status == 404, status)
    for article_id in seed_ids:
        doc = await db[ARTICLES].find_one({"_id": article_id})
        keys = _bad_keys(doc)
        check(f"stored article {article_id}: no key starting with $ or holding a dot", doc is not None and not keys, keys)
    return results


# --- the suite ----------------------------------------------------------------------------------

async def run(*, producer: AIOKafkaProducer, kafka: KafkaSettings, mongo: MongoSettings, db: AsyncDatabase,
              linking_url: str, run_id: str, sizes: Sizes, log=print) -> Report:
    """``kafka``: the pipeline's settings (its upstream topic feeds the database ``mongo``)."""
    report = Report()
    bad_kafka = prefixed(kafka, f"bi{run_id}.")
    strings = corpora.strings(sizes.strings)
    settings = gateway_settings(kafka, mongo, linking_url)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http, \
            gateway(settings, report.capture) as base_url:
        log(f"seeding articles through the pipeline ({kafka.topic_upstream})")
        seed_ids = await seed(producer, kafka.topic_upstream, http, base_url, run_id)

        async with ingestion(bad_kafka, f"badinput-{run_id}") as task:
            alive = lambda: not task.done()  # noqa: E731
            bodies = channels.body_messages(corpora.bodies(f"urn:badinput:{run_id}:body", sizes.bodies))
            log(f"ingestion/body: {len(bodies)} messages")
            report.tallies.append(await channels.ingestion_channel(
                "ingestion/body", bodies, producer=producer, kafka=bad_kafka, alive=alive))
            fields = channels.field_messages(strings, run_id)
            log(f"ingestion/fields: {len(fields)} messages")
            report.tallies.append(await channels.ingestion_channel(
                "ingestion/fields", fields, producer=producer, kafka=bad_kafka, alive=alive, timeout=900))

        for name, requests in (
            ("gateway/query", channels.query_requests(strings)),
            ("gateway/path", channels.path_requests(strings, seed_ids[-1])),
            ("gateway/form", channels.form_requests(strings)),
        ):
            log(f"{name}: {len(requests)} requests")
            report.tallies.append(await channels.gateway_channel(name, requests, http=http, base_url=base_url))
        report.nosql = await nosql_checks(http, base_url, db, seed_ids)
    return report
