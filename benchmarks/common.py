"""What the pipeline benchmarks share: the corpus, a fresh scenario (topics + database) on the
benchmark stack, the four services as real processes, event watchers, and the result table.

The benchmark stack is started by ``deploy/local/bench.sh`` (``make bench``) on ports of its
own; its settings reach this code through the usual environment (``KAZPOST_KAFKA_*``,
``KAZPOST_MONGO_*``, ``KAZPOST_STATE``).  Every scenario gets topics of its own (a prefix)
and empties the ``kazpost`` database (the one the stack's GIN indexes are made for), so
scenarios never see each other's data.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import pathlib
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pymongo
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import all_topics, connection_options, ensure_topics
from shared.mongo import database, init_database, make_client
from shared.settings import TOPIC_FIELDS, KafkaSettings, MongoSettings

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BBC = SHARED / "data" / "news" / "bbc" / "articles.csv"
STACK_SH = REPO / "deploy" / "local" / "stack.sh"
SERVICES = ("ingestion", "storage", "linking", "gateway")
RAW = "bench_raw"  # the baselines' scratch collection, in the same database


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -------------------------------------------------------------------------------------------
# Corpus: unique articles recombined from BBC paragraphs (same-category mixing), so linking
# sees realistic text and realistic neighbours, without thousands of exact duplicates.
# -------------------------------------------------------------------------------------------
TAGS = ("Astana", "Almaty", "Economy", "Energy", "Elections", "Transport", "Health", "Education",
        "Technology", "Courts", "Weather", "Culture")


class Corpus:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.docs: list[tuple[str, str, list[str]]] = []
        self.by_cat: dict[str, list[int]] = {}
        if BBC.exists():
            csv.field_size_limit(1 << 30)
            with BBC.open(newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    paras = [p.strip() for p in row["text"].split("\n") if p.strip()]
                    if paras:
                        self.by_cat.setdefault(row["category"], []).append(len(self.docs))
                        self.docs.append((row["category"], row["title"], paras))
        if not self.docs:  # no shared data: synthetic words (linking finds fewer neighbours)
            log(f"WARNING: {BBC} not found: synthetic articles (short, few neighbours: much cheaper to link, "
                "so the figures are not comparable with runs on the news corpus)")
            words = "astana almaty rail flood market bank energy oil grain court school hospital election".split()
            for i in range(500):
                cat = ("business", "politics", "tech", "sport", "entertainment")[i % 5]
                paras = [" ".join(self.rng.choices(words, k=40)) for _ in range(6)]
                self.by_cat.setdefault(cat, []).append(len(self.docs))
                self.docs.append((cat, " ".join(self.rng.choices(words, k=6)), paras))

    def item(self, uri: str, i: int, published: datetime, *, version: int = 1) -> dict[str, Any]:
        """A ninjs item: one BBC article's paragraphs mixed with a few of another in its category."""
        rng = random.Random(zlib.crc32(uri.encode()))  # the same item in every run
        cat, title, paras = self.docs[i % len(self.docs)]
        other = self.docs[rng.choice(self.by_cat[cat])][2]
        body = rng.sample(paras, max(1, int(len(paras) * rng.uniform(0.5, 0.9))))
        body += rng.sample(other, min(len(other), rng.randint(1, 3)))
        rng.shuffle(body)
        tags = rng.sample(TAGS, rng.randint(0, 3))
        return {
            "uri": uri, "type": "text", "version": version,
            "versionCreated": (published + timedelta(minutes=version - 1)).isoformat(),
            "firstCreated": published.isoformat(),
            "pubStatus": "usable", "language": "en",
            "headlines": [{"role": "main", "value": f"{title} ({i})"}],
            "descriptions": [{"role": "summary", "value": body[0][:200]}],
            "bodies": [{"role": "main", "contentType": "text/html",
                        "value": "".join(f"<p>{p}</p>" for p in body)}],
            "subjects": [{"name": cat.title(), "rel": "section"}, *({"name": t} for t in tags)],
            "by": "KazPost benchmark",
        }

    def items(self, run: str, n: int, *, spread_hours: float, end: datetime | None = None,
              label: str = "a") -> list[dict[str, Any]]:
        """``n`` items published over ``spread_hours`` before ``end``, oldest first (a feed)."""
        end = end or datetime.now(UTC) - timedelta(minutes=1)
        step = timedelta(hours=spread_hours) / max(n, 1)
        return [self.item(f"urn:bench:{run}:{label}:{i}", i, end - step * (n - i)) for i in range(n)]


