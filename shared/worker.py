"""A consumer service's wiring: producer + consumer + runner + ops server, started and
stopped in the right order.

Shutdown order (graceful): stop fetching → finish the batch in hand → await produced events →
commit offsets → close the consumer → flush and close the producer → close other clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web

from shared.kafka import (ConsumerRunner, Handler, Publisher, ResilientProducer, StoppedWithoutCommit, make_consumer,
                          make_producer)
from shared.runtime import ReadyCheck, install_stop_signals, start_ops_server
from shared.settings import KafkaSettings, RetrySettings

log = structlog.get_logger("worker")

HandlerFactory = Callable[[Publisher], Handler]


class Worker:
    def __init__(
        self,
        *,
        service: str,
        kafka: KafkaSettings,
        retry: RetrySettings,
        topics: Sequence[str],
        group_id: str,
        make_handler: HandlerFactory,
        ops_host: str = "127.0.0.1",
        ops_port: int | None = None,
        ready: ReadyCheck | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
        max_records: int = 200,
        extra_routes: list[web.RouteDef] | None = None,
        background: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.service = service
        self.producer = ResilientProducer(lambda: make_producer(kafka, service), service=service)
        self.publisher = Publisher(self.producer, service=service)
        # Subscribed (with the rebalance listener) by the runner, before start: subscribing twice
        # makes aiokafka rejoin the group and its fetcher fail.
        self.consumer = make_consumer(kafka, [], group_id=group_id, client_id=service)
        self.runner = ConsumerRunner(
            self.consumer,
            topics,
            make_handler(self.publisher),
            service=service,
            dlq_producer=self.producer,
            publisher=self.publisher,
            retry=retry,
            max_records=max_records,
        )
        self._ops_host = ops_host
        self._ops_port = ops_port
        self._ready_extra = ready
        self._on_start = on_start
        self._on_close = on_close
        self._extra_routes = extra_routes or []
        self._background = list(background)
        self._tasks: list[asyncio.Task] = []
        self._ops: web.AppRunner | None = None
        self._started = False

    async def ready(self) -> str | None:
        if not self._started:
            return "starting"
        if self.runner.stopping:
            return "stopping"
        if self._ready_extra is not None:
            return await self._ready_extra()
        return None

    async def start(self) -> None:
        if self._on_start is not None:
            await self._on_start()
        await self.producer.start()
        self.runner.subscribe()
        await self.consumer.start()
        if self._ops_port is not None:
            self._ops = await start_ops_server(self._ops_host, self._ops_port, self.ready, self._extra_routes)
        self._tasks = [asyncio.create_task(job()) for job in self._background]
        self._started = True
        log.info("worker_started", service=self.service, ops_port=self._ops_port)

    def stop(self) -> None:
        self.runner.stop()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.consumer.stop()
        finally:
            try:
                await self.producer.stop()  # flushes what is queued
            finally:
                if self._ops is not None:
                    await self._ops.cleanup()
                if self._on_close is not None:
                    await self._on_close()
        log.info("worker_closed", service=self.service)

    async def serve(self, *, install_signals: bool = True) -> None:
        """Start, run until stopped (SIGTERM/SIGINT or :meth:`stop`), then close."""
        await self.start()
        if install_signals:
            install_stop_signals(self.stop)
        try:
            await self.runner.run()
        except StoppedWithoutCommit as exc:
            # Stopping with the broker away: leave without the last commit rather than hang; what
            # was not committed is processed again after the restart (idempotently).
            log.warning("stopped_without_final_commit", service=self.service, error=str(exc)[:300])
        finally:
            await self.close()

