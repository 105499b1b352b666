"""Linking's batch handler against its message-by-message handler: the same related lists, each
changed list written once per batch, bounded concurrent writes, and a failed write fails the
batch only after every write has ended (so the retry starts from a quiet state)."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import AutoReconnect

from services.linking.follower import IndexFollower
from services.linking.handlers import LinkingState, flush_pending, handle_stored, handle_stored_batch
from services.linking.relatedness import Doc, RelatedIndex
from services.linking.settings import LinkingSettings
from shared.events import Article, ArticleStored, StoredEvent, Term, teaser_of
from shared.kafka import Message
from shared.mongo import RELATED
from shared.packed import unpack
from tests.unit.test_storage_logic import FakeDb

STORIES = {
    "rail": "Astana Almaty high speed railway Temir Zholy trains passengers tickets carriages timetable",
    "flood": "Petropavlovsk flood Ishim river dam evacuation villages rescuers water level spring",
    "space": "Baikonur cosmodrome Soyuz rocket launch satellite KazSat orbit cosmonauts Roscosmos",
}
FILLER = ("minister officials said week region government plans budget company workers city residents "
          "schools hospital energy market prices grain exports court judge election parliament museum").split()
T0 = datetime(2026, 11, 27, 8, tzinfo=UTC)


def article(n: int, version: int = 1) -> Article:
    story = list(STORIES)[n % 3]
    rng = random.Random(n)
    text = ". ".join(" ".join(rng.sample(STORIES[story].split(), 5) + rng.sample(FILLER, 7)) for _ in range(5)) + "."
    t = T0 + timedelta(minutes=n)
    return Article(
        id=f"{n:016x}", uri=f"urn:{n}", version=version, version_created=t + timedelta(minutes=version),
        first_created=t, pub_status="usable", language="en", language_tag="en",
        headline=f"{story.title()} story {n}" + (" (corrected)" if version > 1 else ""), body_html=f"<p>{text}</p>",
        body_text=text, section=Term(slug="news", name="News"), slug=f"{story}-{n}", content_hash=f"h{n}-{version}",
    )


def stored(offset: int, a: Article) -> Message:
    event = StoredEvent(producer="t", correlation_id=f"corr-{a.id}", payload=ArticleStored(article=a, change="created"))
    return Message(topic="articles.stored", partition=offset % 2, offset=offset, key=a.id.encode(), value=event.to_bytes())


# 24 articles of three stories, then corrections of two of them.
STREAM = [stored(i, article(i)) for i in range(24)] + [stored(24, article(3, 2)), stored(25, article(7, 2))]


class Publisher:
    def __init__(self) -> None:
        self.events: list[tuple[str, StoredEvent]] = []
        self.drained = 0

    async def publish_event(self, topic, key, event) -> None:
        self.events.append((key, event))

    async def drain(self) -> None:
        self.drained = len(self.events)


class Pipeline:
    """The follower (fed by hand, as its consumer would) and the handler's dependencies."""

    def __init__(self, concurrency: int = 4, delay: float = 0.0) -> None:
        self.settings = LinkingSettings(write_concurrency=concurrency, backlink_delay_s=delay)
        self.state = LinkingState(index=RelatedIndex(k=self.settings.k))
        self.follower = IndexFollower(None, "articles.stored", self.state)  # type: ignore[arg-type]
        self.db = FakeDb()
        self.publisher = Publisher()

    def follow(self, messages: list[Message]) -> None:
        for m in messages:
            self.follower.apply(m.value)
            self.follower.positions[m.partition] = m.offset + 1

    def deps(self) -> dict:
        return dict(state=self.state, follower=self.follower, db=self.db, publisher=self.publisher, settings=self.settings)

    async def batch(self, messages: list[Message]) -> int:
        """The follower applies ``messages``, then the handler gets them as one fetched batch."""
        self.follow(messages)
        return await handle_stored_batch(decoded(messages), **self.deps())

    async def flush(self, *, everything: bool = False) -> int:
        return await flush_pending(state=self.state, db=self.db, publisher=self.publisher, settings=self.settings,
                                   everything=everything)

    def lists(self) -> dict[str, list[str]]:
        docs = self.db[RELATED].docs
        assert all(isinstance(doc["items"], str) and isinstance(doc["also_reported"], str) for doc in docs.values())
        return {doc_id: [i["teaser"]["id"] for i in unpack(doc["items"])] for doc_id, doc in docs.items()}


