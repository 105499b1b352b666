"""Kafka runtime shared by every service.

- :func:`make_producer`: idempotent producer (acks=all), batching (never await each send).
- :class:`ResilientProducer`: that producer, replaced by a new one when it has died (an
  idempotent producer stops for good on some broker answers, e.g. after a long outage).
- :class:`Publisher`: queues sends; :meth:`Publisher.drain` awaits their acknowledgements.
- :class:`ConsumerRunner`: the consumer loop: fetch a batch, run the handler per message with
  bounded retries for transient errors, dead-letter poison messages with the reason in headers,
  wait for every produced event to be acknowledged, then commit. Stops gracefully.
- :func:`ensure_topics`: explicit topic creation (brokers run with auto-creation off).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (InvalidProducerEpoch, KafkaError, OutOfOrderSequenceNumber, ProducerFenced,
                             TopicAlreadyExistsError, UnknownProducerId)

from pydantic import ValidationError

from shared import metrics
from shared.events import Envelope
from shared.settings import KafkaSettings, RetrySettings

log = structlog.get_logger("kafka")

HEADER_CORRELATION = "correlation_id"
HEADER_EVENT_TYPE = "event_type"
HEADER_EVENT_ID = "event_id"
DLQ_REASON = "dlq.reason"
DLQ_ERROR = "dlq.error_type"
DLQ_TOPIC = "dlq.source_topic"
DLQ_PARTITION = "dlq.source_partition"
DLQ_OFFSET = "dlq.source_offset"
DLQ_ATTEMPTS = "dlq.attempts"
DLQ_FAILED_AT = "dlq.failed_at"
DLQ_SERVICE = "dlq.service"


class PermanentError(Exception):
    """The message can never be processed (invalid input): dead-letter it at once."""


class TransientError(Exception):
    """A dependency failed in a way that may pass (timeout, connection refused): retry."""


class StoppedWithoutCommit(Exception):
    """A stop was asked for and the final acknowledgements or commit kept failing past the
    runner's ``stop_grace_s`` (the broker is away): the runner gives up instead of hanging. The
    uncommitted messages are processed again after the restart (idempotently)."""


@dataclass(slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int = 0

    @property
    def correlation_id(self) -> str:
        raw = self.headers.get(HEADER_CORRELATION)
        if raw:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            if 0 < len(text) <= 200 and text.isprintable():
                return text
        return uuid.uuid4().hex


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Where and how to connect: bootstrap servers and security (for every kind of client)."""
    options: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                               "security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    if settings.security_protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(cafile=settings.ssl_cafile)
    return options


def make_producer(settings: KafkaSettings, client_id: str, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = dict(
        **connection_options(settings),
        client_id=f"{settings.client_id_prefix}-{client_id}",
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_size,
        max_request_size=settings.max_request_size,
        request_timeout_ms=settings.request_timeout_ms,
    )
    options.update(overrides)
    return AIOKafkaProducer(**options)


# Delivery errors after which an idempotent producer's sequence numbers no longer match the
# broker's: every later batch to that partition fails the same way (aiokafka does not reset the
# producer id as the Java client does), so the producer must be replaced.
BROKEN_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)


