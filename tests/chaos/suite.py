"""The fault suite: publish articles upstream while one fault is injected, then score what the
producer saw acknowledged against what the read models and the site hold (the Jepsen way).

One scenario = fresh topics, consumer groups and database; the four services as processes;
an upstream producer (idempotent, acks=all) publishing N articles at a steady rate, plus
version 2 of every tenth article; one fault injected a third of the way through and healed;
then quiescence, and the score:

- ``acked``: upstream messages (article id, version) the producer got an acknowledgement for
  (a send that errors is re-sent, up to a deadline; one that never succeeded is not acked);
- ``stored``: acked messages whose version is in ``article_versions`` and whose article
  document holds that version or a newer one;
- ``linked``: acked articles with their own related list written; ``readable``: acked
  articles whose page on the gateway answers 200;
- ``lost``: acked messages missing from any of those (or from the home listing);
- ``duplicated``: acked articles shown more than once where the design promises once: two
  ``article_versions`` entries for one (id, version), two article documents for one uri, twice
  in the home or section listing, twice in one related list (or related to itself);
- ``unexpected``: articles or versions in the database that no acknowledged message explains;
- ``dlq``: messages dead-lettered on any topic (every article published is valid: must be 0);
- ``re-emitted``: ``articles.ingested`` / ``articles.stored`` events beyond one per (id,
  version). At-least-once on the topics is by design (a re-delivery re-publishes); the effect
  is exactly-once. Informational, not a failure.
- ``fault_s``: from the fault until the heal: the process restarted; the broker's or the
  database's port accepting connections again; for a rebalance, the kill itself;
- ``recover_s``: from the heal until the pipeline moves again everywhere: for each stage
  (stored, linked) and each partition with events after the heal, the first of them (Kafka
  record timestamps); the largest of these waits.
- ``drain_s``: from the last acknowledgement until the last acked message is stored and
  linked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared.events import article_id_for
from shared.kafka import ResilientProducer, all_topics, ensure_topics
from shared.listings import HOME_KEY, index_id, walk_buckets
from shared.mongo import ARTICLES, FRONTS, RELATED, VERSIONS, database, init_database, make_client
from shared.packed import unpack_document
from shared.settings import MongoSettings
from tests.chaos.infra import Infra
from tests.chaos.proxy import Proxy
from tests.chaos.services import Services
from tests.integration.helpers import ninjs

FaultAction = Callable[["Run"], Awaitable[None]]


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    description: str
    fault: FaultAction | None
    replicas: dict[str, int] = field(default_factory=dict)
    db_proxy: bool = False  # the services reach the database through a proxy of ours (network faults)


def kill_service(name: str, *, down: float = 2.0) -> FaultAction:
    async def fault(run: "Run") -> None:
        run.mark_fault()
        run.services.kill(name)
        await asyncio.sleep(down)
        run.services.start(name)
        run.mark_healed()
    return fault


async def port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def restart_watching(run: "Run", port: int, restart: Awaitable[None]) -> None:
    """Run the restart; the heal is when ``port`` accepts connections again after it closed
    (clients reconnect from then on), or when the restart returns if the closing went unseen."""
    run.mark_fault()
    task = asyncio.ensure_future(restart)
    was_down = False
    while not task.done():
        up = await port_open(port)
        if not up:
            was_down = True
        elif was_down and run.healed_at is None:
            run.mark_healed()
        await asyncio.sleep(0.1)
    await task
    if run.healed_at is None:
        run.mark_healed()


def restart_kafka(*, kill: bool = False, down: float = 0) -> FaultAction:
    async def fault(run: "Run") -> None:
        await restart_watching(run, run.infra.kafka_port, run.infra.restart_kafka(kill=kill, down=down))
    return fault


def restart_db(*, kill: bool = False, down: float = 3.0, ferretdb_only: bool = False) -> FaultAction:
    async def fault(run: "Run") -> None:
        await restart_watching(run, run.infra.mongo_port,
                               run.infra.restart_db(kill=kill, down=down, ferretdb_only=ferretdb_only))
    return fault


def cut_db_connections(*, refuse_for: float = 5.0) -> FaultAction:
    async def fault(run: "Run") -> None:
        run.mark_fault()
        run.proxy.cut(refuse_for)
        await asyncio.sleep(refuse_for)
        run.mark_healed()
    return fault


def slow_db(*, delay_s: float = 0.2, for_s: float = 15.0) -> FaultAction:
    async def fault(run: "Run") -> None:
        run.mark_fault()
        run.proxy.delay_s = delay_s
        await asyncio.sleep(for_s)
        run.proxy.delay_s = 0.0
        run.mark_healed()
    return fault


def kill_one_replica_each() -> FaultAction:
    async def fault(run: "Run") -> None:
        run.mark_fault()
        for name in ("ingestion", "storage", "linking"):
            run.services.kill(name, 1)
        run.mark_healed()  # nothing is restarted: the survivors must take the partitions over
    return fault


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("baseline", "no fault (control)", None),
    Scenario("kill-ingestion", "SIGKILL ingestion, restart it 2 s later", kill_service("ingestion")),
    Scenario("kill-storage", "SIGKILL storage, restart it 2 s later", kill_service("storage")),
    Scenario("kill-linking", "SIGKILL linking, restart it 2 s later", kill_service("linking")),
    Scenario("restart-kafka", "clean broker restart (SIGTERM, start) with clients connected", restart_kafka()),
    Scenario("kill-kafka", "SIGKILL the broker, start it again", restart_kafka(kill=True)),
    Scenario("kafka-outage", "broker stopped for 45 s (longer than the clients' 30 s request timeout)",
             restart_kafka(down=45)),
    Scenario("restart-db", "stop FerretDB and PostgreSQL (fast), 3 s down, start", restart_db()),
    Scenario("kill-db", "SIGKILL FerretDB, PostgreSQL immediate stop (crash recovery), 3 s down", restart_db(kill=True)),
    Scenario("db-outage", "FerretDB and PostgreSQL stopped for 45 s", restart_db(down=45)),
    Scenario("db-cut", "every database connection reset, new ones refused for 5 s (TCP proxy)",
             cut_db_connections(), db_proxy=True),
    Scenario("db-latency", "200 ms added to every database read and write for 15 s (TCP proxy)",
             slow_db(), db_proxy=True),
    Scenario("rebalance", "two replicas of each consumer service, SIGKILL one of each",
             kill_one_replica_each(), replicas={"ingestion": 2, "storage": 2, "linking": 2}),
]}


# ---------------------------------------------------------------------------------------------
# Articles
# ---------------------------------------------------------------------------------------------
WORDS = ("railway budget election steppe oil pipeline wheat harvest court ruling parliament bank tenge inflation "
         "football league festival museum drought river school teachers hospital vaccine border trade china "
         "russia europe space launch baikonur satellite mining uranium copper wind solar grid airport flight "
         "tourism snow almaty astana shymkent karaganda aktobe caspian fishery water reform").split()


def upstream_messages(prefix: str, n: int, *, seed: int = 7) -> list[tuple[str, int, bytes]]:
    """(uri, version, ninjs bytes): n articles, and version 2 of every tenth one 20 articles later."""
    rng = random.Random(seed)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    originals: list[tuple[str, int, bytes]] = []
    updates: dict[int, list[tuple[str, int, bytes]]] = defaultdict(list)
    for i in range(n):
        uri = f"urn:chaos:{prefix}:{i}"
        topic = rng.sample(WORDS, 6)
        created = base - timedelta(seconds=7 * (n - i))
        body = "".join(f"<p>{' '.join(rng.choices(topic, k=12) + rng.choices(WORDS, k=8))}.</p>" for _ in range(3))
        item = ninjs(uri, headline=f"{' '.join(topic[:3]).title()} {i}", body=body, section=rng.choice(["Business", "Politics", "Sport"]),
                     created=created.isoformat())
        originals.append((uri, 1, json.dumps(item).encode()))
        if i % 10 == 5:
            item2 = {**item, "version": 2, "versionCreated": (created + timedelta(seconds=60)).isoformat(),
                     "headlines": [{"role": "main", "value": item["headlines"][0]["value"] + " (updated)"}]}
            updates[min(i + 20, n - 1)].append((uri, 2, json.dumps(item2).encode()))
    out: list[tuple[str, int, bytes]] = []
    for i, msg in enumerate(originals):
        out.append(msg)
        out += updates.get(i, [])
    return out


# ---------------------------------------------------------------------------------------------
# Observer: what the pipeline emitted, with Kafka record timestamps
# ---------------------------------------------------------------------------------------------
class Observer:
    """Reads the output and dead-letter topics from the beginning, without a consumer group."""

    def __init__(self, services: Services) -> None:
        k = services.kafka
        self.kafka = k
        self.topics = {k.topic_ingested: "ingested", k.topic_stored: "stored", k.topic_linked: "linked",
                       k.topic_upstream_dlq: "dlq", k.topic_ingested_dlq: "dlq", k.topic_stored_dlq: "dlq"}
        self.ingested: Counter[tuple[str, int]] = Counter()
        self.stored: dict[tuple[str, int], list[int]] = defaultdict(list)  # (id, version) -> timestamps
        self.linked: dict[str, list[int]] = defaultdict(list)               # article id -> timestamps
        self.dlq: list[dict[str, Any]] = []
        self.events: dict[str, list[tuple[int, int]]] = {"stored": [], "linked": []}  # (timestamp, partition)
        self.last_event_ms = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka.bootstrap_servers, enable_auto_commit=False,
                                         group_id=None, client_id="chaos-observer")
        await self.consumer.start()
        tps = []
        for topic in self.topics:
            parts = None
            for _ in range(100):
                parts = self.consumer.partitions_for_topic(topic)
                if parts:
                    break
                await self.consumer._client.force_metadata_update()  # noqa: SLF001 - see linking's follower
                await asyncio.sleep(0.1)
            tps += [TopicPartition(topic, p) for p in sorted(parts or ())]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=300, max_records=2000)
            except KafkaError:
                await asyncio.sleep(0.5)
                continue
            for records in batch.values():
                for r in records:
                    self._record(self.topics[r.topic], r)

    def _record(self, kind: str, r) -> None:
        self.last_event_ms = max(self.last_event_ms, r.timestamp)
        if kind == "dlq":
            headers = dict(r.headers or ())
            self.dlq.append({"topic": r.topic, "key": (r.key or b"").decode("utf-8", "replace"),
                             "reason": headers.get("dlq.reason", b"").decode("utf-8", "replace")[:300]})
            return
        try:
            payload = json.loads(r.value)["payload"]
        except (ValueError, KeyError, TypeError):
            return
        if kind in self.events:
            self.events[kind].append((r.timestamp, r.partition))
        if kind == "linked":
            self.linked[payload["article_id"]].append(r.timestamp)
            return
        article = payload["article"]
        key = (article["id"], int(article["version"]))
        if kind == "ingested":
            self.ingested[key] += 1
        else:
            self.stored[key].append(r.timestamp)

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            await self._task
        await self.consumer.stop()


# ---------------------------------------------------------------------------------------------
# Upstream producer: what was acknowledged
# ---------------------------------------------------------------------------------------------
class Upstream:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        # A well-behaved source: an idempotent producer, replaced when a broker outage breaks it
        # (see shared.kafka.ResilientProducer), so it keeps re-sending what was not acknowledged.
        self.producer = ResilientProducer(lambda: AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all", client_id="chaos-upstream"),
            service="chaos-upstream")
        self.topic = topic
        self.acked: dict[tuple[str, int], float] = {}     # (article id, version) -> wall time of the ack
        self.failed: dict[tuple[str, int], str] = {}      # never acknowledged: last error
        self.attempted: set[tuple[str, int]] = set()
        self.send_errors = 0

    async def deliver(self, uri: str, version: int, value: bytes, *, give_up_after: float) -> None:
        key = (article_id_for(uri), version)
        self.attempted.add(key)
        deadline = time.monotonic() + give_up_after
        while True:
            try:
                fut = await self.producer.send(self.topic, value, key=uri.encode())
                await fut
                self.acked[key] = time.time()
                self.failed.pop(key, None)
                return
            except KafkaError as exc:
                self.send_errors += 1
                self.failed[key] = repr(exc)[:200]
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(1.0)  # re-send: the same message again (an upstream retry)


# ---------------------------------------------------------------------------------------------
# One run of one scenario
# ---------------------------------------------------------------------------------------------
@dataclass
class Result:
    scenario: str
    description: str
    n_articles: int
    messages: int
    acked: int = 0
    not_acked: int = 0
    stored: int = 0
    linked: int = 0
    readable: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    dead_lettered: int = 0
    re_emitted_ingested: int = 0
    re_emitted_stored: int = 0
    recover_s: float | None = None
    drain_s: float | None = None
    fault_s: float | None = None
    e2e_p50_s: float | None = None
    e2e_p99_s: float | None = None
    wall_s: float = 0.0
    quiescent: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.unexpected == 0 and self.dead_lettered == 0
                and self.acked > 0 and self.quiescent)


class Run:
    def __init__(self, scenario: Scenario, infra: Infra, services: Services) -> None:
        self.scenario = scenario
        self.infra = infra
        self.services = services
        self.fault_at: float | None = None
        self.healed_at: float | None = None
        self.proxy: Proxy | None = None

    def mark_fault(self) -> None:
        self.fault_at = time.time()

    def mark_healed(self) -> None:
        self.healed_at = time.time()


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def run_scenario(scenario: Scenario, infra: Infra, *, n: int, rate: float, workdir: pathlib.Path,
                       run_id: str, fault_fraction: float = 1 / 3, quiesce_timeout: float | None = None,
                       settle_s: float = 3.0, keep: bool = False, progress_every: float = 10.0,
                       log: Callable[[str], None] = say) -> Result:
    started = time.monotonic()
    prefix = f"chaos_{run_id}_{scenario.name.replace('-', '_')}"
    proxy = Proxy("127.0.0.1", infra.mongo_port) if scenario.db_proxy else None
    if proxy is not None:
        await proxy.start()
    services = Services(prefix, workdir / scenario.name, bootstrap_servers=infra.bootstrap_servers,
                        mongo_url=proxy.url if proxy else infra.mongo_url, replicas=scenario.replicas)
    run = Run(scenario, infra, services)
    run.proxy = proxy
    messages = upstream_messages(prefix, n)
    result = Result(scenario.name, scenario.description, n, len(messages))
    mongo_settings = MongoSettings(url=infra.mongo_url, database=services.database, timeout_ms=30_000,
                                   server_selection_timeout_ms=30_000)
    client = make_client(mongo_settings, app_name="chaos")
    db = database(client, mongo_settings)
    await ensure_topics(services.kafka, all_topics(services.kafka))
    await init_database(db)
    await infra.gin_indexes(services.database)  # FerretDB reads by _id stay index lookups
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    observer = Observer(services)
    upstream = Upstream(infra.bootstrap_servers, services.kafka.topic_upstream)
    try:
        services.start_all()
        await services.wait_ready(http)
        await observer.start()
        await upstream.producer.start()
        log(f"{scenario.name}: services ready; publishing {len(messages)} messages ({n} articles) at {rate:g}/s")

        fault_task: asyncio.Task | None = None
        deliveries: set[asyncio.Task] = set()
        window = asyncio.Semaphore(1000)
        fault_index = int(len(messages) * fault_fraction) if scenario.fault else -1
        t0 = time.monotonic()
        last_progress = t0

        async def deliver(uri: str, version: int, value: bytes) -> None:
            try:
                await upstream.deliver(uri, version, value, give_up_after=120)
            finally:
                window.release()

        for i, (uri, version, value) in enumerate(messages):
            if i == fault_index:
                log(f"{scenario.name}: fault at message {i}: {scenario.description}")
                fault_task = asyncio.create_task(scenario.fault(run))
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            await window.acquire()
            task = asyncio.create_task(deliver(uri, version, value))
            deliveries.add(task)
            task.add_done_callback(deliveries.discard)
            if time.monotonic() - last_progress > progress_every:
                last_progress = time.monotonic()
                log(f"{scenario.name}: published {i + 1}/{len(messages)}, acked {len(upstream.acked)}, "
                    f"stored {len(observer.stored)}, linked {len(observer.linked)}")
        if deliveries:
            await asyncio.gather(*deliveries)
        if fault_task is not None:
            await fault_task
            if run.healed_at and run.fault_at:
                result.fault_s = round(run.healed_at - run.fault_at, 1)
        last_ack = max(upstream.acked.values(), default=time.time())
        log(f"{scenario.name}: publishing done: acked {len(upstream.acked)}/{len(messages)}; waiting for quiescence")

        # Quiescence: every acked message stored and its article linked after that, then quiet.
        timeout = quiesce_timeout if quiesce_timeout is not None else max(120.0, 0.25 * len(messages))
        deadline = time.monotonic() + timeout

        def outstanding() -> list[tuple[str, int]]:
            # A version that reached storage after a newer one is kept in the history without a
            # "stored" event: the newer version's event stands for it (the scoring checks the
            # history itself).
            newest_stored: dict[str, int] = {}
            for aid, version in observer.stored:
                newest_stored[aid] = max(version, newest_stored.get(aid, 0))
            missing = []
            for key in upstream.acked:
                stored_ts = observer.stored.get(key)
                if not stored_ts and newest_stored.get(key[0], 0) > key[1]:
                    stored_ts = observer.stored.get((key[0], newest_stored[key[0]]))
                linked_ts = observer.linked.get(key[0])
                if not stored_ts or not linked_ts or max(linked_ts) < min(stored_ts):
                    missing.append(key)
            return missing

        while True:
            missing = outstanding()
            if not missing:
                quiet_since = time.monotonic()
                seen = observer.last_event_ms
                while time.monotonic() - quiet_since < settle_s:
                    await asyncio.sleep(0.5)
                    if observer.last_event_ms != seen:
                        seen, quiet_since = observer.last_event_ms, time.monotonic()
                result.quiescent = True
                break
            if time.monotonic() > deadline:
                log(f"{scenario.name}: not quiescent after {timeout:.0f}s: {len(missing)} acked messages outstanding")
                break
            if time.monotonic() - last_progress > progress_every:
                last_progress = time.monotonic()
                log(f"{scenario.name}: draining: {len(missing)} outstanding, stored {len(observer.stored)}, "
                    f"linked {len(observer.linked)}, alive {sorted(k for k, v in services.alive().items() if not v) or 'all'}")
            await asyncio.sleep(0.5)

        log(f"{scenario.name}: scoring: reading the database, requesting {len({k[0] for k in upstream.acked})} article pages")
        await score(result, run, upstream, observer, db, http, last_ack=last_ack)
    finally:
        with contextlib.suppress(Exception):
            await upstream.producer.stop()
        with contextlib.suppress(Exception):
            await observer.stop()
        exit_codes = services.stop_all()
        result.details["exit_codes_on_sigterm"] = exit_codes
        if proxy is not None:
            result.details["connections_cut"] = proxy.cuts
            await proxy.stop()
        await http.close()
        if not keep:
            with contextlib.suppress(Exception):
                await client.drop_database(services.database)
            with contextlib.suppress(Exception):
                await delete_topics(services)
        await client.close()
    result.wall_s = round(time.monotonic() - started, 1)
    log(f"{scenario.name}: {'OK' if result.ok else 'FAILED'}: " + row(result, sep=" "))
    return result


async def delete_topics(services: Services) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(all_topics(services.kafka))
    finally:
        await admin.close()


async def score(result: Result, run: Run, upstream: Upstream, observer: Observer, db, http: aiohttp.ClientSession,
                *, last_ack: float) -> None:
    acked = upstream.acked
    result.acked = len(acked)
    result.not_acked = len(upstream.attempted) - len(acked)
    max_version: dict[str, int] = {}
    for aid, version in acked:
        max_version[aid] = max(version, max_version.get(aid, 0))

    articles = {d["_id"]: d async for d in db[ARTICLES].find({}, {"_id": 1, "uri": 1, "version": 1, "slug": 1, "section": 1})}
    versions = [d async for d in db[VERSIONS].find({}, {"_id": 1, "article_id": 1, "version": 1})]
    fronts = {d["_id"]: unpack_document(d) async for d in db[FRONTS].find({})}
    related = {d["_id"]: unpack_document(d) async for d in db[RELATED].find({}, {"_id": 1, "items": 1})}

    version_keys = Counter((v["article_id"], int(v["version"])) for v in versions)
    not_stored = [k for k in acked if k not in version_keys or int(articles.get(k[0], {}).get("version", 0)) < k[1]]
    result.stored = len(acked) - len(not_stored)

    # Listings: every acked article exactly once in the home listing (through its index) and in its section's.
    dups: dict[str, list[str]] = defaultdict(list)
    home_index = fronts.get(index_id(HOME_KEY), {})
    home_seen: Counter[str] = Counter()

    async def read(doc_id: str) -> dict | None:
        return fronts.get(doc_id)

    async for _, doc in walk_buckets(HOME_KEY, home_index.get("buckets", []), read):  # split ones through their children
        for item in (doc or {}).get("items", []):
            home_seen[item["id"]] += 1
    section_seen: Counter[str] = Counter()
    for doc_id, doc in fronts.items():
        if doc_id.startswith("front:section:") and doc_id.count(":") == 3:
            for item in doc.get("items", []):
                section_seen[item["id"]] += 1
    for aid, count in home_seen.items():
        if count > 1:
            dups[aid].append(f"home listing x{count}")
    for aid, count in section_seen.items():
        if count > 1:
            dups[aid].append(f"section listing x{count}")
    for key, count in version_keys.items():
        if count > 1:
            dups[key[0]].append(f"article_versions v{key[1]} x{count}")
    by_uri = Counter(d.get("uri") for d in articles.values())
    for aid, d in articles.items():
        if by_uri[d.get("uri")] > 1:
            dups[aid].append(f"{by_uri[d.get('uri')]} documents for its uri")
    for aid, doc in related.items():
        ids = [i["teaser"]["id"] for i in doc.get("items", [])]
        if len(ids) != len(set(ids)) or aid in ids:
            dups[aid].append("repeated in a related list")
    result.duplicated = len([a for a in dups if a in max_version])

    linked = [a for a in max_version if a in related]
    result.linked = len(linked)

    # The site: every acked article's page answers 200.
    sem = asyncio.Semaphore(16)
    base = run.services.base_url

    async def page_status(aid: str) -> int:
        doc = articles.get(aid)
        if doc is None:
            return 0
        async with sem:
            for _ in range(3):
                try:
                    async with http.get(f"{base}/articles/{aid}/{doc.get('slug') or 'x'}") as r:
                        await r.read()
                        return r.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    await asyncio.sleep(1)
            return -1
    statuses = dict(zip(max_version, await asyncio.gather(*(page_status(a) for a in max_version))))
    result.readable = sum(1 for s in statuses.values() if s == 200)

    not_listed = [a for a in max_version if home_seen[a] == 0]
    not_linked = [a for a in max_version if a not in related]
    not_readable = [a for a, s in statuses.items() if s != 200]
    lost_articles = {k[0] for k in not_stored} | set(not_listed) | set(not_linked) | set(not_readable)
    result.lost = sum(1 for k in acked if k[0] in lost_articles)

    attempted_ids = {k[0] for k in upstream.attempted}
    acked_ids = set(max_version)
    unexpected_articles = [a for a in articles if a not in acked_ids]
    unexpected_versions = [k for k in version_keys if k not in acked]
    result.unexpected = len(unexpected_articles) + len([k for k in unexpected_versions if k[0] in acked_ids])
    result.dead_lettered = len(observer.dlq)
    result.re_emitted_ingested = sum(c - 1 for c in observer.ingested.values() if c > 1)
    result.re_emitted_stored = sum(len(ts) - 1 for ts in observer.stored.values() if len(ts) > 1)

    # Time to recover and to drain, from record timestamps.
    first_stored = {k: min(ts) for k, ts in observer.stored.items()}
    if run.healed_at is not None:
        healed_ms = run.healed_at * 1000
        waits = {}
        for stage, events in observer.events.items():
            # Per partition of the stage's output (keyed by article id, like its input): the
            # first event after the heal. A partition with none had nothing left to do.
            first_after: dict[int, int] = {}
            for ts, partition in events:
                if ts > healed_ms and ts < first_after.get(partition, 1 << 62):
                    first_after[partition] = ts
            if first_after:
                waits[stage] = round((max(first_after.values()) - healed_ms) / 1000, 2)
        result.recover_s = max(waits.values()) if waits else 0.0
        result.details["recover_by_stage_s"] = waits
    done_ms = []
    e2e = []
    for key, ack_at in acked.items():
        s = first_stored.get(key)
        links = [t for t in observer.linked.get(key[0], []) if s is not None and t >= s]
        if s is not None and links:
            done_ms.append(min(links))
            e2e.append(min(links) / 1000 - ack_at)
    if done_ms and len(done_ms) == len(acked):
        result.drain_s = round(max(0.0, max(done_ms) / 1000 - last_ack), 1)
    if e2e:
        e2e.sort()
        result.e2e_p50_s = round(statistics.median(e2e), 2)
        result.e2e_p99_s = round(e2e[min(len(e2e) - 1, int(0.99 * len(e2e)))], 2)

    result.details.update({
        "not_stored": [list(k) for k in not_stored[:20]],
        "not_listed": not_listed[:20], "not_linked": not_linked[:20],
        "not_readable": {a: statuses[a] for a in not_readable[:20]},
        "duplicates": {a: v for a, v in list(dups.items())[:20]},
        "unexpected_articles": unexpected_articles[:20],
        "unexpected_versions": [list(k) for k in unexpected_versions[:20]],
        "unexpected_from_unacked_sends": len([a for a in unexpected_articles if a in attempted_ids]),
        "dead_letters": observer.dlq[:20],
        "upstream_send_errors": upstream.send_errors,
        "never_acked": dict(list({f"{k[0]}:{k[1]}": v for k, v in upstream.failed.items()}.items())[:20]),
        "fault_at": run.fault_at, "healed_at": run.healed_at, "last_ack": last_ack,
    })


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------
COLUMNS = ("scenario", "acked", "stored", "linked", "readable", "lost", "duplicated", "unexpected", "dlq",
           "re-emitted i/s", "fault s", "recover s", "drain s", "e2e p50/p99 s")


def _cells(r: Result) -> list[str]:
    f = lambda v: "–" if v is None else f"{v:g}"  # noqa: E731
    return [r.scenario, str(r.acked) + (f" (+{r.not_acked} not acked)" if r.not_acked else ""), str(r.stored),
            str(r.linked), str(r.readable), str(r.lost), str(r.duplicated), str(r.unexpected), str(r.dead_lettered),
            f"{r.re_emitted_ingested}/{r.re_emitted_stored}", f(r.fault_s), f(r.recover_s), f(r.drain_s),
            f"{f(r.e2e_p50_s)}/{f(r.e2e_p99_s)}"]


def row(r: Result, sep: str = " | ") -> str:
    return sep.join(f"{c}={v}" if sep == " " else v for c, v in zip(COLUMNS, _cells(r)))


def table(results: list[Result]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in results]
    return "\n".join(lines)


def write_json(results: list[Result], path: pathlib.Path, **meta: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "results": [{**asdict(r), "ok": r.ok} for r in results]}, indent=2, default=str))
