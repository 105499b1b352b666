"""Gateway helpers: cursor pagination, cache invalidation, conditional responses."""

from __future__ import annotations

import pathlib
from datetime import UTC, datetime, timedelta

import pytest

from services.gateway.cache import MISSING, Cache
from services.gateway.views import cursor_of, make_page, page_after, visible

T0 = datetime(2026, 11, 27, tzinfo=UTC)


def items(n: int) -> list[dict]:
    return [{"id": f"{i:016x}", "published_at": T0 - timedelta(minutes=i)} for i in range(n)]


def test_cursor_pages_are_stable_when_new_items_arrive():
    listing = items(10)
    first, cursor = page_after(listing, None, 4)
    assert [i["id"] for i in first] == [i["id"] for i in listing[:4]] and cursor == cursor_of(listing[3])
    newer = [{"id": "ffffffffffffffff", "published_at": T0 + timedelta(minutes=5)}, *listing]
    second, cursor2 = page_after(newer, cursor, 4)
    assert [i["id"] for i in second] == [i["id"] for i in listing[4:8]]
    last, cursor3 = page_after(newer, cursor2, 4)
    assert [i["id"] for i in last] == [i["id"] for i in listing[8:]] and cursor3 is None


@pytest.mark.parametrize("bad", ["x", "1-2", "123-ZZZZZZZZZZZZZZZZ", "-1-0123456789abcdef", "1" * 20 + "-0123456789abcdef"])
def test_malformed_cursor(bad):
    with pytest.raises(ValueError):
        page_after(items(3), bad, 2)


def test_visible_respects_embargo():
    assert visible({"embargoed_until": None}, T0)
    assert not visible({"embargoed_until": T0 + timedelta(seconds=1)}, T0)
    assert visible({"embargoed_until": T0}, T0)


def test_cache_invalidation_drops_dependent_pages():
    cache = Cache(ttl=60, max_entries=100)
    cache.put_doc("articles:a", {"x": 1})
    cache.put_page("page:article:a", make_page("<p>a</p>"), {"articles:a", "related:a"})
    cache.put_page("page:home", make_page("<p>home</p>"), {"fronts:front:home"})
    assert cache.get_doc("articles:a") == {"x": 1}
    cache.invalidate("related:a")
    assert cache.get_page("page:article:a") is None and cache.get_page("page:home") is not None
    cache.invalidate_prefix("fronts:")
    assert cache.get_page("page:home") is None
    cache.invalidate("articles:a")
    assert cache.get_doc("articles:a") is MISSING


def test_cache_is_bounded():
    cache = Cache(ttl=60, max_entries=100)
    for i in range(250):
        cache.put_page(f"p{i}", make_page(str(i)), {f"d{i}"})
        cache.put_doc(f"d{i}", i)
    assert cache.get_page("p0") is None and cache.get_page("p249") is not None
    assert cache.get_doc("d0") is MISSING and cache.get_doc("d249") == 249


def test_make_page_etag_and_compression():
    import brotli
    import gzip

    small, large = make_page("x"), make_page("y" * 5000)
    assert small.gzip_body is None and large.gzip_body is not None and len(large.gzip_body) < 200
    assert gzip.decompress(large.gzip_body) == large.body == brotli.decompress(large.br_body)
    assert large.br_headers["Content-Encoding"] == "br" and large.gzip_headers["Content-Encoding"] == "gzip"
    assert small.etag != large.etag and small.etag == make_page("x").etag


def test_highlight_marks_stemmed_terms_and_escapes():
    from services.gateway.highlight import highlight

    out = str(highlight("Railways <b>in</b> Astana & тасқыны", ["railway", "astana", "тасқы"]))
    assert out == "<mark>Railways</mark> &lt;b&gt;in&lt;/b&gt; <mark>Astana</mark> &amp; <mark>тасқыны</mark>"
    assert str(highlight("<script>", [])) == "&lt;script&gt;"