class ResilientProducer:
    """An idempotent producer that replaces itself once it cannot deliver any more.

    aiokafka's idempotent producer does not recover from some broker answers: after the broker
    was away longer than the delivery timeout, batches fail with ``OutOfOrderSequenceNumber``
    (and every later batch to that partition too), and when its sender task fails, later sends
    are queued but never delivered. This wrapper watches the deliveries and the sender; before
    the next send or flush it closes such a producer and starts a new one (a new producer id).
    Deliveries that failed are sent again by :class:`Publisher` and the dead-letter path, so
    nothing is skipped; a message the broker may have written before the failure can arrive
    twice, which consumers treat as a re-delivery (their effects are idempotent)."""

    def __init__(self, factory: Callable[[], AIOKafkaProducer], *, service: str, stop_timeout_s: float = 10.0) -> None:
        self._factory = factory
        self._service = service
        self._stop_timeout_s = stop_timeout_s
        self._inner: AIOKafkaProducer | None = None
        self._broken: tuple[AIOKafkaProducer, BaseException] | None = None  # a producer that failed a delivery for good
        self._lock = asyncio.Lock()
        self.replacements = 0

    @staticmethod
    def _sender_task(producer: AIOKafkaProducer) -> asyncio.Task | None:
        return getattr(getattr(producer, "_sender", None), "sender_task", None)

    @classmethod
    def is_dead(cls, producer: AIOKafkaProducer) -> bool:
        task = cls._sender_task(producer)
        return task is not None and task.done()

    def _usable(self, producer: AIOKafkaProducer | None) -> bool:
        return producer is not None and not self.is_dead(producer) and (self._broken is None or self._broken[0] is not producer)

    def _watch(self, producer: AIOKafkaProducer, fut: asyncio.Future) -> None:
        def done(f: asyncio.Future) -> None:
            if not f.cancelled() and isinstance(f.exception(), BROKEN_PRODUCER_ERRORS) and self._broken is None:
                self._broken = (producer, f.exception())  # type: ignore[assignment]
        fut.add_done_callback(done)

    async def start(self) -> None:
        async with self._lock:
            if self._inner is None:
                self._inner = await self._started()

    async def _started(self) -> AIOKafkaProducer:
        producer = self._factory()
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

    async def _alive(self) -> AIOKafkaProducer:
        inner = self._inner
        if self._usable(inner):
            return inner  # type: ignore[return-value]
        async with self._lock:
            if self._usable(self._inner):
                return self._inner  # type: ignore[return-value]
            old, self._inner = self._inner, None
            if old is not None:
                task = self._sender_task(old)
                error = task.exception() if self.is_dead(old) and not task.cancelled() else None  # type: ignore[union-attr]
                if self._broken is not None and self._broken[0] is old:
                    error = self._broken[1]
                self._broken = None
                log.warning("producer_replaced", service=self._service, error=repr(error))
                metrics.PRODUCER_REPLACED.labels(self._service).inc()
                self.replacements += 1
                with contextlib.suppress(Exception):  # its queue can never drain: do not wait for it
                    await asyncio.wait_for(old.stop(), self._stop_timeout_s)
            self._inner = await self._started()
            return self._inner

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   headers: Sequence[tuple[str, bytes]] | None = None) -> asyncio.Future:
        producer = await self._alive()
        fut = await producer.send(topic, value=value, key=key, headers=headers)
        self._watch(producer, fut)
        return fut

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            headers: Sequence[tuple[str, bytes]] | None = None) -> Any:
        return await (await self.send(topic, value=value, key=key, headers=headers))

    async def flush(self) -> None:
        await (await self._alive()).flush()

    @property
    def client(self):
        """The current producer's cluster client (metadata, readiness checks)."""
        if self._inner is None:
            raise RuntimeError("producer not started")
        return self._inner.client

    async def stop(self) -> None:
        async with self._lock:
            inner, self._inner = self._inner, None
        if inner is None:
            return
        if not self._usable(inner):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(inner.stop(), self._stop_timeout_s)
        else:
            # Flushes what is queued; bounded, since with the broker away it would wait for every
            # batch to expire. What is unsent belongs to messages not committed (sent again later).
            try:
                await asyncio.wait_for(inner.stop(), 3 * self._stop_timeout_s)
            except asyncio.TimeoutError:
                log.warning("producer_stop_timed_out", service=self._service)


def make_consumer(
    settings: KafkaSettings, topics: Sequence[str], *, group_id: str | None, client_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    options: dict[str, Any] = dict(
        **connection_options(settings),
        client_id=f"{settings.client_id_prefix}-{client_id}",
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.max_request_size,
        fetch_max_bytes=settings.max_request_size,  # bounds a fetch (and the memory it takes)
        request_timeout_ms=settings.request_timeout_ms,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=300_000,
    )
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def header_list(headers: dict[str, str | bytes]) -> list[tuple[str, bytes]]:
    return [(k, v if isinstance(v, bytes) else str(v).encode("utf-8")) for k, v in headers.items()]


_Send = tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]  # topic, value, key, headers


class Publisher:
    """Queues sends on an idempotent producer; ``drain()`` awaits all acknowledgements."""

    def __init__(self, producer: AIOKafkaProducer | ResilientProducer, *, service: str) -> None:
        self._producer = producer
        self._service = service
        self._pending: list[tuple[asyncio.Future, _Send]] = []
        self._unsent: list[_Send] = []  # sends whose delivery failed: sent again by drain()

    async def publish(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        headers: dict[str, str | bytes] | None = None,
    ) -> None:
        send = (topic, value, key.encode("utf-8") if isinstance(key, str) else key, header_list(headers or {}))
        fut = await self._producer.send(topic, value=send[1], key=send[2], headers=send[3])
        self._pending.append((fut, send))
        metrics.MESSAGES_PRODUCED.labels(self._service, topic).inc()

    async def publish_event(self, topic: str, key: str, event: Envelope) -> None:
        """Publish an internal event; its ids travel in headers too (for logs and tools)."""
        await self.publish(topic, key, event.to_bytes(), {
            HEADER_CORRELATION: event.correlation_id, HEADER_EVENT_TYPE: event.event_type, HEADER_EVENT_ID: event.event_id,
        })

    async def drain(self) -> None:
        """Await every queued send. One whose delivery failed is kept and sent again by the next
        ``drain()`` while the error propagates, so a retried drain (and the commit after it)
        never passes over an event that was not acknowledged."""
        while self._unsent:
            topic, value, key, headers = send = self._unsent[0]
            fut = await self._producer.send(topic, value=value, key=key, headers=headers)
            self._unsent.pop(0)
            self._pending.append((fut, send))
        pending, self._pending = self._pending, []
        if not pending:
            return
        await asyncio.wait([fut for fut, _ in pending])
        failed = [(fut, send) for fut, send in pending if fut.cancelled() or fut.exception() is not None]
        if failed:
            self._unsent.extend(send for _, send in failed)
            fut = failed[0][0]
            raise fut.exception() if not fut.cancelled() else KafkaError("send cancelled")  # type: ignore[misc]


