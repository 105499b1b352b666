"""Handlers of the newsletter service: plain async functions taking their dependencies.

Subscriber documents (collection ``subscribers``, ``_id`` = :func:`subscriber_id_for` of the
address) go ``pending`` → ``confirmed`` → ``unsubscribed`` (and back to ``pending`` on a new
sign-up). Every change is a ``rev``-guarded read-modify-write of that one document.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiokafka.structs import ConsumerRecord
from email_validator import EmailNotValidError, validate_email
from prometheus_client import Counter
from pymongo.asynchronous.database import AsyncDatabase

from services.newsletter.mail import Mailer, confirmation_email, digest_email, link
from services.newsletter.settings import NewsletterSettings
from shared.events import ConfirmRequested, Envelope, SignupRequested, UnsubscribeRequested, parse_event
from shared.kafka import PermanentError
from shared.listings import bucket_start, index_id, sort_items, walk_buckets
from shared.mongo import FRONTS, SUBSCRIBERS, read_modify_write
from shared.packed import unpack_document
from shared.tokens import InvalidToken, Purpose, make_token, new_nonce, read_token, subscriber_id_for

log = structlog.get_logger("newsletter")

EMAILS = Counter("kazpost_newsletter_emails_total", "Emails sent by the newsletter service", ["kind", "outcome"])
REQUESTS = Counter("kazpost_newsletter_requests_total", "Reader requests handled", ["kind", "outcome"])


def normalise_email(address: str) -> str:
    """The address as we store and key it, or :class:`PermanentError` (no DNS lookups)."""
    try:
        return validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise PermanentError(f"invalid email address: {exc}") from None


def decode_request(msg: ConsumerRecord) -> Envelope:
    try:
        event = parse_event(msg.value)
    except Exception as exc:  # noqa: BLE001 - any parse failure is this message's fault
        raise PermanentError(f"not a newsletter request: {str(exc)[:300]}") from None
    if not isinstance(event, (SignupRequested, ConfirmRequested, UnsubscribeRequested)):
        raise PermanentError(f"unexpected event type {event.event_type!r} on the newsletter topic")
    return event


async def handle_request(msg: ConsumerRecord, *, db: AsyncDatabase, mailer: Mailer, settings: NewsletterSettings,
                         now: datetime | None = None) -> None:
    event = decode_request(msg)
    now = now or datetime.now(UTC)
    structlog.contextvars.bind_contextvars(event_id=event.event_id, event_type=event.event_type)
    if isinstance(event, SignupRequested):
        await signup(event, db=db, mailer=mailer, settings=settings, now=now)
    elif isinstance(event, ConfirmRequested):
        await confirm(event.payload.token, db=db, settings=settings, now=now)
    else:
        await unsubscribe(event.payload.token, db=db, settings=settings, now=now)


async def signup(event: SignupRequested, *, db: AsyncDatabase, mailer: Mailer, settings: NewsletterSettings,
                 now: datetime) -> None:
    email = normalise_email(event.payload.email)
    sub_id = subscriber_id_for(email)
    structlog.contextvars.bind_contextvars(subscriber_id=sub_id)
    seen: dict[str, Any] = {}

    def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
        seen.clear()
        if current:
            seen.update(current)
        if current and current.get("signup_event") == event.event_id:
            return None  # a re-delivery: the mail step below finishes what is left
        if current and current.get("status") == "confirmed":
            return None  # already subscribed; the reader saw the same answer as anyone else
        sent_at = (current or {}).get("confirm_sent_at")
        if (current and current.get("status") == "pending" and sent_at is not None
                and _aware(sent_at) > now - timedelta(seconds=settings.resend_interval_s)):
            return None  # a confirmation went out moments ago: no mail bombing
        fields = {
            "email": email, "status": "pending", "language": event.payload.language,
            "sections": sorted(set(event.payload.sections))[:32], "requested_at": now,
            "confirm_nonce": new_nonce(), "signup_event": event.event_id, "confirm_sent_at": None,
            "unsubscribe_nonce": (current or {}).get("unsubscribe_nonce") or new_nonce(),
        }
        seen.update(fields)
        return fields

    await read_modify_write(db[SUBSCRIBERS], sub_id, change)
    if seen.get("signup_event") != event.event_id or seen.get("confirm_sent_at") is not None or seen.get("status") != "pending":
        REQUESTS.labels("signup", "no_mail").inc()
        log.info("signup_without_mail", status=seen.get("status"))
        return
    confirm_token = make_token(settings.secret.get_secret_value(), sub_id, "confirm", seen["confirm_nonce"],
                               ttl_s=settings.confirm_ttl_s, now=now.timestamp())
    message = confirmation_email(
        settings, email, seen["language"], link(settings, "/newsletter/confirm", confirm_token, seen["language"]),
        unsubscribe_link(settings, sub_id, seen["unsubscribe_nonce"], seen["language"]), now)
    await _send(mailer, message, "confirmation")
    await db[SUBSCRIBERS].update_one({"_id": sub_id, "signup_event": event.event_id}, {"$set": {"confirm_sent_at": now}})
    REQUESTS.labels("signup", "mailed").inc()
    log.info("confirmation_sent")


def unsubscribe_link(settings: NewsletterSettings, sub_id: str, nonce: str, language: str = "en") -> str:
    token = make_token(settings.secret.get_secret_value(), sub_id, "unsubscribe", nonce, ttl_s=None)
    return link(settings, "/newsletter/unsubscribe", token, language)


async def confirm(token: str, *, db: AsyncDatabase, settings: NewsletterSettings, now: datetime) -> bool:
    """Confirm a pending subscriber whose current confirmation nonce is in the link (single use)."""
    def change(current: dict[str, Any] | None, nonce: str) -> dict[str, Any] | None:
        if not current or current.get("status") != "pending" or current.get("confirm_nonce") != nonce:
            return None
        return {"status": "confirmed", "confirm_nonce": None, "confirmed_at": now}

    return await _apply_link(token, "confirm", change, db=db, settings=settings, now=now)


async def unsubscribe(token: str, *, db: AsyncDatabase, settings: NewsletterSettings, now: datetime) -> bool:
    """Unsubscribe (pending or confirmed); the nonce rotates, so the old links stop working."""
    def change(current: dict[str, Any] | None, nonce: str) -> dict[str, Any] | None:
        if not current or current.get("status") == "unsubscribed" or current.get("unsubscribe_nonce") != nonce:
            return None
        return {"status": "unsubscribed", "confirm_nonce": None, "unsubscribed_at": now, "unsubscribe_nonce": new_nonce()}

    return await _apply_link(token, "unsubscribe", change, db=db, settings=settings, now=now)


async def _apply_link(token: str, purpose: Purpose,
                      change: Callable[[dict[str, Any] | None, str], dict[str, Any] | None], *,
                      db: AsyncDatabase, settings: NewsletterSettings, now: datetime) -> bool:
    """Check a signed link, then apply ``change`` to its subscriber (rev-guarded); True if applied."""
    try:
        parsed = read_token(settings.secret.get_secret_value(), token, purpose, now=now.timestamp())
    except InvalidToken as exc:
        REQUESTS.labels(purpose, "invalid").inc()
        log.warning("link_rejected", purpose=purpose, reason=str(exc))
        return False
    done = await read_modify_write(db[SUBSCRIBERS], parsed.subscriber_id, lambda current: change(current, parsed.nonce))
    REQUESTS.labels(purpose, "applied" if done else "ignored").inc()
    log.info("link_applied" if done else "link_ignored", purpose=purpose, subscriber_id=parsed.subscriber_id)
    return done


async def _send(mailer: Mailer, message, kind: str) -> None:
    try:
        await mailer.send(message)
    except Exception:
        EMAILS.labels(kind, "failed").inc()
        raise
    EMAILS.labels(kind, "sent").inc()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- the daily digest ---------------------------------------------------------------------------

async def todays_articles(db: AsyncDatabase, now: datetime, *, hours: int = 24, limit: int = 200) -> list[dict[str, Any]]:
    """Visible articles of the home listing published in the last ``hours``, newest first
    (``_id`` reads of the precomputed listing documents only)."""
    since = now - timedelta(hours=hours)
    index = await db[FRONTS].find_one({"_id": index_id("home")})
    items: list[dict[str, Any]] = []
    async def read(doc_id: str) -> dict[str, Any] | None:
        return unpack_document(await db[FRONTS].find_one({"_id": doc_id}))

    async for bucket, doc in walk_buckets("home", (index or {}).get("buckets", []), read):
        if bucket_start(bucket) < since - timedelta(hours=1):
            break
        for item in (doc or {}).get("items", []):
            published = _aware(item["published_at"])
            embargo = item.get("embargoed_until")
            if since <= published <= now and (embargo is None or _aware(embargo) <= now):
                items.append(item)
        if len(items) >= limit:
            break
    return sort_items(items)[:limit]


def pick_for(subscriber: dict[str, Any], articles: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The subscriber's sections first (all sections if none chosen), newest first, at most ``n``."""
    wanted = set(subscriber.get("sections") or [])
    if not wanted:
        return articles[:n]
    return [a for a in articles if (a.get("section") or {}).get("slug") in wanted][:n]


