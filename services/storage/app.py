"""Storage service wiring: ``create_worker(settings)`` and ``main()``."""

from __future__ import annotations

import asyncio
import functools

from shared.batching import BatchRunner
from services.storage.handlers import KnownDocuments, handle_batch, handle_ingested
from services.storage.settings import StorageSettings
from shared.events import IngestedEvent
from shared.kafka import Publisher
from shared.logs import configure_logging
from shared.mongo import database, init_database, make_client, ping
from shared.runtime import tune_allocator
from shared.worker import Worker

SERVICE = "storage"
# Messages per fetched batch: larger batches touch each listing bucket fewer times per article.
BATCH_SIZE = 500


def create_worker(settings: StorageSettings) -> Worker:
    client = make_client(settings.mongo, app_name=SERVICE)
    db = database(client, settings.mongo)
    known = KnownDocuments()  # listing documents seen to exist: no insert attempt for them

    def make_handler(publisher: Publisher):
        return functools.partial(handle_ingested, db=db, publisher=publisher, settings=settings, known=known)

    async def ready() -> str | None:
        await ping(db)
        return None

    worker = Worker(
        service=SERVICE,
        kafka=settings.kafka,
        retry=settings.retry,
        topics=[settings.kafka.topic_ingested],
        group_id=settings.group_id,
        make_handler=make_handler,
        ops_host=settings.ops_host,
        ops_port=settings.ops_port,
        ready=ready,
        on_start=lambda: init_database(db),
        on_close=client.close,
        max_records=BATCH_SIZE,
    )
    # Whole batches at once (few database round trips per batch); see shared/batching.py.
    worker.runner = BatchRunner.wrap(worker.runner, functools.partial(
        handle_batch, db=db, publisher=worker.publisher, settings=settings, known=known), IngestedEvent)
    return worker


def main() -> None:
    settings = StorageSettings()
    tune_allocator()
    configure_logging(settings.log, service=SERVICE)
    asyncio.run(serve(settings))


async def serve(settings: StorageSettings) -> None:
    """Run until SIGTERM/SIGINT (Kafka clients must be created inside the event loop)."""
    await create_worker(settings).serve()