async def test_concurrent_misses_build_a_page_once():
    import asyncio

    from services.gateway.settings import GatewaySettings
    from services.gateway.views import Views

    cache = Cache(ttl=60, max_entries=100)
    views = Views(GatewaySettings(), read=None, cache=cache)  # type: ignore[arg-type]
    builds = 0

    async def build():
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.05)
        return make_page("<p>x</p>"), {"articles:a"}

    from shared import metrics

    def counted(result: str) -> int:
        return metrics.CACHE_EVENTS._values.get((result,), [0])[0]
    misses, built = counted("page_miss"), counted("page_build")
    pages = await asyncio.gather(*(views.page("page:a", build) for _ in range(20)))
    assert builds == 1 and all(p is pages[0] for p in pages)
    assert await views.page("page:a", build) is pages[0] and builds == 1  # now cached
    assert counted("page_miss") - misses == 20 and counted("page_build") - built == 1  # the metric tells them apart

    async def failing():
        raise RuntimeError("database down")

    results = await asyncio.gather(*(views.page("page:b", failing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_database_unavailable_is_a_503_with_retry_after():
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from pymongo.errors import ServerSelectionTimeoutError

    from services.gateway.app import observed_routes

    async def down(request):
        raise ServerSelectionTimeoutError("no primary")

    async def broker_away(request):
        from aiokafka.errors import KafkaTimeoutError
        raise KafkaTimeoutError()

    app = web.Application()
    app.add_routes(observed_routes([web.get("/api/v1/articles/{id}", down), web.post("/api/v1/signup", broker_away)]))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/api/v1/articles/0123456789abcdef")
        assert response.status == 503 and response.headers["Retry-After"] == "5"
        assert (await response.json())["error"]["code"] == "unavailable"
        assert response.headers["Cache-Control"] == "no-store"
        response = await client.post("/api/v1/signup")  # a request that could not be published
        assert response.status == 503 and (await response.json())["error"]["code"] == "unavailable"


async def test_routing_errors_and_static_files_through_the_real_app():
    """create_app's routes, without its Kafka and database clients (nothing here reads them):
    unknown paths get our 404 page, wrong methods a 405 with Allow (JSON under /api/), static
    files are cached pages with a year of caching and 304s, and each is measured by route."""
    from aiohttp.test_utils import TestClient, TestServer

    from services.gateway.app import create_app
    from services.gateway.settings import GatewaySettings
    from shared import metrics

    app = create_app(GatewaySettings(ops_port=None, cache_invalidation=False))
    app.cleanup_ctx.clear()

    def count(route: str, status: str) -> int:
        series = metrics.HTTP_SECONDS._series.get((route, status))
        return sum(series.counts) if series else 0

    before = {k: count(*k) for k in [("unmatched", "404"), ("unmatched", "405"), ("/static/{name}", "200"),
                                     ("/static/{name}", "304"), ("/static/{name}", "404")]}
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/no/such/page")
        assert r.status == 404 and r.content_type == "text/html"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"] and "<main" in await r.text()
        r = await client.get("/api/v1/nothing-here")
        assert r.status == 404 and (await r.json())["error"]["status"] == 404
        r = await client.post("/api/v1/articles")
        assert r.status == 405 and r.headers["Allow"].split(",")[0].strip() in ("GET", "HEAD")
        assert "GET" in r.headers["Allow"] and (await r.json())["error"]["status"] == 405
        r = await client.delete("/")
        assert r.status == 405 and "GET" in r.headers["Allow"] and "Content-Security-Policy" in r.headers

        css = (pathlib.Path(__file__).parents[2] / "services/gateway/static/site.css").read_bytes()
        r = await client.get("/static/site.css", headers={"Accept-Encoding": "identity"})
        assert r.status == 200 and await r.read() == css
        assert r.headers["Content-Type"] == "text/css; charset=utf-8"
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        r2 = await client.get("/static/site.css", headers={"If-None-Match": r.headers["ETag"]})
        assert r2.status == 304
        r3 = await client.get("/static/site.css", headers={"Accept-Encoding": "br"})
        assert r3.headers["Content-Encoding"] == "br" and await r3.read() == css  # the client decodes it
        r = await client.get("/static/logo.png")
        assert r.status == 200 and r.headers["Content-Type"] == "image/png"
        for missing in ("/static/nope.css", "/static/" + "a" * 300, "/static/..%2Fapp.py"):
            r = await client.get(missing)
            assert r.status == 404 and r.content_type == "text/html", missing
    assert count("unmatched", "404") - before[("unmatched", "404")] == 2
    assert count("unmatched", "405") - before[("unmatched", "405")] == 2
    assert count("/static/{name}", "200") - before[("/static/{name}", "200")] == 3
    assert count("/static/{name}", "304") - before[("/static/{name}", "304")] == 1
    assert count("/static/{name}", "404") - before[("/static/{name}", "404")] == 3
