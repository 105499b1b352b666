"""Discovery: feeds, sitemaps, robots.txt and the article page's SEO metadata."""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET
from calendar import timegm
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
import jinja2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.cache import Cache
from services.gateway.discovery import Discovery, article_meta, json_ld_script_text
from services.gateway.settings import GatewaySettings
from shared.listings import bucket_of

BASE = "https://kazpost.example"
NOW = datetime.now(UTC).replace(microsecond=0)
SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
NEWS = "{http://www.google.com/schemas/sitemap-news/0.9}"
TEMPLATES = pathlib.Path(__file__).resolve().parents[2] / "services" / "gateway" / "templates"

POLITICS = {"slug": "politics", "name": "Politics"}
ECONOMY = {"slug": "economy", "name": "Economy & Business"}


def teaser(n: int, hours_ago: float, *, section: dict | None = POLITICS, language: str = "en",
           embargoed_until: datetime | None = None, standfirst: str | None = "Standfirst") -> dict[str, Any]:
    published = NOW - timedelta(hours=hours_ago)
    return {
        "id": f"{n:016x}", "slug": f"story-{n}", "headline": f"Story {n} <b>&</b>", "standfirst": standfirst,
        "language": language, "section": section, "published_at": published,
        "updated_at": published + timedelta(minutes=10), "embargoed_until": embargoed_until, "image": None,
    }


HOME_ITEMS = [
    teaser(1, 1),
    teaser(2, 2, embargoed_until=NOW + timedelta(hours=3)),  # not yet public
    teaser(3, 5, section=ECONOMY, language="ru", standfirst=None),
    teaser(4, 30, language="kk"),
    teaser(5, 60, section=ECONOMY),  # older than the news sitemap's 48 hours
]


class FakeRead:
    """Listings by key; like the real one it returns newest first, but it does not filter embargoes."""

    def __init__(self) -> None:
        self.fronts: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
            "home": ({"kind": "home", "name": "Home", "sections": [ECONOMY, POLITICS], "updated_at": NOW,
                      "buckets": sorted({bucket_of("home", i["published_at"]) for i in HOME_ITEMS}, reverse=True)},
                     HOME_ITEMS),
            "section:politics": ({"kind": "section", "slug": "politics", "name": "Politics", "updated_at": NOW},
                                 [i for i in HOME_ITEMS if i["section"] == POLITICS]),
        }
        self.calls: list[tuple[str, int, int]] = []

    async def listing(self, key: str, *, cursor: str | None, size: int, language: str | None = None,
                      max_buckets: int = 60):
        self.calls.append((key, size, max_buckets))
        deps = {f"fronts:front:{key}"}
        if key not in self.fronts:
            return None, [], None, deps
        index, items = self.fronts[key]
        deps.add(f"fronts:front:{key}:bucket")
        ordered = sorted(items, key=lambda i: (i["published_at"], i["id"]), reverse=True)
        return index, ordered[:size], None, deps

    async def get(self, collection: str, doc_id: str):
        key = doc_id.removeprefix("front:")
        return self.fronts[key][0] if collection == "fronts" and key in self.fronts else None


@pytest.fixture
def settings() -> GatewaySettings:
    return GatewaySettings(public_base_url=BASE + "/", site_name="KazPost", tagline="Kazakhstan News")


