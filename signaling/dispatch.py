"""Routing inside a department: offer waiting consultations to free experts,
take offers back, and tell kiosks and experts where the queue stands.

Every method here expects the caller to hold ``store.lock(department_lock(d))``.
"""

import asyncio
import time
from collections.abc import Callable

from signaling.config import SignalingConfig
from signaling.messages import (
    ConsultationView,
    ExpertView,
    MediaAccess,
    OfferRevoked,
    OfferView,
    PresenceView,
    QueueEntryView,
    QueuePosition,
    QueueUpdate,
)
from signaling.notifier import Notifier
from signaling.queue import estimate_wait, mean_handle_time, pick_expert
from signaling.state import ExpertPresence, LiveCall, PresenceStatus, StateStore
from storage.records import ConsultationState
from storage.store import Storage

ONLINE = (PresenceStatus.AVAILABLE, PresenceStatus.BUSY)


def department_lock(department: str) -> str:
    return f"department:{department}"


def deadline_key(kind: str, *parts: str) -> str:
    return "|".join((kind, *parts))


def media_url(call_id: str) -> str:
    return f"/api/v1/media/{call_id}"


def consultation_view(call: LiveCall, side: str | None = None) -> ConsultationView:
    """The view one side gets: its own media access while the call is active."""
    token = call.media_tokens.get(side or "")
    media = (
        MediaAccess(url=media_url(call.id), token=token)
        if token and call.phase is ConsultationState.ACTIVE
        else None
    )
    return ConsultationView(
        consultation_id=call.id,
        department=call.department,
        state=call.phase.value,
        case_number=call.case_number,
        hall=call.hall,
        kiosk=call.kiosk_username,
        expert=call.expert_username if call.phase is ConsultationState.ACTIVE else None,
        waiting_since=call.waiting_since,
        offered_at=call.offered_at,
        active_at=call.active_at,
        media=media,
    )


def offer_view(call: LiveCall, ring_timeout: float) -> OfferView:
    assert call.offered_at is not None
    return OfferView(
        consultation_id=call.id,
        department=call.department,
        case_number=call.case_number,
        hall=call.hall,
        waiting_since=call.waiting_since,
        expires_at=call.offered_at + ring_timeout,
        ring_timeout_s=ring_timeout,
    )


def presence_view(presence: ExpertPresence) -> PresenceView:
    return PresenceView(
        status=presence.presence.value,
        missed_in_a_row=presence.missed_in_a_row,
    )


