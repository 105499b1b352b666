"""Storage's pure helpers: listing placement and the page-shaped article document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.storage.handlers import _place, article_document, fronts_of
from shared.events import Article, Term

T0 = datetime(2026, 11, 27, tzinfo=UTC)


def teaser(i: int, minutes: int) -> dict:
    return {"id": f"{i:016x}", "published_at": T0 + timedelta(minutes=minutes), "headline": f"h{i}"}


def test_place_sorts_newest_first():
    items = [teaser(1, 10), teaser(2, 5)]
    out = _place(items, teaser(3, 7), teaser(3, 7)["id"])
    assert [i["id"] for i in out] == [teaser(1, 0)["id"], teaser(3, 0)["id"], teaser(2, 0)["id"]]


def test_place_is_idempotent_and_replaces():
    items = [teaser(1, 10)]
    assert _place(items, teaser(1, 10), teaser(1, 0)["id"]) is None  # unchanged
    changed = {**teaser(1, 10), "headline": "new"}
    out = _place(items, changed, changed["id"])
    assert out == [changed]


def test_place_remove():
    items = [teaser(1, 10), teaser(2, 5)]
    assert [i["id"] for i in _place(items, None, teaser(1, 0)["id"])] == [teaser(2, 0)["id"]]
    assert _place(items, None, "ffffffffffffffff") is None


def article(**kw) -> Article:
    base = dict(id="0123456789abcdef", uri="urn:x", version=1, version_created=T0, first_created=T0,
                pub_status="usable", language="en", language_tag="en", headline="H", slug="h",
                content_hash="c", body_html="<p>b</p>", body_text="b", section=Term(slug="business", name="Business"),
                tags=[Term(slug="rail", name="Rail")])
    base.update(kw)
    return Article(**base)


def test_article_document_keeps_history():
    first = article_document(article(), None, history_size=10, now=T0)
    second = article_document(article(version=2, version_created=T0 + timedelta(hours=1)), {**first, "version": 1}, history_size=10, now=T0)
    assert [h["version"] for h in second["history"]] == [1, 2]
    assert second["headline"] == "H" and second["killed_at"] is None


def test_kill_document_keeps_no_content():
    first = article_document(article(), None, history_size=10, now=T0)
    killed = article_document(article(version=3, pub_status="canceled", body_html="", body_text=""), {**first, "version": 1}, history_size=10, now=T0)
    assert killed["pub_status"] == "canceled" and killed["headline"] is None and killed["body_html"] == ""
    assert killed["killed_at"] == T0 and killed["section"] == first["section"]
    assert killed["first_created"] == first["first_created"], "kept so the listings can be found and cleaned"


def test_fronts_of_usable_and_killed():
    doc = article_document(article(), None, history_size=10, now=T0)
    assert set(fronts_of(doc, 5)) == {("home", "20261127000"), ("section:business", "2026112700"), ("tag:rail", "2026112700")}
    assert set(fronts_of(doc, 0)) == {("home", "20261127000"), ("section:business", "2026112700")}
    assert fronts_of({**doc, "pub_status": "canceled"}, 5) == {}


def test_bucket_keys_and_starts():
    from shared.listings import bucket_of, bucket_start

    t = datetime(2026, 11, 27, 9, 47, 5, tzinfo=UTC)
    assert bucket_of("home", t) == "20261127094" and bucket_of("section:x", t) == "2026112709"
    assert bucket_start("20261127094") == datetime(2026, 11, 27, 9, 40, tzinfo=UTC) <= t
    assert bucket_start("2026112709") == datetime(2026, 11, 27, 9, tzinfo=UTC)


# --- batch storage: the same results as one message at a time, with fewer round trips ----------
import copy  # noqa: E402
import itertools  # noqa: E402

import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pymongo.errors import BulkWriteError, DuplicateKeyError  # noqa: E402

from shared.batching import BatchRunner  # noqa: E402
from services.storage.handlers import (  # noqa: E402
    ListingChange, apply_to_bucket, apply_to_index, handle_batch, handle_ingested, rounds,
)
from services.storage.settings import StorageSettings  # noqa: E402
from shared.events import ArticleIngested, IngestedEvent  # noqa: E402
from shared.kafka import ConsumerRunner, Message, TransientError, decode_event  # noqa: E402
from shared.settings import RetrySettings  # noqa: E402
from shared.packed import pack, unpack  # noqa: E402


class FakeResult:
    def __init__(self, matched: int) -> None:
        self.matched_count = matched


class FakeCollection:
    """The subset of PyMongo's async collection storage uses, with MongoDB's semantics for it
    (duplicate keys, the version guard, unordered insert_many), counting calls."""

    def __init__(self, calls: dict[str, int]) -> None:
        self.docs: dict[str, dict] = {}
        self.calls = calls
        self.inserted: list[str] = []  # every _id ever inserted, in order

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    @staticmethod
    def _matches(doc: dict, flt: dict) -> bool:
        for key, cond in flt.items():
            if isinstance(cond, dict):
                if "$lt" in cond and not (key in doc and doc[key] < cond["$lt"]):
                    return False
            elif doc.get(key) != cond:
                return False
        return True

    async def find_one(self, flt: dict):
        self._count("find")
        doc = self.docs.get(flt["_id"])
        return copy.deepcopy(doc) if doc is not None and self._matches(doc, flt) else None

    async def insert_one(self, doc: dict):
        self._count("insert")
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("dup", 11000)
        self.docs[doc["_id"]] = copy.deepcopy(doc)
        self.inserted.append(doc["_id"])

    async def insert_many(self, docs: list[dict], ordered: bool = True):
        self._count("insert")
        assert not ordered and len(docs) <= 32
        errors = []
        for i, doc in enumerate(docs):
            if doc["_id"] in self.docs:
                errors.append({"index": i, "code": 11000})
            else:
                self.docs[doc["_id"]] = copy.deepcopy(doc)
                self.inserted.append(doc["_id"])
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(docs) - len(errors)})

    async def update_one(self, flt: dict, update: dict, upsert: bool = False):
        self._count("update")
        doc = self.docs.get(flt["_id"])
        if doc is not None and self._matches(doc, flt):
            doc.update(copy.deepcopy(update["$set"]))
            return FakeResult(1)
        if upsert:
            if doc is not None:
                raise DuplicateKeyError("dup", 11000)
            self.docs[flt["_id"]] = {"_id": flt["_id"], **copy.deepcopy(update["$set"])}
        return FakeResult(0)

    async def delete_one(self, flt: dict):
        self._count("delete")
        doc = self.docs.get(flt["_id"])
        if doc is not None and self._matches(doc, flt):
            del self.docs[flt["_id"]]


class FakeDb:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.collections: dict[str, FakeCollection] = {}

    def __getitem__(self, name: str) -> FakeCollection:
        return self.collections.setdefault(name, FakeCollection(self.calls))

    def state(self) -> dict:
        """Everything stored, without the per-write timestamps."""
        def clean(doc):
            if isinstance(doc, dict):
                return {k: clean(v) for k, v in doc.items() if k not in ("stored_at", "updated_at", "rev", "killed_at")}
            if isinstance(doc, list):
                return [clean(v) for v in doc]
            return doc
        return {name: clean(c.docs) for name, c in self.collections.items()}


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, int | None]] = []

    async def publish_event(self, topic, key, event) -> None:
        p = event.payload
        self.events.append((key, p.change, p.article.version, p.previous_version))


def ingested(i: int, version: int = 1, *, section: str = "business", status: str = "usable", minutes: int = 0,
             tags: tuple[str, ...] = ("rail",), headline: str | None = None, offset: int = 0) -> Message:
    art = article(id=f"{i:016x}", uri=f"urn:{i}", version=version, pub_status=status,
                  first_created=T0 + timedelta(minutes=minutes), version_created=T0 + timedelta(minutes=minutes + version),
                  headline=headline or f"H{i} v{version}", content_hash=f"c{i}-{version}-{headline}",
                  section=Term(slug=section, name=section.title()), tags=[Term(slug=t, name=t.title()) for t in tags],
                  body_html="" if status == "canceled" else "<p>b</p>")
    event = IngestedEvent(producer="t", correlation_id=f"corr{i}", payload=ArticleIngested(article=art))
    return Message(topic="articles.ingested", partition=0, offset=offset, key=art.id.encode(), value=event.to_bytes())


def decoded(messages: list[Message]) -> list[tuple[Message, IngestedEvent]]:
    return [(m, decode_event(IngestedEvent, m)) for m in messages]


SETTINGS = StorageSettings()

# A stream with everything that makes storage interesting: new articles in shared buckets,
# v1 and v2 of one article in the same batch, a stale version after a newer one, an exact
# re-delivery, a section change (leaves the old listing), a kill, and a withheld item.
STREAM = [
    ingested(1, 1, minutes=1), ingested(2, 1, minutes=2, tags=("rail", "astana")), ingested(3, 1, minutes=70),
    ingested(1, 2, minutes=1, headline="H1 corrected"), ingested(4, 1, minutes=3, section="politics"),
    ingested(1, 1, minutes=1),  # stale: version 2 is stored
    ingested(2, 1, minutes=2, tags=("rail", "astana")),  # exact re-delivery
    ingested(3, 2, minutes=70, section="politics", tags=()),  # moves to another section
    ingested(4, 2, minutes=3, section="politics", status="canceled"),  # kill
    ingested(5, 1, minutes=4, status="withheld"),
]


async def one_by_one(messages: list[Message]) -> tuple[FakeDb, FakePublisher]:
    db, pub = FakeDb(), FakePublisher()
    for m in messages:
        await handle_ingested(m, db=db, publisher=pub, settings=SETTINGS)  # type: ignore[arg-type]
    return db, pub


async def batched(messages: list[Message], size: int) -> tuple[FakeDb, FakePublisher]:
    db, pub = FakeDb(), FakePublisher()
    for start in range(0, len(messages), size):
        await handle_batch(decoded(messages[start:start + size]), db=db, publisher=pub, settings=SETTINGS)  # type: ignore[arg-type]
    return db, pub


@pytest.mark.parametrize("size", [1, 3, len(STREAM)])
async def test_batches_store_and_announce_exactly_what_one_at_a_time_does(size):
    expected_db, expected_pub = await one_by_one(STREAM)
    db, pub = await batched(STREAM, size)
    assert db.state() == expected_db.state()
    assert sorted(pub.events) == sorted(expected_pub.events)
    # Per article, the events come in the same order (v1 before v2, ...).
    for key, group in itertools.groupby(sorted(range(len(pub.events)), key=lambda i: pub.events[i][0]), key=lambda i: pub.events[i][0]):
        assert [pub.events[i] for i in group] == [e for e in expected_pub.events if e[0] == key]
    front = db["fronts"].docs
    assert [i["id"] for i in unpack(front["front:section:politics:2026112701"]["items"])] == [f"{3:016x}"]
    assert "front:section:business:2026112701" not in front or not unpack(front["front:section:business:2026112701"]["items"])
    assert all(i["id"] != f"{4:016x}" for d in front.values() for i in unpack(d.get("items")))


async def test_a_whole_batch_costs_a_few_round_trips_not_a_few_per_article():
    messages = [ingested(i, 1, minutes=i % 10, offset=i) for i in range(200)]
    single, _ = await one_by_one(messages)
    db, pub = await batched(messages, 200)
    assert db.state() == single.state() and len(pub.events) == 200
    total = sum(db.calls.values())
    assert total <= 30, db.calls  # 7 article inserts + 7 version inserts + home/section/tag buckets and indexes
    assert sum(single.calls.values()) > 10 * total


async def test_redelivered_batch_is_idempotent_and_republishes():
    db, pub = await batched(STREAM, len(STREAM))
    before = db.state()
    await handle_batch(decoded(STREAM), db=db, publisher=pub, settings=SETTINGS)  # type: ignore[arg-type]
    assert db.state() == before
    assert len(pub.events) > len(STREAM) - 2  # the re-delivery is announced again (at-least-once)


def test_rounds_hold_each_article_once_in_arrival_order():
    items = decoded([ingested(1, 1), ingested(2, 1), ingested(1, 2), ingested(1, 3), ingested(3, 1)])
    out = rounds(items)
    assert [[e.payload.article.version for _, e in r] for r in out] == [[1, 1, 1], [2], [3]]
    assert all(len({e.payload.article.id for _, e in r}) == len(r) for r in out)


ids = st.sampled_from([f"{i:016x}" for i in range(6)])


@settings(max_examples=200, deadline=None)
@given(st.lists(ids, unique=True, max_size=5), st.lists(st.tuples(ids, st.integers(0, 40), st.booleans()), max_size=8))
def test_merged_bucket_changes_equal_one_placement_at_a_time(initial, changes):
    items = sorted((teaser(int(i, 16), 3 * int(i, 16)) for i in initial), key=lambda t: (t["published_at"], t["id"]), reverse=True)
    sequential = items
    for article_id, minutes, remove in changes:
        new = None if remove else teaser(int(article_id, 16), minutes)
        placed = _place(sequential, new, article_id)
        sequential = placed if placed is not None else sequential
    merged = apply_to_bucket(items, [ListingChange("home", "b", {}, a, None if r else teaser(int(a, 16), m)) for a, m, r in changes])
    assert (merged if merged is not None else items) == sequential
    assert (merged is None) == (sequential == items)


def test_index_lists_filled_buckets_newest_first_and_drops_emptied_ones():
    meta = {"kind": "section", "slug": "business", "name": "Business"}
    first = apply_to_index(None, "section:business", {"2026112701": True, "2026112703": True}, meta, [], T0)
    assert first["buckets"] == ["2026112703", "2026112701"] and first["name"] == "Business"
    current = {**first, "rev": 1}
    assert apply_to_index(current, "section:business", {"2026112701": True}, meta, [], T0) is None
    dropped = apply_to_index(current, "section:business", {"2026112703": False, "2026112702": True}, meta, [], T0)
    assert dropped["buckets"] == ["2026112702", "2026112701"]
    assert apply_to_index(None, "section:business", {"2026112701": False}, meta, [], T0) is None
    home = apply_to_index(None, "home", {"20261127010": True}, {"kind": "home", "slug": "home", "name": "Home"},
                          [{"slug": "rail", "name": "Rail"}, {"slug": "arts", "name": "Arts"}, {"slug": "rail", "name": "Rail"}], T0)
    assert home["sections"] == [{"slug": "arts", "name": "Arts"}, {"slug": "rail", "name": "Rail"}]


# --- the batch runner: per-message guarantees kept ----------------------------------------------
class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, dict]] = []

    async def send_and_wait(self, topic, value=None, key=None, headers=()):
        self.sent.append((topic, key, dict(headers)))

    async def flush(self):
        return None


def batch_runner(batch_handler, handler, producer) -> BatchRunner:
    base = ConsumerRunner(consumer=None, topics=["articles.ingested"], handler=handler, service="storage",  # type: ignore[arg-type]
                          dlq_producer=producer, retry=RetrySettings(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002))
    return BatchRunner.wrap(base, batch_handler, IngestedEvent)


async def test_runner_dead_letters_invalid_messages_and_stores_the_rest_as_one_batch():
    producer, batches, singles = FakeProducer(), [], []

    async def batch_handler(items):
        batches.append([m.offset for m, _ in items])

    async def handler(m):
        singles.append(m.offset)
        decode_event(IngestedEvent, m)

    runner = batch_runner(batch_handler, handler, producer)
    bad = Message(topic="articles.ingested", partition=0, offset=1, key=b"k", value=b"{not json")
    for m in (ingested(1, offset=0), bad, ingested(2, offset=2)):
        await runner._process(m)
    assert batches == [] and singles == []  # nothing happens before the commit point
    await runner.flush()
    assert batches == [[0, 2]]
    assert [t for t, _, _ in producer.sent] == ["articles.ingested.dlq"] and producer.sent[0][2]["dlq.source_offset"] == b"1"


async def test_runner_retries_a_transient_batch_failure_then_succeeds():
    attempts = []

    async def batch_handler(items):
        attempts.append(len(items))
        if len(attempts) < 3:
            raise TransientError("database timeout")

    async def handler(m):
        raise AssertionError("no fallback expected")

    runner = batch_runner(batch_handler, handler, FakeProducer())
    await runner._process(ingested(1))
    await runner.flush()
    assert attempts == [1, 1, 1]


async def test_runner_falls_back_to_one_message_at_a_time_and_isolates_a_poison_message():
    producer, singles = FakeProducer(), []

    async def batch_handler(items):
        raise KeyError("a bug triggered by one message")

    async def handler(m):
        singles.append(m.offset)
        if m.offset == 1:
            raise KeyError("poison")

    runner = batch_runner(batch_handler, handler, producer)
    for i in range(3):
        await runner._process(ingested(i, offset=i))
    await runner.flush()
    assert sorted(set(singles)) == [0, 1, 2]
    [(topic, _, headers)] = producer.sent
    assert topic == "articles.ingested.dlq" and headers["dlq.source_offset"] == b"1"


async def test_listing_writes_survive_a_concurrent_writer_and_skip_known_documents():
    from services.storage.handlers import KnownDocuments, apply_listing_changes

    db = FakeDb()
    fronts = db["fronts"]
    known = KnownDocuments()
    first = [ListingChange("home", "20261127000", {"kind": "home", "slug": "home", "name": "Home"}, f"{i:016x}",
                           teaser(i, i)) for i in range(3)]
    await apply_listing_changes(db, first, known)  # type: ignore[arg-type]
    assert [i["id"] for i in unpack(fronts.docs["front:home:20261127000"]["items"])] == [f"{i:016x}" for i in (2, 1, 0)]
    assert "front:home:20261127000" in known and "front:home" in known

    # Another replica writes the bucket between our read and our update: the rev guard makes
    # our update miss, and the document is read again, so neither write is lost.
    real_find = fronts.find_one
    raced = []

    async def find_then_race(flt):
        doc = await real_find(flt)
        if flt["_id"] == "front:home:20261127000" and not raced:
            raced.append(True)
            other = fronts.docs[flt["_id"]]
            other["items"] = pack([teaser(9, 9), *unpack(other["items"])])
            other["rev"] += 1
        return doc
    fronts.find_one = find_then_race
    inserted_before = len(fronts.inserted)
    await apply_listing_changes(db, [ListingChange("home", "20261127000", first[0].meta, f"{5:016x}", teaser(5, 5))], known)  # type: ignore[arg-type]
    assert [i["id"] for i in unpack(fronts.docs["front:home:20261127000"]["items"])] == [f"{i:016x}" for i in (9, 5, 2, 1, 0)]
    offered = [i for i in fronts.inserted[inserted_before:] if not i.startswith("claim:")]
    assert offered == [], "known documents are not offered as new"
    assert not [i for i in fronts.docs if i.startswith("claim:")], "claims are removed once written"


@pytest.mark.parametrize("size", [1, 2])
async def test_a_version_arriving_after_a_newer_one_is_kept_in_the_history_only(size):
    """An upstream re-send after an outage can deliver v1 after v2: v2 stays the article, and v1
    is still recorded among the versions (nothing valid is lost), without a "stored" event."""
    db, pub = await batched([ingested(7, 2, minutes=5, headline="H7 v2"), ingested(7, 1, minutes=5)], size)
    article = db["articles"].docs[f"{7:016x}"]
    assert article["version"] == 2 and article["headline"] == "H7 v2"
    assert {d["version"] for d in db["article_versions"].docs.values()} == {1, 2}
    assert len(pub.events) == 1
