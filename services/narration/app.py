"""Narration service wiring: ``create_worker(settings)`` and ``main()``.

Differences from the other consumers, because one message can take seconds of CPU:
- the partitions of a fetched batch are handled in parallel (each in order), with at most
  ``concurrency`` narrations running, and batches are small (``batch_size``);
- while a batch runs, the consumer polls with its partitions paused, so the group does not
  drop it for exceeding ``max.poll.interval.ms``; SIGTERM interrupts the batch (the unfinished
  messages are not committed and are narrated again after the restart);
- without espeak-ng/opusenc (or a configured voice) the service does not join the consumer
  group: ``/readyz`` answers 503 with the reason and the tools are checked again every
  ``TOOLS_RECHECK_S`` seconds, instead of dead-lettering every article.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from services.narration.handlers import SERVICE, handle_stored
from services.narration.settings import NarrationSettings
from services.narration.tts import Synthesizer
from shared import metrics
from shared.kafka import ConsumerRunner, Message, Publisher
from shared.logs import configure_logging
from shared.mongo import database, init_database, make_client, ping
from shared.runtime import tune_allocator
from shared.worker import Worker

log = structlog.get_logger(SERVICE)
TOOLS_RECHECK_S = 30.0
KEEPALIVE_S = 5.0


class NarrationRunner(ConsumerRunner):
    """:class:`ConsumerRunner` with partitions in parallel, a poll keep-alive during long
    batches, and no group membership while the speech tools are missing."""

    def __init__(self, *args, synth: Synthesizer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.synth = synth
        self.subscribed = False

    def subscribe(self) -> None:
        if self.synth.problem is None and not self.subscribed:
            super().subscribe()
            self.subscribed = True

    async def _wait_for_tools(self) -> None:
        while not self.subscribed and not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=TOOLS_RECHECK_S)
            if self.stopping:
                return
            if await self.synth.check() is None:
                log.info("narration_tools_found")
                self.subscribe()
            else:
                log.error("narration_tools_missing", problem=self.synth.problem)

    async def _partition(self, tp: TopicPartition, records) -> None:
        for record in records:
            msg = Message(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
                          value=record.value, headers={k: v for k, v in (record.headers or ())},
                          timestamp_ms=record.timestamp)
            await self._process(msg)
            self._processed[tp] = record.offset + 1
        metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(
            max(0, (self.consumer.highwater(tp) or 0) - self._processed.get(tp, 0)))

    async def _keepalive(self) -> None:
        """Poll with every partition paused: resets the poll timer and fetches nothing (records
        already buffered are dropped and fetched again later, the position does not move)."""
        assigned = list(self.consumer.assignment())
        self.consumer.pause(*assigned)
        try:
            await self.consumer.getmany(timeout_ms=0)
        except KafkaError as exc:
            log.warning("keepalive_poll_failed", error=repr(exc))
        finally:
            still = self.consumer.assignment()
            self.consumer.resume(*[tp for tp in assigned if tp in still])

    async def run(self) -> None:
        await self._wait_for_tools()
        log.info("consumer_started", topics=self.topics)
        while not self._stop.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=300, max_records=self.max_records)
            except KafkaError as exc:
                log.warning("fetch_failed", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            self.assigned = bool(self.consumer.assignment())
            self.last_batch_at = time.monotonic()
            if not batch:
                continue
            async with self._lock:
                work = asyncio.ensure_future(asyncio.gather(*(self._partition(tp, recs) for tp, recs in batch.items())))
                stopping = asyncio.ensure_future(self._stop.wait())
                interrupted = False
                try:
                    while not work.done():
                        await asyncio.wait({work, stopping}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
                        if stopping.done() and not work.done():
                            # Stop now rather than after the batch: what is unfinished is not
                            # committed and is narrated again (idempotently) after the restart.
                            # A cancelled gather() ends with CancelledError as its exception, not
                            # as cancelled(): wait for it without raising, and do not re-raise it.
                            work.cancel()
                            await asyncio.wait({work})
                            interrupted = True
                            log.info("batch_interrupted_by_stop")
                            break
                        if not work.done():
                            await self._keepalive()
                finally:
                    stopping.cancel()
                if interrupted:
                    with contextlib.suppress(asyncio.CancelledError):
                        work.result()  # retrieved, so it is not reported as never retrieved
                else:
                    work.result()
                await self._commit_processed(list(batch))
        async with self._lock:
            await self._commit_processed(list(self._processed))
        log.info("consumer_stopped")


def create_worker(settings: NarrationSettings) -> Worker:
    client = make_client(settings.mongo, app_name=SERVICE)
    db = database(client, settings.mongo)
    synth = Synthesizer(settings)
    topics = [settings.kafka.topic_stored]

    def make_handler(publisher: Publisher):
        return functools.partial(handle_stored, db=db, publisher=publisher, synth=synth, settings=settings)

    async def on_start() -> None:
        await init_database(db)  # creates the audio collections too
        if await synth.check() is not None:
            log.error("narration_tools_missing", problem=synth.problem,
                      hint="not consuming until this is fixed; /readyz answers 503")

    async def ready() -> str | None:
        await ping(db)
        return synth.problem

    worker = Worker(
        service=SERVICE,
        kafka=settings.kafka,
        retry=settings.retry,
        topics=topics,
        group_id=settings.group_id,
        make_handler=make_handler,
        ops_host=settings.ops_host,
        ops_port=settings.ops_port,
        ready=ready,
        on_start=on_start,
        on_close=client.close,
        max_records=settings.batch_size,
    )
    # The worker's consumer and producer, with narration's runner in place of the plain one.
    worker.runner = NarrationRunner(
        worker.consumer, topics, make_handler(worker.publisher), service=SERVICE, dlq_producer=worker.producer,
        publisher=worker.publisher, retry=settings.retry, max_records=settings.batch_size, synth=synth)
    worker.synth = synth  # type: ignore[attr-defined]  # exposed for tests
    return worker


def main() -> None:
    settings = NarrationSettings()
    tune_allocator()
    configure_logging(settings.log, service=SERVICE)
    asyncio.run(serve(settings))


async def serve(settings: NarrationSettings) -> None:
    """Run until SIGTERM/SIGINT (Kafka clients must be created inside the event loop)."""
    await create_worker(settings).serve()