class Dispatcher:
    def __init__(
        self,
        store: StateStore,
        storage: Storage,
        notifier: Notifier,
        config: SignalingConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.storage = storage
        self.notifier = notifier
        self.config = config
        self.clock = clock
        # What this node last sent, so that unchanged positions and queues are not
        # sent again. Node-local: another node may repeat one, which is harmless.
        self._sent_positions: dict[str, QueuePosition] = {}
        self._sent_queues: dict[str, QueueUpdate] = {}
        self._queue_updates: dict[str, asyncio.Task[None]] = {}

    async def dispatch(self, department: str) -> None:
        """Offer each waiting consultation, oldest first, to the best free expert."""
        presences = await self.store.department_presence(department)
        free = [p for p in presences if p.presence is PresenceStatus.AVAILABLE and p.offer is None]
        if not free:
            return
        for call_id in await self.store.queue(department):
            call = await self.store.get_call(call_id)
            if call is None or call.phase is not ConsultationState.WAITING:
                continue
            expert = pick_expert(call, free)
            if expert is None:
                continue
            free.remove(expert)
            await self._offer(call, expert)
            if not free:
                return

    async def _offer(self, call: LiveCall, expert: ExpertPresence) -> None:
        now = self.clock()
        call.state = ConsultationState.OFFERED.value
        call.expert_id = expert.expert_id
        call.expert_username = expert.username
        call.offered_at = now
        expert.offer = call.id
        await self.store.put_call(call)
        await self.store.put_presence(expert)
        await self.store.set_deadline(deadline_key("ring", call.id), now + self.config.ring_timeout)
        await self.notifier.to_account(
            expert.expert_id, "offer", offer_view(call, self.config.ring_timeout)
        )
        await self.notifier.to_account(call.kiosk_id, "consultation", consultation_view(call))

    async def take_back_offer(
        self, call: LiveCall, reason: str, *, missed: bool = False, declined: bool = False
    ) -> None:
        """Return an offered consultation to waiting; it keeps its place at the head."""
        expert_id = call.expert_id
        assert expert_id is not None
        await self.store.clear_deadline(deadline_key("ring", call.id))
        call.state = ConsultationState.WAITING.value
        call.expert_id = None
        call.expert_username = None
        call.offered_at = None
        if missed:
            call.missed_by.append(expert_id)
        if declined:
            call.declined_by.append(expert_id)
        await self.store.put_call(call)
        await self.notifier.to_account(
            expert_id, "offer_revoked", OfferRevoked(consultation_id=call.id, reason=reason)
        )
        await self.notifier.to_account(call.kiosk_id, "consultation", consultation_view(call))
        expert = await self.store.get_presence(expert_id)
        if expert is None or expert.offer != call.id:
            return
        expert.offer = None
        if missed:
            expert.missed_in_a_row += 1
            # A missed offer sends the expert to the back of the idle order.
            expert.idle_since = self.clock()
            if (
                expert.missed_in_a_row >= self.config.missed_offers_before_away
                and expert.presence is PresenceStatus.AVAILABLE
            ):
                expert.status = PresenceStatus.AWAY.value
        elif declined:
            expert.missed_in_a_row = 0
        await self.store.put_presence(expert)
        await self.notifier.to_account(expert_id, "presence", presence_view(expert))
        if expert.presence is not PresenceStatus.AVAILABLE:
            await self.arm_no_expert(call.department)

    async def online_count(self, department: str) -> int:
        presences = await self.store.department_presence(department)
        return sum(1 for p in presences if p.presence in ONLINE)

    async def arm_no_expert(self, department: str, only: str | None = None) -> None:
        """With nobody of the department online, start the no-expert wait of
        each waiting consultation (or just ``only``)."""
        if await self.online_count(department) > 0:
            return
        at = self.clock() + self.config.no_expert_wait
        for call_id in [only] if only else await self.store.queue(department):
            await self.store.set_deadline(deadline_key("noexpert", call_id), at)

    async def _load_queue(self, department: str) -> tuple[list[LiveCall], list[ExpertPresence]]:
        ids = await self.store.queue(department)
        calls = [c for c in [await self.store.get_call(i) for i in ids] if c is not None]
        presences = sorted(
            await self.store.department_presence(department), key=lambda p: p.username
        )
        return calls, presences

    @staticmethod
    def _queue_update(
        department: str, calls: list[LiveCall], presences: list[ExpertPresence]
    ) -> QueueUpdate:
        return QueueUpdate(
            department=department,
            entries=[
                QueueEntryView(
                    consultation_id=c.id,
                    state=c.phase.value,
                    waiting_since=c.waiting_since,
                    case_number=c.case_number,
                    hall=c.hall,
                )
                for c in calls
            ],
            experts=[ExpertView(username=p.username, status=p.presence.value) for p in presences],
        )

    async def queue_snapshot(self, department: str) -> QueueUpdate:
        return self._queue_update(department, *await self._load_queue(department))

    async def publish_queue(self, department: str) -> None:
        """Have the department's queue published shortly (see ``_publish``)."""
        if department not in self._queue_updates:
            self._queue_updates[department] = asyncio.create_task(self._publish(department))

    async def _publish(self, department: str) -> None:
        """Tell each waiting kiosk its position and the department's experts the queue,
        a moment after a change and only what changed since the last time.

        A request, its offer and its acceptance come within milliseconds, and when
        the head of a long queue leaves every position behind it changes: gathering
        changes for ``queue_update_delay`` bounds the messages per department per
        second, whatever the rate of consultations.
        """
        try:
            await asyncio.sleep(self.config.queue_update_delay)
        finally:
            self._queue_updates.pop(department, None)
        calls, presences = await self._load_queue(department)
        online = sum(1 for p in presences if p.presence in ONLINE)
        free = sum(
            1 for p in presences if p.presence is PresenceStatus.AVAILABLE and p.offer is None
        )
        handle_time = mean_handle_time(
            await self.store.handle_times(department), self.config.default_handle_time
        )
        for position, call in enumerate(calls, start=1):
            offered = call.phase is ConsultationState.OFFERED
            update = QueuePosition(
                consultation_id=call.id,
                position=position,
                queue_length=len(calls),
                estimated_wait_s=0
                if offered
                else estimate_wait(position, free, online, handle_time),
                experts_online=online,
            )
            if self._sent_positions.get(call.id) != update:
                self._sent_positions[call.id] = update
                await self.notifier.to_account(call.kiosk_id, "queue_position", update)
        snapshot = self._queue_update(department, calls, presences)
        if self._sent_queues.get(department) != snapshot:
            self._sent_queues[department] = snapshot
            await self.notifier.to_department(department, "queue_updated", snapshot)

    def forget(self, call_id: str) -> None:
        """Drop what was last sent about a call that has left the queue."""
        self._sent_positions.pop(call_id, None)

    async def close(self) -> None:
        tasks = list(self._queue_updates.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
