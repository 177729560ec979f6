"""Signaling put together: the socket.io server, the live-state store, the
executor and services, the queue publisher and the deadline scheduler, this
node's heartbeat and the sweep of nodes that died, started and stopped as one.
The web layer's handlers use only ``SignalingHub.facade``; ``web/app.py``, the
wiring, makes the hub, starts it and stops it."""

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import socketio
from aiohttp import web

from media.errors import RelayUnavailable
from media.pool import RelayPool
from signaling import relays
from signaling.config import SignalingConfig
from signaling.errors import SignalingError
from signaling.executor import Executor
from signaling.facade import SignalingFacade
from signaling.gateway import SignalingGateway
from signaling.limits import EventRateLimit
from signaling.live import leg_name
from signaling.memory_store import InProcessStore
from signaling.notifier import SocketNotifier
from signaling.publisher import QueuePublisher
from signaling.reconcile import RECONCILE_EVERY, SETTLE
from signaling.scheduler import DeadlineScheduler
from signaling.service import ConsultationService, PresenceService
from signaling.socketio_private import GuardedAsyncServer
from signaling.store import LiveStore, StoreUnavailable
from storage.errors import RecordNotFound, StorageUnavailable
from storage.store import Storage

log = logging.getLogger(__name__)

# Small frames only: events carry ids and short text, files go over HTTP.
MAX_FRAME_BYTES = 64 * 1024
NODE_HEARTBEAT = 2.0
NODE_TTL = 6.0
"""A node that has not beaten for this long is dead: its sockets are swept."""
STOP_WITHIN = 3.0
"""Seconds ``SignalingHub.stop`` takes at most unless told otherwise."""
STORE_CLOSE = 0.2
"""Seconds the live state is given to close even when the stop's time is spent."""


def create_socket_server(
    redis_url: str | None,
    allowed_origin: Callable[[str | None, dict[str, Any]], bool],
    limits: EventRateLimit,
    channel: str = "windowlink",
) -> socketio.AsyncServer:
    """The socket.io server; with Redis its emits reach sockets on every node.
    ``allowed_origin`` decides which page origins may connect (same origin);
    ``limits`` how many events a connection may send."""
    manager: socketio.AsyncManager = (
        socketio.AsyncRedisManager(redis_url, channel=channel)
        if redis_url
        else socketio.AsyncManager()
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
        # The pages and the Python client use the websocket only: no sticky
        # sessions are needed in front of several processes.
        transports=["websocket"],
        logger=False,
        engineio_logger=False,
    )


def create_live_store(redis_url: str | None, prefix: str = "wl:") -> LiveStore:
    """In this process (the embedded default), or in Redis shared by every node."""
    if not redis_url:
        return InProcessStore()
    from signaling.redis_store import RedisStore

    return RedisStore(redis_url, prefix=prefix)


