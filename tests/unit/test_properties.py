"""Property tests (hypothesis): the sanitiser, the event schemas and listing placement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingestion.normalise import (
    ALLOWED_ATTRIBUTES, ALLOWED_GENERIC_ATTRIBUTES, ALLOWED_TAGS, html_to_text, sanitise_html, slugify,
)
from services.storage.handlers import _place
from shared.events import Article, ArticleIngested, IngestedEvent, Term, parse_event

TAGS = sorted(ALLOWED_TAGS | {"script", "style", "iframe", "svg", "img", "a", "math", "object", "form", "input", "body", "html", "div"})
ATTRS = ["href", "src", "onerror", "onclick", "style", "title", "alt", "srcdoc", "formaction", "xlink:href", "rel"]
VALUES = ["javascript:alert(1)", "https://example.com/x", "x", "data:text/html,<script>alert(1)</script>", "vbscript:x", "1"]


@st.composite
def html_fragments(draw) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["open", "close", "text", "comment"]))
        tag = draw(st.sampled_from(TAGS))
        if kind == "open":
            attrs = " ".join(f'{draw(st.sampled_from(ATTRS))}="{draw(st.sampled_from(VALUES))}"' for _ in range(draw(st.integers(0, 3))))
            parts.append(f"<{tag} {attrs}>")
        elif kind == "close":
            parts.append(f"</{tag}>")
        elif kind == "comment":
            parts.append(f"<!--{draw(st.text(max_size=10))}-->")
        else:
            parts.append(draw(st.text(max_size=20)))
    return "".join(parts)


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, attrs))


@settings(max_examples=300, deadline=None)
@given(html_fragments())
def test_sanitiser_output_stays_inside_the_allow_list(fragment):
    out = sanitise_html(fragment)
    parser = Collect()
    parser.feed(out)
    for tag, attrs in parser.found:
        assert tag in ALLOWED_TAGS, (fragment, out)
        for name, value in attrs:
            allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ALLOWED_GENERIC_ATTRIBUTES | ({"rel"} if tag == "a" else set())
            assert name in allowed, (fragment, out)
            if name in ("href", "src", "cite"):  # URL attributes: only http(s) and mailto survive
                assert (value or "").strip().lower().startswith(("http:", "https:", "mailto:")) or "://" not in (value or "") and ":" not in (value or "").split("/")[0], (fragment, out)


@settings(max_examples=300, deadline=None)
@given(st.one_of(html_fragments(), st.text(max_size=200)))
def test_sanitising_is_idempotent(fragment):
    once = sanitise_html(fragment)
    assert sanitise_html(once) == once
    html_to_text(once)  # never raises


@pytest.mark.parametrize("fragment", ["<h2><button><h2></h2></button></h2>", "<table><h2><h2>x</h2></h2></table>",
                                      "<p><p>a</p></p>", "<li><ul><li>x</li></ul></li>"])
def test_sanitising_reaches_a_tree_that_reads_back_the_same(fragment):
    once = sanitise_html(fragment)
    assert sanitise_html(once) == once


@given(st.text(max_size=200))
def test_slugs_are_url_safe_and_bounded(text):
    slug = slugify(text)
    assert 1 <= len(slug) <= 80 and all(c.isascii() and (c.isalnum() or c == "-") for c in slug)
    assert not slug.startswith("-") and not slug.endswith("-")


printable = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)


@given(headline=printable, body=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300),
       version=st.integers(1, 2**53), language=st.sampled_from(["kk", "ru", "en"]))
def test_events_round_trip(headline, body, version, language):
    t = datetime(2026, 11, 27, tzinfo=UTC)
    article = Article(id="0123456789abcdef", uri="urn:x", version=version, version_created=t, first_created=t,
                      pub_status="usable", language=language, language_tag=language, headline=headline,
                      body_text=body, slug="s", content_hash="h", section=Term(slug="news", name="News"))
    event = IngestedEvent(producer="p", correlation_id="c", payload=ArticleIngested(article=article))
    assert parse_event(event.to_bytes()) == event


teaser = st.builds(
    lambda i, m: {"id": f"{i:016x}", "published_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m), "headline": f"h{i}"},
    st.integers(0, 30), st.integers(0, 1000),
)


@given(st.lists(teaser, max_size=20, unique_by=lambda t: t["id"]), teaser)
def test_placing_twice_is_placing_once_and_order_is_kept(items, new):
    items = _place([], None, "") or sorted(items, key=lambda i: (i["published_at"], i["id"]), reverse=True)
    once = _place(items, new, new["id"])
    base = once if once is not None else items
    assert _place(base, new, new["id"]) is None  # a second application changes nothing
    assert [i["id"] for i in base].count(new["id"]) == 1
    assert base == sorted(base, key=lambda i: (i["published_at"], i["id"]), reverse=True)
    removed = _place(base, None, new["id"])
    assert removed is not None and all(i["id"] != new["id"] for i in removed)
