"""The newsletter end to end: the reader's form on the real gateway → Kafka → the newsletter
service → the database and a real SMTP server on loopback; links back through the gateway."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from services.gateway.app import CACHE_LISTENING, create_app
from services.gateway.settings import GatewaySettings
from services.newsletter.handlers import send_digests
from services.newsletter.mail import SmtpMailer
from shared.mongo import SUBSCRIBERS
from shared.tokens import subscriber_id_for
from tests.integration.conftest import free_port
from tests.integration.helpers import eventually, ninjs, publish

pytestmark = pytest.mark.integration


def address() -> str:
    return f"reader-{uuid.uuid4().hex[:8]}@example.org"


async def sign_up(pipeline, email: str, *, headers: dict | None = None, **fields) -> tuple[int, str]:
    data = {"email": email, "lang": "en", **fields}
    headers = {"Origin": pipeline.base_url} if headers is None else headers
    async with pipeline.http.post(pipeline.base_url + "/newsletter", data=data, headers=headers) as r:
        return r.status, await r.text()


def link_in(message, path: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"https?://\S+" + re.escape(path) + r"\?\S+", text)
    assert match, f"no {path} link in:\n{text}"
    return match.group(0)


async def subscriber(db, email: str) -> dict | None:
    return await db[SUBSCRIBERS].find_one({"_id": subscriber_id_for(email)})


def visible_text(html: str) -> str:
    """The page without what differs per response (the CSP nonce)."""
    return re.sub(r'nonce="[^"]*"', "", html)


async def test_double_opt_in_digest_and_one_click_unsubscribe(pipeline, db, producer):
    email = address()
    status, page = await sign_up(pipeline, email.upper().replace("EXAMPLE.ORG", "example.org"), section="politics")
    assert status == 202 and "check your inbox" in page.lower()

    mails = await eventually(lambda: _async(pipeline.mail.to(email)), what="the confirmation email")
    confirmation = mails[0]
    assert confirmation["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert confirmation["List-Unsubscribe"].startswith("<http://127.0.0.1:")
    confirm_url = link_in(confirmation, "/newsletter/confirm")
    doc = await subscriber(db, email)
    assert doc["status"] == "pending" and doc["email"] == email and doc["sections"] == ["politics"]

    # Opening the link only shows a button (a mail scanner's GET confirms nothing).
    path = confirm_url.split("127.0.0.1", 1)[1].split("/", 1)[1]
    status, page, _ = await pipeline.get("/" + path)
    assert status == 200 and 'action="/newsletter/confirm"' in page
    assert (await subscriber(db, email))["status"] == "pending"

    token = parse_qs(urlsplit(confirm_url).query)["token"][0]
    async with pipeline.http.post(pipeline.base_url + "/newsletter/confirm", data={"token": token}) as r:
        assert r.status == 200
        assert "confirmed" in (await r.text()).lower()
    await eventually(lambda: _status_is(db, email, "confirmed"), what="the subscription to be confirmed")

    # The digest: an article of the subscriber's section, published today, goes out once a day.
    now = datetime.now(UTC).replace(microsecond=0)
    headline = f"Digest headline {uuid.uuid4().hex[:6]}"
    item = ninjs(f"urn:test:digest:{uuid.uuid4().hex}", headline=headline, section="Politics",
                 created=(now - timedelta(minutes=5)).isoformat())
    await publish(producer, pipeline.kafka.topic_upstream, item)
    await eventually(lambda: _listed(pipeline, headline), what="the article on the home page")
    settings = pipeline.newsletter.model_copy(update={"digest_hour_utc": 0})
    counts = await send_digests(db, SmtpMailer(settings), settings, now)
    assert counts["sent"] >= 1
    digest = [m for m in pipeline.mail.to(email) if "top stories" in m["Subject"]]
    assert len(digest) == 1 and headline in digest[0].get_body(preferencelist=("plain",)).get_content()
    assert digest[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # A second round the same day, as after a restart, sends this subscriber nothing more.
    await send_digests(db, SmtpMailer(settings), settings, now.replace(hour=23, minute=59, second=59))
    assert len([m for m in pipeline.mail.to(email) if "top stories" in m["Subject"]]) == 1

    # RFC 8058 one-click unsubscribe: a POST to the header's URL, as a mail provider sends it.
    one_click = digest[0]["List-Unsubscribe"].strip("<>")
    async with pipeline.http.post(one_click, data={"List-Unsubscribe": "One-Click"}) as r:
        assert r.status == 200
    await eventually(lambda: _status_is(db, email, "unsubscribed"), what="the unsubscription")

    # The old confirmation link is spent: it cannot subscribe the address again.
    async with pipeline.http.post(pipeline.base_url + "/newsletter/confirm", data={"token": token}) as r:
        assert r.status == 200  # the gateway cannot know; the service ignores a used link
    marker = address()
    await sign_up(pipeline, marker)
    await eventually(lambda: _async(pipeline.mail.to(marker)), what="a later sign-up's email")
    assert (await subscriber(db, email))["status"] == "unsubscribed"
    counts = await send_digests(db, SmtpMailer(settings), settings, now + timedelta(days=1))
    assert len([m for m in pipeline.mail.to(email) if "top stories" in m["Subject"]]) == 1


async def test_same_answer_for_known_and_unknown_addresses(pipeline, db):
    known = address()
    await sign_up(pipeline, known)
    await eventually(lambda: _async(pipeline.mail.to(known)), what="the first confirmation")
    again = await sign_up(pipeline, known)
    fresh = await sign_up(pipeline, address())
    assert again[0] == fresh[0] == 202
    assert visible_text(again[1]) == visible_text(fresh[1])


async def test_repeated_sign_up_does_not_mail_bomb(pipeline, db):
    email = address()
    for _ in range(3):
        assert (await sign_up(pipeline, email))[0] == 202
    await eventually(lambda: _async(pipeline.mail.to(email)), what="the confirmation")
    sentinel = address()
    await sign_up(pipeline, sentinel)
    await eventually(lambda: _async(pipeline.mail.to(sentinel)), what="the sentinel's confirmation")
    await eventually(lambda: _sent(db, email), what="the confirmation to be recorded")
    assert len(pipeline.mail.to(email)) == 1


async def test_cross_site_and_bad_sign_ups_are_refused(pipeline, db):
    email = address()
    for headers in ({"Origin": "https://attacker.example"}, {"Sec-Fetch-Site": "cross-site", "Origin": pipeline.base_url}, {}):
        status, page = await sign_up(pipeline, email, headers=headers)
        assert status == 403, headers
    assert (await sign_up(pipeline, "not an address"))[0] == 400
    assert (await sign_up(pipeline, "a@b"))[0] == 400
    honeypot = address()
    assert (await sign_up(pipeline, honeypot, website="http://spam.example"))[0] == 202
    # A browser's same-origin POST (Sec-Fetch-Site) is accepted.
    sentinel = address()
    assert (await sign_up(pipeline, sentinel, headers={"Sec-Fetch-Site": "same-origin"}))[0] == 202
    await eventually(lambda: _async(pipeline.mail.to(sentinel)), what="the sentinel's confirmation")
    assert not pipeline.mail.to(email) and not pipeline.mail.to(honeypot)
    assert await subscriber(db, email) is None and await subscriber(db, honeypot) is None


@pytest.mark.parametrize("path", ["/newsletter/confirm", "/newsletter/unsubscribe"])
async def test_bad_links_get_a_clear_400(pipeline, path):
    for token in ("", "abc", "abc.def", "x" * 5000, "eyJzIjoiMSJ9.AAAA"):
        status, page, headers = await pipeline.get(f"{path}?token={token}")
        assert status == 400 and "invalid or has expired" in page and headers["Cache-Control"] == "no-store"
        async with pipeline.http.post(pipeline.base_url + path, data={"token": token}) as r:
            assert r.status == (413 if len(token) > 4096 else 400)  # bodies are bounded


async def test_sign_ups_are_rate_limited_per_client(kafka_settings, mongo_settings, topics):
    port = free_port()
    settings = GatewaySettings(kafka=kafka_settings, mongo=mongo_settings, port=port, ops_port=None,
                               public_base_url=f"http://127.0.0.1:{port}", newsletter_rate_limit=2,
                               cache_invalidation=False)
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(3):
                async with http.post(f"http://127.0.0.1:{port}/newsletter", data={"email": address()},
                                     headers={"Origin": f"http://127.0.0.1:{port}"}) as r:
                    statuses.append(r.status)
                    retry_after = r.headers.get("Retry-After")
            assert statuses == [202, 202, 429]
            assert retry_after is not None and 1 <= int(retry_after) <= 600
    finally:
        await runner.cleanup()


async def _async(value):
    return value


async def _status_is(db, email: str, status: str) -> bool:
    doc = await subscriber(db, email)
    return bool(doc) and doc["status"] == status


async def _sent(db, email: str) -> bool:
    doc = await subscriber(db, email)
    return bool(doc) and doc.get("confirm_sent_at") is not None


async def _listed(pipeline, headline: str) -> bool:
    status, page, _ = await pipeline.get("/")
    return status == 200 and headline in page
