"""The bad-input suite's own checks catch what they are meant to catch (so a clean run means
something), and its corpora loader and sampler behave."""

from __future__ import annotations

import pytest

from tests.badinput import checks, corpora
from tests.badinput.channels import Tally, field_messages, table


@pytest.mark.parametrize(
    ("html", "problem"),
    [
        ("<p>ok</p><script>alert(1)</script>", "tag <script>"),
        ('<img src="x" onerror="alert(1)">', "attribute 'onerror'"),
        ('<a href="javascript:alert(1)">x</a>', "scheme 'javascript'"),
        ('<a href=" JaVaScRiPt:alert(1)">x</a>', "scheme 'JaVaScRiPt'"),
        ('<p style="x">a</p>', "attribute 'style'"),
        ("<svg><a>x</a></svg>", "tag <svg>"),
        ('<iframe src="https://x"></iframe>', "tag <iframe>"),
    ],
)
def test_html_outside_the_allow_list_is_found(html, problem):
    assert any(problem in p for p in checks.html_problems(html)), checks.html_problems(html)


def test_sanitised_html_passes():
    html = '<p>a <a href="https://x.kz/" rel="noopener noreferrer nofollow">b</a></p><img src="/i.jpg" alt="c">'
    assert checks.html_problems(html) == []


def test_unsafe_article_fields_are_found():
    article = {"body_html": "<p>x</p>", "headline": "a\x07b", "slug": "ok", "section": {"slug": "Bad Slug"},
               "tags": [], "lead_image": {"href": "javascript:alert(1)"}, "byline": "two\nlines"}
    problems = " ".join(checks.article_problems(article))
    assert "headline holds control" in problems and "byline is not one line" in problems
    assert "lead image" in problems and "slug 'Bad Slug'" in problems


@pytest.mark.parametrize(
    ("name", "command", "ok"),
    [
        ("find", {"find": "articles", "filter": {"_id": "0123456789abcdef"}, "limit": 1, "singleBatch": True}, True),
        ("find", {"find": "articles", "filter": {"_id": {"$gt": ""}}}, False),
        ("find", {"find": "articles", "filter": {"_id": "x", "uri": "y"}}, False),
        ("find", {"find": "articles", "filter": {}}, False),
        ("find", {"find": "articles", "filter": {"_id": "x"}, "sort": {"a": 1}}, False),
        ("aggregate", {"aggregate": "articles", "pipeline": []}, False),
        ("update", {"update": "articles"}, False),
        ("ping", {"ping": 1}, True),
    ],
)
def test_query_shape_check(name, command, ok):
    assert (checks.filter_problems(name, command) == []) is ok


def test_error_shape_check():
    assert checks.error_shape_problems(400, {"error": {"status": 400, "code": "bad_request", "message": "m"}}) == []
    assert checks.error_shape_problems(400, {"error": {"status": 404, "code": "x", "message": "m"}})
    assert checks.error_shape_problems(400, {"detail": "x"})
    assert checks.error_shape_problems(400, {"error": {"status": 400, "code": "", "message": "m"}})


def test_sample_is_spread_and_deterministic():
    items = list(range(100))
    assert corpora.sample(items, 4) == [0, 25, 50, 75] == corpora.sample(items, 4)
    assert corpora.sample(items, None) == items and corpora.sample(items, 500) == items


def test_equal_strings_become_distinct_messages():
    """Two corpora holding the same string must not look like a re-delivery (which ingestion skips)."""
    messages = field_messages([("a", "x"), ("b", "x")], "run")
    assert len({m.value for m in messages}) == len(messages)


def test_a_tally_is_ok_only_when_everything_is_accounted_for():
    assert Tally("c", inputs=2, rejected=1, accepted=1).ok
    assert not Tally("c", inputs=2, rejected=1).ok
    assert not Tally("c", inputs=1, accepted=1, server_errors=1).ok
    assert "| c " in table([Tally("c", inputs=1, accepted=1)])


@pytest.mark.skipif(not corpora.available(), reason="the bad-input corpora are not present")
def test_corpora_load():
    assert len(corpora.blns()) == 515
    assert len(corpora.parsing_cases()) == 340
    assert len(corpora.xss()) > 1000 and len(corpora.nosql()) > 20
    names = {b.label for b in corpora.parsing_cases()}
    assert "jsonts:test_parsing:n_structure_100000_opening_arrays.json" in names
