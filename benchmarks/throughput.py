"""P1 — pipeline throughput: N articles published upstream → all stored AND linked.

The four services run as real processes, as in production (one each, 3 partitions), on topics
and a database of their own.  ``N`` ninjs items (BBC paragraphs recombined, publication times
spread over ``--spread-hours``, oldest first like a feed) are published upstream in one go.  A
watcher without a consumer group reads ``articles.stored`` and ``articles.linked`` and records
when each article first appears (on ``articles.linked`` only its OWN related list counts).
Pipeline throughput = N / (time of the last article linked − time of the first publish).

Also reported: each stage's rate (ingested, stored, linked) and the CPU time each service spent
per article (user + system, from /proc: unlike rates, it barely depends on what else runs on
the machine), which shows where the time goes.

Raw ceiling, measured in the same run afterwards: a minimal aiokafka consumer reads the same N
``article.ingested`` messages (the ones ingestion produced during the run) and bulk-writes them
with ``insert_many`` (one call per fetched batch) into a collection of the same database, which
carries the same GIN ``_id`` index as every collection.  Ratio = pipeline / ceiling (target ≥ 0.7).

    python -m benchmarks.throughput [--n 10000] [--spread-hours 24]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import time

import pymongo
import pymongo.errors
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.common import (
    RAW, clear, Corpus, Report, Row, Scenario, Services, Watcher, environment, infrastructure_cpu, log, new_run_id, producer,
    publish_all,
)
from shared.events import article_id_for
from shared.mongo import ARTICLES, RELATED, database


async def raw_ceiling(scenario: Scenario, n: int, *, batch: int = 500) -> dict:
    """A minimal consumer: the ingested messages, bulk-inserted as they come (the ceiling)."""
    kafka = scenario.kafka
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=kafka.max_request_size,
                                fetch_max_bytes=4 * kafka.max_request_size)
    client = scenario.client()
    coll = database(client, scenario.mongo)[RAW]
    await clear(coll)
    await consumer.start()
    cpu0 = infrastructure_cpu()
    try:
        parts = consumer.partitions_for_topic(kafka.topic_ingested)
        while not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka quirk
            parts = consumer.partitions_for_topic(kafka.topic_ingested)
        tps = [TopicPartition(kafka.topic_ingested, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        written = 0
        started = time.monotonic()
        while written < n:
            got = await consumer.getmany(timeout_ms=1000, max_records=batch)
            docs = []
            for records in got.values():
                for r in records:
                    doc = json.loads(r.value)
                    doc["_id"] = r.key.decode()
                    docs.append(doc)
            if docs:
                await coll.insert_many(docs, ordered=False)
                written += len(docs)
            elif time.monotonic() - started > 600:
                raise TimeoutError(f"only {written} of {n} ingested messages found")
        took = time.monotonic() - started
        cpu1 = infrastructure_cpu()
    finally:
        await consumer.stop()
        await clear(coll)
        await client.close()
    return {"articles": written, "seconds": took, "rate": written / took,
            "cpu_ms_per_article": {k: (cpu1[k] - cpu0.get(k, 0.0)) * 1000 / written for k in cpu1}}


async def run(report: Report, *, n: int, spread_hours: float, logs: pathlib.Path, run_id: str | None = None,
              timeout: float = 3600) -> None:
    run_id = run_id or new_run_id()
    scenario = await Scenario.create("p1", run_id)
    services = Services(scenario, logs / "p1")
    services.start()
    watcher = Watcher(scenario.kafka, [scenario.kafka.topic_ingested, scenario.kafka.topic_stored, scenario.kafka.topic_linked],
                      own_list_only=scenario.kafka.topic_linked)
    prod = producer(scenario.kafka)
    try:
        await services.wait_ready()
        await services.wait_assigned()
        items = Corpus().items(run_id, n, spread_hours=spread_hours)
        ids = {article_id_for(i["uri"]) for i in items}
        await prod.start()
        await watcher.start()
        log(f"P1: publishing {n} articles")
        cpu0 = services.cpu_seconds()
        t0 = time.monotonic()
        await publish_all(prod, scenario.kafka.topic_upstream, items)
        published = time.monotonic() - t0
        ingested_at = await watcher.wait_all(scenario.kafka.topic_ingested, ids, timeout=timeout, progress="P1",
                                             alive=services.check_alive)
        stored_at = await watcher.wait_all(scenario.kafka.topic_stored, ids, timeout=timeout, progress="P1",
                                           alive=services.check_alive)
        cpu_stored = services.cpu_seconds()  # the storage stage is over: the rest is linking's
        linked_at = await watcher.wait_all(scenario.kafka.topic_linked, ids, timeout=timeout, progress="P1",
                                           alive=services.check_alive)
        took = linked_at - t0
        rates = {"publish": n / published, "ingested": n / (ingested_at - t0), "stored": n / (stored_at - t0),
                 "linked": n / took}
        db_calls = {name: await services.db_profile(name) for name in ("storage", "linking")}
        cpu1 = services.cpu_seconds()
        cpu_ms = {name: (cpu1[name] - cpu0.get(name, 0.0)) * 1000 / n for name in cpu1}
        cpu_phases = {"until_all_stored": {k: (cpu_stored[k] - cpu0.get(k, 0.0)) * 1000 / n for k in cpu_stored},
                      "after_all_stored": {k: (cpu1[k] - cpu_stored.get(k, 0.0)) * 1000 / n for k in cpu1}}
        client = scenario.client()
        try:  # a check, off any request path: counting scans the table on FerretDB, so allow time
            db = database(client, scenario.mongo)
            with pymongo.timeout(300):
                counts = {"articles": await db[ARTICLES].count_documents({}),
                          "related": await db[RELATED].count_documents({})}
        except pymongo.errors.PyMongoError as exc:
            counts = {"error": repr(exc)}
        finally:
            await client.close()
        log(f"P1: {n} articles stored and linked in {took:.1f}s ({rates['linked']:.0f}/s; stored {rates['stored']:.0f}/s); "
            f"documents {counts}")
        services.stop()  # the ceiling runs on an otherwise idle machine, as the pipeline did
        log("P1: raw ceiling (insert_many of the same ingested messages)")
        ceiling = await raw_ceiling(scenario, n)
        log(f"P1: ceiling {ceiling['rate']:.0f} articles/s")
    finally:
        await watcher.stop()
        await prod.stop()
        services.stop()
    ratio = rates["linked"] / ceiling["rate"]
    report.add(Row("P1 throughput", f"{n:,} articles published → stored + linked", rates["linked"], "articles/s",
                   ceiling["rate"], "raw consumer + insert_many", "ratio ≥ 0.7", ratio >= 0.7))
    report.add(Row("P1 throughput", "… of which stored (storage stage)", rates["stored"], "articles/s",
                   ceiling["rate"], "raw consumer + insert_many", "", None))
    for name, ms in cpu_ms.items():
        base = ceiling["cpu_ms_per_article"].get(name)
        report.add(Row("P1 throughput", f"… CPU per article: {name}", ms, "ms", base,
                       "the raw ceiling's" if base is not None else ""))
    report.details["P1"] = {"cpu_ms_per_article": cpu_ms, "cpu_ms_per_article_by_phase": cpu_phases, "n": n, "spread_hours": spread_hours, "seconds": took, "publish_seconds": published,
                            "rates": rates, "ceiling": ceiling, "ratio": ratio, "documents": counts,
                            "database_calls": db_calls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--spread-hours", type=float, default=24.0)
    parser.add_argument("--logs", type=pathlib.Path, default=pathlib.Path(".run/bench/services"))
    args = parser.parse_args(argv)
    report = Report()
    asyncio.run(run(report, n=args.n, spread_hours=args.spread_hours, logs=args.logs))
    print(report.table())
    print(json.dumps(report.to_json(environment())["details"], indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
