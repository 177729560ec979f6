"""The application factory: settings in, a ready ``web.Application`` out."""

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from media import datapath
from media.config import MediaConfig
from media.pool import create_relay_pool
from signaling.config import SignalingConfig
from signaling.hub import SignalingHub, create_live_store, create_socket_server
from signaling.limits import EventRateLimit
from storage.blobs import open_blob_store
from storage.demo import seed_demo
from storage.filestore import FileStore, UploadLimits
from storage.retention import recording_days, run_retention
from storage.sensitive import SensitiveValues
from web import (
    admin_api,
    appointments_api,
    audit_api,
    board_api,
    callbacks_api,
    chat_api,
    consultations_api,
    files_api,
    followups_api,
    halls_api,
    health,
    identity_api,
    media_api,
    openapi,
    pages,
    phone_upload_api,
    recordings_api,
    session_api,
    slip_api,
    staff_call_api,
    supervision_api,
    supervisor_api,
)
from web.auth import SESSION_COOKIE, remote_address, socket_origin_allowed
from web.booking_upkeep import run_booking_upkeep
from web.call_recorder import CallRecorder
from web.errors import error_middleware, quiet_malformed_requests
from web.forwarded import ProxyTrust
from web.keys import (
    CLOCK,
    EVENT_LIMITS,
    FILES,
    HUB,
    LOGIN_GATE,
    MEDIA,
    METRICS,
    NOTICES,
    OPENAPI,
    PROXY_TRUST,
    RECORDER,
    SENSITIVE,
    SETTINGS,
    SIGNALING,
    SOCKETS,
    STOP,
    STORAGE,
)
from web.login_gate import PasswordCheckGate
from web.metrics import Metrics, metrics_middleware
from web.notices import Notices, create_sender, parse_templates
from web.processes import DRAINING_ENV, child_index, watch_lifeline
from web.request_context import request_context
from web.settings import Settings
from web.shutdown import StopBudget
from web.stores import open_keyring, open_storage

log = logging.getLogger(__name__)
PROCESS_FIGURES_EVERY = 5.0

API_TABLES = [
    session_api.api,
    admin_api.api,
    halls_api.api,
    board_api.api,
    audit_api.api,
    consultations_api.api,
    identity_api.api,
    supervision_api.api,
    recordings_api.api,
    slip_api.api,
    chat_api.api,
    media_api.api,
    files_api.api,
    phone_upload_api.api,
    staff_call_api.api,
    appointments_api.api,
    callbacks_api.api,
    followups_api.api,
    supervisor_api.api,
    health.api,
    openapi.api,
    pages.api,
]

# JSON bodies are small; files are streamed by their own routes.
MAX_BODY_BYTES = 256 * 1024


def signaling_config(settings: Settings) -> SignalingConfig:
    return SignalingConfig(
        ring_timeout=settings.ring_timeout,
        grace_period=settings.grace_period,
        no_expert_wait=settings.no_expert_wait,
        wrap_up_limit=settings.wrap_up_limit,
        max_sockets_per_account=settings.max_sockets_per_account,
        chat_per_minute=settings.chat_per_minute,
        complaint_days=settings.complaint_days,
    )


@functools.cache
def _openapi_document() -> dict[str, Any]:
    """The OpenAPI document, built once a process: it comes from the module-level
    tables alone, and building it costs a test server start 0.3 s of CPU (the
    answer serializes it; nothing changes it)."""
    return openapi.build_openapi(API_TABLES)


async def _lifeline_ctx(_app: web.Application) -> AsyncIterator[None]:
    """A child of ``--processes`` stops when its supervisor is gone (even by SIGKILL)."""
    watch_lifeline(lambda: os.kill(os.getpid(), signal.SIGTERM))
    yield


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    storage = await open_storage(settings)
    app[STORAGE] = storage
    if settings.demo:
        await seed_demo(storage)
    yield
    await app[STOP].step("closing the records", storage.close(), at_most=1.5)