def decoded(messages: list[Message]) -> list[tuple[Message, StoredEvent]]:
    return [(m, StoredEvent.model_validate_json(m.value)) for m in messages]


async def one_by_one(messages: list[Message]) -> Pipeline:
    p = Pipeline()
    for m in messages:
        p.follow([m])
        await handle_stored(m, **p.deps())
    return p


async def batched(messages: list[Message], size: int, concurrency: int = 4) -> Pipeline:
    p = Pipeline(concurrency)
    for start in range(0, len(messages), size):
        await p.batch(messages[start:start + size])
    return p


@pytest.mark.parametrize("size", [1, 5, len(STREAM)])
async def test_a_batch_leaves_every_list_as_the_index_ranks_it_after_the_batch(size):
    p = await batched(STREAM, size)
    ids = {a for m in STREAM for a in [m.key.decode()]}
    lists = p.lists()
    assert set(lists) == ids  # every article's own list is written
    for doc_id in ids:  # as the final index ranks it (the last batch saw every article)
        if size == len(STREAM):
            assert lists[doc_id] == [m.id for m in p.state.index.related(doc_id)], doc_id
        assert doc_id not in lists[doc_id]
    # the corrected headline is what the lists that show article 3 embed
    shown = [i["teaser"] for doc in p.db[RELATED].docs.values() for i in unpack(doc["items"]) if i["teaser"]["id"] == f"{3:016x}"]
    assert shown and all(t["headline"].endswith("(corrected)") for t in shown)
    # every own list announced, each with the correlation id of its article
    announced = {(key, e.correlation_id) for key, e in p.publisher.events}
    assert all((doc_id, f"corr-{doc_id}") in announced for doc_id in ids)


async def test_one_batch_and_one_at_a_time_agree_on_the_related_lists():
    single, whole = await one_by_one(STREAM), await batched(STREAM, len(STREAM))
    a, b = single.lists(), whole.lists()
    assert set(a) == set(b)
    # One at a time, a list is written from the index of its moment, and rewritten when a later
    # article changes it: the same articles end up listed; only the order of near-equal scores
    # may differ (scores drift a little as the corpus grows).
    assert all(set(a[i]) == set(b[i]) for i in a), {i: (a[i], b[i]) for i in a if set(a[i]) != set(b[i])}
    assert sum(a[i] == b[i] for i in a) >= len(a) // 2
    # and the batch wrote far less
    assert whole.db.calls["update"] < 0.6 * single.db.calls["update"], (whole.db.calls, single.db.calls)
    assert len(whole.publisher.events) == whole.db.calls["update"]


async def test_each_changed_list_is_written_once_per_batch():
    p = await batched(STREAM, len(STREAM))
    written = [key for key, _ in p.publisher.events]
    assert len(written) == len(set(written)) == p.db.calls["update"]


async def test_a_redelivered_batch_rewrites_and_announces_its_own_lists_again():
    p = await batched(STREAM, len(STREAM))
    before = dict(p.lists())
    p.publisher.events.clear()
    await handle_stored_batch(decoded(STREAM), **p.deps())
    assert p.lists() == before
    own = {m.key.decode() for m in STREAM}
    assert {key for key, _ in p.publisher.events} == own  # unchanged back-links are not rewritten


async def test_writes_in_flight_are_bounded_and_a_failure_waits_for_the_others():
    p = Pipeline(concurrency=3)
    coll = p.db[RELATED]
    in_flight = peak = 0
    calls = 0
    original = coll.update_one

    async def slow_update(flt, update, upsert=False):
        nonlocal in_flight, peak, calls
        calls += 1
        mine = calls
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01)
            if mine == 2:
                raise AutoReconnect("connection reset")
            return await original(flt, update, upsert=upsert)
        finally:
            in_flight -= 1

    coll.update_one = slow_update  # type: ignore[method-assign]
    p.follow(STREAM[:12])
    with pytest.raises(AutoReconnect):
        await handle_stored_batch(decoded(STREAM[:12]), **p.deps())
    assert peak == 3 and in_flight == 0  # nothing still running when the batch fails
    # the retry writes every own list (forced), including the one that failed
    await handle_stored_batch(decoded(STREAM[:12]), **p.deps())
    assert {m.key.decode() for m in STREAM[:12]} <= set(p.lists())


