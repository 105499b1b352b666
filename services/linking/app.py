"""Linking service wiring: ``create_worker(settings)`` and ``main()``."""

from __future__ import annotations

import asyncio
import functools
import time

import structlog
from aiohttp import web

from services.linking.handlers import LinkingState, handle_stored, rebuild_from_database, search
from services.linking.relatedness import RelatedIndex
from services.linking.settings import LinkingSettings
from shared.kafka import Publisher
from shared.logs import configure_logging
from shared.mongo import database, init_database, make_client, ping
from shared.worker import Worker

SERVICE = "linking"
log = structlog.get_logger(SERVICE)


def search_routes(state: LinkingState) -> list[web.RouteDef]:
    async def search_handler(request: web.Request) -> web.Response:
        query = request.query.get("q", "")[:500]
        language = request.query.get("lang") or None
        try:
            limit = min(max(int(request.query.get("limit", "10")), 1), 100)
            offset = min(max(int(request.query.get("offset", "0")), 0), 10_000)
        except ValueError:
            return web.json_response({"error": "limit and offset must be integers"}, status=400)
        return web.json_response(search(state, query, language=language, limit=limit, offset=offset))

    return [web.get("/internal/search", search_handler)]


def create_worker(settings: LinkingSettings) -> Worker:
    client = make_client(settings.mongo, app_name=SERVICE)
    db = database(client, settings.mongo)
    state = LinkingState(index=RelatedIndex(k=settings.k, backlink_limit=settings.backlink_limit))

    def make_handler(publisher: Publisher):
        return functools.partial(handle_stored, state=state, db=db, publisher=publisher, settings=settings)

    async def on_start() -> None:
        await init_database(db)
        started = time.perf_counter()
        count = await rebuild_from_database(state, db, batch_size=settings.rebuild_batch_size)
        log.info("index_rebuilt", articles=count, seconds=round(time.perf_counter() - started, 2))

    async def ready() -> str | None:
        await ping(db)
        return None

    worker = Worker(
        service=SERVICE,
        kafka=settings.kafka,
        retry=settings.retry,
        topics=[settings.kafka.topic_stored],
        group_id=settings.group_id,
        make_handler=make_handler,
        ops_host=settings.ops_host,
        ops_port=settings.ops_port,
        ready=ready,
        on_start=on_start,
        on_close=client.close,
        extra_routes=search_routes(state),
    )
    worker.state = state  # type: ignore[attr-defined]  # exposed for tests and the operator CLI
    return worker


def main() -> None:
    settings = LinkingSettings()
    configure_logging(settings.log, service=SERVICE)
    asyncio.run(serve(settings))


async def serve(settings: LinkingSettings) -> None:
    """Run until SIGTERM/SIGINT (Kafka clients must be created inside the event loop)."""
    await create_worker(settings).serve()
