"""Fault tests with the services as real processes.

- The fault suite's reduced form (``make chaos`` runs the full one): for each scenario, fresh
  topics and database, N articles published upstream while one fault is injected (SIGKILL of a
  service, broker restart, database crash, a replica killed mid-rebalance); afterwards nothing
  acknowledged is lost, duplicated or dead-lettered, and nothing unexpected appears. These
  scenarios restart the broker and the database, so they run on a stack of their own (started
  here on free ports, removed at the end), never on the shared test stack.
- SIGTERM shuts every service down cleanly; workers serve health, readiness and metrics on
  their internal ports.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import uuid

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from shared.kafka import all_topics, ensure_topics
from shared.settings import KafkaSettings, MongoSettings
from tests.chaos.infra import REPO, Infra
from tests.chaos.services import WORKERS, Services
from tests.chaos.suite import SCENARIOS, Result, run_scenario, table, write_json
from tests.integration.helpers import eventually, ninjs

pytestmark = pytest.mark.integration

# The reduced form: a few dozen articles per scenario (storage does 10-30 articles/s here).
CI_N = int(os.environ.get("KAZPOST_CHAOS_CI_N", "40"))
CI_RATE = 15.0
CI_SCENARIOS = ["kill-ingestion", "kill-storage", "kill-linking", "restart-kafka", "kill-db", "rebalance"]
RESULTS: list[Result] = []


@pytest.fixture(scope="module")
def own_infra(run_id):
    infra = Infra.fresh(REPO / ".run" / f"faults-{run_id}")
    try:
        infra.start()
        yield infra
    finally:
        infra.stop(remove=True)


@pytest.mark.parametrize("name", CI_SCENARIOS)
async def test_fault_scenario_loses_duplicates_and_dead_letters_nothing(name, own_infra, run_id, tmp_path, artifacts_dir):
    result = await run_scenario(SCENARIOS[name], own_infra, n=CI_N, rate=CI_RATE, workdir=tmp_path, run_id=run_id,
                                quiesce_timeout=180, log=lambda m: print(m, flush=True))
    RESULTS.append(result)
    write_json(RESULTS, artifacts_dir / "chaos-ci.json", n=CI_N, rate=CI_RATE)
    (artifacts_dir / "chaos-ci.md").write_text(table(RESULTS) + "\n")
    print(table([result]))
    details = json.dumps(result.details, indent=1, default=str)[:4000]
    assert result.quiescent, f"the pipeline did not finish within the timeout; logs in {tmp_path}\n{details}"
    assert result.acked == result.messages, f"upstream sends never acknowledged: {details}"
    assert result.details["fault_at"] < result.details["last_ack"], "the fault did not happen mid-stream"
    assert result.lost == 0, details
    assert result.duplicated == 0, details
    assert result.unexpected == 0, details
    assert result.dead_lettered == 0, details
    assert result.stored == result.messages and result.linked == result.readable == CI_N
    assert all(code == 0 for code in result.details["exit_codes_on_sigterm"].values()), details


@pytest.fixture
async def services(tmp_path, mongo):
    s = Services(f"f{uuid.uuid4().hex[:8]}", tmp_path, bootstrap_servers=KafkaSettings().bootstrap_servers,
                 mongo_url=MongoSettings().url)
    await ensure_topics(s.kafka, all_topics(s.kafka))
    s.start_all()
    yield s
    s.stop_all()
    await mongo.drop_database(s.database)


async def test_sigterm_shuts_each_service_down_cleanly(services):
    async with aiohttp.ClientSession() as http:
        await services.wait_ready(http)
    await asyncio.sleep(2)
    for (name, r), proc in services.procs.items():
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, f"{name} did not exit cleanly on SIGTERM (see {services.logs / f'{name}-{r}.log'})"


async def test_workers_expose_health_readiness_and_metrics_on_internal_ports(services):
    ports = {name: services.ops_ports[(name, 0)] for name in (*WORKERS, "gateway")}
    base = services.base_url
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        async with aiohttp.ClientSession() as http:
            await services.wait_ready(http)
            uri = f"urn:fault:{services.prefix}:metrics"
            await producer.send_and_wait(services.kafka.topic_upstream, json.dumps(ninjs(uri, headline="Metrics")).encode(), key=uri.encode())
            await producer.send_and_wait(services.kafka.topic_upstream, b"{not json", key=b"bad")

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
            for outcome in ("ok", "dead_lettered"):
                line = re.search(rf'^kazpost_messages_consumed_total{{(?=[^}}]*outcome="{outcome}")(?=[^}}]*service="ingestion")[^}}]*}} (\S+)$', text, re.M)
                assert line and float(line.group(1)) >= 1, outcome
            assert "kazpost_handler_seconds_bucket" in text and "kazpost_consumer_lag" in text
            storage = await metrics("storage")
            assert re.search(r'^kazpost_db_seconds_count{[^}]*service="storage"[^}]*} [1-9]', storage, re.M)
            assert re.search(r'^kazpost_messages_produced_total{[^}]*service="storage"[^}]*} [1-9]', storage, re.M)
            gateway_metrics = await metrics("gateway")
            assert "kazpost_http_request_seconds_bucket" in gateway_metrics and "kazpost_cache_total" in gateway_metrics
            for name in WORKERS:
                async with http.get(f"http://127.0.0.1:{ports[name]}/healthz") as r:
                    assert r.status == 200 and (await r.json())["status"] == "ok"
            # Nothing operational on the public port.
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 404
    finally:
        await producer.stop()