@pytest.fixture
async def env(settings):
    read = FakeRead()
    cache = Cache(ttl=60, max_entries=1000)
    app = web.Application()
    app.add_routes(Discovery(settings, read, cache).routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, read, cache
    finally:
        await client.close()


def link(n: int) -> str:
    return f"{BASE}/articles/{n:016x}/story-{n}"


def utc_struct(dt: datetime):
    return datetime.fromtimestamp(timegm(dt), UTC)


# --- feeds -----------------------------------------------------------------------------------------

async def test_rss_feed(env):
    client, read, _ = env
    resp = await client.get("/feed.xml")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    body = await resp.read()
    assert f'<guid isPermaLink="true">{link(1)}</guid>'.encode() in body
    parsed = feedparser.parse(body)
    assert not parsed.bozo and parsed.version == "rss20"
    assert parsed.feed.title == "KazPost — Kazakhstan News" and parsed.feed.link == BASE + "/"
    assert parsed.feed.language == "en"
    entries = parsed.entries
    assert [e.link for e in entries] == [link(1), link(3), link(4), link(5)]  # newest first, no embargoed item
    first = entries[0]
    assert first.title == "Story 1 <b>&</b>"
    assert first.id == link(1)
    assert utc_struct(first.published_parsed) == HOME_ITEMS[0]["published_at"]
    assert first.summary == "Standfirst"
    assert [t.term for t in first.tags] == ["Politics"]
    assert entries[1].language == "ru" and entries[1].tags[0].term == "Economy & Business"
    assert read.calls[0][:2] == ("home", 50)


async def test_atom_feed(env):
    client, _, _ = env
    resp = await client.get("/atom.xml")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(await resp.read())
    assert not parsed.bozo and parsed.version == "atom10"
    assert parsed.feed.id == BASE + "/"
    assert {(lk.rel, lk.href) for lk in parsed.feed.links} >= {("self", BASE + "/atom.xml"), ("alternate", BASE + "/")}
    assert [e.id for e in parsed.entries] == [link(1), link(3), link(4), link(5)]
    entry = parsed.entries[0]
    assert entry.link == link(1)
    assert utc_struct(entry.published_parsed) == HOME_ITEMS[0]["published_at"]
    assert utc_struct(entry.updated_parsed) == HOME_ITEMS[0]["updated_at"]
    # the feed's "updated" is the newest visible item's, so re-renders give the same bytes
    assert utc_struct(parsed.feed.updated_parsed) == HOME_ITEMS[0]["updated_at"]
    assert "Standfirst" not in (parsed.entries[1].get("summary") or "")


async def test_section_feeds_and_unknown_section(env):
    client, _, _ = env
    rss = feedparser.parse(await (await client.get("/section/politics/feed.xml")).read())
    assert rss.feed.title == "KazPost — Politics" and rss.feed.link == BASE + "/section/politics"
    assert [e.link for e in rss.entries] == [link(1), link(4)]
    atom = feedparser.parse(await (await client.get("/section/politics/atom.xml")).read())
    assert [e.link for e in atom.entries] == [link(1), link(4)]
    for path in ("/section/nope/feed.xml", "/section/nope/atom.xml", "/section/Bad_Slug/feed.xml"):
        assert (await client.get(path)).status == 404


async def test_feeds_are_cached_with_their_dependencies_and_conditional(env):
    client, read, cache = env
    first = await client.get("/feed.xml", headers={"Accept-Encoding": "gzip"})
    assert first.headers.get("Content-Encoding") == "gzip"  # large enough to be compressed
    body = await first.read()
    again = await client.get("/feed.xml")
    assert await again.read() == body and len(read.calls) == 1  # served from the page cache
    not_modified = await client.get("/feed.xml", headers={"If-None-Match": first.headers["ETag"]})
    assert not_modified.status == 304
    cache.invalidate("fronts:front:home:bucket")
    await client.get("/feed.xml")
    assert len(read.calls) == 2


# --- sitemaps and robots.txt -------------------------------------------------------------------------

async def test_sitemap(env):
    client, read, _ = env
    resp = await client.get("/sitemap.xml")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    root = ET.fromstring(await resp.read())
    assert root.tag == f"{SM}urlset"
    urls = {u.findtext(f"{SM}loc"): u.findtext(f"{SM}lastmod") for u in root.findall(f"{SM}url")}
    assert list(urls) == [BASE + "/", BASE + "/section/economy", BASE + "/section/politics",
                          link(1), link(3), link(4), link(5)]
    assert datetime.fromisoformat(urls[link(3)]) == HOME_ITEMS[2]["updated_at"]
    assert datetime.fromisoformat(urls[BASE + "/"]) == HOME_ITEMS[0]["updated_at"]
    assert datetime.fromisoformat(urls[BASE + "/section/economy"]) == HOME_ITEMS[2]["updated_at"]
    assert read.calls == [("home", 1000, read.calls[0][2])] and read.calls[0][2] > 60


async def test_news_sitemap_only_has_the_last_48_hours(env):
    client, read, _ = env
    resp = await client.get("/news-sitemap.xml")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    root = ET.fromstring(await resp.read())
    urls = root.findall(f"{SM}url")
    assert [u.findtext(f"{SM}loc") for u in urls] == [link(1), link(3), link(4)]
    news = urls[1].find(f"{NEWS}news")
    assert news.findtext(f"{NEWS}publication/{NEWS}name") == "KazPost"
    assert news.findtext(f"{NEWS}publication/{NEWS}language") == "ru"
    assert news.findtext(f"{NEWS}title") == "Story 3 <b>&</b>"
    assert datetime.fromisoformat(news.findtext(f"{NEWS}publication_date")) == HOME_ITEMS[2]["published_at"]
    assert read.calls == [("home", 1000, 4)]  # only the buckets that can hold the last 48 hours are read


async def test_robots_txt(env):
    client, _, _ = env
    resp = await client.get("/robots.txt")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    lines = (await resp.text()).splitlines()
    assert lines[0] == "User-agent: *"
    for rule in ("Allow: /", "Disallow: /api/", "Disallow: /search", "Disallow: /newsletter",
                 f"Sitemap: {BASE}/sitemap.xml", f"Sitemap: {BASE}/news-sitemap.xml"):
        assert rule in lines
    head = await client.head("/robots.txt")
    assert head.status == 200 and await head.read() == b""


# --- article metadata ----------------------------------------------------------------------------------

def article(**changes: Any) -> dict[str, Any]:
    doc = {
        "id": "00000000000000aa", "slug": "budget-approved", "uri": "urn:x", "version": 2, "pub_status": "usable",
        "headline": "Parliament approves the budget", "standfirst": "Spending rises by 8%.",
        "body_text": "Body.", "byline": "Aigerim Sadykova", "section": ECONOMY,
        "tags": [{"slug": "budget", "name": "Budget"}, {"slug": "parliament", "name": "Parliament"}],
        "language": "ru", "language_tag": "ru-KZ",
        "first_created": NOW - timedelta(hours=3), "version_created": NOW - timedelta(hours=1),
        "lead_image": {"href": "/media/budget.jpg", "alt": "The chamber", "caption": None, "width": 1200, "height": 675},
    }
    return {**doc, **changes}


def test_article_meta_json_ld(settings):
    meta = article_meta(settings, article(), [])
    ld = meta["json_ld"]
    url = f"{BASE}/articles/00000000000000aa/budget-approved"
    assert ld["@context"] == "https://schema.org" and ld["@type"] == "NewsArticle"
    assert ld["headline"] == "Parliament approves the budget"
    assert ld["description"] == "Spending rises by 8%."
    assert datetime.fromisoformat(ld["datePublished"]) == NOW - timedelta(hours=3)
    assert datetime.fromisoformat(ld["dateModified"]) == NOW - timedelta(hours=1)
    assert ld["author"] == {"@type": "Person", "name": "Aigerim Sadykova"}
    assert ld["publisher"] == {"@type": "Organization", "name": "KazPost",
                               "logo": {"@type": "ImageObject", "url": BASE + "/static/logo.png"}}
    assert ld["image"] == [BASE + "/media/budget.jpg"]
    assert ld["mainEntityOfPage"]["@id"] == url == meta["canonical"]
    assert ld["inLanguage"] == "ru-KZ" and ld["articleSection"] == "Economy & Business"
    assert ld["keywords"] == ["Budget", "Parliament"]
    og = dict(meta["og"])
    assert og["og:type"] == "article" and og["og:url"] == url and og["og:site_name"] == "KazPost"
    assert og["og:locale"] == "ru_KZ" and og["og:image"] == BASE + "/media/budget.jpg"
    assert og["article:section"] == "Economy & Business" and og["twitter:card"] == "summary_large_image"
    assert og["article:published_time"] == ld["datePublished"] and og["article:modified_time"] == ld["dateModified"]
    assert og["twitter:title"] == og["og:title"] == "Parliament approves the budget"
    assert [v for k, v in meta["og"] if k == "article:tag"] == ["Budget", "Parliament"]
    assert meta["feeds"] == [("KazPost", "/feed.xml"), ("KazPost — Economy & Business", "/section/economy/feed.xml")]


def test_article_meta_without_byline_or_image_and_long_headline(settings):
    headline = "Word " * 40
    meta = article_meta(settings, article(byline=None, lead_image=None, headline=headline, standfirst=None,
                                          language="kk", language_tag="kk", section=None, tags=[]), None)
    ld = meta["json_ld"]
    assert "author" not in ld and "image" not in ld and "keywords" not in ld and "articleSection" not in ld
    assert len(ld["headline"]) <= 110 and ld["headline"].endswith("…") and ld["headline"].startswith("Word Word")
    assert ld["description"] == "Body."  # falls back to the body text
    og = dict(meta["og"])
    assert og["twitter:card"] == "summary" and "og:image" not in og and og["og:locale"] == "kk_KZ"
    assert meta["feeds"] == [("KazPost", "/feed.xml")]


def test_json_ld_script_text_cannot_break_out_of_the_script_element():
    data = {"headline": "</script><script>alert(1)</script> & <!-- x -->", "n": 1}
    text = json_ld_script_text(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\\u003c/script\\u003e" in text
    assert json.loads(text) == data


def test_meta_partial_renders_escaped_tags_and_a_safe_json_ld_block(settings):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(default=True),
                             undefined=jinja2.StrictUndefined)
    hostile = 'Budget "approved" </script><script>alert(1)</script>'
    meta = article_meta(settings, article(headline=hostile), [])
    html = env.get_template("_meta.html").render(meta=meta)
    assert '<meta property="og:title" content="Budget &#34;approved&#34; &lt;/script&gt;' in html
    assert '<meta name="twitter:card" content="summary_large_image">' in html
    assert '<meta property="og:type" content="article">' in html
    assert '<link rel="alternate" type="application/rss+xml" href="/feed.xml" title="KazPost">' in html
    assert html.count("</script>") == 1  # only the element's own end tag
    script = html.split('<script type="application/ld+json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(script)["headline"] == hostile
