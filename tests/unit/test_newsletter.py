"""Newsletter pieces without I/O: signed links, the rate limiter, the origin check, the emails."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import make_mocked_request

from services.gateway.newsletter import RateLimiter, origin_of, same_site_form
from services.newsletter.handlers import normalise_email, pick_for
from services.newsletter.mail import confirmation_email, digest_email
from services.newsletter.settings import NewsletterSettings
from shared.kafka import PermanentError
from shared.tokens import InvalidToken, make_token, read_token, subscriber_id_for

SECRET = "s3cret"


def test_token_round_trip_and_rejections():
    token = make_token(SECRET, "sub1", "confirm", "n1", ttl_s=60, now=1000)
    parsed = read_token(SECRET, token, "confirm", now=1030)
    assert (parsed.subscriber_id, parsed.purpose, parsed.nonce) == ("sub1", "confirm", "n1")
    with pytest.raises(InvalidToken, match="expired"):
        read_token(SECRET, token, "confirm", now=1061)
    with pytest.raises(InvalidToken, match="not a unsubscribe link"):
        read_token(SECRET, token, "unsubscribe", now=1030)
    with pytest.raises(InvalidToken, match="signature"):
        read_token("other secret", token, "confirm", now=1030)
    payload, signature = token.split(".")
    forged = make_token(SECRET, "sub2", "confirm", "n1", ttl_s=60, now=1000).split(".")[0]
    with pytest.raises(InvalidToken, match="signature"):
        read_token(SECRET, f"{forged}.{signature}", "confirm", now=1030)
    for junk in ("", "a", "a.b.c", "é.é", "x" * 600):
        with pytest.raises(InvalidToken):
            read_token(SECRET, junk, "confirm")


def test_unsubscribe_tokens_do_not_expire():
    token = make_token(SECRET, "sub1", "unsubscribe", "n", ttl_s=None, now=0)
    assert read_token(SECRET, token, "unsubscribe", now=10**10).nonce == "n"


def test_subscriber_id_ignores_case_and_spaces():
    assert subscriber_id_for(" Reader@Example.org ") == subscriber_id_for("reader@example.org")
    assert subscriber_id_for("a@example.org") != subscriber_id_for("b@example.org")


def test_rate_limiter_sliding_window():
    limiter = RateLimiter(limit=2, window_s=10, max_keys=2)
    assert limiter.allow("a", now=0) == (True, 0)
    assert limiter.allow("a", now=1) == (True, 0)
    allowed, retry_after = limiter.allow("a", now=2)
    assert not allowed and retry_after == 8
    assert limiter.allow("b", now=2)[0]  # per client
    assert limiter.allow("a", now=10.5)[0]  # the first hit left the window
    limiter.allow("c", now=11)
    assert len(limiter._hits) == 2  # bounded memory: the least recently seen key is forgotten


@pytest.mark.parametrize(("headers", "ok"), [
    ({"Sec-Fetch-Site": "same-origin"}, True),
    ({"Sec-Fetch-Site": "cross-site", "Origin": "https://news.example"}, False),
    ({"Sec-Fetch-Site": "same-site"}, False),
    ({"Origin": "https://news.example"}, True),
    ({"Origin": "https://NEWS.example"}, True),
    ({"Origin": "https://evil.example"}, False),
    ({"Origin": "null"}, False),
    ({}, False),
])
def test_same_site_form(headers, ok):
    request = make_mocked_request("POST", "/newsletter", headers={"Host": "internal:8080", **headers})
    assert same_site_form(request, origin_of("https://news.example/")) is ok


def test_email_normalisation():
    assert normalise_email("Reader@Example.ORG") == "reader@example.org"
    for bad in ("reader", "a@b", "a@@example.org", "<script>@example.org"):
        with pytest.raises(PermanentError):
            normalise_email(bad)


def test_emails_carry_one_click_unsubscribe_and_escape_content():
    settings = NewsletterSettings(public_base_url="https://news.example")
    now = datetime(2026, 11, 27, 7, tzinfo=UTC)
    confirm = confirmation_email(settings, "r@example.org", "kk", "https://news.example/newsletter/confirm?token=t",
                                 "https://news.example/newsletter/unsubscribe?token=u", now)
    assert confirm["List-Unsubscribe"] == "<https://news.example/newsletter/unsubscribe?token=u>"
    assert confirm["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "растаңыз" in confirm["Subject"]
    item = {"id": "abc", "slug": "s", "headline": "<b>Bold</b> & co", "standfirst": None, "language": "en"}
    digest = digest_email(settings, "r@example.org", "en", [item], "https://news.example/u", now)
    html_part = digest.get_body(preferencelist=("html",)).get_content()
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in html_part and "<b>Bold" not in html_part
    assert "https://news.example/articles/abc/s" in digest.get_body(preferencelist=("plain",)).get_content()


def test_digest_picks_the_subscribers_sections():
    articles = [{"id": str(i), "section": {"slug": "politics" if i % 2 else "sport"}} for i in range(6)]
    assert [a["id"] for a in pick_for({"sections": ["politics"]}, articles, 2)] == ["1", "3"]
    assert len(pick_for({"sections": []}, articles, 4)) == 4