def new_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class SignalingHub:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: LiveStore,
        storage: Storage,
        config: SignalingConfig,
        media: RelayPool,
        *,
        session_cookie: str,
        remote_of: Callable[[web.Request], str],
        limits: EventRateLimit,
        on_call_ended: Callable[[str], Awaitable[object]],
        record: Callable[[str, str | None, bool], Awaitable[None]] | None = None,
        observe_event: Callable[[str, float, str | None], None] = lambda *_: None,
        shared: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sio = sio
        self.store = store
        self.storage = storage
        self.config = config
        self.media = media
        self.shared = shared
        """Whether the live state outlives this process (Redis): then only what has
        disagreed with the records for a while is repaired at start (without it,
        everything the records hold open), and dead nodes are swept."""
        self.node = new_node_id()
        notifier = SocketNotifier(sio)
        self.scheduler = DeadlineScheduler(store, self._on_deadline, clock)
        self.executor = Executor(
            store,
            storage,
            notifier,
            config,
            clock,
            close_relay=self._close_relay,
            discard_uploads=on_call_ended,
            publish_queue=lambda department: self.publisher.schedule(department),
            participant_changed=lambda account, up: self.consultations.participant_changed(
                account, up
            ),
            close_leg=self._close_leg,
            record=self._record_media if record is not None else None,
            deadline_set=self.scheduler.soon,
        )
        self._recorder = record
        self.publisher = QueuePublisher(store, notifier, config, self.executor.department_presences)
        self.consultations = ConsultationService(self.executor, storage, config, clock)
        self.presence = PresenceService(self.executor, config)
        media.listener = self._on_media_event
        self.gateway = SignalingGateway(
            sio,
            storage.sessions,
            store,
            self.consultations,
            self.presence,
            self.publisher,
            config,
            node=self.node,
            session_cookie=session_cookie,
            remote_of=remote_of,
            limits=limits,
            observe=observe_event,
        )
        self.facade = SignalingFacade(self)
        self._background: list[asyncio.Task[None]] = []
        self.draining = False
        self._relay_cpu: dict[str, relays.CpuSample] = {}
        """Each own worker's figures at the previous report."""

    def _on_media_event(self, call_id: str, participant: str, status: str) -> None:
        """From the relay: a participant's media connected, or was lost."""
        self.executor.spawn(self.consultations.media_changed(call_id, participant, status))

    async def _close_relay(self, call_id: str, relay: str | None) -> None:
        if relay is None or not await self.trusts_relay(call_id, relay):
            return
        try:
            self.media.adopt(call_id, relay)
        except RelayUnavailable:
            return
        await self.media.close_call(call_id)

    async def _close_leg(self, call_id: str, relay: str | None, position: int) -> None:
        """A participant left a call that goes on: its media leg closes at the relay."""
        if relay is None or not await self.trusts_relay(call_id, relay):
            return
        try:
            self.media.adopt(call_id, relay)
            await self.media.disconnect(call_id, leg_name(position))
        except RelayUnavailable:
            return

    async def _record_media(self, call_id: str, relay: str | None, on: bool) -> None:
        """The call's recording starts or stops at its relay (one this node trusts)."""
        if self._recorder is None or (
            relay is not None and not await self.trusts_relay(call_id, relay)
        ):
            return
        await self._recorder(call_id, relay, on)

    async def _on_deadline(self, key: str) -> None:
        if key.startswith(("offline|", "wrapup|")):
            await self.presence.on_deadline(key)
        else:
            await self.consultations.on_deadline(key)

    async def start(self) -> None:
        await self.store.start()
        # Without a shared store this process holds the only live state, just made:
        # every open record was left by its stop or crash, and nothing is on its way.
        await self._reconcile_claimed(SETTLE if self.shared else 0.0)
        for department in await self.storage.departments.list():
            await self._seed_handle_times(department.code)
        await self.store.heartbeat("nodes", self.node, "", NODE_TTL)
        await self._report_relays()
        self.scheduler.start()
        self.gateway.start_session_checks()
        self._background.append(asyncio.create_task(self._beat_and_sweep(), name="node-beat"))
        self._background.append(asyncio.create_task(self._reconcile_forever(), name="reconcile"))

    async def _seed_handle_times(self, department: str) -> None:
        if await self.store.handle_times(department):
            return
        from signaling.store import Commit

        samples = await self.storage.consultations.recent_handle_times(
            department, self.config.handle_time_samples
        )
        keep = self.config.handle_time_samples
        await self.store.commit(
            Commit(handle_times=[(department, s, keep) for s in reversed(samples)])
        )

    async def reconcile(self, settle: float = SETTLE) -> int:
        """One pass over the deployment making records and live state agree
        (``signaling.reconcile``): the open records, and the live calls the
        departments' queues and experts hold. How many consultations were repaired.
        Each department is also routed once more, for a pass a stop refused."""
        departments = [d.code for d in await self.storage.departments.list()]
        live_ids: set[str] = set()
        for department in departments:
            live_ids.update(await self.store.queue(department))
            for presence in await self.executor.department_presences(department):
                live_ids.update(i for i in (presence.offer, presence.call) if i)
        open_records = await self.storage.consultations.open_consultations()
        repaired = await self.consultations.reconcile(open_records, live_ids, settle)
        for department in departments:
            self.executor.spawn(self.executor.dispatch(department))
        return repaired

    async def _reconcile_claimed(self, settle: float) -> None:
        """A pass, if no other node of the deployment has run one within the interval."""
        try:
            if await self.store.claim("reconcile", RECONCILE_EVERY * 0.9):
                await self.reconcile(settle)
        except (StoreUnavailable, StorageUnavailable, SignalingError) as exc:
            log.warning("records and live state not reconciled now: %s", exc)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY)
            try:
                await self._reconcile_claimed(SETTLE)
            except Exception:
                log.exception("reconciling records and live state failed")

    async def _beat_and_sweep(self) -> None:
        """Say this node is alive; sweep the sockets of nodes that are not."""
        while True:
            await asyncio.sleep(NODE_HEARTBEAT)
            try:
                await self.store.heartbeat("nodes", self.node, "", NODE_TTL)
                await self._report_relays()
                if self.shared:
                    await self.sweep_dead_nodes()
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("node heartbeat failed")

    def set_draining(self, draining: bool) -> None:
        """Take no new calls on this node's relay workers (the ones held go on), or
        take them again; told to the deployment at once."""
        if draining != self.draining:
            log.warning("node %s %s", self.node, "draining" if draining else "taking calls again")
        self.draining = draining

        async def report() -> None:
            try:
                await self._report_relays()
            except Exception as exc:  # the next heartbeat tells it again
                log.warning("relay report failed: %s", exc)

        task = asyncio.create_task(report(), name="relay-report")
        self._background.append(task)
        task.add_done_callback(self._background.remove)

    async def _report_relays(self) -> None:
        """Tell the deployment how loaded this node's relay workers are."""
        now = time.monotonic()
        for url, figures in (await self.media.worker_figures()).items():
            spent = figures.get("cpu_seconds", 0.0)
            # When the figures were taken (a worker pushes them every 2 s, read by
            # this heartbeat every 2 s: the same push may be read twice).
            at = figures.get("measured_at", now)
            sample = relays.cpu_rate(self._relay_cpu.get(url), spent, at)
            self._relay_cpu[url] = sample
            load = relays.RelayLoad(int(figures.get("calls", 0)), sample.rate, self.draining)
            await self.store.heartbeat(relays.GROUP, url, load.to_json(), relays.TTL)

    async def choose_relay(self, call_id: str, unreachable: str | None) -> str:
        """Where a call's media goes: the least-loaded live worker of the deployment
        (this process's own if none reported), never ``unreachable``."""
        try:
            reports = relays.parse_reports(await self.store.alive(relays.GROUP))
        except StoreUnavailable:
            reports = {}
        exclude = frozenset({unreachable}) if unreachable else frozenset()
        chosen = relays.choose_relay(reports, self.media.local_urls(), exclude)
        if chosen is None:
            return await self.media.place(call_id)
        return chosen

    async def trusts_relay(self, call_id: str, placement: str) -> bool:
        """Whether the call's media requests may go to ``placement``: this process's
        own worker, or one a live node of this deployment reports (its heartbeat in
        the live store); logged when not."""
        local = self.media.local_urls()
        if relays.trusted_placement(placement, local, ()):
            return True
        try:
            registered = relays.parse_reports(await self.store.alive(relays.GROUP))
        except StoreUnavailable:
            registered = {}
        if relays.trusted_placement(placement, local, registered.keys()):
            return True
        log.warning(
            "call %s is placed on %s, which is no relay worker of this deployment: "
            "no media request goes there",
            call_id,
            placement,
        )
        return False

    async def sweep_dead_nodes(self) -> int:
        """Forget the sockets of nodes whose heartbeat expired (kill -9, lost machine):
        an account left with none starts its grace period, as on a disconnect."""
        alive = await self.store.alive("nodes")
        swept = 0
        for node in await self.store.known("nodes"):
            if node in alive or node == self.node:
                continue
            if not await self.store.claim(f"sweep:{node}", 30.0):
                continue
            for account_id, sid in await self.store.connections_of_node(node):
                remaining = await self.store.remove_connection(account_id, node, sid)
                swept += 1
                if remaining:
                    continue
                try:
                    account = await self.storage.accounts.get(account_id)
                except RecordNotFound:
                    continue
                await self.gateway.last_connection_closed(account)
            await self.store.forget("nodes", node)
            log.info("swept node %s", node)
        return swept

    def begin_stop(self) -> None:
        """The first step of a stop: no more events or connections, every socket's
        transport closed (its client reconnects, to another node if there is one)."""
        self.gateway.begin_stop()

    async def stop(self, within: float = STOP_WITHIN) -> None:
        """Stop within ``within`` seconds, whatever is still running: deadlines being
        carried out, socket events and background steps get what is left of it
        (before the live state closes, so none of them runs after it), then are
        cancelled and named in the log. Records whose live commit was cut short this
        way are repaired by the reconciliation (``reconcile``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within

        def left(share: float = 1.0) -> float:
            return max(0.0, (deadline - loop.time()) * share)

        self.begin_stop()
        for task in self._background:
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=left(0.1))
        await self.scheduler.stop(left(0.3))
        await self._bounded(self.publisher.close(), left(0.1), "the queue publisher")
        # Handlers first (they spawn background steps), then those steps; what is
        # left of the time goes to the store.
        finished = await self.gateway.drain(left(0.6))
        finished = await self.executor.drain(left(0.6)) and finished
        if finished:
            # With work cut short, this node's connections may still be registered:
            # its heartbeat then lapses and another node sweeps them
            # (sweep_dead_nodes) instead.
            forget = self.store.forget("nodes", self.node)
            await self._bounded(forget, left(), "forgetting the node")
        await self._bounded(self.store.close(), max(left(), STORE_CLOSE), "the live state")

    @staticmethod
    async def _bounded(work: Coroutine[Any, Any, None], within: float, what: str) -> None:
        try:
            async with asyncio.timeout(within):
                await work
        except TimeoutError:
            log.warning("stop: %s did not finish within %.1f s", what, within)
        except StoreUnavailable as exc:
            log.info("stop: %s: %s", what, exc)
