"""Storage service wiring: ``create_worker(settings)`` and ``main()``."""

from __future__ import annotations

import asyncio
import functools

from services.storage.handlers import handle_ingested
from services.storage.settings import StorageSettings
from shared.kafka import Publisher
from shared.logs import configure_logging
from shared.mongo import database, init_database, make_client, ping
from shared.worker import Worker

SERVICE = "storage"


def create_worker(settings: StorageSettings) -> Worker:
    client = make_client(settings.mongo, app_name=SERVICE)
    db = database(client, settings.mongo)

    def make_handler(publisher: Publisher):
        return functools.partial(handle_ingested, db=db, publisher=publisher, settings=settings)

    async def ready() -> str | None:
        await ping(db)
        return None

    return Worker(
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
    )


def main() -> None:
    settings = StorageSettings()
    configure_logging(settings.log, service=SERVICE)
    asyncio.run(serve(settings))


async def serve(settings: StorageSettings) -> None:
    """Run until SIGTERM/SIGINT (Kafka clients must be created inside the event loop)."""
    await create_worker(settings).serve()
