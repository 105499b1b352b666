"""Discovery: RSS/Atom feeds, sitemaps, robots.txt and the article page's SEO metadata.

Feeds and sitemaps are built from the precomputed listings (``ReadModel.listing``), so every
read is an ``_id`` lookup of a listing index or bucket, cached like any other page: the
rendered bytes are kept with the document keys they were built from and dropped when one of
them changes (or after the cache TTL, which also covers embargo lifts and the news sitemap's
48-hour window). Answers go through ``respond()`` for ETag/304/gzip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from aiohttp import web
from feedgen.feed import FeedGenerator

from services.gateway.cache import Cache, Page
from services.gateway.settings import GatewaySettings
from services.gateway.views import SLUG_RE, ReadModel, article_path, make_page, now_utc, respond, visible
from shared.listings import HOME_KEY, bucket_start, index_id
from shared.mongo import FRONTS

RSS_TYPE = "application/rss+xml; charset=utf-8"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"

FEED_SIZE = 50
SITEMAP_SIZE = 1_000
# An index lists only non-empty buckets, so this many buckets always hold enough items.
SITEMAP_MAX_BUCKETS = SITEMAP_SIZE
NEWS_WINDOW = timedelta(hours=48)
NEWS_SIZE = 1_000  # Google News sitemaps hold at most 1,000 URLs
BUCKET_SPAN_MAX = timedelta(hours=1)  # the longest time slot a bucket covers (see shared.listings)
HEADLINE_MAX = 110  # schema.org NewsArticle headline limit used by search engines
DESCRIPTION_MAX = 200

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"

# Characters XML 1.0 does not allow (lxml refuses them; a sitemap reader would choke on them).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

OG_LOCALES = {"kk": "kk_KZ", "ru": "ru_RU", "en": "en_US"}


# --- small helpers ------------------------------------------------------------------------------

def _clean(text: str | None) -> str:
    return _XML_INVALID.sub("", text or "").strip()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _aware(value).astimezone(UTC).isoformat(timespec="seconds")


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-—") + "…"


def _absolute(base: str, href: str) -> str:
    if href.startswith("//"):
        return "https:" + href
    if href.startswith("/"):
        return base + href
    return href


def base_url(settings: GatewaySettings) -> str:
    return settings.public_base_url.rstrip("/")


def absolute_url(settings: GatewaySettings, path: str) -> str:
    return base_url(settings) + quote(path)


def json_ld_script_text(data: Any) -> str:
    """JSON for an inline ``<script type="application/ld+json">`` block, safe to emit unescaped.

    ``<``, ``>`` and ``&`` only ever occur inside JSON strings, where their ``\\uXXXX`` forms
    mean the same, so the result is still the same JSON but can never close the script element
    (``</script>``) or open a comment (``<!--``). U+2028/U+2029 are escaped as well.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    )


# --- the article page's metadata ----------------------------------------------------------------

