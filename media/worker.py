"""A relay worker process: holds calls' relays and answers the deployment's
processes over an internal HTTP API (--internal-address) where every request is
signed (media/internal_auth.py). Media (UDP) flows between the clients and this
process directly."""

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web

from media import datapath
from media.config import MediaConfig
from media.counters import RelayCounters
from media.errors import BadOffer, NotAParticipant, UnknownCall
from media.internal_auth import (
    HEADER,
    Accepted,
    NonceMemory,
    SignedRequest,
    authority_of,
    check,
    log_due,
    signing_key,
)
from media.pool import LocalRelayPool
from media.recording_dump import DumpTarget
from observability.logs import configure as configure_logging

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024
MAX_LEGS = 16
PARTICIPANT = re.compile(r"[a-z][a-z0-9_-]{0,31}")
"""What a leg's name looks like ("kiosk", "expert", the next participants')."""

POOL = web.AppKey("pool", LocalRelayPool)
LISTENERS = web.AppKey("listeners", set)


def worker_url(host: str, port: int) -> str:
    """How the deployment names a worker (its placement, and what it signs for)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class RequestGate:
    """The worker's side of media/internal_auth.py: each request's signature
    checked, accepted nonces remembered, refusals counted (``RelayCounters``, in
    /stats and the parent's metrics) and logged with the peer's address."""

    def __init__(self, key: bytes, counters: RelayCounters) -> None:
        self._key = key
        self._counters = counters
        self._nonces = NonceMemory()
        self._last_logged: float | None = None
        self._unlogged = 0
        self.authority: str | None = None
        """This worker's host:port as the deployment names it (set once it listens)."""

    async def admits(self, request: web.Request) -> bool:
        # Read within client_max_size; a handler reading it again gets the same bytes.
        body = await request.read()
        now = time.time()
        verdict = check(
            self._key,
            SignedRequest(request.method, self.authority or "", request.raw_path, body),
            request.headers.get(HEADER),
            now,
            self._nonces,
            self._nonces.full(now),
        )
        if isinstance(verdict, Accepted) and self.authority is not None:
            self._nonces.remember(verdict)
            return True
        self._counters.internal_auth_failures += 1
        self._unlogged += 1
        if log_due(self._last_logged, now):
            more = f" ({self._unlogged - 1} more since the last line)" if self._unlogged > 1 else ""
            log.warning(
                "internal request refused from %s: %s %s: %s%s",
                request.remote,
                request.method,
                request.path,
                verdict.value if not isinstance(verdict, Accepted) else "not listening yet",
                more,
            )
            self._last_logged, self._unlogged = now, 0
        return False


GATE = web.AppKey("gate", RequestGate)


def declared_legs(request: web.Request) -> frozenset[str]:
    """The legs the call may have, as the signed query names them (``legs=a,b``)."""
    names = request.query.get("legs", "").split(",")
    if not 0 < len(names) <= MAX_LEGS or not all(PARTICIPANT.fullmatch(n) for n in names):
        raise BadOffer("the request does not declare the call's legs")
    return frozenset(names)


def _app(config: MediaConfig, secret: str) -> web.Application:
    pool = LocalRelayPool(config)
    gate = RequestGate(signing_key(secret), pool.live_counters)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if not await gate.admits(request):
            return web.json_response({"error": "forbidden"}, status=403)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except BadOffer as exc:
            return web.json_response({"error": "bad_offer", "message": str(exc)}, status=400)
        except NotAParticipant as exc:
            return web.json_response(
                {"error": "not_a_participant", "message": str(exc)}, status=403
            )
        except UnknownCall as exc:
            return web.json_response({"error": "unknown_call", "message": str(exc)}, status=404)

    app = web.Application(middlewares=[guard], client_max_size=MAX_SDP_BYTES)
    app[GATE] = gate
    listeners: set[web.WebSocketResponse] = set()
    app[POOL] = pool
    app[LISTENERS] = listeners

    sending: set[asyncio.Task[None]] = set()

    def send(message: str, to: Iterable[web.WebSocketResponse]) -> None:
        for ws in list(to):
            task = asyncio.ensure_future(ws.send_str(message))
            sending.add(task)
            task.add_done_callback(sending.discard)

    def forward(call_id: str, participant: str, status: str) -> None:
        send(
            json.dumps({"call_id": call_id, "participant": participant, "status": status}),
            listeners,
        )

    pool.listener = forward

    def figures_message() -> str:
        return json.dumps({"figures": pool.figures()})

    async def push_figures(_app: web.Application) -> AsyncIterator[None]:
        # The node's heartbeat reads these (placement's load) without asking: a
        # signed HTTP request per worker every 2 s cost an idle node more than
        # anything else it did.
        async def every() -> None:
            while True:
                await asyncio.sleep(FIGURES_EVERY)
                if listeners:
                    send(figures_message(), listeners)

        task = asyncio.create_task(every(), name="push-figures")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(push_figures)

    async def close_call(request: web.Request) -> web.StreamResponse:
        await pool.close_call(request.match_info["call_id"])
        return web.Response(status=204)

    async def connect(request: web.Request) -> web.StreamResponse:
        # The main process assigned the call here; the relay starts with its first offer.
        legs = declared_legs(request)
        await pool.open_call(request.match_info["call_id"])
        answer = await pool.connect(
            request.match_info["call_id"],
            request.match_info["participant"],
            await request.text(),
            legs,
        )
        return web.Response(text=answer, content_type="application/sdp", status=201)

    async def disconnect(request: web.Request) -> web.StreamResponse:
        found = await pool.disconnect(
            request.match_info["call_id"], request.match_info["participant"]
        )
        return web.Response(status=204 if found else 404)

    async def start_recording(request: web.Request) -> web.StreamResponse:
        target = DumpTarget.from_json(await request.text())
        await pool.start_recording(request.match_info["call_id"], target)
        return web.Response(status=204)

    async def stop_recording(request: web.Request) -> web.StreamResponse:
        found = await pool.stop_recording(request.match_info["call_id"])
        return web.Response(status=204 if found else 404)

    async def stats(_request: web.Request) -> web.StreamResponse:
        return web.json_response(pool.figures())

    async def events(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=10)
        await ws.prepare(request)
        listeners.add(ws)
        send(figures_message(), [ws])
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
    app.router.add_put("/calls/{call_id}/recording", start_recording)
    app.router.add_delete("/calls/{call_id}/recording", stop_recording)
    app.router.add_get("/stats", stats)
    app.router.add_get("/events", events)
    return app


async def _serve(
    config: MediaConfig, secret: str, report: Connection, lifeline: Connection, port: int
) -> None:
    app = _app(config, secret)
    # Told to stop, a worker does not wait for open requests longer than this.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=STOP_REQUESTS)
    await runner.setup()
    site = web.TCPSite(runner, config.internal_host, port)
    await site.start()
    port = runner.addresses[0][1]
    app[GATE].authority = authority_of(worker_url(config.internal_host, port))
    report.send(port)
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
    # Where this process's relays forward (the parent checked the setting already).
    datapath.select(config.datapath)
    log.info("%s", datapath.describe(prefer_native=config.datapath != "python"))
    # The pump reads the sockets on asyncio's own loop only (media/pump.py).
    run_loop(_serve(config, secret, report, lifeline, port), pump=datapath.current() == "native")


FIGURES_EVERY = 2.0
"""Seconds between the figures a worker pushes over /events (its calls, its CPU
time: what the node's heartbeat reports for placement, every 2 s as well)."""

STOP_REQUESTS = 0.5
"""Seconds a stopping worker gives its open requests (its node stops within 10 s)."""

LOOP_VARIABLE = "WINDOWLINK_MEDIA_LOOP"
"""``asyncio`` or ``uvloop``: a relay worker's event loop, whatever the data path."""


def run_loop(main: Coroutine[Any, Any, None], pump: bool = False) -> None:
    """A relay worker's loop. On the native data path (``pump``) asyncio's own: the
    pump's thread reads the sockets and forwards the steady packets, and it can take
    a socket over from asyncio's loop, not from uvloop's. On the Python path uvloop
    where it is installed (a declared dependency on Linux: its datagram path costs
    less per packet, see docs/PERFORMANCE.md). ``WINDOWLINK_MEDIA_LOOP`` overrides
    either (uvloop on the native path: forwarded in C, without the pump)."""
    chosen = os.environ.get(LOOP_VARIABLE) or ("asyncio" if pump else "uvloop")
    if chosen != "asyncio":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed: the relay worker runs on asyncio's loop")
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
