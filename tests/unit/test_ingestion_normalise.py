"""Ingestion's pure functions: parsing, validation, sanitising, normalising."""

from __future__ import annotations

import json
import pathlib
from datetime import UTC, datetime

import pytest

from services.ingestion.normalise import (
    Rejected, article_from_bytes, html_to_text, normalise_language, parse_json, sanitise_html, slugify,
)
from shared.events import article_id_for

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared"


def item(**overrides):
    base = {
        "uri": "urn:test:1",
        "type": "text",
        "version": 1,
        "versionCreated": "2026-11-27T10:00:00+05:00",
        "pubStatus": "usable",
        "language": "en",
        "headlines": [{"role": "main", "value": "Rail line opens"}],
        "descriptions": [{"role": "summary", "value": "The first trains ran on Monday."}],
        "bodies": [{"role": "main", "contentType": "text/html", "value": "<p>First paragraph.</p><p>Second one here.</p>"}],
        "subjects": [{"name": "Business", "rel": "section"}, {"name": "Railways"}],
    }
    base.update(overrides)
    return base


def parse(obj) -> object:
    return article_from_bytes(json.dumps(obj).encode(), now=NOW)


def test_valid_item_is_normalised():
    a = parse(item(language="EN-gb"))
    assert a.id == article_id_for("urn:test:1") and len(a.id) == 16
    assert a.version_created == datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    assert a.first_created == a.version_created
    assert (a.language, a.language_tag) == ("en", "en-GB")
    assert a.slug == "rail-line-opens"
    assert a.section.slug == "business" and [t.slug for t in a.tags] == ["railways"]
    assert a.body_text == "First paragraph.\nSecond one here."
    assert a.word_count == 5 and a.reading_time_min == 1
    assert a.standfirst == "The first trains ran on Monday."


def test_content_hash_changes_with_content_only():
    a, b = parse(item()), parse(item(version=2))
    c = parse(item(headlines=[{"role": "main", "value": "Rail line opens late"}]))
    assert a.content_hash == b.content_hash != c.content_hash


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"a": NaN}', "NaN is not allowed"),
        (b'{"a": Infinity}', "Infinity is not allowed"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"{", "invalid JSON"),
    ],
)
def test_parse_rejects_bad_json(raw, reason):
    with pytest.raises(Rejected, match=reason):
        parse_json(raw, max_bytes=1_000_000)


def test_parse_rejects_oversized():
    with pytest.raises(Rejected, match="too large"):
        parse_json(b'{"a": "' + b"x" * 2000 + b'"}', max_bytes=1000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": "picture"}, "type"),
        ({"version": 0}, "version"),
        ({"version": "two"}, "version"),
        ({"versionCreated": "2026-11-27T10:00:00"}, "versionCreated"),
        ({"versionCreated": "2030-01-01T00:00:00Z"}, "in the future"),
        ({"pubStatus": "deleted"}, "pubStatus"),
        ({"language": "english please"}, "language"),
        ({"headlines": []}, "headlines"),
        ({"headlines": [{"role": "sub", "value": "x"}]}, "role 'main'"),
        ({"headlines": [{"role": "main", "value": "<script>x</script>"}]}, "headline is empty"),
        ({"bodies": []}, "role 'main'"),
        ({"bodies": [{"role": "main", "contentType": "text/html", "value": "<script>alert(1)</script>"}]}, "empty after sanitising"),
        ({"uri": ""}, "uri"),
        ({"uri": "urn:x\x00"}, "uri"),
    ],
)
def test_contract_violations_are_rejected_with_reason(change, reason):
    with pytest.raises(Rejected, match=reason):
        parse(item(**change))


def test_missing_required_field_named():
    obj = item()
    del obj["versionCreated"]
    with pytest.raises(Rejected, match="versionCreated"):
        parse(obj)


def test_canceled_item_needs_no_body_and_keeps_none():
    a = parse(item(pubStatus="canceled", bodies=[], version=3))
    assert a.pub_status == "canceled" and a.body_html == "" and a.body_text == ""


def test_first_created_never_after_version_created():
    a = parse(item(firstCreated="2026-11-28T00:00:00Z"))
    assert a.first_created <= a.version_created


@pytest.mark.parametrize(
    "payload",
    [
        '<img src=x onerror=alert(1)>',
        '<a href="javascript:alert(1)">x</a>',
        '<svg onload=alert(1)>',
        '<iframe src="https://evil.example"></iframe>',
        '<p style="background:url(javascript:alert(1))">x</p>',
        '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
        '<form action="https://evil.example"><input></form>',
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    ],
)
def test_sanitiser_removes_script_vectors(payload):
    out = sanitise_html(payload).lower()
    for bad in ("onerror", "onload", "javascript:", "<iframe", "<svg", "style=", "<form", "data:text", "<script"):
        assert bad not in out


