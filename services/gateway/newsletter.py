"""The reader side of the newsletter: sign-up form posts, confirmation and unsubscribe links.

The gateway owns no subscriber data: it validates what the reader sent and publishes a request
event to the newsletter topic; the newsletter service decides (and mails). Protections:

- **CSRF**: a sign-up is accepted only from this site's own pages, told by the browser's
  ``Sec-Fetch-Site`` header (``same-origin``), or failing that the ``Origin`` header; a request
  with neither is refused. Pages stay identical for every reader (and cacheable), which
  per-reader tokens would prevent. Confirm and unsubscribe carry a signed token instead.
- **Rate limit** per client address (sliding window), a honeypot field, bounded sizes.
- **No enumeration**: every valid sign-up gets the same answer, known address or not.
- **Link scanners** cannot confirm or unsubscribe anyone: the links open a page with a button
  (POST); mail clients' RFC 8058 one-click unsubscribe POSTs directly.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from services.gateway.i18n import labels, ui_language
from services.gateway.settings import GatewaySettings
from services.gateway.views import Views, respond
from shared.events import (
    ConfirmRequested, Envelope, NewsletterSignup, NewsletterToken, SignupRequested, UnsubscribeRequested,
)
from shared.tokens import InvalidToken, Purpose, read_token, subscriber_id_for

log = structlog.get_logger("gateway.newsletter")

Publish = Callable[[str, Envelope], Awaitable[None]]  # (key, event)


class RateLimiter:
    """At most ``limit`` events per ``window_s`` per key (a sliding window), over a bounded
    number of keys (the least recently seen are forgotten)."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> tuple[bool, int]:
        """(allowed, seconds until the next one would be allowed)."""
        now = time.monotonic() if now is None else now
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        self._hits[key] = hits
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)
        retry_after = 0 if allowed else max(1, int(hits[0] + self.window_s - now + 0.999))
        return allowed, retry_after


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_site_form(request: web.Request, public_origin: str) -> bool:
    """True when the browser says the form was sent from one of our own pages."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return False
    return origin.lower() in (public_origin, f"{request.scheme}://{request.host}".lower())


class NewsletterRoutes:
    def __init__(self, settings: GatewaySettings, views: Views, publish: Publish) -> None:
        self.settings = settings
        self.views = views
        self.publish = publish
        self.limiter = RateLimiter(settings.newsletter_rate_limit, settings.newsletter_rate_window_s)
        self.public_origin = origin_of(settings.public_base_url)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/newsletter", self.signup),
            web.get("/newsletter/confirm", self.confirm_page),
            web.post("/newsletter/confirm", self.confirm),
            web.get("/newsletter/unsubscribe", self.unsubscribe_page),
            web.post("/newsletter/unsubscribe", self.unsubscribe),
        ]

    def client_key(self, request: web.Request) -> str:
        header = self.settings.client_ip_header
        if header and request.headers.get(header):
            # The proxy in front appends the address it saw; that last hop is the one we trust.
            return request.headers[header].split(",")[-1].strip()[:64]
        return request.remote or "unknown"

    def _page(self, request: web.Request, language: str, status: int, title: str, text: str, *,
              action: str | None = None, token: str | None = None, button: str | None = None,
              headers: dict[str, str] | None = None) -> web.StreamResponse:
        context = self.views._context(request, language, title=title, text=text, status=status, sections=[],
                                      action=action, token=token, button=button)
        page = self.views._render(request, "newsletter.html", context, status=status, headers=headers)
        response = respond(request, page)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _form(self, request: web.Request):
        if request.content_length is not None and request.content_length > self.settings.newsletter_max_form_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self.settings.newsletter_max_form_bytes,
                                                actual_size=request.content_length)
        try:
            return await request.post()
        except (ValueError, UnicodeDecodeError):
            return None

    async def signup(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        language = ui_language(str((form or {}).get("lang", "")), self.settings.default_language)
        t = labels(language)
        if not same_site_form(request, self.public_origin):
            log.info("signup_refused_cross_site", origin=request.headers.get("Origin"),
                     fetch_site=request.headers.get("Sec-Fetch-Site"))
            return self._page(request, language, 403, t["newsletter"], t["form_origin"])
        allowed, retry_after = self.limiter.allow(self.client_key(request))
        if not allowed:
            return self._page(request, language, 429, t["newsletter"], t["too_many"],
                              headers={"Retry-After": str(retry_after)})
        if form is None:
            return self._page(request, language, 400, t["newsletter"], t["signup_invalid"])
        raw_email = str(form.get("email", "")).strip()
        try:
            email = validate_email(raw_email[:320], check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            return self._page(request, language, 400, t["newsletter"], t["signup_invalid"])
        if form.get("website"):  # the honeypot: a bot filled the hidden field; answer as usual
            log.info("signup_honeypot")
            return self._page(request, language, 202, t["newsletter"], t["signup_thanks"])
        sections = sorted({str(s)[:60] for s in form.getall("section", []) if str(s).strip()})[:20]
        sub_id = subscriber_id_for(email)
        event = SignupRequested(producer="gateway", correlation_id=uuid.uuid4().hex,
                                payload=NewsletterSignup(email=email, sections=sections, language=language))
        await self.publish(sub_id, event)
        return self._page(request, language, 202, t["newsletter"], t["signup_thanks"])

    def _token(self, value: object, purpose: Purpose):
        try:
            return read_token(self.settings.newsletter_secret.get_secret_value(), str(value or ""), purpose)
        except InvalidToken:
            return None

    def _language(self, request: web.Request) -> str:
        return ui_language(request.query.get("lang"), self.settings.default_language)

    async def confirm_page(self, request: web.Request) -> web.StreamResponse:
        return self._link_page(request, "confirm")

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        return await self._link_action(request, "confirm")

    async def unsubscribe_page(self, request: web.Request) -> web.StreamResponse:
        return self._link_page(request, "unsubscribe")

    async def unsubscribe(self, request: web.Request) -> web.StreamResponse:
        """The page's button, and RFC 8058 one-click (``List-Unsubscribe=One-Click``, token in the URL)."""
        return await self._link_action(request, "unsubscribe")

    def _link_page(self, request: web.Request, purpose: Purpose) -> web.StreamResponse:
        """What a link from an email opens: a page with a button (a GET changes nothing)."""
        language = self._language(request)
        t = labels(language)
        token = request.query.get("token", "")
        if self._token(token, purpose) is None:
            return self._page(request, language, 400, t[f"{purpose}_title"], t["link_invalid"])
        return self._page(request, language, 200, t[f"{purpose}_title"], t[f"{purpose}_text"],
                          action=f"/newsletter/{purpose}", token=token, button=t[f"{purpose}_button"])

    async def _link_action(self, request: web.Request, purpose: Purpose) -> web.StreamResponse:
        """The button (or a one-click POST): check the link, publish the request to the service."""
        language = self._language(request)
        t = labels(language)
        form = await self._form(request)
        token = str((form or {}).get("token") or request.query.get("token", ""))
        parsed = self._token(token, purpose)
        if parsed is None:
            return self._page(request, language, 400, t[f"{purpose}_title"], t["link_invalid"])
        event_type = ConfirmRequested if purpose == "confirm" else UnsubscribeRequested
        await self.publish(parsed.subscriber_id, event_type(
            producer="gateway", correlation_id=uuid.uuid4().hex, payload=NewsletterToken(token=token)))
        return self._page(request, language, 200, t[f"{purpose}_title"], t["confirmed" if purpose == "confirm" else "unsubscribed"])
