"""Gateway wiring: ``create_app(settings)`` and ``main()``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import mimetypes
import pathlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable

import aiohttp
import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from services.gateway.cache import Cache
from services.gateway.discovery import Discovery
from services.gateway.newsletter import NewsletterRoutes
from services.gateway.settings import GatewaySettings
from services.gateway.views import SECURITY_HEADERS, ApiError, ReadModel, Views, make_page, respond
from shared import metrics
from shared.kafka import ResilientProducer, make_consumer, make_producer
from shared.logs import configure_logging
from shared.audio import AUDIO
from shared.mongo import ARTICLES, FRONTS, RELATED, database, make_client, ping
from shared.runtime import start_ops_server, tune_allocator

HERE = pathlib.Path(__file__).parent
log = structlog.get_logger("gateway")

SETTINGS = web.AppKey("settings", GatewaySettings)
VIEWS = web.AppKey("views", Views)
CACHE = web.AppKey("cache", Cache)
CACHE_LISTENING = web.AppKey("cache_listening", asyncio.Event)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def observed(route: str, handler: Handler) -> Handler:
    """``handler`` with what every response gets: errors as pages (or JSON under /api/), the
    security headers, and the latency metric by route and status.

    A wrapper per route rather than an aiohttp middleware: a middleware adds two coroutine
    layers to every request (ours and the one aiohttp adds to set ``current_app``), about a
    tenth of what serving a cached page costs."""

    async def observed_handler(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
        except ApiError as exc:
            response = exc.response()
            status = exc.status
        except web.HTTPException as exc:
            status = exc.status
            if request.path.startswith("/api/") and status >= 400:
                response = ApiError(status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason).response()
                if "Allow" in exc.headers:  # 405: the methods that are allowed (RFC 9110)
                    response.headers["Allow"] = exc.headers["Allow"]
            elif status == 404:
                response = respond(request, request.app[VIEWS].error_page(request, 404))
            else:  # redirects, 405: aiohttp sends the exception itself
                exc.headers.update(SECURITY_HEADERS)
                _latency(route, status).observe(time.perf_counter() - started)
                raise
        except (PyMongoError, KafkaError) as exc:
            # The database or the broker is down or slow: a temporary condition, said as such
            # (503, retry soon). (The broker: a newsletter request that could not be published.)
            log.warning("dependency_unavailable", path=request.path, error=repr(exc)[:200])
            status = 503
            if request.path.startswith("/api/"):
                response = ApiError(503, "unavailable", "temporarily unavailable, try again shortly").response()
            else:
                response = respond(request, request.app[VIEWS].error_page(request, 503))
            response.headers["Retry-After"] = "5"
            response.headers["Cache-Control"] = "no-store"
        except Exception:
            log.exception("request_failed", path=request.path)
            if request.path.startswith("/api/"):
                response = ApiError(500, "internal_error", "internal error").response()
            else:
                response = respond(request, request.app[VIEWS].error_page(request, 500))
                status = 500
        if "Content-Security-Policy" not in response.headers:  # pages from respond() carry them already
            response.headers.update(SECURITY_HEADERS)
        _latency(route, status).observe(time.perf_counter() - started)
        return response

    return observed_handler


def canonical(path: str) -> str:
    """A route's path as aiohttp names its resource: ``/audio/{id}/{version}.opus``."""
    return re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", path)


def observed_routes(defs: Iterable[web.RouteDef]) -> list[web.RouteDef]:
    return [web.RouteDef(d.method, d.path, observed("unmatched" if d.path == FALLBACK else canonical(d.path), d.handler),
                         d.kwargs) for d in defs]


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The last route (any method, any path): 405 with the allowed methods where the path is
    known, else 404; ``observed`` turns either into our page or JSON error."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == canonical(FALLBACK):
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


FALLBACK = "/{tail:.*}"


