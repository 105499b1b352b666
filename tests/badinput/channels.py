"""The bad-input channels, each driven against running services, each giving a :class:`Tally`.

- ``ingestion/body``: whole upstream message bodies (JSONTestSuite, BLNS bytes, hostile JSON);
- ``ingestion/fields``: every string in every field of an otherwise valid ninjs item (and as a
  JSON key, and as the Kafka key);
- ``gateway/query``, ``gateway/path``, ``gateway/form``: every string as a query parameter value
  or name or a raw query string, as a path segment, and as a form field of the newsletter form.

Ingestion: every message must come out exactly once, either in the dead-letter topic with a
reason in ``dlq.reason`` or on the ingested topic with content inside the sanitiser's allow-list;
valid sentinels published afterwards on every partition must come through (no stall), and the
worker must still run (no crash). Gateway: never a 5xx, never a dropped connection; every 4xx of
the JSON API has the error shape.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import monitoring

from shared.kafka import DLQ_REASON, HEADER_CORRELATION
from shared.settings import KafkaSettings
from tests.badinput import checks
from tests.badinput.corpora import Body

MAX_PROBLEMS = 20


@dataclass
class Tally:
    channel: str
    inputs: int = 0
    rejected: int = 0       # dead-lettered with a reason / answered 4xx
    accepted: int = 0       # accepted with its content sanitised / answered 2xx-3xx
    server_errors: int = 0  # 5xx
    crashes: int = 0        # a service task died, a connection dropped, or messages never came out
    problems: list[str] = field(default_factory=list)
    reasons: collections.Counter = field(default_factory=collections.Counter)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text[:400])
        else:
            self.problems[-1] = f"... and more ({text[:100]})"

    @property
    def ok(self) -> bool:
        return not self.problems and self.server_errors == 0 and self.crashes == 0 \
            and self.inputs == self.rejected + self.accepted

    def row(self) -> list[str]:
        return [self.channel, str(self.inputs), str(self.rejected), str(self.accepted), str(self.server_errors),
                str(self.crashes), str(len(self.problems)), f"{self.seconds:.1f}"]


HEADERS = ["channel", "inputs", "rejected with reason", "accepted sanitised", "5xx", "crashes", "problems", "s"]


def table(tallies: Iterable[Tally]) -> str:
    rows = [HEADERS, *(t.row() for t in tallies)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    line = lambda r: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"  # noqa: E731
    return "\n".join([line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows[1:])])


# --- ingestion --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Upstream:
    label: str
    value: bytes | None
    key: bytes | None = None
    expect: str | None = None


def valid_item(uri: str, version: int = 1, **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "uri": uri, "type": "text", "version": version, "versionCreated": "2026-11-27T08:00:00+05:00",
        "pubStatus": "usable", "language": "en",
        "headlines": [{"role": "main", "value": "Bad-input probe"}],
        "descriptions": [{"role": "summary", "value": "Standfirst."}],
        "bodies": [{"role": "main", "contentType": "text/html", "value": "<p>Probe body text.</p>"}],
        "subjects": [{"name": "Society", "rel": "section"}, {"name": "Probes"}],
        "by": "Desk",
    }
    item.update(overrides)
    return item


def field_variants(s: str, uri: str, version: int) -> list[tuple[str, dict[str, Any] | None, bytes | None]]:
    """(field name, ninjs item, Kafka key) for one string placed in each field in turn."""
    base = lambda **kw: valid_item(uri, version, **kw)  # noqa: E731
    body = lambda html: [{"role": "main", "contentType": "text/html", "value": html}]  # noqa: E731
    out: list[tuple[str, dict[str, Any] | None, bytes | None]] = [
        ("uri", valid_item(s, version), None),
        ("headline", base(headlines=[{"role": "main", "value": s}]), None),
        ("body", base(bodies=body(s)), None),
        ("body-in-text", base(bodies=body(f"<p>Before.</p>{s}<p>After.</p>")), None),
        ("standfirst", base(descriptions=[{"role": "summary", "value": s}]), None),
        ("byline", base(by=s), None),
        ("language", base(language=s), None),
        ("section", base(subjects=[{"name": s, "rel": "section"}]), None),
        ("tag", base(subjects=[{"name": "Society", "rel": "section"}, {"name": s}]), None),
        ("image", base(associations={"featureimage": {"type": "picture", "altText": s,
                                                      "renditions": {"original": {"href": s, "width": 800}}}}), None),
        ("association-key", base(associations={s: {"type": "picture", "renditions": {
            s: {"href": "https://img.example/a.jpg"}}}}), None),
        ("kafka-key", base(), s.encode("utf-8", "replace")),
    ]
    item = base()
    if s not in item:
        item[s] = {"$gt": "", "$where": s}
        out.append(("json-key", item, None))
    return out


def field_messages(strings: list[tuple[str, str]], run: str) -> list[Upstream]:
    out = []
    version = 0
    for label, s in strings:
        # Distinct versions: two equal strings in two corpora are two messages, never a re-delivery.
        for name, item, key in field_variants(s, f"urn:badinput:{run}:{label}", version + 1):
            version += 1
            item["version"] = version
            try:
                value = json.dumps(item, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: sent escaped, as a JSON encoder would
                value = json.dumps(item).encode("ascii")
            out.append(Upstream(f"{name}:{label}", value, key))
    return out


def body_messages(bodies: list[Body]) -> list[Upstream]:
    return [Upstream(b.label, b.raw, None, b.expect) for b in bodies]


async def ingestion_channel(
    channel: str,
    messages: list[Upstream],
    *,
    producer: AIOKafkaProducer,
    kafka: KafkaSettings,
    alive: Callable[[], bool],
    timeout: float = 300.0,
) -> Tally:
    """Publish ``messages`` then one valid sentinel per partition; account for every one."""
    tally = Tally(channel, inputs=len(messages))
    started = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=kafka.max_request_size)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in (kafka.topic_ingested, kafka.topic_upstream_dlq)
               for p in sorted(await producer.partitions_for(t))]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: only what is published from here on counts
            await consumer.position(tp)

        pending: dict[str, Upstream] = {}
        for n, m in enumerate(messages):
            cid = f"bi-{tag}-{n}"
            pending[cid] = m
            await producer.send(kafka.topic_upstream, m.value, key=m.key if m.key is not None else cid.encode(),
                                headers=[(HEADER_CORRELATION, cid.encode())])
        await producer.flush()
        partitions = sorted(await producer.partitions_for(kafka.topic_upstream))
        sentinels = {}
        for p in partitions:
            cid = f"bi-{tag}-sentinel-{p}"
            sentinels[cid] = p
            item = valid_item(f"urn:badinput:sentinel:{tag}:{p}")
            await producer.send_and_wait(kafka.topic_upstream, json.dumps(item).encode(), key=cid.encode(),
                                         partition=p, headers=[(HEADER_CORRELATION, cid.encode())])

        deadline = time.monotonic() + timeout
        while (pending or sentinels) and time.monotonic() < deadline and alive():
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batch.values():
                for record in records:
                    headers = dict(record.headers or ())
                    cid = headers.get(HEADER_CORRELATION, b"").decode("utf-8", "replace")
                    if sentinels.pop(cid, None) is not None:
                        if record.topic != kafka.topic_ingested:
                            tally.problem(f"sentinel {cid} dead-lettered: {headers.get(DLQ_REASON)!r}")
                        continue
                    m = pending.pop(cid, None)
                    if m is None:
                        continue
                    if record.topic == kafka.topic_upstream_dlq:
                        _dead_lettered(tally, m, headers, record.value)
                    else:
                        _ingested(tally, m, record.value)
        if not alive():
            tally.crashes += 1
            tally.problem("the ingestion worker stopped")
        if sentinels:
            tally.crashes += 1
            tally.problem(f"stalled: sentinels not through on partitions {sorted(sentinels.values())}")
        for m in list(pending.values())[:MAX_PROBLEMS]:
            tally.problem(f"{m.label}: neither dead-lettered nor ingested")
        if pending:
            tally.crashes += 1
    finally:
        await consumer.stop()
        tally.seconds = time.monotonic() - started
    return tally


def _dead_lettered(tally: Tally, m: Upstream, headers: dict[str, bytes], value: bytes | None) -> None:
    reason = headers.get(DLQ_REASON, b"").decode("utf-8", "replace")
    if not reason.strip():
        tally.problem(f"{m.label}: dead-lettered without a reason")
        return
    if value != m.value and not (value in (None, b"") and m.value in (None, b"")):
        tally.problem(f"{m.label}: dead letter does not hold the original bytes")
        return
    if m.expect and m.expect.lower() not in reason.lower():
        tally.problem(f"{m.label}: reason {reason[:120]!r} does not mention {m.expect!r}")
        return
    if "unexpected failure" in reason or "Error(" in reason:
        tally.problem(f"{m.label}: rejected by a crash, not a check: {reason[:200]}")
        return
    tally.rejected += 1
    tally.reasons[_reason_kind(reason)] += 1


def _reason_kind(reason: str) -> str:
    head = reason.split(":", 1)[0]
    if head == "schema":  # "schema: version: Input should be ..." -> "schema: version"
        return ":".join(reason.split(":", 2)[:2])
    return head[:60]


def _ingested(tally: Tally, m: Upstream, value: bytes | None) -> None:
    try:
        article = json.loads(value or b"")["payload"]["article"]
    except (ValueError, KeyError, TypeError) as exc:
        tally.problem(f"{m.label}: ingested event unreadable: {exc!r}")
        return
    problems = checks.article_problems(article)
    if problems:
        tally.problem(f"{m.label}: accepted but {problems[:3]}")
        return
    if m.expect:
        tally.problem(f"{m.label}: accepted, expected a rejection ({m.expect})")
        return
    tally.accepted += 1


# --- gateway ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Request:
    label: str
    method: str
    url: str                     # path and query, already percent-encoded
    data: bytes | None = None
    content_type: str | None = None

    @property
    def api(self) -> bool:
        return self.url.startswith("/api/")


def q(s: str) -> str:
    return quote(s.encode("utf-8", "surrogatepass").decode("utf-8", "replace"), safe="")


def raw_query(s: str) -> str:
    """The string as a query string of its own, its structure (``=``, ``&``, ``[]``) kept."""
    return quote(s.encode("utf-8", "replace").decode("utf-8"), safe="=&[]$'{}:,\"!*();@+")


def query_requests(strings: list[tuple[str, str]]) -> list[Request]:
    out = []
    for label, s in strings:
        v = q(s)
        for path in (
            f"/api/v1/articles?uri={v}", f"/api/v1/articles?section={v}", f"/api/v1/articles?tag={v}",
            f"/api/v1/articles?lang={v}", f"/api/v1/articles?limit={v}", f"/api/v1/articles?cursor={v}",
            f"/api/v1/articles?{v}=1", f"/api/v1/articles?{raw_query(s)}", f"/api/v1/articles?uri[{v}]=1",
            f"/api/v1/search?q={v}", f"/api/v1/search?q=x&lang={v}", f"/api/v1/search?q=x&page={v}",
            f"/?before={v}", f"/section/society?before={v}", f"/tag/probes?before={v}", f"/search?q={v}",
            f"/search?q=probe&page={v}&lang={v}", f"/feed.xml?{raw_query(s)}", f"/sitemap.xml?x={v}",
        ):
            out.append(Request(f"{path.split('?')[0]}?:{label}", "GET", path))
    return out


PATH_TEMPLATES = (
    "/api/v1/articles/{v}", "/articles/{v}", "/articles/{v}/{v}", "/articles/{id}/{v}", "/section/{v}", "/tag/{v}",
    "/section/{v}/feed.xml", "/section/{v}/atom.xml", "/static/{v}", "/{v}",
)


def path_requests(strings: list[tuple[str, str]], existing_id: str) -> list[Request]:
    out = []
    for label, s in strings:
        v = q(s) or "%20"
        for template in PATH_TEMPLATES:
            out.append(Request(f"path:{template}:{label}", "GET", template.format(v=v, id=existing_id)))
    return out


FORM = "application/x-www-form-urlencoded"


def form_requests(strings: list[tuple[str, str]]) -> list[Request]:
    """The newsletter form and its confirm/unsubscribe links (sent as from the site's own page)."""
    out = []
    for label, s in strings:
        v = q(s)
        for name, body in (
            ("email", f"email={v}"), ("lang", f"email=reader%40example.kz&lang={v}"),
            ("section", f"email=reader%40example.kz&section={v}&section={v}"),
            ("honeypot", f"email=reader%40example.kz&website={v}"), ("name", f"{v}=1&email=reader%40example.kz"),
            ("raw", s),
        ):
            out.append(Request(f"form:{name}:{label}", "POST", "/newsletter", body.encode("utf-8", "replace"), FORM))
        for path in ("/newsletter/confirm", "/newsletter/unsubscribe"):
            out.append(Request(f"form:{path}?token:{label}", "GET", f"{path}?token={v}&lang={v}"))
            out.append(Request(f"form:{path}:token:{label}", "POST", path, f"token={v}".encode(), FORM))
    return out


async def gateway_channel(channel: str, requests: list[Request], *, http: aiohttp.ClientSession, base_url: str,
                          concurrency: int = 8, alive: Callable[[], bool] = lambda: True) -> Tally:
    tally = Tally(channel, inputs=len(requests))
    started = time.monotonic()
    semaphore = asyncio.Semaphore(concurrency)

    async def one(r: Request) -> None:
        async with semaphore:
            headers = {"Content-Type": r.content_type} if r.content_type else {}
            if r.method == "POST":
                headers["Sec-Fetch-Site"] = "same-origin"  # a form sent from the site's own page
            try:
                async with http.request(r.method, base_url + r.url, data=r.data, headers=headers,
                                        allow_redirects=False) as resp:
                    body = await resp.read()
                    status = resp.status
                    content_type = resp.headers.get("Content-Type", "")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                tally.crashes += 1
                tally.problem(f"{r.label} {r.url[:100]}: {exc!r}")
                return
        tally.statuses[status] += 1
        if status >= 500:
            tally.server_errors += 1
            tally.problem(f"{r.label} {r.method} {r.url[:120]}: HTTP {status}")
            return
        if status >= 400:
            tally.rejected += 1
            if r.api:
                try:
                    problems = checks.error_shape_problems(status, json.loads(body))
                except ValueError:
                    problems = [f"not JSON ({content_type})"]
                if problems:
                    tally.problem(f"{r.label} {r.url[:100]}: HTTP {status}: {problems}")
        else:
            tally.accepted += 1
            if r.api and status == 200 and "json" not in content_type:
                tally.problem(f"{r.label}: HTTP 200 with {content_type!r}")

    await asyncio.gather(*(one(r) for r in requests))
    if not alive():
        tally.crashes += 1
        tally.problem("the gateway stopped")
    tally.seconds = time.monotonic() - started
    return tally


class CommandCapture(monitoring.CommandListener):
    """Every command a client sends (PyMongo command monitoring), checked for its shape."""

    def __init__(self) -> None:
        self.commands: collections.Counter = collections.Counter()
        self.finds = 0
        self.problems: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands[event.command_name] += 1
        self.finds += event.command_name == "find"
        problems = checks.filter_problems(event.command_name, dict(event.command))
        if problems and len(self.problems) < MAX_PROBLEMS:
            self.problems.extend(problems)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def wait_for(check: Callable[[], Awaitable[Any]], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
