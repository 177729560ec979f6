"""The consultation state machine: waiting -> offered -> active -> ended.

Handlers in ``signaling.gateway`` call these methods after validating the
payload; every method checks that the account may act on the consultation.
"""

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from media.errors import MediaError
from media.pool import RelayPool
from signaling.dispatch import (
    Dispatcher,
    consultation_view,
    deadline_key,
    department_lock,
    presence_view,
)
from signaling.errors import (
    AlreadyInConsultation,
    Forbidden,
    InvalidState,
    NotFound,
    RateLimited,
)
from signaling.messages import ChatView, ConsultationView, FileView, OfferRevoked, PeerStatus
from signaling.state import LiveCall, PresenceStatus, Side
from storage.errors import RecordConflict, RecordNotFound
from storage.records import (
    Account,
    AuditEvent,
    ConsultationState,
    EndReason,
    Outcome,
    Role,
)

log = logging.getLogger(__name__)

_END_REVOKE_REASON = {EndReason.ABANDONED: "cancelled", EndReason.CANCELLED: "cancelled"}


class ConsultationService:
    def __init__(
        self,
        dispatcher: Dispatcher,
        media: RelayPool,
        on_ended: Callable[[str], Awaitable[object]],
    ) -> None:
        self._d = dispatcher
        self._on_ended = on_ended
        self.media = media
        self._media_tasks: set[asyncio.Task[None]] = set()
        self.store = dispatcher.store
        self.storage = dispatcher.storage
        self.notifier = dispatcher.notifier
        self.config = dispatcher.config
        self.clock = dispatcher.clock

    # ---- lookups -----------------------------------------------------------------

    async def _call_for(self, account: Account, consultation_id: str) -> LiveCall:
        """The open consultation, if ``account`` takes part in it (or is ringing for it)."""
        call = await self.store.get_call(consultation_id)
        if call is None:
            raise NotFound("no open consultation with this id for you")
        if account.role is Role.KIOSK and call.kiosk_id == account.id:
            return call
        if account.role is Role.EXPERT and call.department == account.department:
            return call
        raise NotFound("no open consultation with this id for you")

    @asynccontextmanager
    async def _locked(self, call_id: str) -> AsyncIterator[LiveCall | None]:
        """The open call, re-read under its department's lock (None if it is gone)."""
        call = await self.store.get_call(call_id)
        if call is None:
            yield None
            return
        async with self.store.lock(department_lock(call.department)):
            yield await self.store.get_call(call_id)

    @staticmethod
    def _ringing_for(call: LiveCall | None, expert: Account) -> LiveCall:
        if (
            call is None
            or call.phase is not ConsultationState.OFFERED
            or call.expert_id != expert.id
        ):
            raise InvalidState("this consultation is not being offered to you")
        return call

    async def _tell_other_side(self, call: LiveCall, side: Side, status: str) -> None:
        other = call.expert_id if side is Side.KIOSK else call.kiosk_id
        if call.phase is not ConsultationState.ACTIVE or other is None:
            return
        await self.notifier.to_account(
            other,
            "peer_status",
            PeerStatus(
                consultation_id=call.id,
                side=side.value,
                status=status,
                grace_s=self.config.grace_period if status == "reconnecting" else None,
            ),
        )

    async def current(self, account: Account) -> LiveCall | None:
        call_id = await self.store.open_call_of(account.id)
        return await self.store.get_call(call_id) if call_id else None

    # ---- kiosk -------------------------------------------------------------------

    async def request(
        self, kiosk: Account, department: str, case_number: str | None, remote: str
    ) -> ConsultationView:
        async with self.store.lock(f"kiosk:{kiosk.id}"):
            if await self.store.open_call_of(kiosk.id):
                raise AlreadyInConsultation("this kiosk already has an open consultation")
            # The record's unit of work checks that the department exists and is enabled.
            try:
                record = await self.storage.consultations.create(
                    kiosk.id,
                    kiosk.hall,
                    department,
                    case_number,
                    audit=AuditEvent(
                        kiosk.username,
                        "consultation.request",
                        "",
                        {"department": department, "case_number_given": case_number is not None},
                        remote,
                    ),
                )
            except RecordNotFound:
                raise NotFound(f"no department {department!r}") from None
            call = LiveCall(
                id=record.id,
                department=department,
                kiosk_id=kiosk.id,
                kiosk_username=kiosk.username,
                hall=kiosk.hall,
                case_number=case_number,
                state=ConsultationState.WAITING.value,
                waiting_since=record.waiting_at,
            )
            async with self.store.lock(department_lock(department)):
                await self.store.put_call(call)
                await self.store.set_open_call_of(kiosk.id, call.id)
                await self.store.queue_push(department, call.id)
                await self._d.arm_no_expert(department, only=call.id)
                await self._d.dispatch(department)
                await self._d.publish_queue(department)
                call = await self.store.get_call(call.id) or call
        log.info("consultation %s requested for %s", call.id, department)
        return consultation_view(call)

    async def rate(self, kiosk: Account, consultation_id: str, rating: int, remote: str) -> None:
        try:
            record = await self.storage.consultations.get(consultation_id)
        except RecordNotFound:
            raise NotFound("no consultation with this id for you") from None
        # Ownership before state, so that nobody learns another kiosk's consultations exist.
        if record.kiosk_id != kiosk.id:
            raise NotFound("no consultation with this id for you")
        if record.state is not ConsultationState.ENDED or record.ended_at is None:
            raise InvalidState("the consultation has not ended yet")
        if self.clock() - record.ended_at > self.config.rating_window:
            raise InvalidState("the time to rate this consultation has passed")
        try:
            await self.storage.consultations.set_rating(
                consultation_id,
                rating,
                audit=AuditEvent(
                    kiosk.username, "consultation.rate", consultation_id, {"rating": rating}, remote
                ),
            )
        except RecordConflict:
            raise InvalidState("this consultation has already been rated") from None

    # ---- expert ------------------------------------------------------------------

    async def accept(self, expert: Account, consultation_id: str, remote: str) -> ConsultationView:
        await self._call_for(expert, consultation_id)
        async with self._locked(consultation_id) as current:
            call = self._ringing_for(current, expert)
            now = self.clock()
            await self.store.clear_deadline(deadline_key("ring", call.id))
            await self.storage.consultations.mark_active(
                call.id,
                expert.id,
                call.offered_at,
                now,
                audit=AuditEvent(expert.username, "consultation.accept", call.id, {}, remote),
            )
            call.state = ConsultationState.ACTIVE.value
            call.active_at = now
            call.media_tokens = {side.value: secrets.token_urlsafe(24) for side in Side}
            await self.store.put_call(call)
            try:
                await self.media.open_call(call.id)
            except MediaError:
                # The call goes on (chat, files); the clients' media POSTs will say why.
                log.exception("no relay for consultation %s", call.id)
            await self.store.queue_remove(call.department, call.id)
            self._d.forget(call.id)
            await self.store.set_open_call_of(expert.id, call.id)
            presence = await self.store.get_presence(expert.id)
            if presence is not None:
                presence.offer = None
                presence.call = call.id
                presence.missed_in_a_row = 0
                presence.status = PresenceStatus.BUSY.value
                await self.store.put_presence(presence)
                await self.notifier.to_account(expert.id, "presence", presence_view(presence))
            view = consultation_view(call, Side.EXPERT.value)
            log.info("consultation %s accepted by expert %s", call.id, expert.id)
            await self.notifier.to_account(
                call.kiosk_id, "consultation", consultation_view(call, Side.KIOSK.value)
            )
            await self.notifier.to_account(expert.id, "consultation", view)
            await self._d.publish_queue(call.department)
        return view

    async def decline(self, expert: Account, consultation_id: str) -> None:
        await self._call_for(expert, consultation_id)
        async with self._locked(consultation_id) as current:
            call = self._ringing_for(current, expert)
            await self._d.take_back_offer(call, "declined", declined=True)
            await self._d.dispatch(call.department)
            await self._d.publish_queue(call.department)

    async def save_outcome(
        self, expert: Account, consultation_id: str, outcome: Outcome, notes: str, remote: str
    ) -> None:
        try:
            record = await self.storage.consultations.get(consultation_id)
        except RecordNotFound:
            raise NotFound("no consultation with this id for you") from None
        if record.expert_id != expert.id or record.active_at is None:
            raise NotFound("no consultation with this id for you")
        await self.storage.consultations.set_outcome(
            consultation_id,
            outcome,
            notes,
            audit=AuditEvent(
                expert.username,
                "consultation.outcome",
                consultation_id,
                {"outcome": outcome.value},
                remote,
            ),
        )

    # ---- both sides --------------------------------------------------------------

    async def end(self, account: Account, consultation_id: str, remote: str) -> ConsultationView:
        """End by a participant: a kiosk leaving the queue abandons it, a call completes."""
        call = await self._call_for(account, consultation_id)
        if account.role is Role.EXPERT and (
            call.phase is not ConsultationState.ACTIVE or call.expert_id != account.id
        ):
            raise InvalidState("you can only end a call you are in")
        reason = (
            EndReason.COMPLETED if call.phase is ConsultationState.ACTIVE else EndReason.ABANDONED
        )
        ended = await self.finish(call.id, reason, account.username, remote)
        if ended is None:
            raise InvalidState("the consultation has already ended")
        return ended

    async def cancel(self, kiosk: Account, consultation_id: str, remote: str) -> ConsultationView:
        """The citizen leaves the queue before the call starts."""
        call = await self._call_for(kiosk, consultation_id)
        if call.phase is ConsultationState.ACTIVE:
            raise InvalidState("the call has started; end it instead")
        ended = await self.finish(call.id, EndReason.ABANDONED, kiosk.username, remote)
        if ended is None:
            raise InvalidState("the consultation has already ended")
        return ended

    async def withdraw(self, staff: Account, consultation_id: str, remote: str) -> ConsultationView:
        """Staff withdraw an open consultation (admin action)."""
        if staff.role is not Role.ADMIN:
            raise Forbidden("only an admin may withdraw a consultation")
        ended = await self.finish(consultation_id, EndReason.CANCELLED, staff.username, remote)
        if ended is None:
            raise NotFound("no open consultation with this id")
        return ended

    async def chat(self, account: Account, consultation_id: str, text: str) -> ChatView:
        call = await self._call_for(account, consultation_id)
        if call.phase is not ConsultationState.ACTIVE or (
            account.role is Role.EXPERT and call.expert_id != account.id
        ):
            raise InvalidState("chat is open only during the call")
        if not await self.store.take_slot(
            f"chat:{account.id}", 60.0, self.config.chat_per_minute, self.clock()
        ):
            raise RateLimited("too many chat lines in a minute; wait a moment")
        message = await self.storage.consultations.add_chat(call.id, account.id, account.role, text)
        view = ChatView(
            id=message.id,
            consultation_id=call.id,
            sender=account.role.value,
            text=message.text,
            sent_at=message.sent_at,
        )
        await self.notifier.to_account(call.kiosk_id, "chat_message", view)
        assert call.expert_id is not None
        await self.notifier.to_account(call.expert_id, "chat_message", view)
        return view

    # ---- ending ------------------------------------------------------------------

    async def finish(
        self, consultation_id: str, reason: EndReason, ended_by: str, remote: str = ""
    ) -> ConsultationView | None:
        """End an open consultation for ``reason``; None if it was not open."""
        async with self._locked(consultation_id) as call:
            if call is None:
                return None
            return await self._finish_locked(call, reason, ended_by, remote)

    async def _finish_locked(
        self, call: LiveCall, reason: EndReason, ended_by: str, remote: str = ""
    ) -> ConsultationView:
        now = self.clock()
        was = call.phase
        log.info("consultation %s ended: %s (was %s)", call.id, reason.value, was.value)
        try:
            await self.storage.consultations.mark_ended(
                call.id,
                reason,
                ended_by,
                now,
                offered_at=call.offered_at,
                audit=AuditEvent(
                    ended_by, "consultation.end", call.id, {"reason": reason.value}, remote
                ),
            )
        except RecordConflict:
            log.warning("consultation %s was already ended in the records", call.id)
        await self.store.delete_call(call.id)
        await self.store.queue_remove(call.department, call.id)
        self._d.forget(call.id)
        if was is ConsultationState.ACTIVE:
            try:
                await self.media.close_call(call.id)
            except MediaError:
                log.exception("closing the relay of consultation %s failed", call.id)
            # Documents travel only during the call: what is half-sent is dropped.
            await self._on_ended(call.id)
        for kind in ("ring", "noexpert"):
            await self.store.clear_deadline(deadline_key(kind, call.id))
        for key in call.dropped:
            await self.store.clear_deadline(deadline_key("grace", call.id, key))
        await self.store.set_open_call_of(call.kiosk_id, None)
        expert_id = call.expert_id
        if was is ConsultationState.ACTIVE and expert_id is not None:
            await self.store.set_open_call_of(expert_id, None)
            if reason is EndReason.COMPLETED and call.active_at is not None:
                await self.store.add_handle_time(
                    call.department, now - call.active_at, self.config.handle_time_samples
                )
        view = consultation_view(call).model_copy(
            update={"state": "ended", "ended_at": now, "end_reason": reason.value}
        )
        await self.notifier.to_account(call.kiosk_id, "consultation", view)
        if expert_id is not None:
            presence = await self.store.get_presence(expert_id)
            if was is ConsultationState.OFFERED:
                await self.notifier.to_account(
                    expert_id,
                    "offer_revoked",
                    OfferRevoked(
                        consultation_id=call.id,
                        reason=_END_REVOKE_REASON.get(reason, "ended"),
                    ),
                )
                if presence is not None and presence.offer == call.id:
                    presence.offer = None
                    await self.store.put_presence(presence)
            elif was is ConsultationState.ACTIVE:
                await self.notifier.to_account(expert_id, "consultation", view)
                if presence is not None and presence.call == call.id:
                    presence.call = None
                    presence.idle_since = now
                    if presence.presence is PresenceStatus.OFFLINE:
                        # Gone for good: the call outlived its grace period.
                        await self.store.delete_presence(expert_id, call.department)
                    else:
                        presence.status = presence.status_after_call
                        presence.status_after_call = PresenceStatus.AVAILABLE.value
                        await self.store.put_presence(presence)
                        await self.notifier.to_account(
                            expert_id, "presence", presence_view(presence)
                        )
        await self._d.dispatch(call.department)
        await self._d.publish_queue(call.department)
        return view

    # ---- connections and deadlines -----------------------------------------------

    async def participant_left(self, account: Account) -> None:
        """The account's last connection closed: start its grace period."""
        current = await self.current(account)
        if current is None:
            return
        side = Side.KIOSK if account.role is Role.KIOSK else Side.EXPERT
        async with self._locked(current.id) as call:
            if call is None:
                return
            now = self.clock()
            call.dropped[side.value] = now
            await self.store.put_call(call)
            await self.store.set_deadline(
                deadline_key("grace", call.id, side.value), now + self.config.grace_period
            )
            await self._tell_other_side(call, side, "reconnecting")

    async def participant_returned(self, account: Account) -> LiveCall | None:
        """The account connected again: end its grace period and resync both sides."""
        current = await self.current(account)
        if current is None:
            return None
        side = Side.KIOSK if account.role is Role.KIOSK else Side.EXPERT
        async with self._locked(current.id) as call:
            if call is None:
                return None
            if call.dropped.pop(side.value, None) is not None:
                await self.store.put_call(call)
                await self.store.clear_deadline(deadline_key("grace", call.id, side.value))
                await self._tell_other_side(call, side, "connected")
            await self.notifier.to_account(
                account.id, "consultation", consultation_view(call, side.value)
            )
        return call

    async def announce_file(self, call_id: str, view: FileView) -> None:
        """Both participants learn of a new document at once."""
        call = await self.store.get_call(call_id)
        if call is None:
            return
        for account_id in (call.kiosk_id, call.expert_id):
            if account_id is not None:
                await self.notifier.to_account(account_id, "file_added", view)

    def on_media_event(self, call_id: str, participant: str, status: str) -> None:
        """From the relay: a participant's media connected, or was lost (ICE failed,
        or no packets). Lost media has the same grace period as a lost socket."""
        task = asyncio.create_task(self._media_changed(call_id, participant, status))
        self._media_tasks.add(task)
        task.add_done_callback(self._media_tasks.discard)

    async def _media_changed(self, call_id: str, participant: str, status: str) -> None:
        side = Side(participant)
        key = f"media:{side.value}"
        async with self._locked(call_id) as call:
            if call is None or call.phase is not ConsultationState.ACTIVE:
                return
            if status == "lost" and key not in call.dropped:
                now = self.clock()
                call.dropped[key] = now
                await self.store.put_call(call)
                await self.store.set_deadline(
                    deadline_key("grace", call.id, key), now + self.config.grace_period
                )
                await self._tell_other_side(call, side, "reconnecting")
            elif status == "connected" and call.dropped.pop(key, None) is not None:
                await self.store.put_call(call)
                await self.store.clear_deadline(deadline_key("grace", call.id, key))
                await self._tell_other_side(call, side, "connected")

    async def on_deadline(self, key: str) -> None:
        kind, _, rest = key.partition("|")
        if kind == "ring":
            await self._ring_timed_out(rest)
        elif kind == "grace":
            call_id, _, side = rest.partition("|")
            await self._grace_expired(call_id, side)
        elif kind == "noexpert":
            await self._no_expert_expired(rest)

    async def _ring_timed_out(self, call_id: str) -> None:
        async with self._locked(call_id) as call:
            if call is None or call.phase is not ConsultationState.OFFERED:
                return
            await self._d.take_back_offer(call, "timeout", missed=True)
            await self._d.dispatch(call.department)
            await self._d.publish_queue(call.department)

    async def _grace_expired(self, call_id: str, key: str) -> None:
        """A socket ("kiosk") or media ("media:kiosk") that did not come back in time."""
        async with self._locked(call_id) as call:
            if call is None or key not in call.dropped:
                return
            # A citizen who walks away from the queue has abandoned it; a call
            # that loses a participant has dropped.
            reason = (
                EndReason.DROPPED if call.phase is ConsultationState.ACTIVE else EndReason.ABANDONED
            )
            await self._finish_locked(call, reason, "system")

    async def _no_expert_expired(self, call_id: str) -> None:
        async with self._locked(call_id) as call:
            if call is None or call.phase is not ConsultationState.WAITING:
                return
            if await self._d.online_count(call.department) > 0:
                return
            await self._finish_locked(call, EndReason.NO_EXPERT, "system")

    async def settle_orphans(self) -> int:
        """End, as dropped, consultations the records show open but no node holds
        (left behind by a stop or crash)."""
        settled = 0
        for record in await self.storage.consultations.open_consultations():
            if await self.store.get_call(record.id) is not None:
                continue
            try:
                await self.storage.consultations.mark_ended(
                    record.id,
                    EndReason.DROPPED,
                    "system",
                    self.clock(),
                    audit=AuditEvent(
                        "system", "consultation.end", record.id, {"reason": "dropped"}
                    ),
                )
                settled += 1
            except RecordConflict:
                continue
        return settled