async def test_a_batch_waits_for_the_follower_to_pass_its_last_offset_per_partition():
    p = Pipeline()
    p.follow(STREAM[:10])
    p.follower.positions[1] = 5  # the follower has not reached offsets 5, 7, 9 of partition 1

    async def late():
        await asyncio.sleep(0.05)
        p.follow(STREAM[:10])
        async with p.follower._advanced:  # noqa: SLF001 - what the follower's loop does after a fetch
            p.follower._advanced.notify_all()  # noqa: SLF001

    task = asyncio.create_task(late())
    await handle_stored_batch(decoded(STREAM[:10]), **p.deps())
    await task
    assert set(p.lists()) == {m.key.decode() for m in STREAM[:10]}
    assert teaser_of(article(0)).id in p.lists()


async def test_back_links_wait_for_their_time_and_are_rewritten_once_for_many_changes():
    p = Pipeline(delay=0.2)
    first, rest = STREAM[:6], STREAM[6:21]
    await p.batch(first)
    before = p.lists()
    for m in rest:  # 15 batches of one, each changing some older lists
        await p.batch([m])
    own = {m.key.decode() for m in rest}
    # each batch wrote its own article's list and nothing else
    assert [key for key, _ in p.publisher.events] == [m.key.decode() for m in [*first, *rest]]
    waiting = set(p.state.pending)
    # older lists wait (the first six, and new ones that later ones changed); the last one's
    # own list was just written from the newest index
    assert waiting & set(before) and rest[-1].key.decode() not in waiting and waiting <= set(before) | own
    assert all(p.lists()[t] == before[t] for t in waiting if t in before)  # not yet rewritten
    assert await p.flush() == 0  # not due yet
    await asyncio.sleep(0.25)
    written = await p.flush()
    assert written == len(waiting) and not p.state.pending and p.publisher.drained == len(p.publisher.events)
    rewritten = [key for key, _ in p.publisher.events[len(first) + len(rest):]]
    assert sorted(rewritten) == sorted(waiting)  # once each, however many articles changed it
    for t in waiting:  # as the index ranks them now
        assert p.lists()[t] == [m.id for m in p.state.index.related(t)]


async def test_batches_write_only_their_own_lists_and_the_flush_writes_due_back_links_and_all_at_shutdown():
    p = Pipeline(delay=0.1)
    await p.batch(STREAM[:12])
    await p.batch(STREAM[12:16])
    waiting = set(p.state.pending)
    assert waiting
    await asyncio.sleep(0.15)
    written = len(p.publisher.events)
    await p.batch(STREAM[16:17])  # due back-links are not the handler's: its own list only
    assert [key for key, _ in p.publisher.events[written:]] == [STREAM[16].key.decode()]
    assert (waiting - {STREAM[16].key.decode()}) <= set(p.state.pending)
    await p.flush()  # the due ones
    assert waiting.isdisjoint(p.state.pending)
    await p.batch(STREAM[17:20])
    assert p.state.pending
    await p.flush(everything=True)  # shutdown: whatever is still waiting
    assert not p.state.pending


async def test_a_batch_waiting_during_a_long_flush_is_written_between_two_chunks():
    p = Pipeline(concurrency=1, delay=0.05)
    p.settings.backlink_chunk = 1
    await p.batch(STREAM[:14])
    await p.batch(STREAM[14:18])
    assert len(p.state.pending) >= 3
    await asyncio.sleep(0.06)
    coll = p.db[RELATED]
    original = coll.update_one
    order: list[str] = []

    async def slow(filter, *args, **kwargs):  # noqa: A002 - the collection's own signature
        order.append(filter["_id"])
        await asyncio.sleep(0.01)
        return await original(filter, *args, **kwargs)

    coll.update_one = slow  # type: ignore[method-assign]
    started = time.monotonic()
    flush = asyncio.create_task(p.flush())
    while not order:
        await asyncio.sleep(0)
    await p.batch(STREAM[18:19])
    assert STREAM[18].key.decode() in order and p.state.pending  # written before the flush ended
    await flush
    assert order[-1] != STREAM[18].key.decode()
    assert all(due > started for due, _ in p.state.pending.values())  # only what the new batch changed waits