def article_meta(settings: GatewaySettings, article: dict[str, Any], related: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the article page's ``<head>`` needs for search engines and link previews.

    ``article`` is the stored article document plus ``id``. Returns ``json_ld`` (a schema.org
    ``NewsArticle``), ``json_ld_json`` (the same, ready for ``|safe`` inside a script element),
    ``og`` (Open Graph / Twitter ``(property, content)`` pairs), ``canonical`` (absolute URL)
    and ``feeds`` (``(title, href)`` of the RSS feeds to advertise). ``related`` is accepted for
    the call site's convenience; a ``NewsArticle`` has no property for it, so it is not used.
    """
    del related
    base = base_url(settings)
    url = absolute_url(settings, article_path(article))
    headline = _clean(article.get("headline"))
    description = _clean(article.get("standfirst")) or _shorten(_clean(article.get("body_text")), DESCRIPTION_MAX)
    published = _iso(article.get("first_created"))
    modified = _iso(article.get("version_created")) or published
    byline = _clean(article.get("byline"))
    section = article.get("section") or None
    tags = [t["name"] for t in article.get("tags") or [] if t.get("name")]
    image = article.get("lead_image") or None
    image_url = _absolute(base, image["href"]) if image and image.get("href") else None
    language = article.get("language") or settings.default_language
    language_tag = article.get("language_tag") or language

    json_ld: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": _shorten(headline, HEADLINE_MAX),
    }
    if description:
        json_ld["description"] = description
    json_ld["datePublished"] = published
    json_ld["dateModified"] = modified
    if byline:
        json_ld["author"] = {"@type": "Person", "name": byline}
    json_ld["publisher"] = {
        "@type": "Organization",
        "name": settings.site_name,
        "logo": {"@type": "ImageObject", "url": base + "/static/logo.png"},
    }
    if image_url:
        json_ld["image"] = [image_url]
    json_ld["mainEntityOfPage"] = {"@type": "WebPage", "@id": url}
    json_ld["url"] = url
    json_ld["inLanguage"] = language_tag
    if section:
        json_ld["articleSection"] = section["name"]
    if tags:
        json_ld["keywords"] = tags

    og: list[tuple[str, str]] = [("og:type", "article"), ("og:title", headline)]
    if description:
        og.append(("og:description", description))
    og += [("og:url", url), ("og:site_name", settings.site_name), ("og:locale", og_locale(language, language_tag))]
    if image_url:
        og.append(("og:image", image_url))
        if image.get("alt"):
            og.append(("og:image:alt", _clean(image["alt"])))
        if image.get("width") and image.get("height"):
            og += [("og:image:width", str(image["width"])), ("og:image:height", str(image["height"]))]
    if published:
        og.append(("article:published_time", published))
    if modified:
        og.append(("article:modified_time", modified))
    if section:
        og.append(("article:section", section["name"]))
    og += [("article:tag", tag) for tag in tags]
    og += [("twitter:card", "summary_large_image" if image_url else "summary"), ("twitter:title", headline)]
    if description:
        og.append(("twitter:description", description))
    if image_url:
        og.append(("twitter:image", image_url))

    feeds = [(settings.site_name, "/feed.xml")]
    if section and SLUG_RE.match(section.get("slug", "")):
        feeds.append((f"{settings.site_name} — {section['name']}", f"/section/{section['slug']}/feed.xml"))
    return {"json_ld": json_ld, "json_ld_json": json_ld_script_text(json_ld), "og": og, "canonical": url, "feeds": feeds}


def og_locale(language: str, language_tag: str) -> str:
    """Open Graph locale (``ll_TT``): the region of the tag when it has one, else a default."""
    parts = language_tag.replace("_", "-").split("-")
    if len(parts) >= 2 and re.fullmatch(r"[A-Za-z]{2}", parts[-1]):
        return f"{parts[0].lower()}_{parts[-1].upper()}"
    return OG_LOCALES.get(language, language)


# --- handlers -----------------------------------------------------------------------------------

class Discovery:
    def __init__(self, settings: GatewaySettings, read: ReadModel, cache: Cache) -> None:
        self.settings = settings
        self.read = read
        self.cache = cache
        self.base = base_url(settings)
        self._robots = make_page(self._robots_text(), content_type=TEXT_TYPE)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/feed.xml", self.rss),
            web.get("/atom.xml", self.atom),
            web.get("/section/{slug}/feed.xml", self.section_rss),
            web.get("/section/{slug}/atom.xml", self.section_atom),
            web.get("/sitemap.xml", self.sitemap),
            web.get("/news-sitemap.xml", self.news_sitemap),
            web.get("/robots.txt", self.robots),
        ]

    async def _cached(self, request: web.Request, key: str,
                      build: Callable[[], Awaitable[tuple[Page, set[str]]]]) -> web.StreamResponse:
        page = self.cache.get_page(key)
        if page is None:
            since = self.cache.generation
            page, deps = await build()
            self.cache.put_page(key, page, deps, since=since)
        return respond(request, page)

    def _url(self, path: str) -> str:
        return self.base + quote(path)

    @staticmethod
    def _shown(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        return [i for i in items if visible(i, now)]

    # feeds ------------------------------------------------------------------------------------
    async def rss(self, request: web.Request) -> web.StreamResponse:
        return await self._feed(request, HOME_KEY, "rss")

    async def atom(self, request: web.Request) -> web.StreamResponse:
        return await self._feed(request, HOME_KEY, "atom")

    async def section_rss(self, request: web.Request) -> web.StreamResponse:
        return await self._section_feed(request, "rss")

    async def section_atom(self, request: web.Request) -> web.StreamResponse:
        return await self._section_feed(request, "atom")

    async def _section_feed(self, request: web.Request, kind: str) -> web.StreamResponse:
        slug = request.match_info["slug"]
        if not SLUG_RE.match(slug):
            raise web.HTTPNotFound()
        return await self._feed(request, f"section:{slug}", kind)

    async def _feed(self, request: web.Request, key: str, kind: str) -> web.StreamResponse:
        async def build() -> tuple[Page, set[str]]:
            index, items, _, deps = await self.read.listing(key, cursor=None, size=FEED_SIZE)
            if index is None and key != HOME_KEY:
                raise web.HTTPNotFound()
            feed = self._feed_generator(key, kind, index, self._shown(items, now_utc()))
            if kind == "rss":
                return make_page(feed.rss_str(pretty=False), content_type=RSS_TYPE), deps
            return make_page(feed.atom_str(pretty=False), content_type=ATOM_TYPE), deps

        return await self._cached(request, f"discovery:{kind}:{key}", build)

    def _feed_generator(self, key: str, kind: str, index: dict[str, Any] | None,
                        items: list[dict[str, Any]]) -> FeedGenerator:
        site = self.settings.site_name
        if key == HOME_KEY:
            page_path, feed_path = "/", ""
            title, description = f"{site} — {self.settings.tagline}", f"The latest news from {site}"
        else:
            slug = key.split(":", 1)[1]
            name = _clean((index or {}).get("name")) or slug
            page_path, feed_path = f"/section/{slug}", f"/section/{slug}"
            title, description = f"{site} — {name}", f"The latest {name} news from {site}"
        updated = max((_aware(i["updated_at"]) for i in items), default=None)
        updated = updated or _aware((index or {}).get("updated_at") or datetime(2000, 1, 1, tzinfo=UTC))

        fg = FeedGenerator()
        fg.load_extension("dc", atom=True, rss=True)
        fg.id(self._url(page_path))
        fg.title(title)
        fg.subtitle(description)  # also the RSS channel description
        fg.author(name=site)
        self_path, self_type = ("feed.xml", "application/rss+xml") if kind == "rss" else ("atom.xml", "application/atom+xml")
        fg.link(href=self._url(f"{feed_path}/{self_path}"), rel="self", type=self_type)
        fg.link(href=self._url(page_path), rel="alternate", type="text/html")  # last: the RSS <link>
        fg.language(self.settings.default_language)
        fg.logo(self.base + "/static/logo.png")
        fg.image(url=self.base + "/static/logo.png", title=title, link=self._url(page_path))
        fg.generator(site)
        fg.updated(updated)  # atom:updated and rss:lastBuildDate: stable bytes, stable ETag
        for item in items:
            link = self._url(article_path(item))
            entry = fg.add_entry(order="append")
            entry.id(link)
            entry.guid(link, permalink=True)
            entry.title(_clean(item.get("headline")) or link)
            entry.link(href=link, rel="alternate", type="text/html")
            entry.published(_aware(item["published_at"]))
            entry.updated(_aware(item.get("updated_at") or item["published_at"]))
            if _clean(item.get("standfirst")):
                entry.summary(_clean(item["standfirst"]))
            section = item.get("section")
            if section and section.get("name"):
                entry.category(term=section["slug"], label=_clean(section["name"]))
            if item.get("language"):
                entry.dc.dc_language(item["language"])
        return fg

    # sitemaps ---------------------------------------------------------------------------------
    async def sitemap(self, request: web.Request) -> web.StreamResponse:
        async def build() -> tuple[Page, set[str]]:
            index, items, _, deps = await self.read.listing(HOME_KEY, cursor=None, size=SITEMAP_SIZE,
                                                            max_buckets=SITEMAP_MAX_BUCKETS)
            items = self._shown(items, now_utc())
            newest: dict[str, datetime] = {}
            for item in items:
                stamp = _aware(item.get("updated_at") or item["published_at"])
                for front in ("", (item.get("section") or {}).get("slug", "")):
                    if front not in newest or newest[front] < stamp:
                        newest[front] = stamp
            entries = [("/", newest.get(""))]
            entries += [(f"/section/{s['slug']}", newest.get(s["slug"]))
                        for s in (index or {}).get("sections", []) if SLUG_RE.match(s.get("slug", ""))]
            entries += [(article_path(i), _aware(i.get("updated_at") or i["published_at"])) for i in items]
            lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<urlset xmlns="{SITEMAP_NS}">']
            for path, lastmod in entries:
                stamp = f"<lastmod>{_iso(lastmod)}</lastmod>" if lastmod else ""
                lines.append(f"<url><loc>{escape(self._url(path))}</loc>{stamp}</url>")
            lines.append("</urlset>")
            return make_page("\n".join(lines) + "\n", content_type=XML_TYPE), deps

        return await self._cached(request, "discovery:sitemap", build)

    async def news_sitemap(self, request: web.Request) -> web.StreamResponse:
        async def build() -> tuple[Page, set[str]]:
            now = now_utc()
            cutoff = now - NEWS_WINDOW
            # Read only the buckets that can hold items of the window (the index lists them newest first).
            index = await self.read.get(FRONTS, index_id(HOME_KEY))
            recent = sum(1 for b in (index or {}).get("buckets", []) if bucket_start(b) > cutoff - BUCKET_SPAN_MAX)
            _, items, _, deps = await self.read.listing(HOME_KEY, cursor=None, size=NEWS_SIZE,
                                                        max_buckets=max(1, min(recent, NEWS_SIZE)))
            items = [i for i in self._shown(items, now) if _aware(i["published_at"]) >= cutoff]
            name = escape(_clean(self.settings.site_name))
            lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<urlset xmlns="{SITEMAP_NS}" xmlns:news="{NEWS_NS}">']
            for item in items:
                language = escape(item.get("language") or self.settings.default_language)
                lines.append(
                    f"<url><loc>{escape(self._url(article_path(item)))}</loc><news:news>"
                    f"<news:publication><news:name>{name}</news:name><news:language>{language}</news:language></news:publication>"
                    f"<news:publication_date>{_iso(item['published_at'])}</news:publication_date>"
                    f"<news:title>{escape(_clean(item.get('headline')))}</news:title></news:news></url>"
                )
            lines.append("</urlset>")
            return make_page("\n".join(lines) + "\n", content_type=XML_TYPE), deps

        return await self._cached(request, "discovery:news-sitemap", build)

    # robots.txt -------------------------------------------------------------------------------
    def _robots_text(self) -> str:
        return "\n".join([
            "User-agent: *",
            "Allow: /",
            "Disallow: /api/",
            "Disallow: /search",
            "Disallow: /newsletter",
            "",
            f"Sitemap: {self.base}/sitemap.xml",
            f"Sitemap: {self.base}/news-sitemap.xml",
            "",
        ])

    async def robots(self, request: web.Request) -> web.StreamResponse:
        return respond(request, self._robots)
