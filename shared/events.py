"""Internal events: one envelope around typed payloads.

Every event on an internal topic is an :class:`Envelope` (event id, type, schema version,
occurred-at, producer, correlation id, payload).  Schemas evolve additively: new optional
fields only; a breaking change gets a new ``event_type``.  JSON-Schema snapshots of every event
live under ``tests/schemas/`` and a test fails when they drift.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

PubStatus = Literal["usable", "withheld", "canceled"]


def article_id_for(uri: str) -> str:
    """Stable article id derived from the ninjs ``uri`` (16 hex characters)."""
    return hashlib.blake2b(uri.strip().encode("utf-8"), digest_size=8).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Term(_Frozen):
    """A section or tag: URL-safe slug plus display name."""

    slug: str
    name: str


class Image(_Frozen):
    href: str
    alt: str = ""
    caption: str | None = None
    width: int | None = None
    height: int | None = None


class Translation(_Frozen):
    """Another article that is this one in another language (declared upstream)."""

    language: str
    id: str
    uri: str


class Article(_Frozen):
    """The canonical, normalised article (a ninjs item after ingestion)."""

    id: str = Field(description="article id = blake2b-64(uri) in hex")
    uri: str
    version: int = Field(ge=1)
    version_created: AwareDatetime
    first_created: AwareDatetime
    pub_status: PubStatus
    embargoed_until: AwareDatetime | None = None
    language: str = Field(description="primary BCP 47 subtag, lower case (kk, ru, en, ...)")
    language_tag: str = Field(description="the tag as sent upstream, normalised case")
    headline: str
    standfirst: str | None = None
    body_html: str = Field(default="", description="sanitised HTML")
    body_text: str = ""
    byline: str | None = None
    section: Term | None = None
    tags: list[Term] = Field(default_factory=list)
    slug: str
    word_count: int = 0
    reading_time_min: int = 0
    content_hash: str
    lead_image: Image | None = None
    copyright_notice: str | None = None
    sources: list[str] = Field(default_factory=list)
    translations: list[Translation] = Field(default_factory=list, description="the same article in other languages")


class Teaser(_Frozen):
    """What a listing or a related list shows of an article."""

    id: str
    slug: str
    headline: str
    standfirst: str | None = None
    language: str
    section: Term | None = None
    published_at: AwareDatetime
    updated_at: AwareDatetime
    embargoed_until: AwareDatetime | None = None
    image: Image | None = None
    sources: list[str] = Field(default_factory=list)


def teaser_of(article: Article, *, standfirst_chars: int = 280) -> Teaser:
    standfirst = article.standfirst
    if standfirst and len(standfirst) > standfirst_chars:
        standfirst = standfirst[: standfirst_chars - 1].rsplit(" ", 1)[0] + "…"
    return Teaser(
        id=article.id,
        slug=article.slug,
        headline=article.headline,
        standfirst=standfirst,
        language=article.language,
        section=article.section,
        published_at=article.first_created,
        updated_at=article.version_created,
        embargoed_until=article.embargoed_until,
        image=article.lead_image,
        sources=article.sources,
    )


class ArticleIngested(_Frozen):
    article: Article


class ArticleStored(_Frozen):
    """Published by storage after the write; carries the article so consumers never re-read it."""

    article: Article
    change: Literal["created", "updated", "killed", "withheld"]
    previous_version: int | None = None


class RelatedItem(_Frozen):
    teaser: Teaser
    score: float
    cross_language: bool = False


class ArticleLinked(_Frozen):
    article_id: str
    rev: int = Field(description="monotonic revision of the related list")
    related: list[RelatedItem]
    duplicates: list[str] = Field(default_factory=list)


class ArticleNarrated(_Frozen):
    """Published by narration when an article's audio was written (``ready``) or removed
    (``deleted``: killed, withheld, or no longer narratable)."""

    article_id: str
    version: int = Field(description="the article version the audio was made from")
    status: Literal["ready", "deleted"]
    language: str | None = None
    duration_s: float | None = Field(default=None, ge=0)
    size: int | None = Field(default=None, ge=0)
    content_type: str | None = None


class NewsletterSignup(_Frozen):
    """A reader asked to subscribe (not yet confirmed: the newsletter service mails a link)."""

    email: str = Field(max_length=254)
    sections: list[str] = Field(default_factory=list, max_length=32)
    language: Literal["kk", "ru", "en"] = "en"


class NewsletterToken(_Frozen):
    """A reader followed a signed confirmation or unsubscribe link; the service checks it."""

    token: str = Field(max_length=1024)


P = TypeVar("P", bound=BaseModel)

EventType = Literal["article.ingested", "article.stored", "article.linked", "article.narrated",
                    "newsletter.signup_requested", "newsletter.confirm_requested",
                    "newsletter.unsubscribe_requested"]

PAYLOADS: dict[str, type[BaseModel]] = {
    "article.ingested": ArticleIngested,
    "article.stored": ArticleStored,
    "article.linked": ArticleLinked,
    "article.narrated": ArticleNarrated,
    "newsletter.signup_requested": NewsletterSignup,
    "newsletter.confirm_requested": NewsletterToken,
    "newsletter.unsubscribe_requested": NewsletterToken,
}


class Envelope(BaseModel, Generic[P]):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    event_type: EventType
    schema_version: int = SCHEMA_VERSION
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    producer: str
    correlation_id: str
    payload: P

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class IngestedEvent(Envelope[ArticleIngested]):
    event_type: Literal["article.ingested"] = "article.ingested"


class StoredEvent(Envelope[ArticleStored]):
    event_type: Literal["article.stored"] = "article.stored"


class LinkedEvent(Envelope[ArticleLinked]):
    event_type: Literal["article.linked"] = "article.linked"


class NarratedEvent(Envelope[ArticleNarrated]):
    event_type: Literal["article.narrated"] = "article.narrated"


class SignupRequested(Envelope[NewsletterSignup]):
    event_type: Literal["newsletter.signup_requested"] = "newsletter.signup_requested"


class ConfirmRequested(Envelope[NewsletterToken]):
    event_type: Literal["newsletter.confirm_requested"] = "newsletter.confirm_requested"


class UnsubscribeRequested(Envelope[NewsletterToken]):
    event_type: Literal["newsletter.unsubscribe_requested"] = "newsletter.unsubscribe_requested"


EVENT_MODELS: dict[str, type[Envelope]] = {
    "article.ingested": IngestedEvent,
    "article.stored": StoredEvent,
    "article.linked": LinkedEvent,
    "article.narrated": NarratedEvent,
    "newsletter.signup_requested": SignupRequested,
    "newsletter.confirm_requested": ConfirmRequested,
    "newsletter.unsubscribe_requested": UnsubscribeRequested,
}


def parse_event(data: bytes) -> Envelope:
    """Parse any internal event by its ``event_type``; raises ``pydantic.ValidationError``."""
    import json

    raw = json.loads(data)
    kind = raw.get("event_type") if isinstance(raw, dict) else None
    model = EVENT_MODELS.get(kind)  # type: ignore[arg-type]
    if model is None:
        raise ValueError(f"unknown event_type {kind!r}")
    return model.model_validate(raw)
