"""A produced event whose delivery fails is sent again before the consumer commits: a retried
``Publisher.drain()`` never passes over an event the broker did not acknowledge."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from shared.kafka import ConsumerRunner, Publisher
from shared.settings import RetrySettings


class FlakyProducer:
    """Delivery of the first ``failures`` sends fails (as a batch expiring during an outage)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.delivered: list[tuple[str, bytes | None, bytes]] = []
        self.sends = 0

    async def send(self, topic, value=None, key=None, headers=()):
        self.sends += 1
        fut = asyncio.get_running_loop().create_future()
        if self.failures > 0:
            self.failures -= 1
            fut.set_exception(KafkaTimeoutError("batch expired"))
        else:
            self.delivered.append((topic, key, value))
            fut.set_result(None)
        return fut

    async def flush(self):
        return None


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict] = []

    async def commit(self, offsets):
        self.commits.append(dict(offsets))


async def test_a_failed_delivery_is_sent_again_by_the_next_drain():
    producer = FlakyProducer(failures=1)
    publisher = Publisher(producer, service="test")  # type: ignore[arg-type]
    await publisher.publish("out", "a", b"1")
    await publisher.publish("out", "b", b"2")
    with pytest.raises(KafkaTimeoutError):
        await publisher.drain()
    assert producer.delivered == [("out", b"b", b"2")]
    await publisher.drain()
    assert producer.delivered == [("out", b"b", b"2"), ("out", b"a", b"1")]
    await publisher.drain()  # nothing left: no third copy
    assert producer.sends == 3


async def test_the_offset_is_committed_only_once_every_event_is_acknowledged():
    producer, consumer = FlakyProducer(failures=2), RecordingConsumer()
    publisher = Publisher(producer, service="test")  # type: ignore[arg-type]
    runner = ConsumerRunner(consumer, ["in"], handler=None, service="test", dlq_producer=producer,  # type: ignore[arg-type]
                            publisher=publisher, retry=RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.002))
    tp = TopicPartition("in", 0)
    await publisher.publish("out", "k", b"event")
    runner._processed[tp] = 8
    await runner._commit_processed([tp])
    assert producer.delivered == [("out", b"k", b"event")]
    assert consumer.commits == [{tp: 8}]


async def test_a_stop_with_the_broker_away_gives_up_instead_of_hanging_and_commits_nothing():
    from shared.kafka import StoppedWithoutCommit

    producer, consumer = FlakyProducer(failures=10**6), RecordingConsumer()  # every delivery fails
    publisher = Publisher(producer, service="test")  # type: ignore[arg-type]
    runner = ConsumerRunner(consumer, ["in"], handler=None, service="test", dlq_producer=producer,  # type: ignore[arg-type]
                            publisher=publisher, retry=RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.002),
                            stop_grace_s=0.05)
    tp = TopicPartition("in", 0)
    await publisher.publish("out", "k", b"event")
    runner._processed[tp] = 3
    runner.stop()
    with pytest.raises(StoppedWithoutCommit):
        await asyncio.wait_for(runner._commit_processed([tp]), 5)
    assert consumer.commits == []  # nothing committed: the message is processed again after a restart
