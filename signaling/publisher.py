"""Where the queue stands, told to waiting kiosks (their position and wait) and
to the department's experts (the queue), a moment after it changes.

A request, its offer and its acceptance come within milliseconds, and when the
head of a long queue leaves every position behind it changes: changes are
gathered for ``queue_update_delay`` and published once per department, across
every process (the first to claim the department's window publishes what the
state then is). A kiosk far back is told only when its place or wait changed
noticeably (``worth_telling``), so the messages a consultation costs do not
grow with the length of the queue.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from signaling.config import SignalingConfig
from signaling.live import ExpertPresence, LiveCall, Phase, call_key
from signaling.messages import QueuePosition, QueueUpdate
from signaling.notifier import Notifier
from signaling.queue import estimate_wait, mean_handle_time
from signaling.store import LiveStore, StoreUnavailable
from signaling.views import queue_update

log = logging.getLogger(__name__)

QUEUE_ENTRIES_SHOWN = 50
"""Experts see the head of the queue; the rest is a count."""
NEAR_THE_HEAD = 3
"""Places at which every move is told (the citizen is about to be called)."""
STEP = 3
"""Further back, a kiosk is told when its place or wait moved by a third or more."""
MIN_WAIT_STEP = 60.0
"""... and a wait estimate only when it moved by at least a third of this (20 s)."""


def worth_telling(last: QueuePosition | None, new: QueuePosition) -> bool:
    """Whether a waiting kiosk should be told its new position: every move near the
    head; further back when the place or the wait moved by a third or more, or the
    experts online changed (nobody / somebody matters at once). A change of the
    queue's length alone (someone joined behind) is not worth a message. A citizen
    at place 300 gets about a dozen updates over the whole wait, and a consultation
    costs a bounded number of position messages whatever the queue's length."""
    if last is None:
        return True
    if new.experts_online != last.experts_online:
        return True
    if new.position != last.position and (
        new.position <= NEAR_THE_HEAD or abs(new.position - last.position) * STEP >= last.position
    ):
        return True
    old_wait, new_wait = last.estimated_wait_s, new.estimated_wait_s
    if old_wait is None or new_wait is None:
        return old_wait != new_wait
    return abs(new_wait - old_wait) * STEP >= max(old_wait, MIN_WAIT_STEP)


def positions(
    calls: list[LiveCall],
    presences: list[ExpertPresence],
    handle_times: list[float],
    config: SignalingConfig,
) -> list[tuple[LiveCall, QueuePosition]]:
    online = sum(1 for p in presences if p.online)
    free = sum(1 for p in presences if p.free)
    handle_time = mean_handle_time(handle_times, config.default_handle_time)
    out = []
    for position, call in enumerate(calls, start=1):
        offered = call.phase is Phase.OFFERED
        out.append(
            (
                call,
                QueuePosition(
                    consultation_id=call.id,
                    position=position,
                    queue_length=len(calls),
                    estimated_wait_s=0
                    if offered
                    else estimate_wait(position, free, online, handle_time),
                    experts_online=online,
                ),
            )
        )
    return out


class QueuePublisher:
    def __init__(
        self,
        store: LiveStore,
        notifier: Notifier,
        config: SignalingConfig,
        department_presences: Callable[[str], Awaitable[list[ExpertPresence]]],
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._config = config
        self._presences = department_presences
        # What this process last sent; another process may repeat one, which is harmless.
        self._sent_positions: dict[str, dict[str, QueuePosition]] = {}
        self._sent_queues: dict[str, QueueUpdate] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def schedule(self, department: str) -> None:
        # Closed at shutdown before the sockets are: their bookkeeping changes the
        # queue after the store is about to go, and nothing is published any more.
        if not self._closed and department not in self._pending:
            self._pending[department] = asyncio.create_task(self._later(department))

    async def _later(self, department: str) -> None:
        try:
            await asyncio.sleep(self._config.queue_update_delay)
        finally:
            self._pending.pop(department, None)
        try:
            # Half the window: a change committed after the claimer read the state is
            # published by its own process once the claim has lapsed.
            if await self._store.claim(
                f"publish:{department}", self._config.queue_update_delay / 2
            ):
                await self.publish(department)
        except StoreUnavailable as exc:
            log.info("queue of %s not published: %s", department, exc)
        except Exception:
            log.exception("publishing the queue of %s failed", department)

    async def snapshot(self, department: str) -> tuple[list[LiveCall], list[ExpertPresence]]:
        ids = await self._store.queue(department)
        found = await self._store.read(call_key(i) for i in ids)
        calls = [c for c in (found.get(call_key(i)) for i in ids) if isinstance(c, LiveCall)]
        return calls, await self._presences(department)

    async def queue_view(self, department: str) -> QueueUpdate:
        calls, presences = await self.snapshot(department)
        return self._update(department, calls, presences)

    def _update(
        self, department: str, calls: list[LiveCall], presences: list[ExpertPresence]
    ) -> QueueUpdate:
        update = queue_update(department, calls[:QUEUE_ENTRIES_SHOWN], presences)
        return update.model_copy(update={"more": max(0, len(calls) - QUEUE_ENTRIES_SHOWN)})

    async def publish(self, department: str) -> None:
        calls, presences = await self.snapshot(department)
        handle_times = await self._store.handle_times(department)
        sent = self._sent_positions.get(department, {})
        now_sent: dict[str, QueuePosition] = {}
        for call, update in positions(calls, presences, handle_times, self._config):
            last = sent.get(call.id)
            if worth_telling(last, update):
                await self._notifier.to_account(call.kiosk_id, "queue_position", update)
                last = update
            if last is not None:
                now_sent[call.id] = last
        # Consultations that left the queue are forgotten with it.
        self._sent_positions[department] = now_sent
        snapshot = self._update(department, calls, presences)
        if self._sent_queues.get(department) != snapshot:
            self._sent_queues[department] = snapshot
            await self._notifier.to_department(department, "queue_updated", snapshot)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
