"""Fault tests with the services as real processes: SIGKILL one mid-stream, restart it, and
nothing acknowledged is lost or duplicated; SIGTERM shuts a service down cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from shared.events import article_id_for
from shared.kafka import all_topics, ensure_topics
from shared.settings import TOPIC_FIELDS, KafkaSettings
from tests.integration.helpers import eventually, ninjs

pytestmark = pytest.mark.integration

SERVICES = ("ingestion", "storage", "linking", "gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The four services as separate processes, on topics and a database of their own."""

    def __init__(self, run: str, tmp_path) -> None:
        base = KafkaSettings()
        self.prefix = f"f{run}."
        self.kafka = base.model_copy(update={n: self.prefix + getattr(base, n) for n in TOPIC_FIELDS})
        self.gateway_port = free_port()
        self.linking_port = free_port()
        self.env = {
            **os.environ,
            "KAZPOST_LOG_LEVEL": "WARNING", "KAZPOST_LOG_FORMAT": "json",
            "KAZPOST_MONGO_DATABASE": f"kazpost_f{run}",
            "KAZPOST_RETRY_INITIAL_BACKOFF_S": "0.1", "KAZPOST_RETRY_MAX_BACKOFF_S": "1", "KAZPOST_RETRY_MAX_ATTEMPTS": "30",
            **{f"KAZPOST_KAFKA_{n.upper()}": getattr(self.kafka, n) for n in TOPIC_FIELDS},
            **{f"KAZPOST_{s.upper()}_GROUP_ID": f"f{run}-{s}" for s in ("ingestion", "storage", "linking")},
            "KAZPOST_INGESTION_OPS_PORT": str(free_port()), "KAZPOST_STORAGE_OPS_PORT": str(free_port()),
            "KAZPOST_LINKING_OPS_PORT": str(self.linking_port),
            "KAZPOST_LINKING_SNAPSHOT_PATH": str(tmp_path / "linking.snapshot"),
            "KAZPOST_GATEWAY_PORT": str(self.gateway_port), "KAZPOST_GATEWAY_OPS_PORT": str(free_port()),
            "KAZPOST_GATEWAY_LINKING_URL": f"http://127.0.0.1:{self.linking_port}",
        }
        self.logs = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
async def stack(run_id, tmp_path, mongo):
    s = Stack(run_id, tmp_path)
    await ensure_topics(s.kafka, all_topics(s.kafka))
    for name in SERVICES:
        s.start(name)
    yield s
    s.stop_all()
    await mongo.drop_database(s.env["KAZPOST_MONGO_DATABASE"])


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    async def ready():
        try:
            async with http.get(url) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False
    await eventually(ready, timeout=60, interval=0.3, what=url)


async def test_sigkill_of_each_worker_mid_stream_loses_and_duplicates_nothing(stack):
    n = 60
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    http = aiohttp.ClientSession()
    base = f"http://127.0.0.1:{stack.gateway_port}"
    try:
        await wait_ready(http, f"{base}/readyz")
        acknowledged: list[str] = []
        for victim in ("storage", "linking", "ingestion"):
            for i in range(n):
                uri = f"urn:fault:{stack.prefix}{victim}:{i}"
                await producer.send_and_wait(stack.kafka.topic_upstream, json.dumps(ninjs(
                    uri, headline=f"Fault {victim} {i}", body=f"<p>Article {i} about {victim} faults and recovery.</p>",
                )).encode(), key=uri.encode())
                acknowledged.append(uri)
                if i == n // 3:
                    stack.procs[victim].kill()  # SIGKILL mid-stream
                    stack.procs[victim].wait()
                if i == 2 * n // 3:
                    stack.start(victim)
        started = time.monotonic()

        async def status_of(uri: str) -> int:
            async with http.get(f"{base}/api/v1/articles", params={"uri": uri}) as r:
                return r.status

        async def all_readable():
            statuses = await asyncio.gather(*(status_of(u) for u in acknowledged))
            return all(s == 200 for s in statuses)
        await eventually(all_readable, timeout=180, interval=1, what=f"all {len(acknowledged)} acknowledged articles")
        recovery = time.monotonic() - started

        async with http.get(f"{base}/api/v1/articles", params={"limit": "100"}) as r:
            page = await r.json()
        ids = [i["id"] for i in page["items"]]
        assert len(ids) == len(set(ids)), "an article is listed twice"
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            async with http.get(f"{base}/api/v1/articles", params=params) as r:
                page = await r.json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        expected = {article_id_for(u) for u in acknowledged}
        assert len(seen) == len(set(seen)), "duplicates in the listing"
        assert expected <= set(seen), f"lost: {len(expected - set(seen))}"
        print(f"acknowledged {len(acknowledged)}, readable {len(expected & set(seen))}, "
              f"duplicated {len(seen) - len(set(seen))}, recovered in {recovery:.1f}s after the last publish")
    finally:
        await http.close()
        await producer.stop()