async def _files_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    keyring = await open_keyring(settings, app[STORAGE].db)
    store = await FileStore.open(
        settings.data_dir,
        keyring,
        app[STORAGE].db,
        max_size=settings.max_file_size,
        limits=UploadLimits(
            per_account=settings.max_open_uploads,
            pending_bytes=settings.max_pending_upload_bytes,
            per_account_bytes=settings.upload_bytes_per_account,
            per_call_bytes=settings.upload_bytes_per_call,
            idle_timeout=settings.upload_idle_timeout,
            first_byte_timeout=settings.upload_first_byte_timeout,
        ),
        tidy=True,
        blobs=open_blob_store(settings.blob_url, settings.data_dir, settings.s3_endpoint),
        on_removed=app[METRICS].count_blob_removed,
    )
    store.start_sweeping(store.limits.sweep_interval)
    app[FILES] = store
    app[SENSITIVE] = SensitiveValues(app[STORAGE].db, keyring)
    yield
    await app[STOP].step("closing the documents", store.close(), at_most=1.0)


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    host, port = settings.internal_host_port
    if port:
        # Under --processes each child's workers take their own run of ports.
        port += (child_index() or 0) * settings.media_workers
    # Fails the start if --relay-datapath native cannot be had; workers choose alike.
    datapath.select(settings.relay_datapath)
    log.info("%s", datapath.describe(prefer_native=settings.relay_datapath != "python"))
    pool = create_relay_pool(
        MediaConfig(
            addresses=settings.media_address,
            public_address=settings.media_public_address,
            workers=settings.media_workers,
            datapath=settings.relay_datapath,
            internal_host=host,
            internal_port=port,
            ice_servers=settings.ice_servers,
            turn_secret=settings.turn_secret,
            turn_ttl=settings.turn_ttl,
        ),
        settings.log_level,
        settings.log_format,
        secret=settings.cluster_secret,
    )
    await pool.start()
    app[MEDIA] = pool
    yield
    await app[STOP].step("closing the relays", pool.close(), at_most=2.5)


async def _signaling_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    recorder = CallRecorder(app[STORAGE], app[FILES], app[MEDIA], settings.data_dir / "recordings")
    app[RECORDER] = recorder

    async def ended(call_id: str) -> None:
        await app[FILES].discard_consultation(call_id)
        await recorder.call_ended(call_id)

    hub = SignalingHub(
        app[SOCKETS],
        create_live_store(settings.redis_url, settings.redis_prefix),
        app[STORAGE],
        signaling_config(settings),
        app[MEDIA],
        session_cookie=SESSION_COOKIE,
        remote_of=remote_address,
        limits=app[EVENT_LIMITS],
        on_call_ended=ended,
        record=recorder.on_media,
        observe_event=app[METRICS].observe_event,
        shared=settings.redis_url is not None,
    )
    app[HUB] = hub
    app[SIGNALING] = hub.facade
    await hub.start()
    recorder.resume()
    # Draining (before maintenance): SIGUSR1 and this node's relay workers take no
    # new calls (the calls they hold go on) and /healthz says so; SIGUSR2 undoes it.
    loop = asyncio.get_running_loop()
    handled = []
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        for signum, draining in ((signal.SIGUSR1, True), (signal.SIGUSR2, False)):
            loop.add_signal_handler(signum, hub.set_draining, draining)
            handled.append(signum)
    if os.environ.get(DRAINING_ENV) == "1":
        hub.set_draining(True)
    yield
    for signum in handled:
        loop.remove_signal_handler(signum)
    budget = app[STOP]
    await budget.step("stopping signaling", hub.stop(within=budget.left(3.0)), at_most=3.5)
    await budget.step("finishing recordings", recorder.close(budget.left(1.0)), at_most=1.5)