def test_sanitiser_keeps_news_markup_and_is_idempotent():
    src = '<h2>Sub</h2><p>A <a href="https://example.com/x" title="t">link</a>, <em>em</em></p><blockquote>q</blockquote><ul><li>i</li></ul>'
    out = sanitise_html(src)
    assert '<a href="https://example.com/x" title="t" rel="noopener noreferrer nofollow">link</a>' in out
    assert "<h2>Sub</h2>" in out and "<blockquote>q</blockquote>" in out and "<li>i</li>" in out
    assert sanitise_html(out) == out


def test_html_to_text_separates_blocks_and_unescapes():
    assert html_to_text("<p>a &amp; b</p><p>c</p><ul><li>d</li></ul>") == "a & b\nc\nd"


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Астанада жаңа саябақ ашылды", "astanada-zhana-saiabaq-ashyldy"),
        ("Новая линия в Алматы", "novaia-liniia-v-almaty"),
        ("Hello,   World!!", "hello-world"),
        ("!!!", "article"),
        ("Crème brûlée", "creme-brulee"),
        ("Astana–Almaty: the line", "astana-almaty-the-line"),
    ],
)
def test_slugify(text, slug):
    assert slugify(text) == slug


def test_slug_length_bounded():
    assert len(slugify("word " * 100)) <= 80


@pytest.mark.parametrize(("tag", "expected"), [("kk", ("kk", "kk")), ("KZ", ("kk", "kk")), ("ru-kz", ("ru", "ru-KZ")), ("kk-Cyrl-KZ", ("kk", "kk-Cyrl-KZ"))])
def test_language_normalisation(tag, expected):
    assert normalise_language(tag) == expected


def test_lead_image_only_safe_urls():
    assoc = {"featureimage": {"type": "picture", "altText": "A train", "renditions": {"original": {"href": "javascript:alert(1)"}}}}
    assert parse(item(associations=assoc)).lead_image is None
    assoc["featureimage"]["renditions"]["original"]["href"] = "https://img.example/train.jpg"
    img = parse(item(associations=assoc)).lead_image
    assert img is not None and img.href == "https://img.example/train.jpg" and img.alt == "A train"


def test_embargo_and_zone_normalised_to_utc():
    a = parse(item(embargoedUntil="2026-11-28T09:00:00+06:00"))
    assert a.embargoed_until == datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def test_blns_strings_never_crash_ingestion():
    path = SHARED / "data" / "badinput" / "blns" / "blns.json"
    if not path.exists():
        pytest.skip("shared bad-input corpus not present")
    strings = json.loads(path.read_text())
    accepted = rejected = 0
    for s in strings:
        for obj in (item(headlines=[{"role": "main", "value": s}]), item(bodies=[{"role": "main", "contentType": "text/html", "value": s}]), item(uri=s or "x"), item(language=s)):
            try:
                a = parse(obj)
            except Rejected:
                rejected += 1
                continue
            accepted += 1
            assert "<script" not in a.body_html.lower() and "onerror" not in a.body_html.lower()
            a.model_dump_json()  # serialisable
    assert accepted > 0 and rejected > 0


def test_translations_come_from_translation_associations():
    article = parse(item(associations={
        "translation-ru": {"type": "text", "uri": "urn:test:1:ru", "language": "ru-KZ"},
        "translation-kk": {"type": "text", "uri": "urn:test:1:kk", "language": "kk"},
        "translation-kk2": {"type": "text", "uri": "urn:test:1:kk-bis", "language": "kk"},  # one per language
        "translation-self": {"type": "text", "uri": "urn:test:1", "language": "de"},  # never itself
        "translation-en": {"type": "text", "uri": "urn:test:1:en", "language": "en"},  # not its own language
        "translation-nolang": {"type": "text", "uri": "urn:test:1:x"},
        "featureimage": {"type": "picture", "uri": "urn:test:pic", "language": "ru"},
    }))
    assert [(t.language, t.uri, t.id) for t in article.translations] == [
        ("kk", "urn:test:1:kk", article_id_for("urn:test:1:kk")), ("ru", "urn:test:1:ru", article_id_for("urn:test:1:ru"))]
    assert parse(item()).translations == []
    assert parse(item()).content_hash != article.content_hash