async def test_sigterm_shuts_each_service_down_cleanly(stack):
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, f"http://127.0.0.1:{stack.gateway_port}/readyz")
    await asyncio.sleep(2)
    for name, proc in stack.procs.items():
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, f"{name} did not exit cleanly on SIGTERM (see {stack.logs / (name + '.log')})"


async def test_workers_expose_health_readiness_and_metrics_on_internal_ports(stack):
    env = stack.env
    ports = {name: int(env[f"KAZPOST_{name.upper()}_OPS_PORT"]) for name in ("ingestion", "storage", "linking", "gateway")}
    base = f"http://127.0.0.1:{stack.gateway_port}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"{base}/readyz")
            for name in ("ingestion", "storage", "linking"):
                await wait_ready(http, f"http://127.0.0.1:{ports[name]}/readyz")
            uri = f"urn:fault:{stack.prefix}metrics"
            await producer.send_and_wait(stack.kafka.topic_upstream, json.dumps(ninjs(uri, headline="Metrics")).encode(), key=uri.encode())
            await producer.send_and_wait(stack.kafka.topic_upstream, b"{not json", key=b"bad")

            async def readable():
                async with http.get(f"{base}/api/v1/articles", params={"uri": uri}) as r:
                    return r.status == 200
            await eventually(readable, what="the article")

            async def metrics(name: str) -> str:
                async with http.get(f"http://127.0.0.1:{ports[name]}/metrics") as r:
                    assert r.status == 200
                    return await r.text()

            async def counted():
                text = await metrics("ingestion")
                return ('outcome="dead_lettered"' in text and 'outcome="ok"' in text) and text
            text = await eventually(counted, what="ingestion's counters")
            import re

            for outcome in ("ok", "dead_lettered"):
                line = re.search(rf'^kazpost_messages_consumed_total{{(?=[^}}]*outcome="{outcome}")(?=[^}}]*service="ingestion")[^}}]*}} (\S+)$', text, re.M)
                assert line and float(line.group(1)) >= 1, outcome
            assert "kazpost_handler_seconds_bucket" in text and "kazpost_consumer_lag" in text
            storage = await metrics("storage")
            assert re.search(r'^kazpost_db_seconds_count{[^}]*operation="update"[^}]*service="storage"[^}]*} [1-9]', storage, re.M)
            assert re.search(r'^kazpost_messages_produced_total{[^}]*service="storage"[^}]*} [1-9]', storage, re.M)
            gateway_metrics = await metrics("gateway")
            assert "kazpost_http_request_seconds_bucket" in gateway_metrics and "kazpost_cache_total" in gateway_metrics
            for name in ("ingestion", "storage", "linking"):
                async with http.get(f"http://127.0.0.1:{ports[name]}/healthz") as r:
                    assert r.status == 200 and (await r.json())["status"] == "ok"
            # Nothing operational on the public port.
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 404
    finally:
        await producer.stop()