async def _begin_stop(app: web.Application) -> None:
    """The stop's first step, before open requests are waited for: its time starts,
    and signaling refuses events and closes every socket's transport (so that the
    websockets do not hold the stop; their clients reconnect elsewhere)."""
    app[STOP].start()
    if HUB in app:
        app[HUB].begin_stop()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _process_figures_ctx(app: web.Application) -> AsyncIterator[None]:
    """Under --processes, a scrape reaches one process: the others keep their own
    per-process figures (sockets, unfinished uploads) fresh in the shared files."""
    metrics = app[METRICS]

    async def refresh() -> None:
        while True:
            metrics.sockets.set(app[SIGNALING].connection_count)
            metrics.unfinished_uploads.set((await app[FILES].unfinished())[0])
            await asyncio.sleep(PROCESS_FIGURES_EVERY)

    task = asyncio.create_task(refresh()) if metrics.multiprocess else None
    yield
    if task is not None:
        await app[STOP].step("stopping the figures", _cancelled(task), at_most=0.5)


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """Crypto-shred expired documents at start and hourly (--retention-days; 0 = never)."""
    days = app[SETTINGS].retention_days
    recordings = recording_days(days, app[SETTINGS].recording_retention_days)
    task = (
        asyncio.create_task(
            run_retention(app[STORAGE].db, app[FILES], days, recording_retention=recordings)
        )
        if days > 0 or recordings > 0
        else None
    )
    yield
    if task is not None:
        await app[STOP].step("stopping retention", _cancelled(task), at_most=0.5)


async def _notices_ctx(app: web.Application) -> AsyncIterator[None]:
    """Citizens' notices (--notice-sender), and the periodic task that closes expired
    call-backs and sends the day-before reminders of appointments."""
    settings = app[SETTINGS]
    sender = create_sender(
        settings.notice_sender, settings.notice_http_url, parse_templates(settings.notice_template)
    )
    app[NOTICES] = Notices(sender, app[STORAGE].audit)
    task = asyncio.create_task(run_booking_upkeep(app[STORAGE], app[SENSITIVE], app[NOTICES]))
    yield
    await app[STOP].step("stopping the notices", _cancelled(task), at_most=0.5)
    await app[STOP].step("closing the notice sender", app[NOTICES].close(), at_most=0.5)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The application; ``clock`` is what the follow-ups' deadlines are read against
    (a test passes its own to stand after a deadline)."""
    quiet_malformed_requests()
    app = web.Application(
        middlewares=[
            metrics_middleware(lambda request: request.app[METRICS]),
            request_context,
            pages.security_headers,
            error_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,
        # aiohttp's keep-alive timer also runs while a request's headers are awaited
        # and is not reset by a trickle of bytes: it is the header-read timeout (a
        # slow-headers client is closed after it) and the idle time between requests.
        handler_args={"keepalive_timeout": settings.header_timeout},
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[STOP] = StopBudget()
    app.on_shutdown.append(_begin_stop)
    # Also before the clean-up steps, for a stop that skipped the shutdown hooks.
    app.on_cleanup.insert(0, _begin_stop)
    app[METRICS] = Metrics()
    # Argon2id takes ~45 ms of one core: a few at once use the cores, more only queue.
    app[LOGIN_GATE] = PasswordCheckGate(concurrent=max(2, os.cpu_count() or 1), max_waiting=64)
    app[PROXY_TRUST] = ProxyTrust.of(settings.behind_proxy, settings.trusted_proxies)
    limits = EventRateLimit(settings.events_per_second, 2 * settings.events_per_second)
    app[EVENT_LIMITS] = limits
    sio = create_socket_server(
        settings.redis_url, socket_origin_allowed, limits, channel=settings.redis_prefix + "sio"
    )
    sio.attach(app)
    app[SOCKETS] = sio
    app.cleanup_ctx.append(_lifeline_ctx)
    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_files_ctx)
    app.cleanup_ctx.append(_media_ctx)
    app.cleanup_ctx.append(_signaling_ctx)
    app.cleanup_ctx.append(_process_figures_ctx)
    app.cleanup_ctx.append(_retention_ctx)
    app.cleanup_ctx.append(_notices_ctx)
    for table in API_TABLES:
        table.add_to(app)
    pages.add_static(app)
    app[OPENAPI] = _openapi_document()
    return app
