"""The one place where decisions are applied: records in one unit of work, then
the live state (compare-and-set against the versions the decision was made
on), then the effects (notifications, relay, uploads, routing, queue updates).

A transition is decided on a snapshot; if the live state changed before the
commit (another process acted), it is decided again on the new state. Once
its records are written the records are the truth: the retry applies them to
whatever the live state has become (``recorded=True``). A transition whose
records cannot be written is not applied at all.
"""

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from signaling import transitions
from signaling.background import BackgroundTasks
from signaling.config import SignalingConfig
from signaling.effects import (
    ArmNoExpert,
    AuditOnly,
    CloseLeg,
    CloseRelay,
    CreateConsultation,
    Decision,
    DiscardUploads,
    Dispatch,
    Effect,
    JoinCall,
    LeaveCall,
    MarkActive,
    MarkEnded,
    Notify,
    Participant,
    PublishQueue,
    RecordChange,
    RecordMedia,
    ResumeCall,
    TransferCall,
)
from signaling.errors import (
    AlreadyInConsultation,
    InvalidState,
    NotFound,
    SignalingError,
    Unavailable,
)
from signaling.live import (
    ExpertPresence,
    Live,
    LiveCall,
    LiveInvitation,
    OpenCall,
    call_key,
    experts_set,
    invitation_key,
    is_invitation,
    open_key,
    presence_key,
    queued_key,
)
from signaling.notifier import Notifier
from signaling.store import Commit, LiveStore, StoreUnavailable
from signaling.supervision import listen_closed
from signaling.transitions import Snapshot, no_expert_deadlines, plan_offers
from storage.errors import RecordConflict, RecordNotFound, StorageUnavailable
from storage.store import Storage

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
Decide = Callable[[Snapshot, bool], Decision]


def _with_listen_closed(snapshot: Snapshot, decision: Decision) -> list[Effect]:
    """The decision's effects, the listening leg's close first where the commit ended
    a listen by the call's shape (``signaling.supervision``): whatever transition it
    was, nobody goes on hearing a call they no longer listen to."""
    before = snapshot.call
    if before is None or before.listener is None:
        return decision.effects
    key = call_key(before.id)
    if key not in decision.commit.put:
        return decision.effects
    after = decision.commit.put[key]
    closing = listen_closed(before, after if isinstance(after, LiveCall) else None)
    if closing is None or closing in decision.effects:
        return decision.effects
    return [closing, *decision.effects]


@dataclass
class Reads:
    """What a transition reads: the keys, and how their values make a snapshot."""

    call_id: str | None = None
    experts: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    follow_presence_calls: bool = False
    """Also read the calls (and invitations) the read experts are ringing for or are in."""
    count_online: bool = False
    invitation_id: str | None = None
    """An invitation (and the call it is for, when ``call_id`` is not given)."""
    department_staff: bool = False
    """The presences of the invitation's department (whether anyone is left to ring)."""


