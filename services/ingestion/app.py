"""Ingestion service wiring: ``create_worker(settings)`` and ``main()``."""

from __future__ import annotations

import asyncio
import functools

from services.ingestion.handlers import RecentlySeen, handle_upstream
from services.ingestion.settings import IngestionSettings
from shared.kafka import Publisher
from shared.logs import configure_logging
from shared.runtime import tune_allocator
from shared.worker import Worker

SERVICE = "ingestion"


def create_worker(settings: IngestionSettings) -> Worker:
    seen = RecentlySeen(settings.dedupe_cache_size)

    def make_handler(publisher: Publisher):
        return functools.partial(handle_upstream, publisher=publisher, settings=settings, seen=seen)

    return Worker(
        service=SERVICE,
        kafka=settings.kafka,
        retry=settings.retry,
        topics=[settings.kafka.topic_upstream],
        group_id=settings.group_id,
        make_handler=make_handler,
        ops_host=settings.ops_host,
        ops_port=settings.ops_port,
    )


def main() -> None:
    settings = IngestionSettings()
    tune_allocator()
    configure_logging(settings.log, service=SERVICE)
    asyncio.run(serve(settings))


async def serve(settings: IngestionSettings) -> None:
    """Run until SIGTERM/SIGINT (Kafka clients must be created inside the event loop)."""
    await create_worker(settings).serve()
