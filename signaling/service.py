"""What kiosks, experts and staff can do, as transitions run by the executor.

Each operation says what it reads and which pure transition decides; the
gateway (socket.io), the deadline scheduler, the relay's media events and the
web façade call these. Records that are not part of the live state (chat,
outcome, rating) are written here directly, after the same checks.
"""

import logging
import secrets
from collections.abc import Callable

from signaling import access, transitions
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
from signaling.live import ExpertPresence, LiveCall, Phase, PresenceStatus, Side, call_key
from signaling.messages import ChatView, ConsultationView, FileView, PresenceView
from signaling.reconcile import SETTLE, Repair, plan_repairs
from signaling.views import consultation_view
from storage.errors import RecordConflict, RecordNotFound
from storage.records import (
    Account,
    AuditEvent,
    ChatMessage,
    ConsultationRecord,
    Outcome,
    Role,
)
from storage.store import Storage

log = logging.getLogger(__name__)

CHAT_HISTORY = 500
"""Chat lines a reconnecting participant gets back (the newest)."""


def _chat_view(message: ChatMessage) -> ChatView:
    return ChatView(
        id=message.id,
        consultation_id=message.consultation_id,
        sender="kiosk" if message.sender_role is Role.KIOSK else "expert",
        text=message.text,
        sent_at=message.sent_at,
    )


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

    # ---- kiosk -------------------------------------------------------------------

    async def request(
        self,
        kiosk: Account,
        department: str,
        case_number: str | None,
        remote: str,
        sid: str | None = None,
    ) -> ConsultationView:
        call_id = secrets.token_hex(8)
        hall_names = await self._hall_names(kiosk)

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
                ),
                sid,
            )

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

    async def rate(self, kiosk: Account, call_id: str, rating: int, remote: str) -> None:
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
            if record.rating is not None:
                raise InvalidState("this consultation has already been rated")

        try:
            await self._storage.consultations.set_rating(
                call_id,
                rating,
                audit=AuditEvent(
                    kiosk.username, "consultation.rate", call_id, {"rating": rating}, remote
                ),
                check=check,
            )
        except RecordConflict:
            raise InvalidState("this consultation has already been rated") from None

    # ---- expert ------------------------------------------------------------------

    async def accept(
        self, expert: Account, call_id: str, remote: str, sid: str | None = None
    ) -> ConsultationView:
        tokens = {side.value: secrets.token_urlsafe(24) for side in Side}
        reply = await self._x.run(
            Reads(call_id=call_id, experts=(expert.id,)),
            lambda s, recorded: transitions.accept(s, expert, tokens, remote, recorded=recorded),
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

    @staticmethod
    def _outcome_check(expert: Account) -> Callable[[ConsultationRecord | None], None]:
        """The record must be one this expert answered (``signaling.access``)."""

        def check(record: ConsultationRecord | None) -> None:
            if (
                record is None
                or access.on_record(expert, record, Right.RECORD_OUTCOME) is not Verdict.ALLOWED
            ):
                raise NotFound("no consultation with this id for you")

        return check

    async def save_outcome(
        self, expert: Account, call_id: str, outcome: Outcome, notes: str, remote: str
    ) -> None:
        """Write the outcome and notes on ``call_id`` (the consultation the form was
        opened for, whatever the expert did since); its wrap-up, if any, ends."""
        await self._storage.consultations.set_outcome(
            call_id,
            outcome,
            notes,
            audit=AuditEvent(
                expert.username,
                "consultation.outcome",
                call_id,
                {"outcome": outcome.value},
                remote,
            ),
            check=self._outcome_check(expert),
        )
        await self._end_wrap_up(expert, call_id)

    async def defer_outcome(
        self, expert: Account, call_id: str, notes: str, remote: str
    ) -> PresenceView:
        """稍后填写: the record stays unfinished (no outcome), keeping the notes written
        so far; the expert's wrap-up of it ends. Its own consultation only."""
        try:
            await self._storage.consultations.save_draft_notes(
                call_id,
                notes,
                audit=AuditEvent(
                    expert.username, "consultation.outcome_deferred", call_id, {}, remote
                ),
                check=self._outcome_check(expert),
            )
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
        view = _chat_view(message)
        for other in access.participants(call):
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
        """Both participants learn of a new document at once."""
        call = await self.call(call_id)
        if call is None:
            return
        for account_id in access.participants(call):
            await self._x.notifier.to_account(account_id, "file_added", view)

    # ---- connections, media, deadlines -------------------------------------------

    async def participant_changed(self, account_id: str, connected: bool) -> None:
        """An account's last socket closed (grace starts) or its first came back."""
        own = await self._x.open_call_of(account_id)
        side = None if own is None else access.side_of_participant(account_id, own)
        if own is None or side is None:
            return
        await self._participant(own.id, account_id, side.value, connected)

    async def media_changed(self, call_id: str, participant: str, status: str) -> None:
        """From the relay: lost media has the same grace period as a lost socket."""
        call = await self.call(call_id)
        if call is None or call.phase is not Phase.ACTIVE:
            return
        account_id = call.account_of(Side(participant))
        if account_id is None:
            return
        await self._participant(call_id, account_id, f"media:{participant}", status != "lost")

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
            await self._x.run(
                Reads(call_id=call_id),
                lambda s, recorded: transitions.grace_expired(
                    s, which, recorded=recorded, config=self._config
                ),
            )
        elif kind == "noexpert":
            await self._x.run(
                Reads(call_id=rest, count_online=True),
                lambda s, recorded: transitions.no_expert_expired(
                    s, recorded=recorded, config=self._config
                ),
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
        if expert.role is not Role.EXPERT or expert.department is None:
            raise Forbidden("only experts have a presence")
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
    side = call.side_of(account.id)
    return consultation_view(call, side.value if side else None)