class Executor:
    def __init__(
        self,
        store: LiveStore,
        storage: Storage,
        notifier: Notifier,
        config: SignalingConfig,
        clock: Callable[[], float],
        *,
        close_relay: Callable[[str, str | None], Awaitable[None]],
        discard_uploads: Callable[[str], Awaitable[object]],
        publish_queue: Callable[[str], None],
        participant_changed: Callable[[str, bool], Awaitable[None]],
        close_leg: Callable[[str, str | None, int], Awaitable[None]] | None = None,
        record: Callable[[str, str | None, bool], Awaitable[None]] | None = None,
        deadline_set: Callable[[float], None] = lambda _at: None,
    ) -> None:
        self.store = store
        self._deadline_set = deadline_set
        """Told the time of each deadline a commit sets (the scheduler wakes for
        them)."""
        self.storage = storage
        self.notifier = notifier
        self.config = config
        self.clock = clock
        self._close_relay = close_relay
        self._discard_uploads = discard_uploads
        self._publish_queue = publish_queue
        self._participant_changed = participant_changed
        self._close_leg = close_leg
        self._record = record
        self._dispatching: dict[str, bool] = {}
        self._background = BackgroundTasks("background step")

    async def _commit(self, commit: Commit) -> bool:
        """The store's commit; the scheduler told each deadline it set."""
        if not await self.store.commit(commit):
            return False
        for at in set(commit.deadlines_set.values()):
            self._deadline_set(at)
        return True

    # ---- snapshots -----------------------------------------------------------------

    async def snapshot(self, reads: Reads) -> tuple[Snapshot, dict[str, int]]:
        """Read what a transition needs; the versions seen, for the commit to compare."""
        seen: dict[str, int] = {}
        values: dict[str, Live] = {}

        async def fetch(keys: Iterable[str]) -> None:
            wanted = [k for k in dict.fromkeys(keys) if k not in seen]
            if not wanted:
                return
            found = await self.store.read(wanted)
            for key in wanted:
                value = found.get(key)
                seen[key] = 0 if value is None else value.version
                if value is not None:
                    values[key] = value

        first = [presence_key(e) for e in reads.experts] + [open_key(a) for a in reads.accounts]
        if reads.call_id:
            first.append(call_key(reads.call_id))
        if reads.invitation_id:
            first.append(invitation_key(reads.invitation_id))
        await fetch(first)
        call_id = reads.call_id
        asked = values.get(invitation_key(reads.invitation_id or ""))
        if call_id is None and isinstance(asked, LiveInvitation):
            call_id = asked.call_id
            await fetch([call_key(call_id)])
        call = values.get(call_key(call_id)) if call_id else None
        assert call is None or isinstance(call, LiveCall)
        second: list[str] = []
        if call is not None:
            second += [open_key(call.kiosk_id)]
            for account_id in dict.fromkeys((call.expert_id, *call.seat_ids)):
                if account_id:
                    second += [presence_key(account_id), open_key(account_id)]
            second += [invitation_key(ref.id) for ref in call.invitations]
        if reads.follow_presence_calls:
            for expert_id in reads.experts:
                presence = values.get(presence_key(expert_id))
                if isinstance(presence, ExpertPresence):
                    second += [
                        invitation_key(i) if is_invitation(i) else call_key(i)
                        for i in (presence.offer, presence.call)
                        if i
                    ]
        await fetch(second)
        # Whoever the invitations ring for (told when they end), and their calls.
        third: list[str] = []
        for value in list(values.values()):
            if isinstance(value, LiveInvitation):
                if value.expert_id:
                    third.append(presence_key(value.expert_id))
                third.append(call_key(value.call_id))
        await fetch(third)
        online = 0
        if reads.count_online and call is not None:
            online = sum(1 for p in await self.department_presences(call.department) if p.online)
        staff: list[ExpertPresence] = []
        if reads.department_staff and isinstance(asked, LiveInvitation):
            staff = await self.department_presences(asked.department)
        presences = {v.expert_id: v for v in values.values() if isinstance(v, ExpertPresence)}
        opens = {v.account_id: v for v in values.values() if isinstance(v, OpenCall)}
        calls = {v.id: v for v in values.values() if isinstance(v, LiveCall)}
        invitations = {v.id: v for v in values.values() if isinstance(v, LiveInvitation)}
        snapshot = Snapshot(
            now=self.clock(),
            call=call,
            presences=presences,
            open_calls=opens,
            calls=calls,
            online_in_department=online,
            invitations=invitations,
            department_staff=staff,
        )
        return snapshot, seen

    async def department_presences(self, department: str) -> list[ExpertPresence]:
        ids = await self.store.members(experts_set(department))
        found = await self.store.read(presence_key(i) for i in ids)
        return [v for v in found.values() if isinstance(v, ExpertPresence)]

    async def open_call_of(self, account_id: str) -> LiveCall | None:
        own = (await self.store.read([open_key(account_id)])).get(open_key(account_id))
        if not isinstance(own, OpenCall):
            return None
        call = (await self.store.read([call_key(own.call_id)])).get(call_key(own.call_id))
        return call if isinstance(call, LiveCall) else None

    # ---- running a transition -----------------------------------------------------

    async def run(self, reads: Reads, decide: Decide, actor_sid: str | None = None) -> object:
        """Decide on a snapshot, write the records, commit, apply the effects; the
        decision's reply, or the refusal the transition raised."""
        recorded = False
        try:
            for _attempt in range(MAX_ATTEMPTS):
                snapshot, seen = await self.snapshot(reads)
                decision = decide(snapshot, recorded)
                if decision.changes_nothing and not decision.effects:
                    return decision.reply
                if decision.record is not None and not recorded:
                    await self._write(decision.record)
                    recorded = True
                decision.commit.expect = dict(seen)
                if await self._commit(decision.commit):
                    await self.apply(_with_listen_closed(snapshot, decision), actor_sid)
                    return decision.reply
        except StoreUnavailable as exc:
            if recorded:
                log.error("records written but the live state is unreachable: %s", exc)
            raise Unavailable("the service is not available right now; try again") from exc
        except StorageUnavailable as exc:
            raise Unavailable("the records cannot be written right now; try again") from exc
        raise Unavailable("too much happening at once; try again")

    async def _write(self, record: RecordChange) -> None:
        consultations = self.storage.consultations
        try:
            if isinstance(record, CreateConsultation):
                await consultations.create(
                    record.kiosk_id,
                    record.hall,
                    record.department,
                    record.case_number,
                    audit=record.audit,
                    consultation_id=record.call_id,
                    at=record.at,
                )
            elif isinstance(record, MarkActive):
                await consultations.mark_active(
                    record.call_id,
                    record.expert_id,
                    record.offered_at,
                    record.at,
                    audit=record.audit,
                )
            elif isinstance(record, MarkEnded):
                await consultations.mark_ended(
                    record.call_id,
                    record.reason,
                    record.ended_by,
                    record.at,
                    offered_at=record.offered_at,
                    audit=record.audit,
                )
            elif isinstance(record, ResumeCall):
                await consultations.resume(
                    record.call_id,
                    record.expert_id,
                    record.position,
                    record.at,
                    invited_by=record.invited_by,
                    note=record.note,
                    audit=record.audit,
                )
            elif isinstance(record, JoinCall):
                await consultations.join(
                    record.call_id,
                    record.account_id,
                    record.role,
                    record.department,
                    record.position,
                    record.at,
                    invitation=record.invitation,
                    invited_by=record.invited_by,
                    note=record.note,
                    audit=record.audit,
                )
            elif isinstance(record, LeaveCall):
                await consultations.leave(
                    record.call_id, record.account_id, record.at, record.reason, audit=record.audit
                )
            elif isinstance(record, TransferCall):
                await consultations.transfer(
                    record.call_id,
                    record.account_id,
                    record.department,
                    record.at,
                    audit=record.audit,
                )
            elif isinstance(record, AuditOnly):
                await self.storage.audit.append(record.audit)
        except RecordNotFound:
            raise NotFound("no such department") from None
        except RecordConflict:
            # Another node's transition of the same consultation came first.
            if isinstance(record, CreateConsultation):
                raise AlreadyInConsultation("this kiosk already has an open consultation") from None
            if isinstance(record, MarkActive | ResumeCall):
                raise InvalidState("this consultation is not being offered to you") from None
            if isinstance(record, JoinCall):
                raise InvalidState("this invitation has been taken up already") from None
            if isinstance(record, LeaveCall):
                raise InvalidState(
                    "not taking part in this call any more, or the other expert has just "
                    "left: end the call instead"
                ) from None
            if isinstance(record, TransferCall):
                raise InvalidState("only a call going on can be transferred") from None
            raise InvalidState("the consultation has already ended") from None

    # ---- effects -------------------------------------------------------------------

    async def apply(self, effects: list[Effect], actor_sid: str | None) -> None:
        for effect in effects:
            try:
                await self._apply(effect, actor_sid)
            except SignalingError:
                raise
            except Exception:
                # The transition stands; what failed here is told on the next change.
                log.exception("effect %s failed", type(effect).__name__)

    async def _apply(self, effect: Effect, actor_sid: str | None) -> None:
        if isinstance(effect, Notify):
            await self.notifier.to_account(
                effect.account_id,
                effect.event,
                effect.payload,
                skip_sid=actor_sid if effect.not_actor else None,
            )
        elif isinstance(effect, PublishQueue):
            self._publish_queue(effect.department)
        elif isinstance(effect, Dispatch):
            self.spawn(self.dispatch(effect.department))
        elif isinstance(effect, ArmNoExpert):
            await self.arm_no_expert(effect.department)
        elif isinstance(effect, CloseRelay):
            await self._close_relay(effect.call_id, effect.relay)
        elif isinstance(effect, CloseLeg):
            if self._close_leg is not None:
                await self._close_leg(effect.call_id, effect.relay, effect.position)
        elif isinstance(effect, RecordMedia):
            if self._record is not None:
                await self._record(effect.call_id, effect.relay, effect.on)
        elif isinstance(effect, DiscardUploads):
            await self._discard_uploads(effect.call_id)
        elif isinstance(effect, Participant):
            await self._participant_changed(effect.account_id, effect.connected)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._background.spawn(work)

    async def idle(self, within: float) -> bool:
        """Until no background step runs (at most ``within`` seconds); whether none does."""
        return await self._background.idle(within)

    async def drain(self, within: float) -> bool:
        """Background steps get ``within`` seconds, then are cancelled; none starts
        after. Whether all finished by themselves."""
        return await self._background.drain(within)

    # ---- routing -------------------------------------------------------------------

    async def dispatch(self, department: str) -> None:
        """Offer waiting consultations to free experts; one pass at a time per
        department in this process (another is asked to run once more)."""
        if department in self._dispatching:
            self._dispatching[department] = True
            return
        self._dispatching[department] = False
        try:
            while True:
                await self._dispatch_once(department)
                if not self._dispatching[department]:
                    return
                self._dispatching[department] = False
        finally:
            self._dispatching.pop(department, None)

    async def _dispatch_once(self, department: str) -> None:
        presences = await self.department_presences(department)
        free = sum(1 for p in presences if p.free)
        if free == 0:
            return
        ids = await self.store.queue(department)
        # The head of the queue is enough: at most as many offers as free experts,
        # past those ringing and those every free expert declined.
        window = ids[: max(8, 4 * free)]
        found = await self.store.read(queued_key(i) for i in window)
        waiting = [
            c
            for c in (found.get(queued_key(i)) for i in window)
            if isinstance(c, LiveCall | LiveInvitation)
        ]
        for queued_id, expert_id in plan_offers(waiting, presences):
            if is_invitation(queued_id):
                await self.run(
                    Reads(invitation_id=queued_id, experts=(expert_id,)),
                    self._offer_invitation(queued_id, expert_id),
                )
            else:
                await self.run(
                    Reads(call_id=queued_id, experts=(expert_id,)), self._offer(expert_id)
                )

    def _offer(self, expert_id: str) -> Decide:
        def decide(snapshot: Snapshot, _recorded: bool) -> Decision:
            return transitions.offer(snapshot, expert_id, self.config)

        return decide

    def _offer_invitation(self, invitation_id: str, expert_id: str) -> Decide:
        def decide(snapshot: Snapshot, _recorded: bool) -> Decision:
            return transitions.offer_invitation(snapshot, invitation_id, expert_id, self.config)

        return decide

    async def arm_no_expert(self, department: str) -> None:
        presences = await self.department_presences(department)
        online = sum(1 for p in presences if p.online)
        if online:
            return
        ids = await self.store.queue(department)
        found = await self.store.read(call_key(i) for i in ids)
        waiting = [c for c in found.values() if isinstance(c, LiveCall)]
        deadlines = no_expert_deadlines(waiting, online, self.clock(), self.config)
        if deadlines:
            await self._commit(Commit(deadlines_set=deadlines))
