"""Linking service wiring: ``create_worker(settings)`` and ``main()``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import pathlib
import time

import structlog
from aiohttp import web

from services.linking import snapshot
from services.linking.follower import IndexFollower
from services.linking.handlers import (
    LinkingState, flush_pending, handle_stored, handle_stored_batch, rebuild_from_database, search,
)
from services.linking.relatedness import RelatedIndex
from services.linking.settings import LinkingSettings
from services.linking.teasers import FileStore, MemoryStore, Store, Teasers
from shared.batching import BatchRunner
from shared.events import StoredEvent
from shared.kafka import Publisher, make_consumer
from shared.logs import configure_logging
from shared.mongo import database, init_database, make_client, ping
from shared.runtime import release_free_memory, tune_allocator
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


class _Follower:
    """Forwards to the follower, which exists only once the event loop runs."""

    follower: IndexFollower | None = None

    async def wait_past(self, partition: int, offset: int, timeout: float = 30.0) -> None:
        assert self.follower is not None
        await self.follower.wait_past(partition, offset, timeout)

    def affected(self, article_id: str, version: int) -> list[str]:
        return self.follower.affected(article_id, version) if self.follower else []


def create_worker(settings: LinkingSettings) -> Worker:
    client = make_client(settings.mongo, app_name=SERVICE)
    db = database(client, settings.mongo)

    def new_store() -> Store:
        return MemoryStore() if settings.teasers_in_memory else FileStore(settings.teaser_dir)

    state = LinkingState(index=RelatedIndex(k=settings.k, backlink_limit=settings.backlink_limit),
                         teasers=Teasers(store=new_store()))
    proxy = _Follower()
    tasks: list[asyncio.Task] = []
    snapshot_file = pathlib.Path(settings.snapshot_path) if settings.snapshot_path else None
    topic = settings.kafka.topic_stored

    def make_handler(publisher: Publisher):
        return functools.partial(handle_stored, state=state, follower=proxy, db=db, publisher=publisher, settings=settings)

    def save_snapshot() -> None:
        if snapshot_file is not None and proxy.follower is not None:
            started = time.perf_counter()
            size = snapshot.save(snapshot_file, state, dict(proxy.follower.positions), topic=topic)
            log.info("snapshot_saved", bytes=size, articles=len(state.teasers), seconds=round(time.perf_counter() - started, 2))

    async def snapshot_loop() -> None:
        saved_at: dict[int, int] = {}
        while True:
            await asyncio.sleep(settings.snapshot_interval_s)
            if proxy.follower is not None and proxy.follower.positions != saved_at:
                saved_at = dict(proxy.follower.positions)
                save_snapshot()

    async def on_start() -> None:
        await init_database(db)
        follower = IndexFollower(
            make_consumer(settings.kafka, [], group_id=None, client_id="linking-follower"), topic, state
        )
        await follower.connect()
        started = time.perf_counter()
        loaded = snapshot.load(snapshot_file, topic=topic, store=new_store()) if snapshot_file else None
        if loaded is not None:
            restored, positions = loaded
            state.teasers.close()
            state.index, state.teasers = restored.index, restored.teasers
            log.info("index_loaded", articles=len(state.teasers), seconds=round(time.perf_counter() - started, 2))
            worker.state_source = "snapshot"  # type: ignore[attr-defined]
        else:
            positions = await follower.end_offsets()  # taken before the scan: replay covers the gap
            count = await rebuild_from_database(state, db, batch_size=settings.rebuild_batch_size)
            state.index.trim()
            release_free_memory()  # the scan's temporaries
            log.info("index_rebuilt", articles=count, seconds=round(time.perf_counter() - started, 2))
            worker.state_source = "database"  # type: ignore[attr-defined]
        await follower.seek(positions)
        proxy.follower = follower
        tasks.append(asyncio.create_task(follower.run(), name="linking-follower"))
        if snapshot_file is not None:
            tasks.append(asyncio.create_task(snapshot_loop(), name="linking-snapshots"))

    async def on_close() -> None:
        if proxy.follower is not None:
            proxy.follower.stop()
        for task in tasks:
            if task.get_name() != "linking-follower":
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            save_snapshot()
        finally:
            if proxy.follower is not None:
                await proxy.follower.consumer.stop()
            await client.close()
            state.teasers.close()

    async def backlinks() -> None:
        """Rewrite the back-links whose time has come; at shutdown, all that are still pending."""
        deps = dict(state=state, db=db, publisher=worker.publisher, settings=settings)
        try:
            while True:
                await asyncio.sleep(1.0)
                try:
                    await flush_pending(**deps)
                except Exception as exc:  # noqa: BLE001 - the database or broker is away: retried in a second
                    log.warning("backlink_flush_failed", pending=len(state.pending), error=repr(exc)[:300])
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(flush_pending(**deps, everything=True), timeout=15)
            except Exception as exc:  # noqa: BLE001 - leaving anyway: those lists stay as they were
                log.warning("backlinks_left_pending", pending=len(state.pending), error=repr(exc)[:300])
            raise

    async def ready() -> str | None:
        await ping(db)
        if not tasks or tasks[0].done():
            return "the index follower is not running"
        return None

    worker = Worker(
        service=SERVICE,
        kafka=settings.kafka,
        retry=settings.retry,
        topics=[topic],
        group_id=settings.group_id,
        make_handler=make_handler,
        ops_host=settings.ops_host,
        ops_port=settings.ops_port,
        ready=ready,
        on_start=on_start,
        on_close=on_close,
        extra_routes=search_routes(state),
        background=[backlinks],
    )
    # Whole fetched batches: each related list they change is written once (shared/batching.py);
    # a batch that fails falls back to handle_stored message by message.
    worker.runner = BatchRunner.wrap(worker.runner, functools.partial(
        handle_stored_batch, state=state, follower=proxy, db=db, publisher=worker.publisher, settings=settings),
        StoredEvent)
    worker.state = state  # type: ignore[attr-defined]  # exposed for tests and the operator CLI
    return worker


def main() -> None:
    settings = LinkingSettings()
    tune_allocator()
    configure_logging(settings.log, service=SERVICE)
    asyncio.run(serve(settings))


async def serve(settings: LinkingSettings) -> None:
    """Run until SIGTERM/SIGINT (Kafka clients must be created inside the event loop)."""
    await create_worker(settings).serve()
