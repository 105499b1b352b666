"""Gateway request handlers: server-rendered pages and the public JSON API.

Every read is one ``_id`` lookup of a document shaped for the page (article, related list,
listing), served from the in-process cache when possible.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json
import re
from datetime import UTC, datetime
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
import brotli
import structlog
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from services.gateway.cache import MISSING, Cache, Page
from services.gateway.openapi import NOT_BLANK, document as openapi_document
from services.gateway.highlight import highlight
from services.gateway.i18n import date_time, labels, language_name, long_date, ui_language
from services.gateway.settings import GatewaySettings
from shared import metrics
from shared.events import article_id_for
from shared.listings import bucket_start, index_id, sort_items, walk_buckets
from shared.audio import AUDIO, CONTENT_TYPE, AudioUnavailable, RangeNotSatisfiable, byte_range, etag_of, iter_range
from shared.mongo import ARTICLES, FRONTS, RELATED
from shared.packed import unpack_document

log = structlog.get_logger("gateway")
_PAGE_BUILD = metrics.CACHE_EVENTS.labels("page_build")  # a page rendered (the misses that waited for it are not)

ID_RE = re.compile(r"^[0-9a-f]{16}$")
SLUG_RE = re.compile(r"^[a-z0-9-]{1,100}$")
CURSOR_RE = re.compile(r"^(\d{1,15})-([0-9a-f]{16})$")
NOT_BLANK_RE = re.compile(NOT_BLANK)  # the OpenAPI document's pattern for q

CACHE_CONTROL = "public, max-age=30, stale-while-revalidate=60, stale-if-error=86400"


class ApiError(Exception):
    """A JSON error with a stable shape: ``{"error": {"status", "code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.json_response(
            {"error": {"status": self.status, "code": self.code, "message": self.message}},
            status=self.status, headers={"Cache-Control": "no-store"},
        )


def check_params(request: web.Request, allowed: set[str]) -> None:
    """Unknown or repeated query parameters are a client error, never silently ignored."""
    for name in request.query:
        if name not in allowed:
            raise ApiError(400, "bad_request", f"unknown parameter {name[:40]!r}; allowed: {', '.join(sorted(allowed))}")
        if len(request.query.getall(name)) > 1:
            raise ApiError(400, "bad_request", f"parameter {name!r} given more than once")


class ReadModel:
    def __init__(self, db: AsyncDatabase, cache: Cache) -> None:
        self.db = db
        self.cache = cache

    async def listing(self, key: str, *, cursor: str | None, size: int, language: str | None = None,
                      section: str | None = None, max_buckets: int = 60) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str | None, set[str]]:
        """One page of a listing: (index doc, items, next cursor, document keys read).

        Reads the listing's index, then its buckets newest first (skipping those newer than the
        cursor) until the page is full; each read is an ``_id`` lookup, cached.
        """
        position = parse_cursor(cursor)  # a malformed cursor is a 400 even for an empty listing
        index = await self.get(FRONTS, index_id(key))
        deps = {f"{FRONTS}:{index_id(key)}"}
        if index is None:
            return None, [], None, deps
        now = now_utc()
        collected: list[dict[str, Any]] = []
        scanned = 0

        def newer_than_cursor(bucket: str) -> bool:
            return position is not None and int(bucket_start(bucket).timestamp() * 1000) > position[0]

        async def read(doc_id: str) -> dict[str, Any] | None:
            deps.add(f"{FRONTS}:{doc_id}")
            return await self.get(FRONTS, doc_id)

        async for _bucket, doc in walk_buckets(key, index.get("buckets", []), read, skip=newer_than_cursor):
            scanned += 1
            for item in (doc or {}).get("items", []):
                if not visible(item, now) or (language and item.get("language") != language):
                    continue
                if section and (item.get("section") or {}).get("slug") != section:
                    continue
                if position is not None and _key(item) >= position:
                    continue
                collected.append(item)
            if len(collected) > size or scanned >= max_buckets:
                break
        collected = sort_items(collected)
        page = collected[:size]
        next_cursor = cursor_of(page[-1]) if len(collected) > size or (page and scanned >= max_buckets) else None
        return index, page, next_cursor, deps

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        key = f"{collection}:{doc_id}"
        cached = self.cache.get_doc(key)
        if cached is not MISSING:
            return cached
        since = self.cache.generation
        doc = await self.db[collection].find_one({"_id": doc_id})
        if collection in (FRONTS, RELATED):
            doc = unpack_document(doc)  # teaser lists are stored as JSON strings
        self.cache.put_doc(key, doc, since=since)
        return doc


