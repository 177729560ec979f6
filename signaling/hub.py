"""Signaling put together: the socket.io server, the state store, the services
and the deadline scheduler, started and stopped as one."""

from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from aiohttp import web

from media.pool import RelayPool
from signaling.config import SignalingConfig
from signaling.consultation import ConsultationService
from signaling.dispatch import Dispatcher
from signaling.gateway import SignalingGateway
from signaling.limits import EventRateLimit
from signaling.memory_state import InProcessStateStore
from signaling.notifier import SocketNotifier
from signaling.presence import PresenceService
from signaling.scheduler import DeadlineScheduler
from signaling.socketio_private import GuardedAsyncServer
from signaling.state import StateStore
from storage.store import Storage

# Small frames only: events carry ids and short text, files go over HTTP.
MAX_FRAME_BYTES = 64 * 1024


def create_socket_server(
    redis_url: str | None,
    allowed_origin: Callable[[str | None, dict[str, Any]], bool],
    limits: EventRateLimit,
) -> socketio.AsyncServer:
    """The socket.io server; with Redis its emits reach sockets on every node.
    ``allowed_origin`` decides which page origins may connect (same origin);
    ``limits`` how many events a connection may send."""
    manager: socketio.AsyncManager = (
        socketio.AsyncRedisManager(redis_url) if redis_url else socketio.AsyncManager()
    )
    return GuardedAsyncServer(
        admit=limits.admit,
        async_mode="aiohttp",
        client_manager=manager,
        # A dead network is noticed within ping_interval + ping_timeout, which
        # must stay well inside the grace period.
        ping_interval=5,
        ping_timeout=5,
        max_http_buffer_size=MAX_FRAME_BYTES,
        cors_allowed_origins=allowed_origin,
        logger=False,
        engineio_logger=False,
    )


def create_state_store(redis_url: str | None) -> StateStore:
    if redis_url:
        raise NotImplementedError("the Redis state store comes with scale-out")
    return InProcessStateStore()


class SignalingHub:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: StateStore,
        storage: Storage,
        config: SignalingConfig,
        media: RelayPool,
        *,
        session_cookie: str,
        remote_of: Callable[[web.Request], str],
        limits: EventRateLimit,
        on_call_ended: Callable[[str], Awaitable[object]],
        observe_event: Callable[[str, float, str | None], None] = lambda *_: None,
    ) -> None:
        self.sio = sio
        self.store = store
        self.storage = storage
        self.config = config
        self.dispatcher = Dispatcher(store, storage, SocketNotifier(sio), config)
        self.consultations = ConsultationService(self.dispatcher, media, on_call_ended)
        media.listener = self.consultations.on_media_event
        self.presence = PresenceService(self.dispatcher, self.consultations)
        self.gateway = SignalingGateway(
            sio,
            storage.sessions,
            self.dispatcher,
            self.consultations,
            self.presence,
            session_cookie=session_cookie,
            remote_of=remote_of,
            limits=limits,
            observe=observe_event,
        )
        self.scheduler = DeadlineScheduler(store, self._on_deadline)

    async def _on_deadline(self, key: str) -> None:
        if key.startswith("offline|"):
            await self.presence.on_deadline(key)
        else:
            await self.consultations.on_deadline(key)

    async def start(self) -> None:
        await self.store.start()
        await self.consultations.settle_orphans()
        for department in await self.storage.departments.list():
            for seconds in reversed(
                await self.storage.consultations.recent_handle_times(
                    department.code, self.config.handle_time_samples
                )
            ):
                await self.store.add_handle_time(
                    department.code, seconds, self.config.handle_time_samples
                )
        self.scheduler.start()
        self.gateway.start_session_checks()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.dispatcher.close()
        await self.gateway.disconnect_all()
        await self.gateway.drain()
        await self.store.close()
