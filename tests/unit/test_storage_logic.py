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