def now_utc() -> datetime:
    return datetime.now(UTC)


def visible(item: dict[str, Any], now: datetime) -> bool:
    embargo = item.get("embargoed_until")
    return embargo is None or embargo <= now


def audio_of(article: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the page shows of the article's audio: only audio of the version on the page."""
    if meta is None or meta.get("version") != article.get("version") or not meta.get("size"):
        return None
    seconds = int(float(meta.get("duration_s") or 0))  # whole seconds shown, as players do
    return {
        "doc": meta,
        "version": meta["version"],
        "url": f"/audio/{meta['_id']}/{meta['version']}.opus",
        "content_type": meta.get("content_type") or CONTENT_TYPE,
        "language": meta.get("language") or article.get("language"),
        "duration_s": seconds,
        "duration": f"{seconds // 60}:{seconds % 60:02d}",
        "duration_iso": f"PT{seconds // 60}M{seconds % 60}S",
    }


async def send_audio(request: web.Request, db: AsyncDatabase, meta: dict[str, Any]) -> web.StreamResponse:
    size = int(meta["size"])
    etag = meta.get("etag") or etag_of(meta["sha256"])
    headers = {
        "Content-Type": meta.get("content_type") or CONTENT_TYPE, "Accept-Ranges": "bytes", "ETag": etag,
        "Cache-Control": "public, max-age=31536000, immutable", **SECURITY_HEADERS,
    }
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's copy is another version: send it whole
    try:
        span = byte_range(range_header, size)
    except RangeNotSatisfiable:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = span if span is not None else (0, size - 1)
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    if span is not None:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    response.content_length = end - start + 1
    if request.method == "HEAD" or size == 0:
        await response.prepare(request)
        return response
    pieces = iter_range(db, meta, start, end)
    first = await anext(pieces)  # a missing chunk fails before anything is sent
    await response.prepare(request)
    await response.write(first)
    try:
        async for piece in pieces:
            await response.write(piece)
    except AudioUnavailable:
        # Replaced while being sent: the headers are out, so end the connection; the client
        # sees a short body and asks again (for the new version's URL).
        log.warning("audio_replaced_while_sending", article_id=meta["_id"])
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def article_path(item: dict[str, Any]) -> str:
    return f"/articles/{item['id']}/{item['slug']}"


def cursor_of(item: dict[str, Any]) -> str:
    return f"{int(item['published_at'].timestamp() * 1000)}-{item['id']}"


def parse_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    match = CURSOR_RE.match(cursor)
    if not match:
        raise ValueError("cursor is malformed")
    return int(match.group(1)), match.group(2)


def _key(item: dict[str, Any]) -> tuple[int, str]:
    return int(item["published_at"].timestamp() * 1000), item["id"]


def page_after(items: list[dict[str, Any]], cursor: str | None, size: int) -> tuple[list[dict[str, Any]], str | None]:
    """Items strictly older than the cursor (stable while new items arrive at the top)."""
    position = parse_cursor(cursor)
    if position is not None:
        items = [i for i in items if _key(i) < position]
    page = items[:size]
    next_cursor = cursor_of(page[-1]) if len(items) > size else None
    return page, next_cursor


CSP = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "media-src 'self'; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; upgrade-insecure-requests"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


def make_page(body: str | bytes, *, status: int = 200, content_type: str = "text/html; charset=utf-8",
              last_modified: datetime | None = None, headers: dict[str, str] | None = None,
              slug: str | None = None) -> Page:
    data = body.encode("utf-8") if isinstance(body, str) else body
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    modified = (last_modified or now_utc()).timestamp()
    compress = len(data) > 1024
    gzip_body = gzip.compress(data, compresslevel=6, mtime=0) if compress else None
    br_body = brotli.compress(data, quality=5) if compress else None  # 9 costs ~20x the CPU for <1% smaller
    common = {
        **SECURITY_HEADERS,
        "ETag": etag,
        "Last-Modified": datetime.fromtimestamp(modified, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Cache-Control": CACHE_CONTROL if status < 400 or status == 410 else "public, max-age=10",
        "Vary": "Accept-Encoding",
        **(headers or {}),
    }
    return Page(
        status=status,
        body=data,
        gzip_body=gzip_body,
        br_body=br_body,
        etag=etag,
        last_modified=modified,
        plain_headers={**common, "Content-Type": content_type},
        gzip_headers={**common, "Content-Type": content_type, "Content-Encoding": "gzip"},
        br_headers={**common, "Content-Type": content_type, "Content-Encoding": "br"},
        not_modified_headers=common,
        slug=slug,
    )


def respond(request: web.Request, page: Page) -> web.Response:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        if page.status == 200 and (inm.strip() == "*" or page.etag in [t.strip() for t in inm.split(",")]):
            return web.Response(status=304, headers=page.not_modified_headers)
    else:
        ims = request.headers.get("If-Modified-Since")
        if ims and page.status == 200:
            try:
                since = datetime.strptime(ims, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC).timestamp()
                if int(page.last_modified) <= since:
                    return web.Response(status=304, headers=page.not_modified_headers)
            except ValueError:
                pass
    accept = request.headers.get("Accept-Encoding", "")
    if page.br_body is not None and "br" in accept:
        body, headers = page.br_body, page.br_headers
    elif page.gzip_body is not None and "gzip" in accept:
        body, headers = page.gzip_body, page.gzip_headers
    else:
        body, headers = page.body, page.plain_headers
    if request.method == "HEAD":
        return web.Response(status=page.status, headers={**headers, "Content-Length": str(len(body))})
    return web.Response(status=page.status, body=body, headers=headers)


class Views:
    def __init__(self, settings: GatewaySettings, read: ReadModel, cache: Cache) -> None:
        self.settings = settings
        self.read = read
        self.cache = cache
        self.linking_session = None  # aiohttp.ClientSession, set by the app
        self._building: dict[str, asyncio.Future[Page]] = {}
        self.static_version = ""

    # helpers ------------------------------------------------------------------------------
    def _context(self, request: web.Request, language: str, **extra: Any) -> dict[str, Any]:
        lang = ui_language(language, self.settings.default_language)
        now = now_utc()
        return {
            "site_name": self.settings.site_name,
            "tagline": self.settings.tagline,
            "lang": lang,
            "t": labels(lang),
            "today": long_date(now, lang),
            "now": now,
            "fmt_time": lambda dt: date_time(dt, lang),
            "article_path": article_path,
            "base_url": self.settings.public_base_url.rstrip("/"),
            "path": request.path,
            "static": lambda name: f"/static/{name}?v={self.static_version}",
            "mark": highlight,
            "language_name": language_name,
            **extra,
        }

    def _render(self, request: web.Request, template: str, context: dict[str, Any], *, status: int = 200,
                last_modified: datetime | None = None, headers: dict[str, str] | None = None,
                slug: str | None = None) -> Page:
        html = aiohttp_jinja2.render_string(template, request, context)
        return make_page(html, status=status, last_modified=last_modified, headers=headers, slug=slug)

    async def _sections(self) -> list[dict[str, str]]:
        home = await self.read.get(FRONTS, "front:home")
        return list((home or {}).get("sections", []))

    def error_page(self, request: web.Request, status: int, language: str | None = None) -> Page:
        lang = ui_language(language or self.settings.default_language)
        t = labels(lang)
        title, text = {404: (t["not_found"], t["not_found_text"]), 410: (t["gone"], t["gone_text"])}.get(
            status, (t["error"], "")
        )
        return self._render(request, "error.html", self._context(request, lang, title=title, text=text,
                                                                  status=status, sections=[]), status=status)

    # pages --------------------------------------------------------------------------------
    async def page(self, key: str, build: Callable[[], Awaitable[tuple[Page, set[str]]]]) -> Page:
        """The cached page for ``key``, built at most once at a time (concurrent misses wait for
        the one build instead of all reading the database: no thundering herd on expiry)."""
        page = self.cache.get_page(key)
        if page is not None:
            return page
        return await self.build_page(key, build)

    async def build_page(self, key: str, build: Callable[[], Awaitable[tuple[Page, set[str]]]]) -> Page:
        """Build ``key``'s page (the cache just missed it), or wait for the build under way."""
        pending = self._building.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Page] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        _PAGE_BUILD()
        try:
            since = self.cache.generation
            page, deps = await build()
            self.cache.put_page(key, page, deps, since=since)
            future.set_result(page)
            return page
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._building[key]

    async def _front_page(self, request: web.Request, key: str) -> web.StreamResponse:
        cursor = request.query.get("before") if request.query_string else None  # skip parsing when empty (hot path)
        page_key = f"page:{key}:{cursor or ''}"
        page = self.cache.get_page(page_key)  # the hot path: no closure, no coroutine beyond this one
        if page is None:
            page = await self.build_page(page_key, functools.partial(self._build_front, request, key, cursor))
        return respond(request, page)

    async def _build_front(self, request: web.Request, key: str, cursor: str | None) -> tuple[Page, set[str]]:
        try:
            index, items, next_cursor, deps = await self.read.listing(key, cursor=cursor, size=self.settings.page_size)
        except ValueError:
            raise web.HTTPBadRequest(text="malformed cursor") from None
        if index is None and key != "home":
            return self.error_page(request, 404), deps
        blocks = []
        if key == "home" and not cursor:
            # Per-section blocks: the newest few of each section (each an _id-read listing).
            for section in ((index or {}).get("sections") or [])[:12]:
                _, block_items, _, block_deps = await self.read.listing(f"section:{section['slug']}", cursor=None, size=4)
                deps |= block_deps
                if block_items:
                    blocks.append({"section": section, "entries": block_items})
        context = self._context(
            request, self.settings.default_language,
            front=index or {"kind": "home", "name": "Home"}, items=items, next_cursor=next_cursor,
            is_first=not cursor, sections=await self._sections(), blocks=blocks,
        )
        page = self._render(request, "front.html", context, last_modified=(index or {}).get("updated_at"))
        return page, deps | {f"{FRONTS}:front:home"}

    async def home(self, request: web.Request) -> web.StreamResponse:
        return await self._front_page(request, "home")

    async def section(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        if not SLUG_RE.match(slug):
            return respond(request, self.error_page(request, 404))
        return await self._front_page(request, f"section:{slug}")

    async def tag(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        if not SLUG_RE.match(slug):
            return respond(request, self.error_page(request, 404))
        return await self._front_page(request, f"tag:{slug}")

    async def _article_state(self, article_id: str) -> tuple[int, dict[str, Any] | None]:
        """(status, doc): 200 visible, 404 unknown/withheld/embargoed, 410 killed."""
        if not ID_RE.match(article_id):
            return 404, None
        doc = await self.read.get(ARTICLES, article_id)
        if doc is None:
            return 404, None
        if doc.get("pub_status") == "canceled":
            return 410, doc
        if doc.get("pub_status") != "usable" or not visible(doc, now_utc()):
            return 404, None
        return 200, doc

    async def audio(self, request: web.Request) -> web.StreamResponse:
        """The article's narration (Ogg Opus), with HTTP Range (seeking), ETag and long caching:
        the URL names the article version, so a correction gets a new URL."""
        article_id = request.match_info["id"]
        status, doc = await self._article_state(article_id)
        if status != 200 or doc is None:
            raise ApiError(status, "not_found" if status == 404 else "gone", "no audio for this article")
        for attempt in range(2):
            meta = audio_of(doc, await self.read.get(AUDIO, article_id))
            if meta is None or str(meta["version"]) != request.match_info["version"]:
                raise ApiError(404, "not_found", "no audio for this article version")
            try:
                return await send_audio(request, self.read.db, meta["doc"])
            except AudioUnavailable:
                if attempt:  # replaced twice in a row: let the client retry
                    raise ApiError(503, "unavailable", "the audio is being replaced; try again") from None
                self.cache.invalidate(f"{AUDIO}:{article_id}")
        raise AssertionError("unreachable")

    async def article_redirect(self, request: web.Request) -> web.StreamResponse:
        article_id = request.match_info["id"]
        status, doc = await self._article_state(article_id)
        if status == 200 and doc is not None:
            raise web.HTTPMovedPermanently(location=f"/articles/{article_id}/{doc['slug']}")
        return respond(request, self.error_page(request, status))

    async def article(self, request: web.Request) -> web.StreamResponse:
        article_id = request.match_info["id"]
        key = f"page:article:{article_id}"
        page = self.cache.get_page(key)  # the hot path: no closure, no coroutine beyond this one
        if page is None:
            page = await self.build_page(key, functools.partial(self._article_page, request, article_id))
        if page.status == 200 and page.slug and request.match_info["slug"] != page.slug:
            raise web.HTTPMovedPermanently(location=f"/articles/{article_id}/{page.slug}")
        return respond(request, page)

    async def _article_page(self, request: web.Request, article_id: str) -> tuple[Page, set[str]]:
        # Not the home listing: the section menu is read from it, but depending on it would
        # drop every cached article page on every stored article. The menu follows within
        # the page lifetime (cache_ttl_s).
        deps = {f"{ARTICLES}:{article_id}", f"{RELATED}:{article_id}", f"{AUDIO}:{article_id}"}
        status, doc = await self._article_state(article_id)
        if status != 200 or doc is None:
            return self.error_page(request, status), deps
        related_doc = await self.read.get(RELATED, article_id)
        audio = audio_of(doc, await self.read.get(AUDIO, article_id))
        now = now_utc()
        related = [
            r["teaser"] for r in (related_doc or {}).get("items", [])
            if visible(r["teaser"], now) and r["teaser"]["id"] != article_id
        ]
        also_reported = [t for t in (related_doc or {}).get("also_reported", []) if visible(t, now)]
        from services.gateway.discovery import article_meta  # local: discovery imports views

        translations = []
        for t in (doc.get("translations") or [])[:10]:
            deps.add(f"{ARTICLES}:{t['id']}")
            t_status, t_doc = await self._article_state(t["id"])
            if t_status == 200 and t_doc is not None:
                translations.append({"language": t["language"], "path": article_path({"id": t["id"], "slug": t_doc["slug"]}),
                                     "headline": t_doc["headline"]})
        article = {**doc, "id": article_id, "audio": audio, "translations": translations}
        context = self._context(
            request, doc.get("language", "en"), article=article, related=related, also_reported=also_reported,
            updated=len(doc.get("history", [])) > 1 or doc["version_created"] > doc["first_created"],
            sections=await self._sections(), canonical=article_path(article),
            meta=article_meta(self.settings, article, related),
        )
        page = self._render(request, "article.html", context, last_modified=doc.get("stored_at"),
                            headers={"Content-Language": doc.get("language", "en")}, slug=doc["slug"])
        return page, deps

    async def search(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("q", "").strip()[:200]
        language = request.query.get("lang") or None
        if language is not None and language not in ("kk", "ru", "en"):
            language = None
        try:
            page_no = min(max(int(request.query.get("page", "1")), 1), 50)
        except ValueError:
            page_no = 1
        result: dict[str, Any] = {"total": 0, "hits": [], "terms": []}
        unavailable = False
        if query:
            try:
                result = await self._search(query, language, page_no)
            except Exception as exc:  # noqa: BLE001 - the search index is another service
                log.warning("search_unavailable", error=repr(exc))
                unavailable = True
        context = self._context(request, self.settings.default_language, query=query, result=result, unavailable=unavailable,
                                page_no=page_no, sections=await self._sections(), page_size=self.settings.page_size)
        page = self._render(request, "search.html", context)
        response = respond(request, page)
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _search(self, query: str, language: str | None, page_no: int) -> dict[str, Any]:
        size = self.settings.page_size
        params = {"q": query, "limit": str(size), "offset": str((page_no - 1) * size)}
        if language:
            params["lang"] = language
        async with self.linking_session.get(f"{self.settings.linking_url}/internal/search", params=params) as resp:
            resp.raise_for_status()
            data = await resp.json()
        now = now_utc()
        for hit in data["hits"]:
            teaser = hit["teaser"]
            for field in ("published_at", "updated_at", "embargoed_until"):
                if teaser.get(field):
                    teaser[field] = datetime.fromisoformat(teaser[field])
        data["hits"] = [h for h in data["hits"] if visible(h["teaser"], now)]
        return data

    # JSON API -----------------------------------------------------------------------------
    def _article_json(self, article_id: str, doc: dict[str, Any], related_doc: dict[str, Any] | None,
                      audio_doc: dict[str, Any] | None = None) -> dict[str, Any]:
        now = now_utc()
        base = self.settings.public_base_url.rstrip("/")
        path = f"/articles/{article_id}/{doc['slug']}"
        audio = audio_of(doc, audio_doc)
        return {
            "id": article_id,
            "uri": doc["uri"],
            "url": base + path,
            "version": doc["version"],
            "pub_status": doc["pub_status"],
            "language": doc["language"],
            "headline": doc["headline"],
            "standfirst": doc.get("standfirst"),
            "byline": doc.get("byline"),
            "body_html": doc.get("body_html", ""),
            "section": doc.get("section"),
            "tags": doc.get("tags", []),
            "published_at": doc["first_created"].isoformat(),
            "updated_at": doc["version_created"].isoformat(),
            "word_count": doc.get("word_count", 0),
            "reading_time_min": doc.get("reading_time_min", 0),
            "image": doc.get("lead_image"),
            "related": [
                {
                    "id": r["teaser"]["id"],
                    "headline": r["teaser"]["headline"],
                    "language": r["teaser"]["language"],
                    "url": base + article_path(r["teaser"]),
                    "published_at": r["teaser"]["published_at"].isoformat(),
                    "score": r.get("score"),
                }
                for r in (related_doc or {}).get("items", [])
                if visible(r["teaser"], now) and r["teaser"]["id"] != article_id
            ],
            "audio": None if audio is None else {
                "url": base + audio["url"], "content_type": audio["content_type"],
                "duration_s": audio["duration_s"], "language": audio["language"],
            },
        }

    def _teaser_json(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": item["id"], "headline": item["headline"], "standfirst": item.get("standfirst"),
            "language": item["language"], "section": item.get("section"),
            "url": self.settings.public_base_url.rstrip("/") + article_path(item),
            "published_at": item["published_at"].isoformat(), "updated_at": item["updated_at"].isoformat(),
        }

    async def api_search(self, request: web.Request) -> web.StreamResponse:
        check_params(request, {"q", "lang", "page"})
        raw_query = request.query.get("q", "")
        query = raw_query.strip()
        if not 1 <= len(raw_query) <= 200 or not NOT_BLANK_RE.search(raw_query):  # as the OpenAPI document says
            raise ApiError(400, "bad_request", "q must be 1..200 characters, not only spaces")
        language = request.query.get("lang")
        if language is not None and language not in ("kk", "ru", "en"):
            raise ApiError(400, "bad_request", "lang must be kk, ru or en")
        try:
            page_no = int(request.query.get("page", "1"))
        except ValueError:
            raise ApiError(400, "bad_request", "page must be an integer") from None
        if not 1 <= page_no <= 50:
            raise ApiError(400, "bad_request", "page must be between 1 and 50")
        try:
            result = await self._search(query, language, page_no)
        except Exception as exc:  # noqa: BLE001 - the search index is another service
            log.warning("search_unavailable", error=repr(exc))
            raise ApiError(503, "unavailable", "search is unavailable, try again shortly") from None
        body = {"query": query, "page": page_no, "total": result["total"], "terms": result.get("terms", []),
                "items": [{**self._teaser_json(h["teaser"]), "score": h["score"]} for h in result["hits"]]}
        response = respond(request, make_page(json.dumps(body, ensure_ascii=False), content_type="application/json; charset=utf-8"))
        response.headers["Cache-Control"] = "public, max-age=10"
        return response

    async def api_sections(self, request: web.Request) -> web.StreamResponse:
        body = {"sections": await self._sections()}
        return respond(request, make_page(json.dumps(body, ensure_ascii=False), content_type="application/json; charset=utf-8"))

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        body = json.dumps(openapi_document(self.settings.public_base_url))
        return respond(request, make_page(body, content_type="application/json; charset=utf-8"))

    async def _api_article(self, request: web.Request, article_id: str) -> web.StreamResponse:
        status, doc = await self._article_state(article_id)
        if status == 410:
            raise ApiError(410, "gone", "this article has been withdrawn")
        if status != 200 or doc is None:
            raise ApiError(404, "not_found", "no such article")
        related_doc = await self.read.get(RELATED, article_id)
        audio_doc = await self.read.get(AUDIO, article_id)
        body = json.dumps(self._article_json(article_id, doc, related_doc, audio_doc), ensure_ascii=False)
        return respond(request, make_page(body, content_type="application/json; charset=utf-8", last_modified=doc.get("stored_at")))

    async def api_article(self, request: web.Request) -> web.StreamResponse:
        return await self._api_article(request, request.match_info["id"])

    async def api_articles(self, request: web.Request) -> web.StreamResponse:
        check_params(request, {"uri", "section", "tag", "lang", "limit", "cursor"})
        uri = request.query.get("uri")
        if uri is not None:
            if not NOT_BLANK_RE.search(uri) or len(uri) > 2048:  # as the OpenAPI document says
                raise ApiError(400, "bad_request", "uri must be 1..2048 characters")
            return await self._api_article(request, article_id_for(uri))
        section = request.query.get("section")
        tag = request.query.get("tag")
        language = request.query.get("lang")
        for name, value in (("section", section), ("tag", tag)):
            if value is not None and not SLUG_RE.match(value):
                raise ApiError(400, "bad_request", f"{name} must be a slug (a-z, 0-9, -)")
        if language is not None and not re.match(r"^[a-z]{2,3}$", language):
            raise ApiError(400, "bad_request", "lang must be a language code such as kk, ru or en")
        try:
            limit = int(request.query.get("limit", str(self.settings.page_size)))
        except ValueError:
            raise ApiError(400, "bad_request", "limit must be an integer") from None
        if not 1 <= limit <= 100:
            raise ApiError(400, "bad_request", "limit must be between 1 and 100")
        # section and tag together: the tag's articles in that section.
        key = f"tag:{tag}" if tag else f"section:{section}" if section else "home"
        if request.query.get("cursor") == "":  # the HTML pages' empty ?before= means "first page"; not here
            raise ApiError(400, "bad_request", "cursor is malformed")
        try:
            _, shown, next_cursor, _ = await self.read.listing(key, cursor=request.query.get("cursor"), size=limit,
                                                               language=language, section=section if tag else None)
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        body = {"items": [self._teaser_json(i) for i in shown], "next_cursor": next_cursor}
        return respond(request, make_page(json.dumps(body, ensure_ascii=False), content_type="application/json; charset=utf-8"))
