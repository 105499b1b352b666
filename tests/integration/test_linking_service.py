"""linking against the real broker and database: restart from its snapshot without a rebuild,
and two replicas sharing the partitions while each indexes the whole corpus."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from services.linking.app import create_worker
from services.linking.settings import LinkingSettings
from shared.events import Article, ArticleStored, StoredEvent, Term, article_id_for
from shared.kafka import all_topics, ensure_topics
from shared.mongo import RELATED, database, make_client
from shared.packed import unpack
from shared.settings import TOPIC_FIELDS, KafkaSettings, MongoSettings
from tests.integration.conftest import FAST_RETRY
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

STORIES = {
    "rail": "Astana Almaty high speed railway Temir Zholy trains passengers tickets carriages timetable",
    "flood": "Petropavlovsk flood Ishim river dam evacuation villages rescuers water level spring",
    "space": "Baikonur cosmodrome Soyuz rocket launch satellite KazSat orbit cosmonauts Roscosmos",
}


FILLER = ("minister officials said week region government plans budget company workers city residents "
          "schools hospital energy market prices grain exports court judge election parliament museum "
          "festival weather winter roads airport bank loans farmers harvest students teachers police").split()


def article(uri: str, story: str, n: int) -> Article:
    """Articles of one story share its key words; the rest of each text differs (not duplicates)."""
    import random

    t = datetime(2026, 11, 27, 8, tzinfo=UTC) + timedelta(minutes=n)
    rng = random.Random(n)
    key = STORIES[story].split()
    sentences = [" ".join(rng.sample(key, 5) + rng.sample(FILLER, 7)) for _ in range(6)]
    text = ". ".join(sentences) + "."
    return Article(
        id=article_id_for(uri), uri=uri, version=1, version_created=t, first_created=t, pub_status="usable",
        language="en", language_tag="en", headline=f"{story.title()} story {n}", standfirst=None,
        body_html=f"<p>{text}</p>", body_text=text, section=Term(slug="news", name="News"), slug=f"{story}-{n}",
        content_hash=f"h{n}",
    )


async def publish_stored(producer: AIOKafkaProducer, topic: str, a: Article) -> None:
    event = StoredEvent(producer="test", correlation_id="c", payload=ArticleStored(article=a, change="created"))
    await producer.send_and_wait(topic, event.to_bytes(), key=a.id.encode())


@pytest.fixture
async def isolated(run_id, request):
    """Topics and a database of this test's own."""
    suffix = f"{run_id}{request.node.name[-6:]}".replace("[", "").replace("]", "")
    base = KafkaSettings()
    kafka = base.model_copy(update={n: f"l{suffix}." + getattr(base, n) for n in TOPIC_FIELDS})
    await ensure_topics(kafka, all_topics(kafka))
    mongo = MongoSettings(database=f"kazpost_l{suffix}")
    client = make_client(mongo, app_name="tests")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    yield kafka, mongo, database(client, mongo), producer
    await producer.stop()
    await client.drop_database(mongo.database)
    await client.close()


async def run(worker):
    task = asyncio.create_task(worker.serve(install_signals=False))
    for _ in range(300):
        if worker.runner.assigned or task.done():
            break
        await asyncio.sleep(0.1)
    if task.done():
        task.result()
    return task


async def stop(worker, task):
    worker.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)


async def related_ids(db, article_id: str) -> list[str]:
    doc = await db[RELATED].find_one({"_id": article_id})
    return [i["teaser"]["id"] for i in unpack((doc or {}).get("items"))]


async def test_restart_loads_the_snapshot_instead_of_rebuilding(isolated, tmp_path):
    kafka, mongo, db, producer = isolated
    settings = LinkingSettings(kafka=kafka, mongo=mongo, retry=FAST_RETRY, group_id=f"g-{kafka.topic_stored}",
                               ops_port=None, snapshot_path=str(tmp_path / "linking.snapshot"))
    first = create_worker(settings)
    task = await run(first)
    assert first.state_source == "database"
    arts = [article(f"urn:t:{i}", story, i) for i, story in enumerate(["rail", "flood", "rail", "space"])]
    for a in arts:
        await publish_stored(producer, kafka.topic_stored, a)

    async def linked():
        return arts[0].id in await related_ids(db, arts[2].id)
    await eventually(linked, what="rail stories linked")
    await stop(first, task)
    assert (tmp_path / "linking.snapshot").stat().st_size > 0

    # The articles exist only in the snapshot (no storage ran: the articles collection is empty),
    # so a rebuild from the database would start empty.
    second = create_worker(settings)
    task = await run(second)
    try:
        assert second.state_source == "snapshot"
        assert {a.id for a in arts} <= set(second.state.teasers)
        new = article("urn:t:9", "rail", 9)
        await publish_stored(producer, kafka.topic_stored, new)

        async def linked_new():
            ids = await related_ids(db, new.id)
            return arts[0].id in ids or arts[2].id in ids
        await eventually(linked_new, what="the new article linked to articles known only from the snapshot")
    finally:
        await stop(second, task)


async def test_two_replicas_share_partitions_and_link_across_them(isolated):
    kafka, mongo, db, producer = isolated
    settings = LinkingSettings(kafka=kafka, mongo=mongo, retry=FAST_RETRY, group_id=f"g-{kafka.topic_stored}", ops_port=None)
    workers = [create_worker(settings), create_worker(settings)]
    tasks = [await run(w) for w in workers]
    try:
        async def split():
            return all(w.consumer.assignment() for w in workers)
        await eventually(split, what="both replicas to own partitions")
        arts = [article(f"urn:r:{i}", story, i) for i, story in enumerate(["rail", "flood", "space"] * 4)]
        for a in arts:
            await publish_stored(producer, kafka.topic_stored, a)
        partitions = {hash(a.id) for a in arts}
        assert partitions  # ids spread over partitions by the key hash

        async def all_linked():
            for a in arts:
                story = a.slug.split("-")[0]
                mates = {b.id for b in arts if b.slug.startswith(story) and b.id != a.id}
                if not mates & set(await related_ids(db, a.id)):
                    return False
            return True
        await eventually(all_linked, timeout=60, what="every article linked to its story mates on any partition")
        for w in workers:
            assert len(w.state.teasers) == len(arts), "each replica indexes the whole corpus"
    finally:
        for w, t in zip(workers, tasks):
            await stop(w, t)