class StaticFiles:
    """The files under static/, read once and served as cached pages (ETag, 304, gzip/brotli)
    for a year: templates link them with a content hash (``?v=``)."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.pages = {}
        for path in sorted(directory.iterdir()):
            if path.is_file():
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if kind.startswith("text/"):
                    kind += "; charset=utf-8"
                self.pages[path.name] = make_page(path.read_bytes(), content_type=kind,
                                                  headers={"Cache-Control": "public, max-age=31536000, immutable"})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        page = self.pages.get(request.match_info["name"])
        if page is None:
            raise web.HTTPNotFound()
        return respond(request, page)


@functools.lru_cache(maxsize=512)
def _latency(route: str, status: int):
    """The labelled histogram child, looked up once per (route, status) instead of per request."""
    return metrics.HTTP_SECONDS.labels(route, str(status))


async def invalidation_loop(app: web.Application) -> None:
    """Drop cache entries as soon as storage or linking says something changed.

    No consumer group: every gateway replica sees every event, starting from "latest".
    """
    settings = app[SETTINGS]
    cache = app[CACHE]
    consumer: AIOKafkaConsumer = make_consumer(
        settings.kafka, [settings.kafka.topic_stored, settings.kafka.topic_linked, settings.kafka.topic_narrated],
        group_id=None, client_id="gateway-cache", auto_offset_reset="latest",
    )
    while True:
        try:
            await consumer.start()
            break
        except KafkaError as exc:
            log.warning("cache_listener_waiting", error=repr(exc))
            await asyncio.sleep(2)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            app[CACHE_LISTENING].set()
            keys: set[str] = set()
            fronts = False
            for records in batch.values():
                for record in records:
                    article_id = (record.key or b"").decode("utf-8", "replace")
                    if record.topic == settings.kafka.topic_stored:
                        keys.add(f"{ARTICLES}:{article_id}")
                        fronts = True
                    elif record.topic == settings.kafka.topic_narrated:
                        keys.add(f"{AUDIO}:{article_id}")
                    else:
                        keys.add(f"{RELATED}:{article_id}")
            # One pass per batch; fronts come from an index of their keys, never a scan of the cache.
            cache.invalidate(*keys)
            if fronts:
                cache.invalidate_prefix(f"{FRONTS}:")
    finally:
        await consumer.stop()


def create_app(settings: GatewaySettings) -> web.Application:
    # Request lines up to 32 KiB: an API query at its documented limits (a 2,048-character uri,
    # percent-encoded) still reaches the API and gets its JSON answer.
    app = web.Application(client_max_size=64 * 1024,
                          handler_args={"max_line_size": 32_768, "max_field_size": 16_384})
    app[SETTINGS] = settings
    cache = Cache(ttl=settings.cache_ttl_s, max_entries=settings.cache_max_entries, max_bytes=settings.cache_max_bytes,
                  indexed_prefixes=(f"{FRONTS}:",))
    cache.export_metrics()
    app[CACHE] = cache
    app[CACHE_LISTENING] = asyncio.Event()
    client = make_client(settings.mongo, app_name="gateway")
    db = database(client, settings.mongo)
    kafka_clients: dict[str, ResilientProducer] = {}  # created in the event loop, at start-up

    async def publish_newsletter(key: str, event) -> None:
        await kafka_clients["producer"].send_and_wait(settings.kafka.topic_newsletter, event.to_bytes(), key=key.encode())

    read = ReadModel(db, cache)
    views = Views(settings, read, cache)
    discovery = Discovery(settings, read, cache)
    app[VIEWS] = views
    views.static_version = hashlib.blake2b((HERE / "static" / "site.css").read_bytes(), digest_size=6).hexdigest()
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        problems = {}
        try:
            await asyncio.wait_for(ping(db), timeout=3)
        except Exception as exc:  # noqa: BLE001
            problems["database"] = repr(exc)[:200]
        try:
            await asyncio.wait_for(kafka_clients["producer"].client.fetch_all_metadata(), timeout=3)
        except Exception as exc:  # noqa: BLE001
            problems["kafka"] = repr(exc)[:200]
        if problems:
            return web.json_response({"status": "unavailable", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    static = StaticFiles(HERE / "static")
    app.add_routes(observed_routes([
        web.get("/", views.home),
        web.get("/section/{slug}", views.section),
        web.get("/tag/{slug}", views.tag),
        # The article page first: routes under one prefix are tried in order (hot path).
        web.get("/articles/{id}/{slug}", views.article),
        web.get("/articles/{id}", views.article_redirect),
        web.get(r"/audio/{id}/{version:\d+}.opus", views.audio),
        web.get("/search", views.search),
        web.get("/api/v1/articles", views.api_articles),
        web.get("/api/v1/articles/{id}", views.api_article),
        web.get("/api/v1/search", views.api_search),
        web.get("/api/v1/sections", views.api_sections),
        web.get("/api/v1/openapi.json", views.openapi),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/static/{name}", static.handle),
        *discovery.routes(),
        *NewsletterRoutes(settings, views, publish_newsletter).routes(),
        web.route("*", FALLBACK, unmatched),  # last: only what nothing else matched
    ]))

    async def lifecycle(app: web.Application):
        producer = kafka_clients["producer"] = ResilientProducer(lambda: make_producer(settings.kafka, "gateway"),
                                                                 service="gateway")
        await producer.start()
        views.linking_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        ops = None
        if settings.ops_port is not None:
            async def ops_ready() -> str | None:
                await ping(db)
                return None
            ops = await start_ops_server(settings.ops_host, settings.ops_port, ops_ready)
        listener = asyncio.create_task(invalidation_loop(app)) if settings.cache_invalidation else None
        # Start-up objects live for the whole process: keep them out of the collector's scans,
        # which otherwise show up as latency spikes under load.
        gc.freeze()
        yield
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        if ops is not None:
            await ops.cleanup()
        await views.linking_session.close()
        await producer.stop()
        await client.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def main() -> None:
    settings = GatewaySettings()
    tune_allocator()
    configure_logging(settings.log, service="gateway")
    web.run_app(create_app(settings), host=settings.host, port=settings.port, access_log=None,
                shutdown_timeout=10, print=lambda *_: log.info("gateway_listening", url=f"http://{settings.host}:{settings.port}"))
