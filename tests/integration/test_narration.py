"""narration against the real broker and database, with the real espeak-ng and opusenc: stored
events in, Ogg Opus audio in chunks out (decoded again with opusdec), corrections, kills, range
reads, and readiness without the speech tools."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import wave
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from bson import Binary

from services.narration.app import create_worker
from services.narration.settings import NarrationSettings
from shared.audio import (
    AUDIO_CHUNKS, CHUNK_SIZE, CONTENT_TYPE, AudioUnavailable, chunk_id, chunk_ids, read_meta, read_range,
)
from shared.events import Article, ArticleStored, StoredEvent, Term, article_id_for
from shared.kafka import all_topics, ensure_topics
from shared.mongo import database, init_database, make_client
from shared.settings import TOPIC_FIELDS, KafkaSettings, MongoSettings
from tests.integration.conftest import FAST_RETRY, free_port
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 27, 8, tzinfo=UTC)
KK = ("Астана қаласында жаңа мектеп ашылды. Оқушылар мен мұғалімдер жаңа ғимаратқа көшті. "
      "Үкімет жобаға қосымша қаражат бөлді. Құрылыс екі жылға созылды.")
RU = ("В Астане открылась новая школа. Ученики и учителя переехали в новое здание. "
      "Правительство выделило на проект дополнительные средства. Строительство длилось два года.")
EN = ("A new school opened in Astana. Pupils and teachers moved into the new building. "
      "The government gave the project extra money. Construction took two years.")


def article(uri: str, body: str, *, version: int = 1, language: str = "kk", status: str = "usable",
            headline: str = "Жаңалық", standfirst: str | None = None, embargo: datetime | None = None) -> Article:
    paragraphs = [p for p in body.split("\n") if p.strip()]
    html = "".join(f"<p>{p}</p>" for p in paragraphs) if status == "usable" else ""
    return Article(
        id=article_id_for(uri), uri=uri, version=version, version_created=T0 + timedelta(minutes=version),
        first_created=T0, pub_status=status, embargoed_until=embargo, language=language, language_tag=language,
        headline=headline if status == "usable" else "", standfirst=standfirst, body_html=html,
        body_text="\n".join(paragraphs) if status == "usable" else "", section=Term(slug="news", name="News"),
        slug="s", content_hash=hashlib.sha256(f"{body}{version}".encode()).hexdigest()[:16],
    )


class Env:
    def __init__(self, kafka: KafkaSettings, mongo: MongoSettings, db, producer: AIOKafkaProducer, worker) -> None:
        self.kafka, self.mongo, self.db, self.producer, self.worker = kafka, mongo, db, producer, worker
        self.events: list[dict] = []

    async def stored(self, a: Article, change: str | None = None) -> None:
        change = change or {"canceled": "killed", "withheld": "withheld"}.get(a.pub_status, "created")
        event = StoredEvent(producer="test", correlation_id=f"c-{a.id}-{a.version}",
                            payload=ArticleStored(article=a, change=change))
        await self.producer.send_and_wait(self.kafka.topic_stored, event.to_bytes(), key=a.id.encode())

    def narrated(self, article_id: str, status: str | None = None, version: int | None = None) -> list[dict]:
        return [e for e in self.events if e["payload"]["article_id"] == article_id
                and (status is None or e["payload"]["status"] == status)
                and (version is None or e["payload"]["version"] == version)]

    async def meta_at(self, article_id: str, version: int) -> dict:
        """The audio metadata at ``version`` once narration has finished with it (its ``ready``
        event is out: the replaced version's chunks are deleted before that)."""
        async def check():
            if not self.narrated(article_id, "ready", version):
                return None
            meta = await read_meta(self.db, article_id)
            return meta if meta and meta["version"] == version else None
        return await eventually(check, timeout=90, what=f"audio of {article_id} at version {version}")

    async def chunks_of(self, article_id: str, version: int, count: int = 64) -> list[str]:
        ids = chunk_ids(article_id, version, count)
        return sorted([d["_id"] async for d in self.db[AUDIO_CHUNKS].find({"_id": {"$in": ids}}, {"_id": 1})])

    async def audio_bytes(self, meta: dict) -> bytes:
        ids = chunk_ids(meta["_id"], meta["version"], meta["chunks"])
        docs = {d["_id"]: bytes(d["data"]) async for d in self.db[AUDIO_CHUNKS].find({"_id": {"$in": ids}})}
        return b"".join(docs[i] for i in ids)


@pytest.fixture(scope="module")
async def env(run_id):
    """Topics and a database of this module's own, and one narration worker on them."""
    base = KafkaSettings()
    kafka = base.model_copy(update={n: f"n{run_id}." + getattr(base, n) for n in TOPIC_FIELDS}
                            | {"client_id_prefix": f"kazpost-test-{run_id}"})
    await ensure_topics(kafka, all_topics(kafka))
    mongo = MongoSettings(database=f"kazpost_n{run_id}")
    client = make_client(mongo, app_name="tests")
    db = database(client, mongo)
    await init_database(db)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    listener = AIOKafkaConsumer(kafka.topic_narrated, bootstrap_servers=kafka.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest")
    await listener.start()
    settings = NarrationSettings(kafka=kafka, mongo=mongo, retry=FAST_RETRY, group_id=f"g-{kafka.topic_stored}",
                                 ops_port=None, concurrency=2)
    worker = create_worker(settings)
    task = asyncio.create_task(worker.serve(install_signals=False))
    e = Env(kafka, mongo, db, producer, worker)

    async def listen():
        async for record in listener:
            e.events.append(json.loads(record.value))
    listening = asyncio.create_task(listen())
    try:
        for _ in range(300):
            if worker.runner.assigned or task.done():
                break
            await asyncio.sleep(0.1)
        if task.done():
            task.result()
        assert worker.runner.assigned, f"narration did not get its partitions in 30 s (speech tools: {worker.synth.problem})"
        yield e
    finally:
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await listener.stop()
        await producer.stop()
        await client.drop_database(mongo.database)
        await client.close()


def decoded_seconds(data: bytes, tmp_path, name: str) -> float:
    """Decode Ogg Opus with opusdec (an independent decoder) and read the WAV's length."""
    src, dst = tmp_path / f"{name}.opus", tmp_path / f"{name}.wav"
    src.write_bytes(data)
    subprocess.run(["opusdec", "--quiet", str(src), str(dst)], check=True, timeout=60)
    with wave.open(str(dst)) as w:
        return w.getnframes() / w.getframerate()


async def test_kazakh_article_is_narrated_stored_in_chunks_and_decodes(env, tmp_path):
    a = article("urn:narr:kk:1", KK + "\n" + KK, headline="Астанада жаңа мектеп", standfirst="Қысқаша мазмұны.")
    await env.stored(a)
    meta = await env.meta_at(a.id, 1)
    data = await env.audio_bytes(meta)
    assert data[:4] == b"OggS" and b"OpusHead" in data[:100]
    assert meta["content_type"] == CONTENT_TYPE == "audio/ogg; codecs=opus"
    assert meta["language"] == "kk" and meta["chunk_size"] == CHUNK_SIZE
    assert meta["size"] == len(data) and meta["chunks"] == len(await env.chunks_of(a.id, 1))
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["etag"].startswith('"') and meta["etag"].endswith('"')
    assert meta["created_at"].tzinfo is not None
    assert meta["words"] == 2 * len(KK.split()) + 3 + 2
    assert meta["embargoed_until"] is None
    seconds = decoded_seconds(data, tmp_path, "kk")
    assert seconds > 10
    assert abs(seconds - meta["duration_s"]) < 0.25, (seconds, meta["duration_s"])
    await eventually(lambda: asyncio.sleep(0, env.narrated(a.id, "ready", 1)), what="article.narrated ready")
    event = env.narrated(a.id, "ready", 1)[0]
    assert event["event_type"] == "article.narrated" and event["correlation_id"] == f"c-{a.id}-1"
    assert event["payload"]["duration_s"] == meta["duration_s"] and event["payload"]["size"] == meta["size"]
    assert event["payload"]["content_type"] == CONTENT_TYPE and event["payload"]["language"] == "kk"


@pytest.mark.parametrize(("language", "text"), [("ru", RU), ("en", EN), ("kk", KK)])
async def test_duration_grows_with_the_text(env, language, text):
    short = article(f"urn:narr:len:{language}:1", text, language=language, headline="Один")
    long = article(f"urn:narr:len:{language}:3", "\n".join([text] * 3), language=language, headline="Один")
    await env.stored(short)
    await env.stored(long)
    one, three = await env.meta_at(short.id, 1), await env.meta_at(long.id, 1)
    ratio = three["duration_s"] / one["duration_s"]
    assert 2.2 < ratio < 4.0, (one["duration_s"], three["duration_s"])
    assert one["language"] == language and three["size"] > 2 * one["size"]


async def test_a_correction_replaces_the_audio_and_a_late_old_version_is_ignored(env):
    v1 = article("urn:narr:fix", RU, language="ru", headline="Школа")
    await env.stored(v1)
    first = await env.meta_at(v1.id, 1)
    v2 = article("urn:narr:fix", RU + "\nИсправление: школа открылась в понедельник, а не во вторник.", version=2,
                 language="ru", headline="Школа (исправлено)")
    await env.stored(v2)
    second = await env.meta_at(v1.id, 2)
    assert second["sha256"] != first["sha256"] and second["duration_s"] > first["duration_s"]
    assert second["replaces"] == {"version": 1, "chunks": first["chunks"]}
    assert await env.chunks_of(v1.id, 1) == []
    assert len(await env.chunks_of(v1.id, 2)) == second["chunks"]

    # Version 1 arrives again late, then version 2 is re-delivered: nothing is regenerated.
    await env.stored(v1)
    await env.stored(v2)
    await eventually(lambda: asyncio.sleep(0, len(env.narrated(v1.id, "ready", 2)) >= 2), what="re-delivery handled")
    again = await read_meta(env.db, v1.id)
    assert again == second
    assert await env.chunks_of(v1.id, 1) == []
    assert not env.narrated(v1.id, "ready", 1)[1:], "the late version 1 published nothing"


@pytest.mark.parametrize("status", ["canceled", "withheld"])
async def test_kill_and_withhold_remove_the_audio(env, status):
    v1 = article(f"urn:narr:gone:{status}", EN, language="en", headline="Going")
    await env.stored(v1)
    meta = await env.meta_at(v1.id, 1)
    assert len(await env.chunks_of(v1.id, 1)) == meta["chunks"] >= 1
    await env.stored(article(f"urn:narr:gone:{status}", "", version=2, language="en", status=status))

    async def gone():
        return (await read_meta(env.db, v1.id)) is None and env.narrated(v1.id, "deleted", 2)
    await eventually(gone, timeout=60, what="audio deleted")
    assert await env.chunks_of(v1.id, 1) == []


async def test_embargoed_article_audio_carries_the_embargo(env):
    until = datetime(2030, 1, 1, tzinfo=UTC)
    a = article("urn:narr:embargo", EN, language="en", headline="Later", embargo=until)
    await env.stored(a)
    meta = await env.meta_at(a.id, 1)
    assert meta["embargoed_until"] == until


async def test_read_range_returns_the_exact_bytes(env):
    # Synthetic audio with small chunks: every boundary case of the arithmetic, on the real database.
    data = os.urandom(5_500)
    aid = "range0000000000a"
    meta = {"_id": aid, "version": 3, "size": len(data), "chunk_size": 1_000, "chunks": 6}
    await env.db[AUDIO_CHUNKS].insert_many(
        [{"_id": chunk_id(aid, 3, n), "data": Binary(data[n * 1000:(n + 1) * 1000])} for n in range(6)])
    for start, end in [(0, 5_499), (0, 0), (999, 1_000), (1_000, 1_999), (1, 4_998), (5_000, 5_499), (5_499, 5_499),
                       (2_345, 3_456)]:
        assert await read_range(env.db, meta, start, end) == data[start:end + 1], (start, end)
    with pytest.raises(ValueError):
        await read_range(env.db, meta, 10, 5_500)
    await env.db[AUDIO_CHUNKS].delete_one({"_id": chunk_id(aid, 3, 2)})
    assert await read_range(env.db, meta, 0, 1_999) == data[:2_000]
    with pytest.raises(AudioUnavailable):
        await read_range(env.db, meta, 1_500, 2_500)

    # And on narrated audio, across its first chunk boundary.
    a = article("urn:narr:range", "\n".join([EN] * 12), language="en", headline="Long")
    await env.stored(a)
    real = await env.meta_at(a.id, 1)
    whole = await env.audio_bytes(real)
    assert real["chunks"] >= 2, "the text should give more than one chunk"
    assert await read_range(env.db, real, 0, real["size"] - 1) == whole
    lo, hi = CHUNK_SIZE - 100, CHUNK_SIZE + 100
    assert await read_range(env.db, real, lo, hi) == whole[lo:hi + 1]


async def test_without_the_speech_tools_it_is_not_ready_and_consumes_nothing(env):
    port = free_port()
    settings = NarrationSettings(kafka=env.kafka, mongo=env.mongo, retry=FAST_RETRY, group_id=f"g2-{env.kafka.topic_stored}",
                                 ops_port=port, espeak="/nonexistent/espeak-ng")
    worker = create_worker(settings)
    task = asyncio.create_task(worker.serve(install_signals=False))
    try:
        async with aiohttp.ClientSession() as http:
            async def answered():
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status, await r.json()
            status, body = await eventually(answered, what="readyz answering")
            assert status == 503
            assert "espeak-ng" in body["reason"] and "not found" in body["reason"]
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
        assert not worker.runner.subscribed and not worker.consumer.assignment()
        assert not task.done()
    finally:
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)
    task.result()


async def test_a_new_version_with_the_same_text_copies_the_audio(env):
    v1 = article("urn:narr:same", KK, headline="Мектеп")
    await env.stored(v1)
    first = await env.meta_at(v1.id, 1)
    v2 = v1.model_copy(update={"version": 2, "section": Term(slug="society", name="Society"), "content_hash": "other"})
    await env.stored(v2, change="updated")
    second = await env.meta_at(v1.id, 2)
    assert second["sha256"] == first["sha256"] and second["text_sha256"] == first["text_sha256"]
    assert second["duration_s"] == first["duration_s"] and second["size"] == first["size"]
    assert await env.audio_bytes(second) == await env.audio_bytes({**first, "version": 2})
    assert await env.chunks_of(v1.id, 1) == []


async def test_stop_interrupts_a_narration_which_a_restart_does_again(run_id):
    base = KafkaSettings()
    kafka = base.model_copy(update={n: f"ns{run_id}." + getattr(base, n) for n in TOPIC_FIELDS})
    await ensure_topics(kafka, all_topics(kafka))
    mongo = MongoSettings(database=f"kazpost_ns{run_id}")
    client = make_client(mongo, app_name="tests")
    db = database(client, mongo)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    settings = NarrationSettings(kafka=kafka, mongo=mongo, retry=FAST_RETRY, group_id=f"g-{kafka.topic_stored}", ops_port=None)
    try:
        env = Env(kafka, mongo, db, producer, None)
        a = article("urn:narr:stop", "\n".join([RU] * 40), language="ru", headline="Длинная статья")
        first = create_worker(settings)
        task = asyncio.create_task(first.serve(install_signals=False))
        await env.stored(a)
        # The start-up check of the voices runs the speech tools too (synth.running > 0 then):
        # only once the consumer has its partitions is a running narration the article's own.
        await eventually(lambda: asyncio.sleep(0, first.runner.assigned and first.synth.running), timeout=60,
                         interval=0.02, what="the narration of the article to start")
        first.stop()
        await asyncio.wait_for(task, 60)  # a clean stop: an interrupted batch is not an error
        assert first.synth.running == 0
        assert await read_meta(db, a.id) is None, "stopped before the narration finished"

        second = create_worker(settings)
        task = asyncio.create_task(second.serve(install_signals=False))
        try:
            meta = await eventually(lambda: read_meta(db, a.id), timeout=120, what="the audio after the restart")
            assert meta["version"] == 1 and meta["duration_s"] > 60
        finally:
            second.stop()
            await asyncio.wait_for(task, 60)
    finally:
        await producer.stop()
        await client.drop_database(mongo.database)
        await client.close()
