"""What kiosks, experts and staff can do, as transitions run by the executor.

Each operation says what it reads and which pure transition decides; the
gateway (socket.io), the deadline scheduler, the relay's media events and the
web façade call these. Records that are not part of the live state (chat,
outcome, rating) are written here directly, after the same checks.
"""

import logging
import secrets
from collections.abc import Callable, Sequence

from signaling import access, supervision, transitions
from signaling.access import Right, Verdict
from signaling.config import SignalingConfig
from signaling.errors import (
    AlreadyInConsultation,
    Forbidden,
    InvalidState,
    NotFound,
    RateLimited,
    SignalingError,
)
from signaling.executor import Executor, Reads
from signaling.live import (
    INVITATION_PREFIX,
    MAX_PARTICIPANTS,
    ExpertPresence,
    LiveCall,
    Phase,
    PresenceStatus,
    call_key,
    is_invitation,
    position_of_name,
    seat_name,
)
from signaling.messages import (
    ChatView,
    ConsultationView,
    FileView,
    InvitationView,
    OfferView,
    ParticipantRole,
    PresenceView,
)
from signaling.reconcile import SETTLE, Repair, plan_repairs
from signaling.views import consultation_view, file_view, invitation_offer_view, offer_view
from storage.errors import RecordConflict, RecordNotFound
from storage.records import (
    DESK_ROLES,
    RATING_OF_GRADE,
    Account,
    AuditEvent,
    ChatMessage,
    ConsultationRecord,
    Department,
    DepartmentKind,
    Grade,
    GradeReason,
    Outcome,
    Role,
)
from storage.store import Storage

log = logging.getLogger(__name__)

CHAT_HISTORY = 500
"""Chat lines a reconnecting participant gets back (the newest)."""


_SENDERS: dict[Role, ParticipantRole] = {Role.KIOSK: "kiosk", Role.INTERPRETER: "interpreter"}


def _chat_view(message: ChatMessage, sender_name: str | None = None) -> ChatView:
    return ChatView(
        id=message.id,
        consultation_id=message.consultation_id,
        sender=_SENDERS.get(message.sender_role, "expert"),
        text=message.text,
        sent_at=message.sent_at,
        sender_name=sender_name,
    )


def _tokens() -> dict[str, str]:
    """A fresh media token for each seat of a call (a transition takes those it needs)."""
    return {seat_name(p): secrets.token_urlsafe(24) for p in range(MAX_PARTICIPANTS)}