E = TypeVar("E", bound=Envelope)


def decode_event(model: type[E], msg: Message) -> E:
    """The message's event, or :class:`PermanentError` (dead-lettered with the reason)."""
    try:
        return model.model_validate_json(msg.value or b"")
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"]) or "event"
        raise PermanentError(f"not a valid {model.__name__}: {where}: {first['msg']}") from None


Handler = Callable[[Message], Awaitable[None]]
TransientCheck = Callable[[BaseException], bool]


def _default_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | asyncio.TimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, KafkaError):  # broker unavailable, leadership moved, request timed out
        return True
    try:
        from pymongo.errors import ConnectionFailure, ExecutionTimeout, NetworkTimeout, PyMongoError, WTimeoutError

        if isinstance(exc, ConnectionFailure | NetworkTimeout | ExecutionTimeout | WTimeoutError):
            return True
        if isinstance(exc, PyMongoError) and exc.timeout:
            return True
    except ImportError:  # pragma: no cover
        pass
    return False


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: "ConsumerRunner") -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # The batch in progress holds the lock; wait for it, then commit what is done.
        async with self._runner._lock:
            await self._runner._commit_processed(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))


class ConsumerRunner:
    """Consume → handle → (drain producer) → commit, with retries and dead-lettering."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        handler: Handler,
        *,
        service: str,
        dlq_producer: AIOKafkaProducer | ResilientProducer,
        publisher: Publisher | None = None,
        retry: RetrySettings | None = None,
        dlq_suffix: str = ".dlq",
        is_transient: TransientCheck = _default_transient,
        max_records: int = 200,
        unexpected_attempts: int = 3,
        stop_grace_s: float = 20.0,
    ) -> None:
        self.consumer = consumer
        self.topics = list(topics)
        self.handler = handler
        self.service = service
        self.dlq_producer = dlq_producer
        self.publisher = publisher
        self.retry = retry or RetrySettings()
        self.dlq_suffix = dlq_suffix
        self.is_transient = is_transient
        self.max_records = max_records
        self.unexpected_attempts = unexpected_attempts
        self.stop_grace_s = stop_grace_s
        self._stop_at: float | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._processed: dict[TopicPartition, int] = {}
        self.assigned = False
        self.last_batch_at = time.monotonic()

    def subscribe(self) -> None:
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))

    def stop(self) -> None:
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        """Run until :meth:`stop`; finishes the batch in hand and commits before returning."""
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
                for tp, records in batch.items():
                    for record in records:
                        msg = Message(
                            topic=record.topic,
                            partition=record.partition,
                            offset=record.offset,
                            key=record.key,
                            value=record.value,
                            headers={k: v for k, v in (record.headers or ())},
                            timestamp_ms=record.timestamp,
                        )
                        await self._process(msg)
                        self._processed[tp] = record.offset + 1
                    metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(
                        max(0, (self.consumer.highwater(tp) or 0) - self._processed.get(tp, 0))
                    )
                await self._commit_processed(list(batch))
        async with self._lock:
            await self._commit_processed(list(self._processed))
        log.info("consumer_stopped")

    async def _commit_processed(self, tps: list[TopicPartition]) -> None:
        offsets = {tp: self._processed[tp] for tp in tps if tp in self._processed}
        if not offsets:
            return
        # Every event produced for these messages must be acknowledged before the commit.
        if self.publisher is not None:
            await self._with_retry(self.publisher.drain, what="drain")
        await self.dlq_producer.flush()
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # membership changed: the next owner re-processes (idempotent)
            log.warning("commit_failed", error=repr(exc))
        for tp in offsets:
            self._processed.pop(tp, None)

    async def _with_retry(self, fn: Callable[[], Awaitable[None]], *, what: str) -> None:
        delay = self.retry.initial_backoff_s
        while True:
            try:
                await fn()
                return
            except Exception as exc:
                if not self.is_transient(exc):
                    raise  # a bug or a rejected send: crash, restart, re-process (idempotent)
                if self._stop_at is not None and time.monotonic() - self._stop_at > self.stop_grace_s:
                    raise StoppedWithoutCommit(f"{what} still failing {self.stop_grace_s:g} s after the stop: {exc!r}") from exc
                log.warning("retrying", what=what, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry.max_backoff_s)

    async def _process(self, msg: Message) -> None:
        structlog.contextvars.bind_contextvars(
            topic=msg.topic, partition=msg.partition, offset=msg.offset,
            correlation_id=msg.headers.get(HEADER_CORRELATION, b"").decode("utf-8", "replace") or None,
            event_id=msg.headers.get(HEADER_EVENT_ID, b"").decode("utf-8", "replace") or None,
            article_id=msg.key.decode("utf-8", "replace") if msg.key else None,
        )
        attempt = 0
        delay = self.retry.initial_backoff_s
        started = time.perf_counter()
        try:
            while True:
                attempt += 1
                try:
                    await self.handler(msg)
                    metrics.MESSAGES_CONSUMED.labels(self.service, msg.topic, "ok").inc()
                    return
                except PermanentError as exc:
                    await self._dead_letter(msg, reason=str(exc), error=type(exc).__name__, attempts=attempt)
                    return
                except Exception as exc:
                    transient = self.is_transient(exc)
                    limit = self.retry.max_attempts if transient else self.unexpected_attempts
                    if attempt >= limit:
                        await self._dead_letter(
                            msg,
                            reason=f"{'transient' if transient else 'unexpected'} failure after {attempt} attempts: {exc!r}"[:1000],
                            error=type(exc).__name__,
                            attempts=attempt,
                        )
                        return
                    log.warning("handler_retry", attempt=attempt, error=repr(exc)[:500], transient=transient)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, self.retry.max_backoff_s)
        finally:
            metrics.HANDLER_SECONDS.labels(self.service, msg.topic).observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars(
                "topic", "partition", "offset", "correlation_id", "event_id", "article_id"
            )

    async def _dead_letter(self, msg: Message, *, reason: str, error: str, attempts: int) -> None:
        headers = dict(msg.headers)
        headers.update(
            {
                DLQ_REASON: reason.encode("utf-8", "replace"),
                DLQ_ERROR: error.encode(),
                DLQ_TOPIC: msg.topic.encode(),
                DLQ_PARTITION: str(msg.partition).encode(),
                DLQ_OFFSET: str(msg.offset).encode(),
                DLQ_ATTEMPTS: str(attempts).encode(),
                DLQ_FAILED_AT: str(int(time.time() * 1000)).encode(),
                DLQ_SERVICE: self.service.encode(),
            }
        )
        dlq_topic = msg.topic + self.dlq_suffix
        await self._with_retry(
            lambda: self._send_dlq(dlq_topic, msg, headers), what="dead_letter"
        )
        metrics.MESSAGES_CONSUMED.labels(self.service, msg.topic, "dead_lettered").inc()
        log.warning("dead_lettered", reason=reason[:300], dlq_topic=dlq_topic, attempts=attempts)

    async def _send_dlq(self, topic: str, msg: Message, headers: dict[str, bytes]) -> None:
        await self.dlq_producer.send_and_wait(
            topic, value=msg.value, key=msg.key, headers=list(headers.items())
        )


async def ensure_topics(settings: KafkaSettings, topics: Iterable[str], *, partitions: int | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(**connection_options(settings), client_id=f"{settings.client_id_prefix}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        if not wanted:
            return []
        response = await admin.create_topics(
            # Messages up to the producers' limit (upstream items may be 2 MB; the broker's default is 1 MB).
            [NewTopic(t, partitions or settings.partitions, settings.replication_factor,
                      topic_configs={"max.message.bytes": str(settings.max_request_size)}) for t in wanted]
        )
        for name, code, *_ in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaError(f"could not create topic {name}: error {code}")
        return wanted
    finally:
        await admin.close()


def all_topics(settings: KafkaSettings) -> list[str]:
    return [
        settings.topic_upstream,
        settings.topic_upstream_dlq,
        settings.topic_ingested,
        settings.topic_ingested_dlq,
        settings.topic_stored,
        settings.topic_stored_dlq,
        settings.topic_linked,
        settings.topic_narrated,
        settings.topic_newsletter,
        settings.topic_newsletter_dlq,
    ]