# -------------------------------------------------------------------------------------------
# Scenario: topics of its own, an emptied database with its GIN indexes.
# -------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    run: str
    kafka: KafkaSettings
    mongo: MongoSettings
    prefix: str

    @classmethod
    async def create(cls, name: str, run: str) -> Scenario:
        base = KafkaSettings()
        prefix = f"b{run}-{name}."
        kafka = base.model_copy(update={n: prefix + getattr(base, n) for n in TOPIC_FIELDS}
                                | {"client_id_prefix": f"kazpost-bench-{name}"})
        mongo = MongoSettings()
        scenario = cls(name, run, kafka, mongo, prefix)
        await ensure_topics(kafka, all_topics(kafka))
        await scenario.reset_database()
        return scenario

    async def reset_database(self) -> None:
        """Drop the database, create every collection (plus the baselines' scratch collection),
        then the PostgreSQL GIN indexes of the stack (FerretDB scans a table without them)."""
        client = make_client(self.mongo, app_name="bench")
        try:
            await client.drop_database(self.mongo.database)
            db = database(client, self.mongo)
            await init_database(db)
            await db.create_collection(RAW)
        finally:
            await client.close()
        gin_indexes()

    def client(self):
        return make_client(self.mongo, app_name="bench")


async def clear(coll) -> None:
    """Empty a scratch collection (one long call on FerretDB: a bounded, longer timeout)."""
    with pymongo.timeout(300):
        await coll.delete_many({})


async def drop_run_topics(run: str) -> list[str]:
    """Delete the topics of one benchmark run. Each scenario of each run has topics of its own;
    kept, they pile up in the benchmark stack's broker (17 GB after a few dozen runs, and a
    broker with over a thousand partitions)."""
    base = KafkaSettings()
    admin = AIOKafkaAdminClient(**connection_options(base), client_id=f"{base.client_id_prefix}-bench-admin")
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(f"b{run}-"))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


