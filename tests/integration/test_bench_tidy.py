"""The benchmark suite deletes the topics of its run when it ends, on the real broker, and only
those: another run's topics stay."""

from __future__ import annotations

import uuid

from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.common import drop_run_topics
from shared.kafka import connection_options, ensure_topics
from shared.settings import KafkaSettings
from tests.integration.helpers import eventually


async def topic_names(settings: KafkaSettings) -> set[str]:
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_run_deletes_its_own_topics_and_no_others(topics):  # the broker is up
    settings = KafkaSettings()
    run, other = uuid.uuid4().hex[:6], uuid.uuid4().hex[:6]
    mine = [f"b{run}-p1.articles.stored", f"b{run}-site.articles.linked"]
    theirs = [f"b{other}-p1.articles.stored", f"x{run}-p1.articles.stored"]
    await ensure_topics(settings, mine + theirs, partitions=1)

    async def made() -> bool:
        return set(mine + theirs) <= await topic_names(settings)
    await eventually(made, what="the topics created")
    assert await drop_run_topics(run) == sorted(mine)

    async def gone() -> bool:
        return not set(mine) & await topic_names(settings)
    await eventually(gone, what="the run's topics deleted")
    assert set(theirs) <= await topic_names(settings)
    assert await drop_run_topics(run) == []
    assert await drop_run_topics(other) == [theirs[0]]
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        await admin.delete_topics([theirs[1]])
    finally:
        await admin.close()