class ConsultationService:
    def __init__(
        self,
        executor: Executor,
        storage: Storage,
        config: SignalingConfig,
        clock: Callable[[], float],
    ) -> None:
        self._x = executor
        self._storage = storage
        self._config = config
        self._clock = clock

    # ---- lookups -----------------------------------------------------------------

    async def current(self, account: Account) -> LiveCall | None:
        return await self._x.open_call_of(account.id)

    async def call(self, call_id: str) -> LiveCall | None:
        snapshot, _ = await self._x.snapshot(Reads(call_id=call_id))
        return snapshot.call

    async def view(self, call: LiveCall, account: Account) -> ConsultationView:
        """The call as ``account`` sees it, its open invitations as they are now."""
        snapshot, _ = await self._x.snapshot(Reads(call_id=call.id))
        current = snapshot.call or call
        return consultation_view(current, current.position_of(account.id), snapshot.invitations)

    async def offer_ringing(self, account: Account, offer_id: str) -> OfferView | None:
        """The offer ringing for ``account`` now (a consultation's or an invitation's)."""
        if is_invitation(offer_id):
            snapshot, _ = await self._x.snapshot(Reads(invitation_id=offer_id))
            invitation = snapshot.invitations.get(offer_id)
            if (
                invitation is None
                or snapshot.call is None
                or invitation.phase is not Phase.OFFERED
                or invitation.expert_id != account.id
            ):
                return None
            return invitation_offer_view(invitation, snapshot.call, self._config.ring_timeout)
        offered = await self.call(offer_id)
        if offered is None or offered.phase is not Phase.OFFERED:
            return None
        return offer_view(offered, self._config.ring_timeout)

    async def _repair_kiosk(self, kiosk_id: str) -> int:
        records = await self._storage.consultations.open_consultations()
        return await self.reconcile([r for r in records if r.kiosk_id == kiosk_id], set(), SETTLE)

    async def _hall_names(self, kiosk: Account) -> tuple[str, str] | None:
        """The kiosk's hall's names (zh, en) for the expert's offer; None without one."""
        if kiosk.hall is None:
            return None
        try:
            hall = await self._storage.halls.get(kiosk.hall)
        except RecordNotFound:
            return None
        return hall.name_zh, hall.name_en

    async def _department(self, code: str | None) -> Department | None:
        if code is None:
            return None
        try:
            return await self._storage.departments.get(code)
        except RecordNotFound:
            return None

    async def _department_names(self, account: Account) -> tuple[str, str] | None:
        """The staff member's department's names (zh, en), told to the others in a call."""
        department = await self._department(account.department)
        return (department.name_zh, department.name_en) if department is not None else None

    # ---- kiosk -------------------------------------------------------------------

    async def request(
        self,
        kiosk: Account,
        department: str,
        case_number: str | None,
        remote: str,
        sid: str | None = None,
        *,
        appointment: bool = False,
    ) -> ConsultationView:
        call_id = secrets.token_hex(8)
        hall_names = await self._hall_names(kiosk)
        chosen = await self._department(department)
        if chosen is not None and chosen.kind is DepartmentKind.INTERPRETER:
            raise InvalidState(
                "an interpreting service joins a call when the expert invites it; "
                "choose a department"
            )
        booking = None
        if appointment:
            # The booking admitted at this kiosk (its code checked, throttled and
            # audited by the REST route) is taken once, by this consultation.
            booking = await self._storage.appointments.take_admitted(
                kiosk.id, department, call_id, self._clock()
            )
            if booking is None:
                raise InvalidState("no booking of this department is admitted at this kiosk")

        async def attempt() -> object:
            return await self._x.run(
                Reads(accounts=(kiosk.id,)),
                lambda s, recorded: transitions.request(
                    s,
                    kiosk,
                    call_id,
                    department,
                    case_number,
                    remote,
                    self._config,
                    recorded=recorded,
                    hall_names=hall_names,
                    appointment=None if booking is None else booking.id,
                ),
                sid,
            )

        try:
            try:
                reply = await attempt()
            except AlreadyInConsultation:
                # Refused by the records while the live state shows nothing open: a
                # consultation whose live commit never happened. Repaired now (once it
                # is old enough not to be a request still on its way), then asked again.
                if await self._x.open_call_of(kiosk.id) is not None or not await self._repair_kiosk(
                    kiosk.id
                ):
                    raise
                reply = await attempt()
        except BaseException:
            if booking is not None:
                # Not queued: the citizen may ask again with the same admitted code.
                await self._storage.appointments.give_back(booking.id)
            raise
        log.info("consultation %s requested for %s", call_id, department)
        assert isinstance(reply, ConsultationView)
        return reply

    async def cancel(
        self, kiosk: Account, call_id: str, remote: str, sid: str | None = None
    ) -> ConsultationView:
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, recorded: transitions.cancel(
                s, kiosk, remote, recorded=recorded, config=self._config
            ),
            sid,
        )
        assert isinstance(reply, ConsultationView)
        return reply

    async def rate(
        self,
        kiosk: Account,
        call_id: str,
        grade: Grade,
        remote: str,
        *,
        reason: GradeReason | None = None,
        comment: str | None = None,
    ) -> None:
        """The citizen's 好差评 grade, once, within the rating window; a bad grade
        opens its follow-up with it (storage)."""
        now = self._clock()
        window = self._config.rating_window

        def check(record: ConsultationRecord | None) -> None:
            # Ownership before state, so that nobody learns another kiosk's
            # consultations exist.
            if record is None:
                raise NotFound("no consultation with this id for you")
            found = access.on_record(kiosk, record, Right.RATE)
            if found is Verdict.HIDDEN:
                raise NotFound("no consultation with this id for you")
            if found is Verdict.NOT_NOW or record.ended_at is None:
                raise InvalidState("the consultation has not ended yet")
            if now - record.ended_at > window:
                raise InvalidState("the time to rate this consultation has passed")
            if record.rating is not None or record.grade is not None:
                raise InvalidState("this consultation has already been rated")

        # The citizen's words stay on the record; the audit entry says a comment exists.
        detail: dict[str, str | int | float | bool | None] = {
            "grade": grade.value,
            "rating": RATING_OF_GRADE[grade],
            "reason": None if reason is None else reason.value,
            "comment": comment is not None,
        }
        try:
            await self._storage.consultations.set_grade(
                call_id,
                grade,
                reason,
                comment,
                audit=AuditEvent(kiosk.username, "consultation.rate", call_id, detail, remote),
                at=now,
                follow_up_days=self._config.complaint_days,
                check=check,
            )
        except RecordConflict:
            raise InvalidState("this consultation has already been rated") from None

    # ---- expert ------------------------------------------------------------------

    async def accept(
        self, expert: Account, call_id: str, remote: str, sid: str | None = None
    ) -> ConsultationView:
        tokens = _tokens()
        names = await self._department_names(expert)
        reply = await self._x.run(
            Reads(call_id=call_id, experts=(expert.id,)),
            lambda s, recorded: transitions.accept(
                s, expert, tokens, remote, recorded=recorded, department_names=names
            ),
            sid,
        )
        log.info("consultation %s accepted by expert %s", call_id, expert.id)
        assert isinstance(reply, ConsultationView)
        return reply

    async def decline(self, expert: Account, call_id: str, sid: str | None = None) -> None:
        await self._x.run(
            Reads(call_id=call_id, experts=(expert.id,)),
            lambda s, _recorded: transitions.decline(s, expert, self._config),
            sid,
        )

    async def accept_invitation(
        self, staff: Account, invitation_id: str, remote: str, sid: str | None = None
    ) -> ConsultationView:
        """The staff member rung for an invitation joins its call."""
        token = secrets.token_urlsafe(24)
        names = await self._department_names(staff)
        reply = await self._x.run(
            Reads(invitation_id=invitation_id, experts=(staff.id,)),
            lambda s, recorded: transitions.accept_invitation(
                s, staff, invitation_id, token, remote, recorded=recorded, department_names=names
            ),
            sid,
        )
        if not isinstance(reply, ConsultationView):
            raise InvalidState("the call has ended")
        log.info("invitation %s accepted by %s", invitation_id, staff.id)
        return reply

    async def decline_invitation(
        self, staff: Account, invitation_id: str, sid: str | None = None
    ) -> None:
        await self._x.run(
            Reads(invitation_id=invitation_id, experts=(staff.id,), department_staff=True),
            lambda s, _r: transitions.decline_invitation(s, staff, invitation_id, self._config),
            sid,
        )

    # ---- calls of more than two -------------------------------------------------

    async def invite(
        self,
        expert: Account,
        call_id: str,
        department: str,
        note: str,
        remote: str,
        sid: str | None = None,
    ) -> InvitationView:
        """Invite a department (or an interpreting pool) into the call."""
        invited = await self._department(department)
        if invited is None or invited.disabled:
            raise NotFound("no such department")
        invitation_id = INVITATION_PREFIX + secrets.token_hex(8)
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, recorded: transitions.invite(
                s,
                expert,
                invitation_id,
                department,
                note,
                remote,
                recorded=recorded,
                config=self._config,
            ),
            sid,
        )
        assert isinstance(reply, InvitationView)
        return reply

    async def cancel_invitation(
        self, expert: Account, invitation_id: str, remote: str, sid: str | None = None
    ) -> InvitationView:
        reply = await self._x.run(
            Reads(invitation_id=invitation_id),
            lambda s, _r: transitions.cancel_invitation(s, expert, invitation_id, remote),
            sid,
        )
        assert isinstance(reply, InvitationView)
        return reply

    async def transfer(
        self,
        expert: Account,
        call_id: str,
        department: str,
        reason: str,
        remote: str,
        sid: str | None = None,
    ) -> ConsultationView:
        """Hand the citizen to ``department``, if the admin lets the expert's department
        transfer there (and it takes calls)."""
        own = await self._department(expert.department)
        target = await self._department(department)
        allowed = (
            own is not None
            and department in own.transfers_to
            and target is not None
            and not target.disabled
            and target.kind is DepartmentKind.SERVICE
        )
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, recorded: transitions.transfer(
                s,
                expert,
                department,
                reason,
                allowed,
                remote,
                recorded=recorded,
                config=self._config,
            ),
            sid,
        )
        assert isinstance(reply, ConsultationView)
        log.info("consultation %s transferred to %s", call_id, department)
        return reply

    async def leave(
        self, staff: Account, call_id: str, remote: str, sid: str | None = None
    ) -> ConsultationView:
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, recorded: transitions.leave(
                s, staff, remote, recorded=recorded, config=self._config
            ),
            sid,
        )
        if not isinstance(reply, ConsultationView):
            raise InvalidState("you are not taking part in this call")
        return reply

    async def listen(
        self, supervisor: Account, call_id: str, remote: str, notice: bool
    ) -> LiveCall:
        """A supervisor listens in (``signaling.supervision``; audited): the call with
        its listener."""
        token = secrets.token_urlsafe(32)
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, _r: supervision.listen(s, supervisor, token, remote, notice=notice),
        )
        assert isinstance(reply, LiveCall)
        return reply

    async def step_in(self, supervisor: Account, call_id: str, remote: str) -> LiveCall:
        """A supervisor joins the call as a participant (``signaling.supervision``;
        on the record as a leg of theirs, audited): the call with their seat."""
        token = secrets.token_urlsafe(24)
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, recorded: supervision.step_in(
                s, supervisor, token, remote, recorded=recorded
            ),
        )
        if not isinstance(reply, LiveCall):
            raise InvalidState("the call has ended")
        return reply

    async def stop_listening(self, supervisor: Account, call_id: str, remote: str) -> None:
        await self._x.run(
            Reads(call_id=call_id),
            lambda s, _r: supervision.stop_listening(s, supervisor, remote),
        )

    async def share_screen(
        self, expert: Account, call_id: str, sharing: bool, sid: str | None = None
    ) -> ConsultationView:
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, _r: transitions.share_screen(s, expert, sharing),
            sid,
        )
        assert isinstance(reply, ConsultationView)
        return reply

    async def request_recording(
        self, expert: Account, call_id: str, remote: str, sid: str | None = None
    ) -> ConsultationView:
        """An expert asks to record (their call's department must record calls); the
        kiosk asks the citizen. Audited and kept on the record."""
        call = await self.call(call_id)
        # Only for one who may ask: anyone else learns nothing of the call (the
        # transition answers them as for any call not theirs).
        if call is not None and access.on_call(expert, call, Right.SHARE) is Verdict.ALLOWED:
            department = await self._storage.departments.get(call.department)
            if not department.recording:
                raise Forbidden("this department does not record calls")
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, _r: transitions.request_recording(s, expert),
            sid,
        )
        assert isinstance(reply, ConsultationView)
        await self._storage.recording_consents.asked(
            call_id,
            expert.username,
            self._clock(),
            AuditEvent(expert.username, "recording.request", call_id, {}, remote),
        )
        return reply

    async def answer_recording(
        self,
        kiosk: Account,
        call_id: str,
        accept: bool,
        text_version: str,
        remote: str,
        sid: str | None = None,
    ) -> ConsultationView:
        """The citizen's answer, with the version of the text they were shown."""
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, _r: transitions.answer_recording(s, kiosk, accept),
            sid,
        )
        assert isinstance(reply, ConsultationView)
        action = "recording.consent" if accept else "recording.decline"
        await self._storage.recording_consents.answered(
            call_id,
            accept,
            text_version,
            self._clock(),
            AuditEvent(kiosk.username, action, call_id, {"text_version": text_version}, remote),
        )
        return reply

    async def stop_recording(
        self, account: Account, call_id: str, remote: str, sid: str | None = None
    ) -> ConsultationView:
        """Either side stops the recording (or withdraws the request); audited."""
        before = await self.call(call_id)
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, _r: transitions.stop_recording(s, account),
            sid,
        )
        assert isinstance(reply, ConsultationView)
        if before is not None and before.recording != "off":
            await self._storage.recording_consents.stopped(
                call_id,
                account.username,
                self._clock(),
                AuditEvent(account.username, "recording.stop", call_id, {}, remote),
            )
        return reply

    async def share_document(
        self, expert: Account, call_id: str, file_id: str, remote: str
    ) -> FileView:
        """The document becomes readable by the call's interpreters (audited); they are
        told (``document_shared``), and so are the experts in the call."""
        snapshot, _ = await self._x.snapshot(Reads(call_id=call_id))
        call = transitions.call_for(
            snapshot, expert, Right.SHARE, "documents are shared during the call"
        )
        try:
            stored, new = await self._storage.shares.share(
                call.id,
                file_id,
                expert.id,
                self._clock(),
                audit=AuditEvent(
                    expert.username, "document.share", file_id, {"consultation": call.id}, remote
                ),
            )
        except RecordNotFound:
            raise NotFound("no such document in this consultation") from None
        view = file_view(stored)
        if new:
            for seat in call.seats:
                await self._x.notifier.to_account(seat.account_id, "document_shared", view)
        return view

    async def save_outcome(
        self,
        expert: Account,
        call_id: str,
        outcome: Outcome,
        notes: str,
        remote: str,
        materials: Sequence[str] | None = None,
    ) -> None:
        """Write the outcome and notes of this expert's part in ``call_id`` (the
        consultation the form was opened for, whatever the expert did since): their
        leg's, and the consultation's own if they answered it first; their wrap-up of
        it, if any, ends."""
        try:
            await self._storage.legs.set_outcome(
                call_id,
                expert.id,
                outcome,
                notes,
                audit=AuditEvent(
                    expert.username,
                    "consultation.outcome",
                    call_id,
                    {"outcome": outcome.value},
                    remote,
                ),
                materials=materials,
            )
        except RecordNotFound:
            raise NotFound("no consultation with this id for you") from None
        await self._end_wrap_up(expert, call_id)

    async def defer_outcome(
        self, expert: Account, call_id: str, notes: str, remote: str
    ) -> PresenceView:
        """稍后填写: the record stays unfinished (no outcome), keeping the notes written
        so far; the expert's wrap-up of it ends. Its own consultation only."""
        try:
            await self._storage.legs.set_outcome(
                call_id,
                expert.id,
                None,
                notes,
                audit=AuditEvent(
                    expert.username, "consultation.outcome_deferred", call_id, {}, remote
                ),
            )
        except RecordNotFound:
            raise NotFound("no consultation with this id for you") from None
        except RecordConflict:
            # Saved meanwhile (another tab): the notes here were not written over it.
            raise InvalidState("this record's outcome has been saved already") from None
        view = await self._end_wrap_up(expert, call_id)
        assert isinstance(view, PresenceView)
        return view

    async def _end_wrap_up(self, expert: Account, call_id: str) -> PresenceView | None:
        reply = await self._x.run(
            Reads(experts=(expert.id,)),
            lambda s, _r: transitions.wrap_up_done(s, expert.id, call_id),
        )
        return reply if isinstance(reply, PresenceView) else None

    # ---- both sides --------------------------------------------------------------

    async def end(
        self, account: Account, call_id: str, remote: str, sid: str | None = None
    ) -> ConsultationView:
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, recorded: transitions.end(
                s, account, remote, recorded=recorded, config=self._config
            ),
            sid,
        )
        assert isinstance(reply, ConsultationView)
        return reply

    async def withdraw(self, admin: Account, call_id: str, remote: str) -> ConsultationView:
        """End an open consultation as cancelled, also one whose live state is missing
        (the records are read for that case)."""
        record: ConsultationRecord | None = None
        kiosk_username = ""
        try:
            record = await self._storage.consultations.get(call_id)
            kiosk_username = (await self._storage.accounts.get(record.kiosk_id)).username
        except RecordNotFound:
            pass
        reply = await self._x.run(
            Reads(call_id=call_id),
            lambda s, recorded: transitions.withdraw(
                s, admin, remote, record, kiosk_username, recorded=recorded, config=self._config
            ),
        )
        assert isinstance(reply, ConsultationView)
        return reply

    async def repair(self, planned: Repair) -> bool:
        """Make one consultation's records and live state agree (``signaling.reconcile``);
        whether anything needed changing by then."""
        done = await self._x.run(
            Reads(call_id=planned.consultation_id),
            lambda s, recorded: transitions.repair(
                s, planned, recorded=recorded, config=self._config
            ),
        )
        if done:
            log.warning(
                "consultation %s repaired (%s): ended as %s",
                planned.consultation_id,
                planned.mismatch.value,
                planned.reason.value,
            )
        return bool(done)

    async def reconcile(
        self, open_records: list[ConsultationRecord], live_ids: set[str], settle: float
    ) -> int:
        """Repair the disagreements among ``open_records`` and the live calls
        ``live_ids`` (and those of the records); how many were repaired."""
        ids = {r.id for r in open_records} | live_ids
        found = await self._x.store.read(call_key(i) for i in ids)
        live = {v.id: v for v in found.values() if isinstance(v, LiveCall)}
        records: dict[str, ConsultationRecord | None] = {r.id: r for r in open_records}
        for call_id in live.keys() - records.keys():
            try:
                records[call_id] = await self._storage.consultations.get(call_id)
            except RecordNotFound:
                records[call_id] = None
        repaired = 0
        for planned in plan_repairs(records, live, self._clock(), settle):
            try:
                repaired += await self.repair(planned)
            except SignalingError as exc:
                log.info("consultation %s not repaired now: %s", planned.consultation_id, exc)
        return repaired

    async def chat(self, account: Account, call_id: str, text: str) -> ChatView:
        snapshot, _ = await self._x.snapshot(Reads(call_id=call_id))
        call = transitions.call_for(
            snapshot, account, Right.TAKE_PART, "chat is open only during the call"
        )
        if not await self._x.store.take_slot(
            f"chat:{account.id}", 60.0, self._config.chat_per_minute, self._clock()
        ):
            raise RateLimited("too many chat lines in a minute; wait a moment")
        message = await self._storage.consultations.add_chat(
            call.id, account.id, account.role, text
        )
        view = _chat_view(message, account.display_name or account.username)
        for other in call.participant_ids:
            await self._x.notifier.to_account(other, "chat_message", view)
        return view

    async def chat_history(self, account: Account, call_id: str) -> list[ChatView]:
        """The active call's chat so far, oldest first (its last ``CHAT_HISTORY``
        lines), for a participant whose page was reloaded: the same rule as sending."""
        snapshot, _ = await self._x.snapshot(Reads(call_id=call_id))
        call = transitions.call_for(
            snapshot, account, Right.TAKE_PART, "chat is open only during the call"
        )
        messages = await self._storage.consultations.chat(call.id)
        return [_chat_view(m) for m in messages[-CHAT_HISTORY:]]

    async def announce_file(self, call_id: str, view: FileView) -> None:
        """The participants learn of a new document at once (interpreters only of
        those shared with them, ``share_document``)."""
        call = await self.call(call_id)
        if call is None:
            return
        interpreters = set(access.interpreters(call))
        for account_id in call.participant_ids:
            if account_id not in interpreters:
                await self._x.notifier.to_account(account_id, "file_added", view)

    # ---- connections, media, deadlines -------------------------------------------

    async def participant_changed(self, account_id: str, connected: bool) -> None:
        """An account's last socket closed (grace starts) or its first came back."""
        own = await self._x.open_call_of(account_id)
        position = None if own is None else access.position_of_participant(account_id, own)
        if own is None or position is None:
            return
        await self._participant(own.id, account_id, seat_name(position), connected)

    async def media_changed(self, call_id: str, participant: str, status: str) -> None:
        """From the relay (a leg ``p{n}``, or ``kiosk``/``expert`` as before): lost
        media has the same grace period as a lost socket."""
        call = await self.call(call_id)
        position = position_of_name(participant)
        if call is None or position is None or access.stage_of_call(call) not in access.IN_CALL:
            return
        account_id = call.account_at(position)
        if account_id is None:
            if call.listener is not None and call.listener.position == position:
                await self._x.run(
                    Reads(call_id=call_id),
                    lambda s, _r: supervision.listener_media(s, position, status),
                )
            return
        key = f"media:{seat_name(position)}"
        await self._participant(call_id, account_id, key, status != "lost")

    async def place_relay(self, call_id: str, candidate: str, unreachable: str | None) -> str:
        """The call's media placement (``candidate`` if it had none, or only the
        ``unreachable`` one): the first process to place it wins."""
        placement = await self._x.run(
            Reads(call_id=call_id),
            lambda s, _r: transitions.place_relay(s, candidate, unreachable),
        )
        assert isinstance(placement, str)
        return placement

    async def _participant(self, call_id: str, account_id: str, key: str, back: bool) -> None:
        config = self._config
        if back:
            await self._x.run(
                Reads(call_id=call_id),
                lambda s, _r: transitions.participant_returned(s, account_id, key),
            )
        else:
            await self._x.run(
                Reads(call_id=call_id),
                lambda s, _r: transitions.participant_left(s, account_id, key, config),
            )

    async def on_deadline(self, key: str) -> None:
        kind, _, rest = key.partition("|")
        if kind == "ring":
            await self._x.run(
                Reads(call_id=rest),
                lambda s, _r: transitions.ring_timeout(s, self._config),
            )
        elif kind == "grace":
            call_id, _, which = rest.partition("|")
            for attempt in range(2):
                try:
                    await self._x.run(
                        Reads(call_id=call_id),
                        lambda s, recorded: transitions.grace_expired(
                            s, which, recorded=recorded, config=self._config
                        ),
                    )
                    return
                except InvalidState:
                    # The records refused to end only this part (the other expert had
                    # just left, on another node): decided again on what is now, the
                    # call ends.
                    if attempt:
                        raise
        elif kind == "noexpert":
            await self._x.run(
                Reads(call_id=rest, count_online=True),
                lambda s, recorded: transitions.no_expert_expired(
                    s, recorded=recorded, config=self._config
                ),
            )
        elif kind == "iring":
            await self._x.run(
                Reads(invitation_id=rest, department_staff=True),
                lambda s, _r: transitions.invitation_ring_timeout(s, rest, self._config),
            )
        elif kind == "iwait":
            await self._x.run(
                Reads(invitation_id=rest),
                lambda s, _r: transitions.invitation_wait_expired(s, rest, self._config),
            )


