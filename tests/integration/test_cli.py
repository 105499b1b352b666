"""The operator CLI against the real broker and database: publish (with progress), status,
lag, rebuild by replay, and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

import pytest

from services.ingestion.normalise import article_from_bytes
from services.storage.app import create_worker as create_storage
from services.storage.settings import StorageSettings
from shared.cli import CliError, CliSettings, cmd_dlq, cmd_lag, cmd_publish, cmd_rebuild, cmd_status, group_lag, main
from shared.events import ArticleIngested, IngestedEvent, article_id_for
from shared.kafka import all_topics, ensure_topics, make_producer
from shared.mongo import ARTICLES, FRONTS, VERSIONS, database, init_database
from shared.settings import TOPIC_FIELDS, MongoSettings
from tests.integration.conftest import FAST_RETRY
from tests.integration.helpers import eventually, ninjs, publish


def entries(out: str) -> list[dict]:
    """The CLI's JSON lines (other lines on stdout are the services' logs)."""
    found = []
    for line in out.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "partition" in item and "offset" in item:
            found.append(item)
    return found


def json_block(out: str) -> dict:
    """The one indented JSON document the CLI printed (``--json``), among log lines."""
    start = out.index("{\n")
    end = out.index("\n}", start) + 2
    return json.loads(out[start:end])


pytestmark = pytest.mark.integration

# Articles of these tests are dated in the past, so they never crowd other tests' pages (the
# pipeline is shared by the whole session; a listing shows the newest first).
OLD = "2025-03-01T08:00:00+05:00"


async def test_dead_letter_is_listed_and_replayed_to_its_source(pipeline, producer, run_id, capsys):
    uri = f"urn:test:{run_id}:replayed"
    dlq = pipeline.kafka.topic_upstream_dlq
    # A message dead-lettered after a transient failure (say, a long database outage).
    await producer.send_and_wait(dlq, json.dumps(ninjs(uri, headline="Replayed from the dead-letter topic")).encode(),
                                 key=uri.encode(), headers=[
                                     ("dlq.reason", b"transient failure after 10 attempts: timeout"),
                                     ("dlq.source_topic", pipeline.kafka.topic_upstream.encode()),
                                     ("dlq.source_partition", b"0"), ("dlq.source_offset", b"7"),
                                     ("dlq.attempts", b"10"), ("correlation_id", b"replay-test")])
    settings = CliSettings(kafka=pipeline.kafka)
    assert await cmd_dlq(settings, dlq, 1000) == 0
    listed = entries(capsys.readouterr().out)
    entry = next(e for e in listed if e["key"] == uri)
    assert entry["reason"].startswith("transient failure") and entry["attempts"] == "10"

    assert await cmd_dlq(settings, dlq, 1000, replay=True, offsets={(entry["partition"], entry["offset"])}) == 0
    replayed = entries(capsys.readouterr().out)
    assert [e["replayed"] for e in replayed] == [f"to {pipeline.kafka.topic_upstream}"]

    async def readable():
        status, body = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
        return body if status == 200 else None
    body = await eventually(readable, what="the replayed article")
    assert body["headline"] == "Replayed from the dead-letter topic"


async def test_publish_a_directory_with_a_progress_bar(pipeline, mongo_settings, run_id, tmp_path, capsys):
    folder = tmp_path / "items"
    (folder / "nested").mkdir(parents=True)
    uris = [f"urn:test:{run_id}:bulk:{i}" for i in range(25)]
    for i, uri in enumerate(uris):
        where = folder / "nested" if i % 2 else folder
        (where / f"{i:03d}.json").write_text(json.dumps(ninjs(uri, headline=f"Bulk item {i}", created=OLD)))
    settings = CliSettings(kafka=pipeline.kafka, mongo=mongo_settings)
    assert await cmd_publish(settings, [str(folder)], None, progress=True) == 0
    captured = capsys.readouterr()
    assert f"published 25 of 25 items to {pipeline.kafka.topic_upstream}" in captured.out
    assert "25/25" in captured.err and "publishing to" in captured.err  # tqdm's bar, on stderr

    async def all_readable():
        for uri in uris:
            status, _ = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
            if status != 200:
                return False
        return True
    await eventually(all_readable, timeout=60, what="the 25 published items")

    assert await asyncio.to_thread(main, ["publish", str(tmp_path / "missing")]) == 2  # the console script
    assert "no such file or directory" in capsys.readouterr().err


async def test_status_follows_an_article_across_the_pipeline(pipeline, producer, mongo_settings, run_id, capsys):
    topic = pipeline.kafka.topic_upstream
    first = f"urn:test:{run_id}:status:1"
    second = f"urn:test:{run_id}:status:2"
    body = "<p>The Almaty metro extension to the airport opened with six new stations and trains every four minutes.</p>"
    await publish(producer, topic, ninjs(first, headline="Almaty metro reaches the airport", body=body, created=OLD))
    await publish(producer, topic, ninjs(second, headline="Almaty metro airport line opens", body=body + "<p>More.</p>",
                                         created=OLD))
    article_id = article_id_for(first)

    async def linked():
        status, doc = await pipeline.get_json(f"/api/v1/articles/{article_id}")
        return status == 200 and doc["related"]
    await eventually(linked, timeout=60, what="the article with its related list")

    settings = CliSettings(kafka=pipeline.kafka, mongo=mongo_settings, gateway_url=pipeline.base_url)
    assert await cmd_status(settings, first, as_json=True) == 0
    status = json_block(capsys.readouterr().out)
    assert status["id"] == article_id and status["uri"] == first
    assert status["stored"]["version"] == 1 and status["stored"]["pub_status"] == "usable"
    assert status["stored"]["headline"] == "Almaty metro reaches the airport"
    assert status["related"]["count"] >= 1 and status["related"]["rev"] > 0
    assert status["gateway"]["visible"] is True and status["gateway"]["status"] == 200
    assert status["gateway"]["related"] >= 1

    # By id, as text; then a kill shows as gone on the gateway.
    await publish(producer, topic, ninjs(first, version=2, status="canceled", created=OLD))

    async def killed():
        code, _ = await pipeline.get_json(f"/api/v1/articles/{article_id}")
        return code == 410
    await eventually(killed, what="the kill")
    assert await cmd_status(settings, article_id) == 0
    text = capsys.readouterr().out
    assert f"article  {article_id}" in text and "version 2 (canceled" in text and "gone (killed): 410" in text


async def test_status_of_an_unknown_article_fails_clearly(pipeline, mongo_settings, run_id, capsys):
    settings = CliSettings(kafka=pipeline.kafka, mongo=mongo_settings, gateway_url=pipeline.base_url)
    assert await cmd_status(settings, f"urn:test:{run_id}:never-published") == 1
    captured = capsys.readouterr()
    assert "stored   no" in captured.out and "not shown" in captured.out
    assert f"error: no stored article {article_id_for(f'urn:test:{run_id}:never-published')}" in captured.err


async def test_lag_lists_each_partition_of_each_group(pipeline, mongo_settings, producer, run_id, capsys):
    uri = f"urn:test:{run_id}:lag"
    await publish(producer, pipeline.kafka.topic_upstream, ninjs(uri, headline="Lag", created=OLD))

    async def readable():
        status, _ = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
        return status == 200
    await eventually(readable, what="the article")
    settings = CliSettings(kafka=pipeline.kafka, mongo=mongo_settings)
    groups = [f"test-{run_id}-storage", f"test-{run_id}-linking"]

    async def caught_up():
        rows = await group_lag(settings, groups)
        return rows if rows and all(r["lag"] == 0 for r in rows) else None
    rows = await eventually(caught_up, what="both groups caught up")
    storage = [r for r in rows if r["group"] == groups[0]]
    assert {r["topic"] for r in storage} == {pipeline.kafka.topic_ingested}
    assert sorted(r["partition"] for r in storage) == list(range(pipeline.kafka.partitions))
    assert all(r["state"] == "Stable" and r["members"] == 1 for r in rows)
    assert await cmd_lag(settings, groups) == 0
    out = capsys.readouterr().out
    assert "GROUP" in out and "LAG" in out and f"  {groups[1]}  0" in out
    with pytest.raises(CliError, match="no such consumer group"):
        await cmd_lag(settings, [f"test-{run_id}-nobody"])


async def test_rebuild_refuses_while_the_service_runs(pipeline, mongo_settings, run_id):
    settings = CliSettings(kafka=pipeline.kafka, mongo=mongo_settings)
    with pytest.raises(CliError, match="stop every storage replica first") as error:
        await cmd_rebuild(settings, "storage", group=f"test-{run_id}-storage", fresh=True, yes=True)
    assert error.value.code == 1


def ingested_event(uri: str, **kw) -> tuple[str, bytes]:
    article = article_from_bytes(json.dumps(ninjs(uri, **kw)).encode(), now=datetime.now(UTC), max_bytes=2_000_000,
                                 max_clock_skew_s=86_400, words_per_minute=200)
    return article.id, IngestedEvent(producer="test", correlation_id=f"c-{article.id}",
                                     payload=ArticleIngested(article=article)).to_bytes()


def comparable(docs: list[dict]) -> dict:
    """Documents by id without what differs between two writes of the same content."""
    skip = {"stored_at", "updated_at", "killed_at", "rev"}

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in skip}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return {d["_id"]: clean(d) for d in docs}


async def test_rebuild_fresh_replays_the_log_into_empty_collections(kafka_settings, mongo, run_id, capsys, monkeypatch):
    """storage stopped → `rebuild storage --fresh --yes` → storage started again: the read
    models come back exactly as they were, from the log alone."""
    kafka = kafka_settings.model_copy(update={n: f"r{run_id}." + getattr(kafka_settings, n) for n in TOPIC_FIELDS})
    mongo_settings = MongoSettings(database=f"kazpost_r{run_id}")
    group = f"rebuild-{run_id}-storage"
    await ensure_topics(kafka, all_topics(kafka))
    db = database(mongo, mongo_settings)
    await init_database(db)
    settings = CliSettings(kafka=kafka, mongo=mongo_settings)
    storage_settings = StorageSettings(kafka=kafka, mongo=mongo_settings, retry=FAST_RETRY, group_id=group, ops_port=None)

    events = [ingested_event(f"urn:rebuild:{run_id}:{i}", headline=f"Rebuilt {i}", tags=("Rail",) if i % 2 else (),
                             section=("Business", "Politics")[i % 2], created=f"2026-11-27T0{i % 8}:00:00+05:00")
              for i in range(12)]
    events.append(ingested_event(f"urn:rebuild:{run_id}:3", version=2, headline="Rebuilt 3, corrected", section="Business",
                                 created="2026-11-27T03:00:00+05:00"))
    events.append(ingested_event(f"urn:rebuild:{run_id}:5", version=2, status="canceled", created="2026-11-27T05:00:00+05:00"))
    producer = make_producer(kafka, "test-rebuild")
    await producer.start()
    try:
        for key, value in events:
            await producer.send_and_wait(kafka.topic_ingested, value, key=key.encode())
    finally:
        await producer.stop()

    async def run_storage_until_caught_up():
        worker = create_storage(storage_settings)
        task = asyncio.create_task(worker.serve(install_signals=False))

        async def caught_up():
            if task.done():
                task.result()
            rows = await group_lag(settings, [group]) if group in await known_groups() else []
            return bool(rows) and sum(r["lag"] for r in rows) == 0
        try:
            await eventually(caught_up, timeout=90, interval=0.5, what="storage to consume everything")
        finally:
            worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=30)

    async def known_groups() -> set[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        try:
            return {g for g, *_ in await admin.list_consumer_groups()}
        finally:
            await admin.close()

    async def state() -> dict:
        return {name: comparable(await db[name].find({}).to_list(None)) for name in (ARTICLES, VERSIONS, FRONTS)}

    try:
        await run_storage_until_caught_up()
        before = await state()
        assert len(before[ARTICLES]) == 12 and len(before[VERSIONS]) == 14
        assert before[ARTICLES][article_id_for(f"urn:rebuild:{run_id}:3")]["headline"] == "Rebuilt 3, corrected"
        assert before[ARTICLES][article_id_for(f"urn:rebuild:{run_id}:5")]["pub_status"] == "canceled"

        # Without --yes nothing changes, and the exit code says a confirmation is missing.
        assert await cmd_rebuild(settings, "storage", group=group, fresh=True) == 2
        assert "14 message(s) to replay" in capsys.readouterr().out
        assert await state() == before

        # The same through the console script's entry point (settings from the environment).
        monkeypatch.setenv("KAZPOST_KAFKA_TOPIC_INGESTED", kafka.topic_ingested)
        monkeypatch.setenv("KAZPOST_MONGO_DATABASE", mongo_settings.database)
        assert await asyncio.to_thread(main, ["rebuild", "storage", "--group", group, "--fresh"]) == 2
        with pytest.raises(SystemExit) as usage:
            await asyncio.to_thread(main, ["rebuild", "ingestion"])  # no read model of its own
        assert usage.value.code == 2
        capsys.readouterr()

        assert await cmd_rebuild(settings, "storage", group=group, fresh=True, yes=True) == 0
        out = capsys.readouterr().out
        assert "emptied articles: 12 document(s) deleted" in out and f"kazpost lag --group {group}" in out
        assert await db[ARTICLES].count_documents({}) == 0 and await db[FRONTS].count_documents({}) == 0
        assert sum(r["lag"] for r in await group_lag(settings, [group])) == 14

        await run_storage_until_caught_up()
        assert await state() == before, "the replay must rebuild exactly the same read models"
    finally:
        await mongo.drop_database(mongo_settings.database)