def gin_indexes() -> None:
    if os.environ.get("KAZPOST_DB_BACKEND", "postgresql") != "postgresql" or "KAZPOST_STATE" not in os.environ:
        return
    out = subprocess.run(["bash", str(STACK_SH), "gin-indexes"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"stack.sh gin-indexes failed: {out.stderr.strip()[-500:]}")


# -------------------------------------------------------------------------------------------
# The four services as real processes (as in production: one process each).
# -------------------------------------------------------------------------------------------
class Services:
    def __init__(self, scenario: Scenario, logs: pathlib.Path, *, names: tuple[str, ...] = SERVICES,
                 extra_env: dict[str, str] | None = None) -> None:
        self.scenario = scenario
        self.logs = logs
        self.names = names
        logs.mkdir(parents=True, exist_ok=True)
        kafka = scenario.kafka
        self.ports = {name: free_port() for name in names}  # internal ops ports
        self.gateway_port = free_port()
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.env = {
            **os.environ,
            "KAZPOST_LOG_LEVEL": os.environ.get("KAZPOST_BENCH_LOG_LEVEL", "WARNING"), "KAZPOST_LOG_FORMAT": "json",
            "KAZPOST_MONGO_DATABASE": scenario.mongo.database,
            **{f"KAZPOST_KAFKA_{n.upper()}": getattr(kafka, n) for n in TOPIC_FIELDS},
            **{f"KAZPOST_{s.upper()}_GROUP_ID": self.group(s) for s in names if s != "gateway"},
            **{f"KAZPOST_{s.upper()}_OPS_PORT": str(p) for s, p in self.ports.items()},
            "KAZPOST_LINKING_SNAPSHOT_PATH": str(logs / "linking.snapshot"),
            "KAZPOST_GATEWAY_PORT": str(self.gateway_port),
            "KAZPOST_GATEWAY_PUBLIC_BASE_URL": self.gateway,
            "KAZPOST_GATEWAY_LINKING_URL": f"http://127.0.0.1:{self.ports['linking']}",
            **(extra_env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}
        (logs / "linking.snapshot").unlink(missing_ok=True)  # a scenario starts from nothing

    def group(self, service: str) -> str:
        return f"bench-{self.scenario.run}-{self.scenario.name}-{service}"

    def start(self, *names: str) -> None:
        for name in names or self.names:
            out = open(self.logs / f"{name}.log", "ab")
            self.procs[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=self.env,
                                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    async def wait_ready(self, *names: str, timeout: float = 180) -> None:
        names = names or tuple(self.procs)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            for name in names:
                url = (f"{self.gateway}/readyz" if name == "gateway" else f"http://127.0.0.1:{self.ports[name]}/readyz")
                while True:
                    proc = self.procs[name]
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.logs / (name + '.log')}")
                    try:
                        async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                            if r.status == 200:
                                break
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} not ready after {timeout:.0f}s; see {self.logs / (name + '.log')}")
                    await asyncio.sleep(0.3)

    async def wait_assigned(self, timeout: float = 60) -> None:
        """Until each worker's consumer has its partitions (its lag gauge appears in /metrics
        only after a batch; the group is joined when readiness answers, plus a rebalance)."""
        await asyncio.sleep(3.0)

    async def metrics(self, name: str) -> dict[str, float]:
        """The service's Prometheus samples (``name{labels}`` → value) from its internal port."""
        url = f"http://127.0.0.1:{self.ports[name]}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            text = await r.text()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    samples[key] = float(value)
                except ValueError:
                    pass
        return samples

    async def db_profile(self, name: str) -> dict[str, dict[str, float]]:
        """Database calls of one service so far: {operation: {calls, seconds}}."""
        out: dict[str, dict[str, float]] = {}
        for key, value in (await self.metrics(name)).items():
            for kind in ("count", "sum"):
                if key.startswith(f"kazpost_db_seconds_{kind}{{"):
                    op = key.split('operation="', 1)[1].split('"', 1)[0]
                    out.setdefault(op, {})["calls" if kind == "count" else "seconds"] = value
        return out

    async def wait_idle(self, *, exclude: tuple[str, ...] = ("gateway",), window: float = 3.0, busy: float = 0.05,
                        timeout: float = 600) -> float:
        """Until the services (but ``exclude``) and the infrastructure together used less than
        ``busy`` of a core over ``window`` seconds: the pipeline has worked off its backlog.
        Returns the seconds waited (``timeout`` if it never settled)."""
        started = time.monotonic()
        before = self.cpu_seconds()
        while time.monotonic() - started < timeout:
            await asyncio.sleep(window)
            after = self.cpu_seconds()
            used = sum(after[k] - before.get(k, 0.0) for k in after if k not in exclude)
            if used < busy * window:
                return time.monotonic() - started
            before = after
        return timeout

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running service, Kafka and the database used so far."""
        return {**{name: cpu_of(proc.pid)[0] for name, proc in self.procs.items()}, **infrastructure_cpu()}

    def rss_mb(self) -> dict[str, float]:
        return {name: rss_mb(proc.pid) for name, proc in self.procs.items() if proc.poll() is None}

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.logs / (name + '.log')}")

    def stop(self, *names: str) -> None:
        chosen = [self.procs.pop(n) for n in (names or tuple(self.procs)) if n in self.procs]
        for proc in chosen:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in chosen:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_of(pid: int, *, children: bool = False) -> tuple[float, int]:
    """(CPU seconds used, parent pid) of a process (with ``children``: plus its children that
    ended and were waited for); (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
        return ticks / os.sysconf("SC_CLK_TCK"), int(fields[1])
    except (OSError, IndexError, ValueError):
        return 0.0, 0


def _pid_in(path: pathlib.Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def infrastructure_pids() -> dict[str, list[int]]:
    """The benchmark stack's processes: {"kafka": [broker], "database": [FerretDB, postmaster,
    its backends...]}. Empty when not run by bench.sh (no KAZPOST_STATE)."""
    state = os.environ.get("KAZPOST_STATE")
    if not state:
        return {}
    out: dict[str, list[int]] = {}
    kafka = _pid_in(pathlib.Path(state, "pids", "kafka.pid"))
    if kafka:
        out["kafka"] = [kafka]
    db = [p for p in (_pid_in(pathlib.Path(state, "pids", "ferretdb.pid")),) if p]
    postmaster = _pid_in(pathlib.Path(state, "pg", "postmaster.pid"))
    if postmaster:
        db.append(postmaster)
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != postmaster and cpu_of(int(entry))[1] == postmaster:
                db.append(int(entry))
    if db:
        out["database"] = db
    return out


def infrastructure_cpu() -> dict[str, float]:
    """CPU seconds used so far by the benchmark stack: Kafka, and the database (FerretDB plus
    PostgreSQL with all its backends, those that ended counted through the postmaster)."""
    state = os.environ.get("KAZPOST_STATE")
    postmaster = _pid_in(pathlib.Path(state, "pg", "postmaster.pid")) if state else None
    return {name: sum(cpu_of(pid, children=pid == postmaster)[0] for pid in pids)
            for name, pids in infrastructure_pids().items()}


def rss_mb(pid: int) -> float:
    """Resident set size of one process (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -------------------------------------------------------------------------------------------
# Kafka helpers
# -------------------------------------------------------------------------------------------
async def commit_group_to_end(kafka: KafkaSettings, group: str, topic: str) -> int:
    """Set a (stopped) consumer group's offsets to the end of ``topic``: a service started
    afterwards skips what is there. Returns the number of messages skipped."""
    from aiokafka.structs import OffsetAndMetadata

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = None
        for _ in range(100):
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka quirk
            parts = consumer.partitions_for_topic(topic)
            if parts:
                break
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in tps})
        return sum(ends.values())
    finally:
        await consumer.stop()


def producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    """An upstream publisher as a source would run it: idempotent, batched."""
    return AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True, acks="all",
                            linger_ms=5, max_batch_size=262_144, max_request_size=kafka.max_request_size)


async def publish_all(prod: AIOKafkaProducer, topic: str, items: Iterable[dict[str, Any]]) -> None:
    """Queue every send, then await the acknowledgements (never one round trip per item)."""
    futures = [await prod.send(topic, json.dumps(i).encode(), key=i["uri"].encode()) for i in items]
    await asyncio.gather(*futures)


class Watcher:
    """Reads topics without a consumer group from their current end, and records when each
    key was first seen on each topic (``seen[topic][key] = monotonic time``)."""

    def __init__(self, kafka: KafkaSettings, topics: list[str], *, own_list_only: str | None = None) -> None:
        self.kafka = kafka
        self.topics = topics
        self.own_list_only = own_list_only  # topic whose events count only for their own article
        self.seen: dict[str, dict[str, float]] = {t: {} for t in topics}
        self.events: dict[str, dict[str, dict]] = {t: {} for t in topics}
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self.changed = asyncio.Event()
        self.keep_payload = False

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka.bootstrap_servers, group_id=None,
                                         enable_auto_commit=False, max_partition_fetch_bytes=self.kafka.max_request_size,
                                         fetch_max_bytes=4 * self.kafka.max_request_size)
        await self.consumer.start()
        tps = []
        for topic in self.topics:
            parts = None
            for _ in range(100):
                await self.consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka quirk
                parts = self.consumer.partitions_for_topic(topic)
                if parts:
                    break
                await asyncio.sleep(0.1)
            tps += [TopicPartition(topic, p) for p in sorted(parts or ())]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: later messages must not be skipped
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.consumer is not None
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=2000)
            now = time.monotonic()
            for tp, records in batch.items():
                seen = self.seen[tp.topic]
                for r in records:
                    key = (r.key or b"").decode()
                    if key in seen:
                        continue
                    if tp.topic == self.own_list_only or self.keep_payload:
                        value = json.loads(r.value)
                        if tp.topic == self.own_list_only and value.get("payload", {}).get("article_id") != key:
                            continue
                        if self.keep_payload:
                            self.events[tp.topic][key] = value
                    seen[key] = now
            if batch:
                self.changed.set()

    async def wait_all(self, topic: str, keys: set[str], *, timeout: float, progress: str = "",
                       alive=None) -> float:
        """Monotonic time when the last of ``keys`` was seen on ``topic``."""
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while True:
            seen = self.seen[topic]
            missing = len(keys) - sum(1 for k in keys if k in seen)
            if missing == 0:
                return max(seen[k] for k in keys)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{missing} of {len(keys)} articles never reached {topic} within {timeout:.0f}s")
            if alive is not None:
                alive()
            if progress and time.monotonic() - last_report > 15:
                log(f"{progress}: {len(keys) - missing}/{len(keys)} on {topic}")
                last_report = time.monotonic()
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.consumer is not None:
            await self.consumer.stop()


# -------------------------------------------------------------------------------------------
# Results: one row per figure, each with the baseline of the same run.
# -------------------------------------------------------------------------------------------
@dataclass
class Row:
    bench: str
    metric: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class Report:
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def to_json(self, environment: dict[str, Any]) -> dict[str, Any]:
        return {
            "started": self.started.isoformat(), "finished": datetime.now(UTC).isoformat(),
            "environment": environment,
            "rows": [{**row.__dict__, "ratio": row.ratio} for row in self.rows],
            "details": self.details, "errors": self.errors,
        }

    def table(self) -> str:
        def fmt(v: float | None) -> str:
            if v is None:
                return "-"
            if v != v:  # NaN
                return "n/a"
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}" if abs(v) >= 1 else f"{v:.3f}"

        head = ("bench", "metric", "value", "baseline (same run)", "ratio", "target", "met")
        lines = []
        for r in self.rows:
            base = f"{fmt(r.baseline)} {r.unit} ({r.baseline_name})" if r.baseline is not None else "-"
            met = "-" if r.met is None else ("yes" if r.met else "NO")
            lines.append((r.bench, r.metric, f"{fmt(r.value)} {r.unit}", base,
                          "-" if r.ratio is None else f"{r.ratio:.2f}", r.target or "-", met))
        widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
        out = [" | ".join(str(x).ljust(w) for x, w in zip(head, widths)),
               "-+-".join("-" * w for w in widths)]
        out += [" | ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in lines]
        for name, err in self.errors.items():
            out.append(f"{name}: FAILED: {err}")
        return "\n".join(out)


def environment() -> dict[str, Any]:
    kafka, mongo = KafkaSettings(), MongoSettings()
    return {
        "host": socket.gethostname(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "kafka": kafka.bootstrap_servers, "database_url": mongo.url,
        "database_backend": f"FerretDB v1 on {os.environ.get('KAZPOST_DB_BACKEND', 'postgresql')}",
        "partitions": kafka.partitions,
    }


def new_run_id() -> str:
    return uuid.uuid4().hex[:6]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else float("nan"),
            "mean": statistics.fmean(values) if values else float("nan")}


def chunks(seq: list, size: int) -> Iterator[list]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]
