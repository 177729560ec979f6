"""A relay worker process: holds calls' relays and answers the main process
over an internal HTTP channel on loopback (with a per-run secret). Media (UDP)
flows between the clients and this process directly."""

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Coroutine
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web

from media.config import MediaConfig
from media.errors import BadOffer, UnknownCall
from media.pool import LocalRelayPool
from observability.logs import configure as configure_logging

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Relay-Secret"  # noqa: S105 - a header name, not a secret
MAX_SDP_BYTES = 64 * 1024

POOL = web.AppKey("pool", LocalRelayPool)
LISTENERS = web.AppKey("listeners", set)


def _app(config: MediaConfig, secret: str) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get(SECRET_HEADER) != secret:
            return web.json_response({"error": "forbidden"}, status=403)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except BadOffer as exc:
            return web.json_response({"error": "bad_offer", "message": str(exc)}, status=400)
        except UnknownCall as exc:
            return web.json_response({"error": "unknown_call", "message": str(exc)}, status=404)

    app = web.Application(middlewares=[guard], client_max_size=MAX_SDP_BYTES)
    pool = LocalRelayPool(config)
    listeners: set[web.WebSocketResponse] = set()
    app[POOL] = pool
    app[LISTENERS] = listeners

    sending: set[asyncio.Task[None]] = set()

    def forward(call_id: str, participant: str, status: str) -> None:
        message = json.dumps({"call_id": call_id, "participant": participant, "status": status})
        for ws in list(listeners):
            task = asyncio.ensure_future(ws.send_str(message))
            sending.add(task)
            task.add_done_callback(sending.discard)

    pool.listener = forward

    async def close_call(request: web.Request) -> web.StreamResponse:
        await pool.close_call(request.match_info["call_id"])
        return web.Response(status=204)

    async def connect(request: web.Request) -> web.StreamResponse:
        # The main process assigned the call here; the relay starts with its first offer.
        await pool.open_call(request.match_info["call_id"])
        answer = await pool.connect(
            request.match_info["call_id"], request.match_info["participant"], await request.text()
        )
        return web.Response(text=answer, content_type="application/sdp", status=201)

    async def disconnect(request: web.Request) -> web.StreamResponse:
        found = await pool.disconnect(
            request.match_info["call_id"], request.match_info["participant"]
        )
        return web.Response(status=204 if found else 404)

    async def stats(_request: web.Request) -> web.StreamResponse:
        return web.json_response(pool.figures())

    async def events(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=10)
        await ws.prepare(request)
        listeners.add(ws)
        try:
            async for _message in ws:
                pass
        finally:
            listeners.discard(ws)
        return ws

    async def shutdown(_app: web.Application) -> None:
        await pool.close()

    app.on_cleanup.append(shutdown)
    app.router.add_delete("/calls/{call_id}", close_call)
    app.router.add_post("/calls/{call_id}/legs/{participant}", connect)
    app.router.add_delete("/calls/{call_id}/legs/{participant}", disconnect)
    app.router.add_get("/stats", stats)
    app.router.add_get("/events", events)
    return app


async def _serve(
    config: MediaConfig, secret: str, report: Connection, lifeline: Connection, port: int
) -> None:
    runner = web.AppRunner(_app(config, secret), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.internal_host, port)
    await site.start()
    report.send(runner.addresses[0][1])
    report.close()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The parent never writes to the lifeline: it becomes readable (end-of-file) only
    # when the parent is gone, however it died (kill -9 included). A worker never
    # outlives the process that started it.
    loop.add_reader(lifeline.fileno(), stop.set)
    await stop.wait()
    loop.remove_reader(lifeline.fileno())
    with contextlib.suppress(Exception):
        await runner.cleanup()


def run_worker(
    config: MediaConfig,
    secret: str,
    report: Connection,
    lifeline: Connection,
    log_level: str,
    log_format: str = "text",
    port: int = 0,
) -> None:
    """Entry point of a worker process: it logs like its parent (JSON lines with
    ``--log-format json``)."""
    configure_logging(log_level, log_format)
    run_loop(_serve(config, secret, report, lifeline, port))


LOOP_VARIABLE = "WINDOWLINK_MEDIA_LOOP"
"""``asyncio`` runs a relay worker on the stock event loop instead of uvloop."""


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """A relay worker's loop: uvloop where it is installed (a declared dependency
    on Linux: its datagram path costs less per packet, see docs/PERFORMANCE.md),
    else, or when ``WINDOWLINK_MEDIA_LOOP=asyncio``, the stock one."""
    if os.environ.get(LOOP_VARIABLE, "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed: the relay worker runs on asyncio's loop")
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
