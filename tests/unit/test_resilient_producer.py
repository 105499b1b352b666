"""An idempotent producer that cannot deliver any more is replaced, and what it failed to
deliver is sent again: one whose deliveries fail with ``OutOfOrderSequenceNumber`` (its sequence
numbers no longer match the broker's, as after a long broker outage) and one whose sender task
stopped."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from shared.kafka import Publisher, ResilientProducer


class Sender:
    def __init__(self) -> None:
        self.sender_task: asyncio.Future = asyncio.get_running_loop().create_future()


class FakeProducer:
    """Delivers at once while its sender runs; once it dies, pending and later sends fail or hang."""

    def __init__(self) -> None:
        self._sender: Sender | None = None
        self.stopped = False
        self.pending: list[asyncio.Future] = []

    async def start(self) -> None:
        self._sender = Sender()

    def die(self) -> None:
        exc = OutOfOrderSequenceNumber()
        self._sender.sender_task.set_exception(exc)
        for fut in self.pending:
            fut.set_exception(exc)
        self.pending.clear()

    async def send(self, topic, value=None, key=None, headers=None):
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)  # after die(): queued, never delivered
        return fut

    def reject(self) -> None:
        """The broker refuses the pending batches; the sender goes on (and would keep failing)."""
        for fut in self.pending:
            fut.set_exception(OutOfOrderSequenceNumber())
        self.pending.clear()

    def deliver(self) -> None:
        for fut in self.pending:
            fut.set_result(None)
        self.pending.clear()

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def made() -> list[FakeProducer]:
    """Every producer the wrapper has made, oldest first."""
    return []


@pytest.fixture
async def producer(made) -> ResilientProducer:
    def factory() -> FakeProducer:
        made.append(FakeProducer())
        return made[-1]

    resilient = ResilientProducer(factory, service="test")  # type: ignore[arg-type]
    await resilient.start()
    return resilient


async def test_a_dead_producer_is_replaced_and_its_failed_sends_go_out_again(made, producer):
    publisher = Publisher(producer, service="test")
    await publisher.publish("out", "a", b"1")
    made[0].die()  # the broker answered OutOfOrderSequenceNumber: the sender stops for good
    with pytest.raises(OutOfOrderSequenceNumber):
        await publisher.drain()

    drain = asyncio.create_task(publisher.drain())  # the runner retries the drain
    await asyncio.sleep(0.01)
    assert len(made) == 2 and made[0].stopped and producer.replacements == 1
    assert len(made[1].pending) == 1  # the failed event went to the new producer
    made[1].deliver()
    await asyncio.wait_for(drain, 1)


async def test_a_producer_whose_sequence_broke_is_replaced(made, producer):
    publisher = Publisher(producer, service="test")
    await publisher.publish("out", "a", b"1")
    await publisher.publish("out", "b", b"2")
    made[0].reject()
    with pytest.raises(OutOfOrderSequenceNumber):
        await publisher.drain()
    assert not ResilientProducer.is_dead(made[0])  # its sender still runs: only the errors tell

    drain = asyncio.create_task(publisher.drain())
    await asyncio.sleep(0.01)
    assert len(made) == 2 and made[0].stopped and producer.replacements == 1
    assert len(made[1].pending) == 2
    made[1].deliver()
    await asyncio.wait_for(drain, 1)
    await publisher.publish("out", "c", b"3")  # the new producer stays
    made[1].deliver()
    await publisher.drain()
    assert len(made) == 2


async def test_a_live_producer_is_kept(made, producer):
    fut = await producer.send("out", b"x", b"k")
    made[0].deliver()
    await fut
    await producer.flush()
    assert len(made) == 1 and producer.replacements == 0
    await producer.stop()
    assert made[0].stopped


async def test_the_sender_check_reads_aiokafkas_producer():
    """``is_dead`` looks at aiokafka's sender task: the attribute must exist on the real class."""
    from aiokafka import AIOKafkaProducer

    real = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    assert hasattr(real, "_sender") and hasattr(real._sender, "sender_task")
    assert not ResilientProducer.is_dead(real)  # not started: no task yet
    real._sender._sender_task = asyncio.get_running_loop().create_future()
    real._sender._sender_task.set_exception(OutOfOrderSequenceNumber())
    assert ResilientProducer.is_dead(real)
