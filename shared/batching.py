"""Batch processing on top of the shared consumer loop (:class:`shared.kafka.ConsumerRunner`).

The shared loop handles a fetched batch message by message, then commits.  A batch runner
instead buffers the batch's messages (``_process``) and hands them to a batch handler all at
once just before the loop commits (``_commit_processed``), so the commit still follows every
side effect and every acknowledged event, on the normal path, on a rebalance and at shutdown.
Storage stores a batch with few database round trips; linking writes each related list a batch
changes once.

Failure handling keeps the per-message guarantees:
- a message that is not a valid event is dead-lettered at once, on its own;
- a transient failure (database or broker timeout) retries the whole batch with backoff (the
  batch is idempotent);
- anything else, or retries used up, falls back to the per-message handler for each message
  of the batch, which retries, isolates and dead-letters a poison message exactly as before.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiokafka import TopicPartition

from shared import metrics
from shared.events import Envelope
from shared.kafka import ConsumerRunner, Message, PermanentError, decode_event

log = structlog.get_logger("batching")

BatchHandler = Callable[[Sequence[tuple[Message, Any]]], Awaitable[object]]


class BatchRunner(ConsumerRunner):
    """A :class:`ConsumerRunner` that hands each fetched batch to ``batch_handler``."""

    batch_handler: BatchHandler
    model: type[Envelope]
    _buffer: list[Message]

    @classmethod
    def wrap(cls, runner: ConsumerRunner, batch_handler: BatchHandler, model: type[Envelope]) -> BatchRunner:
        """The same runner (consumer, producers, retry settings, state), handing batches of
        ``model`` events to ``batch_handler``."""
        new = cls.__new__(cls)
        new.__dict__.update(runner.__dict__)
        new.batch_handler = batch_handler
        new.model = model
        new._buffer = []
        return new

    async def _process(self, msg: Message) -> None:
        # Called by the shared loop for each record, under its lock: only collect.
        self._buffer.append(msg)

    async def _commit_processed(self, tps: list[TopicPartition]) -> None:
        await self.flush()
        await super()._commit_processed(tps)

    async def flush(self) -> None:
        """Handle what was collected (before any commit)."""
        if not self._buffer:
            return
        messages, self._buffer = self._buffer, []
        started = time.perf_counter()
        valid: list[tuple[Message, Any]] = []
        for msg in messages:
            try:
                valid.append((msg, decode_event(self.model, msg)))
            except PermanentError:
                await super()._process(msg)  # dead-letters it with the reason, like before
        if valid:
            await self._run_batch(valid)
        elapsed = time.perf_counter() - started
        for msg, _ in valid:
            metrics.HANDLER_SECONDS.labels(self.service, msg.topic).observe(elapsed)
        log.info("batch_handled", messages=len(messages), seconds=round(elapsed, 3))

    async def _run_batch(self, valid: list[tuple[Message, Any]]) -> None:
        attempt = 0
        delay = self.retry.initial_backoff_s
        while True:
            attempt += 1
            try:
                await self.batch_handler(valid)
            except Exception as exc:  # noqa: BLE001 - classified below
                transient = self.is_transient(exc)
                if transient and attempt < self.retry.max_attempts:
                    log.warning("batch_retry", attempt=attempt, messages=len(valid), error=repr(exc)[:500])
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, self.retry.max_backoff_s)
                    continue
                log.warning("batch_failed_one_by_one", attempts=attempt, messages=len(valid), transient=transient,
                            error=repr(exc)[:500])
                for msg, _ in valid:
                    await super()._process(msg)
                return
            for msg, _ in valid:
                metrics.MESSAGES_CONSUMED.labels(self.service, msg.topic, "ok").inc()
            return
