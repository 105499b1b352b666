"""Teaser lists stored as JSON strings: what is packed comes back the same, old lists still read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.events import Article, Term, teaser_of
from shared.packed import pack, unpack, unpack_document

T = datetime(2026, 11, 27, 8, 30, 15, 123456, tzinfo=UTC)


def teaser(n: int, *, embargo: datetime | None = None) -> dict:
    article = Article(
        id=f"{n:016x}", uri=f"urn:{n}", version=1, version_created=T + timedelta(minutes=n), first_created=T,
        pub_status="usable", language="kk", language_tag="kk", headline=f"Жаңалық «{n}» — Астана",
        body_html="<p>Мәтін</p>", body_text="Мәтін", section=Term(slug="news", name="Жаңалықтар"), slug=f"news-{n}",
        content_hash=f"h{n}", embargoed_until=embargo)
    return teaser_of(article).model_dump(mode="python")


def test_a_listing_bucket_comes_back_equal_with_aware_datetimes():
    items = [teaser(1), teaser(2, embargo=T + timedelta(hours=2))]
    packed = pack(items)
    assert isinstance(packed, str) and "Жаңалық" in packed  # compact, not escaped
    back = unpack(packed)
    assert back == items
    assert back[1]["embargoed_until"] == T + timedelta(hours=2) and back[0]["published_at"].tzinfo is not None


def test_a_related_list_keeps_its_scores_and_the_dates_of_the_embedded_teasers():
    items = [{"teaser": teaser(3), "score": 0.8125, "cross_language": True}]
    assert unpack(pack(items)) == items


def test_lists_written_before_packing_are_read_as_they_are():
    legacy = [teaser(4)]
    assert unpack(legacy) is legacy and unpack(None) == []


def test_a_packed_value_that_is_not_a_list_is_refused():
    with pytest.raises(ValueError, match="JSON array"):
        unpack('{"items": []}')
    with pytest.raises(TypeError, match="cannot pack"):
        pack([{"id": "x", "when": object()}])


def test_documents_get_their_packed_fields_as_lists_and_nothing_else_changes():
    doc = {"_id": "a", "items": pack([teaser(5)]), "also_reported": pack([]), "duplicates": ["b"], "version": 3}
    assert unpack_document(doc) == {"_id": "a", "items": [teaser(5)], "also_reported": [], "duplicates": ["b"], "version": 3}
    legacy = {"_id": "b", "items": [teaser(6)]}
    assert unpack_document(dict(legacy)) == legacy and unpack_document(None) is None