async def test_a_failed_back_link_write_stays_pending():
    p = Pipeline(delay=0.05)
    await p.batch(STREAM[:12])
    await p.batch(STREAM[12:14])
    waiting = set(p.state.pending)
    assert waiting
    coll = p.db[RELATED]
    original = coll.update_one

    async def down(*args, **kwargs):
        raise AutoReconnect("database away")

    coll.update_one = down  # type: ignore[method-assign]
    await asyncio.sleep(0.06)
    assert await p.flush() == 0
    assert set(p.state.pending) == waiting
    coll.update_one = original  # type: ignore[method-assign]
    assert await p.flush() == len(waiting) and not p.state.pending


async def test_a_large_flush_pauses_after_each_chunk_as_long_as_it_took_but_not_at_shutdown(monkeypatch):
    from services.linking import handlers

    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(seconds: float, *args, **kwargs):
        # Only the flush's own pauses: the patch is global, and other tasks on the session's
        # event loop (a database client's monitor, for one) sleep too.
        if sys._getframe(1).f_code is not handlers.flush_pending.__code__:
            return await real_sleep(seconds, *args, **kwargs)
        pauses.append(seconds)
        await real_sleep(0)

    for everything in (False, True):
        p = Pipeline(concurrency=1, delay=0.0001)
        p.settings.backlink_chunk = 2
        await p.batch(STREAM[:12])
        await p.batch(STREAM[12:20])
        waiting = len(p.state.pending)
        assert waiting >= 5
        await real_sleep(0.001)
        pauses.clear()
        monkeypatch.setattr(handlers.asyncio, "sleep", recorded)
        try:
            assert await p.flush(everything=everything) == waiting and not p.state.pending
        finally:
            monkeypatch.setattr(handlers.asyncio, "sleep", real_sleep)
        chunks = -(-waiting // 2)
        if everything:
            assert pauses == []  # shutdown: all at once
        else:
            assert len(pauses) == chunks - 1 and all(s > 0 for s in pauses)


async def test_trimming_the_vector_store_keeps_the_results_and_it_grows_again():
    p = Pipeline()
    await p.batch(STREAM[:20])
    state, index = p.state, p.state.index
    before = {a: index.related(a) for a in state.teasers}
    slot = index._idt.get(STREAM[0].key.decode())  # noqa: SLF001
    index._store_vector(slot, *index._doc_vector(slot))  # noqa: SLF001 - the same vector again: leaves garbage
    index.trim()
    assert len(index._vk) <= index._vused + 1024  # noqa: SLF001
    assert {a: index.related(a) for a in state.teasers} == before
    await p.batch(STREAM[20:24])  # and it grows again
    assert all(m.id in state.teasers for m in index.related(STREAM[23].key.decode()))


def test_trimming_releases_the_per_article_arrays_slack_and_they_grow_again():
    index = RelatedIndex(k=3)
    words = [f"w{i}" for i in range(400)]
    for n in range(1300):  # capacity 1024 -> 1280 -> 1600
        index.upsert(Doc(f"d{n}", "en", f"t{n % 50}", " ".join(words[(n * 7 + j) % 400] for j in range(12)), float(n)))
    before = {f"d{n}": index.related(f"d{n}") for n in range(0, 1300, 97)}
    assert index._cap == 1600  # noqa: SLF001
    index.trim()
    assert index._cap == 1300 + 256 and len(index._sig) == len(index._top) == index._cap  # noqa: SLF001
    assert {d: index.related(d) for d in before} == before
    for n in range(1300, 1700):
        index.upsert(Doc(f"d{n}", "en", "t", " ".join(words[(n * 7 + j) % 400] for j in range(12)), float(n)))
    assert index._cap >= 1700 and len(index) == 1700 and index.related("d1699")  # noqa: SLF001