async def send_digests(db: AsyncDatabase, mailer: Mailer, settings: NewsletterSettings, now: datetime) -> dict[str, int]:
    """Send today's digest to every confirmed subscriber who has not had it yet.

    Each subscriber is claimed (``last_digest`` = today, rev-guarded) before the mail is sent, so
    a digest goes out at most once a day per subscriber, across restarts and replicas; a failed
    send is counted and not retried that day.
    """
    counts = {"sent": 0, "failed": 0, "skipped": 0}
    if now.hour < settings.digest_hour_utc:
        return counts
    day = now.date().isoformat()
    articles = await todays_articles(db, now)
    async for sub in db[SUBSCRIBERS].find({"status": "confirmed"}, batch_size=32):
        if sub.get("last_digest") == day:
            continue
        items = pick_for(sub, articles, settings.digest_articles)
        if not items:
            counts["skipped"] += 1
            continue

        def claim(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if not current or current.get("status") != "confirmed" or current.get("last_digest") == day:
                return None
            return {"last_digest": day, "last_digest_at": now}

        if not await read_modify_write(db[SUBSCRIBERS], sub["_id"], claim):
            continue
        message = digest_email(settings, sub["email"], sub.get("language", "en"), items,
                               unsubscribe_link(settings, sub["_id"], sub["unsubscribe_nonce"], sub.get("language", "en")), now)
        try:
            await _send(mailer, message, "digest")
            counts["sent"] += 1
        except Exception as exc:  # noqa: BLE001 - at most once: counted, logged, not retried today
            counts["failed"] += 1
            log.warning("digest_send_failed", subscriber_id=sub["_id"], error=repr(exc)[:200])
    if counts["sent"] or counts["failed"]:
        log.info("digest_round", day=day, **counts)
    return counts
