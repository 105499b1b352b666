"""Process runtime: signal handling and the small internal HTTP server every worker exposes
(``/healthz``, ``/readyz``, ``/metrics``) on its own internal port."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadyCheck = Callable[[], Awaitable[str | None]]  # None = ready, else the reason it is not


def install_stop_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover (non-main thread)
            pass


def ops_routes(ready: ReadyCheck) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            problem = await asyncio.wait_for(ready(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            problem = repr(exc)
        if problem:
            return web.json_response({"status": "unavailable", "reason": problem}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]


async def start_ops_server(
    host: str, port: int, ready: ReadyCheck, extra_routes: list[web.RouteDef] | None = None
) -> web.AppRunner:
    app = web.Application(client_max_size=64 * 1024)
    app.add_routes(ops_routes(ready))
    app.add_routes(extra_routes or [])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
