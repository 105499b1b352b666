"""The consumer loop's retry and dead-letter rules, with in-memory fakes."""

from __future__ import annotations

import asyncio

import pytest

from shared.kafka import ConsumerRunner, Message, PermanentError, TransientError
from shared.settings import RetrySettings


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, dict]] = []

    async def send_and_wait(self, topic, value=None, key=None, headers=()):
        self.sent.append((topic, key, value, dict(headers)))

    async def flush(self):
        return None


def runner(handler, producer, attempts=3) -> ConsumerRunner:
    return ConsumerRunner(
        consumer=None, topics=["t"], handler=handler, service="test", dlq_producer=producer,  # type: ignore[arg-type]
        retry=RetrySettings(max_attempts=attempts, initial_backoff_s=0.001, max_backoff_s=0.002),
    )


def msg(value: bytes = b"v") -> Message:
    return Message(topic="t", partition=2, offset=41, key=b"k", value=value, headers={"correlation_id": b"c"})


async def test_permanent_error_dead_letters_at_once_with_reason():
    producer, calls = FakeProducer(), []

    async def handler(m):
        calls.append(m)
        raise PermanentError("schema: uri: field required")

    await runner(handler, producer)._process(msg())
    assert len(calls) == 1
    [(topic, key, value, headers)] = producer.sent
    assert (topic, key, value) == ("t.dlq", b"k", b"v")
    assert headers["dlq.reason"] == b"schema: uri: field required"
    assert headers["dlq.source_topic"] == b"t" and headers["dlq.source_partition"] == b"2" and headers["dlq.source_offset"] == b"41"
    assert headers["dlq.attempts"] == b"1" and headers["correlation_id"] == b"c"


async def test_transient_error_retried_then_succeeds():
    producer, calls = FakeProducer(), []

    async def handler(m):
        calls.append(m)
        if len(calls) < 3:
            raise TransientError("database timeout")

    await runner(handler, producer, attempts=5)._process(msg())
    assert len(calls) == 3 and producer.sent == []


async def test_transient_error_exhausted_goes_to_dlq_with_attempts():
    producer = FakeProducer()

    async def handler(m):
        raise asyncio.TimeoutError()

    await runner(handler, producer, attempts=4)._process(msg())
    [(_, _, _, headers)] = producer.sent
    assert headers["dlq.attempts"] == b"4" and b"transient failure after 4 attempts" in headers["dlq.reason"]


async def test_unexpected_error_is_bounded_and_never_blocks():
    producer, calls = FakeProducer(), []

    async def handler(m):
        calls.append(m)
        raise KeyError("bug")

    await runner(handler, producer, attempts=10)._process(msg())
    assert len(calls) == 3  # unexpected errors get fewer attempts than transient ones
    assert b"unexpected failure" in producer.sent[0][3]["dlq.reason"]


@pytest.mark.parametrize("exc", [ConnectionRefusedError(), OSError("reset")])
async def test_network_errors_are_transient(exc):
    producer, calls = FakeProducer(), []

    async def handler(m):
        calls.append(m)
        if len(calls) == 1:
            raise exc

    await runner(handler, producer)._process(msg())
    assert len(calls) == 2 and producer.sent == []


def test_decode_event_rejects_what_is_not_the_expected_event():
    from shared.events import IngestedEvent, StoredEvent
    from shared.kafka import decode_event

    with pytest.raises(PermanentError, match="not a valid IngestedEvent"):
        decode_event(IngestedEvent, msg(b'{"event_type": "article.ingested"}'))
    with pytest.raises(PermanentError, match="not a valid StoredEvent"):
        decode_event(StoredEvent, msg(b"not json"))