class PresenceService:
    def __init__(self, executor: Executor, config: SignalingConfig) -> None:
        self._x = executor
        self._config = config

    async def get(self, expert: Account) -> ExpertPresence | None:
        snapshot, _ = await self._x.snapshot(Reads(experts=(expert.id,)))
        return snapshot.presence(expert.id)

    async def set_status(
        self, expert: Account, status: PresenceStatus, sid: str | None = None
    ) -> PresenceView:
        if expert.role not in DESK_ROLES or expert.department is None:
            raise Forbidden("only experts and interpreters have a presence")
        reply = await self._x.run(
            Reads(experts=(expert.id,), follow_presence_calls=True),
            lambda s, _r: transitions.set_status(s, expert, status, self._config),
            sid,
        )
        assert isinstance(reply, PresenceView)
        return reply

    async def connected(self, expert: Account) -> None:
        await self._x.run(
            Reads(experts=(expert.id,)),
            lambda s, _r: transitions.expert_connected(s, expert),
        )

    async def disconnected(self, expert: Account) -> None:
        await self._x.run(
            Reads(experts=(expert.id,), follow_presence_calls=True),
            lambda s, _r: transitions.expert_disconnected(s, expert, self._config),
        )

    async def on_deadline(self, key: str) -> None:
        kind, _, expert_id = key.partition("|")
        if kind == "offline":
            await self._x.run(
                Reads(experts=(expert_id,)),
                lambda s, _r: transitions.offline_expired(s, expert_id),
            )
        elif kind == "wrapup":
            snapshot, _ = await self._x.snapshot(Reads(experts=(expert_id,)))
            presence = snapshot.presence(expert_id)
            if presence is None or presence.wrap_up is None:
                return
            call_id = presence.wrap_up
            await self._x.run(
                Reads(experts=(expert_id,)),
                lambda s, _r: transitions.wrap_up_done(s, expert_id, call_id, expired=True),
            )


def view_for(call: LiveCall, account: Account) -> ConsultationView:
    return consultation_view(call, call.position_of(account.id))
