"""The consultation and presence state machines, as pure functions.

Each takes a ``Snapshot`` of the live state (read by the executor, with the
time) and an event's data, and returns a ``Decision``: the records to write,
the live values to put, the queue/deadline changes, and what to tell whom. No
socket, database or clock is touched here, so the rules are tested as tables
(``tests/signaling/test_transitions.py``). A refusal raises a
``signaling.errors`` exception, before anything was changed.

``recorded=True`` means the records already hold this transition (another
process changed the live state between the decision and its commit): the
transition is then applied to whatever the live state is now, because the
records are the truth.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from signaling import access
from signaling.access import Right, Verdict
from signaling.config import SignalingConfig
from signaling.effects import (
    ArmNoExpert,
    CloseRelay,
    CreateConsultation,
    Decision,
    DiscardUploads,
    Dispatch,
    MarkActive,
    MarkEnded,
    Participant,
    PublishQueue,
)
from signaling.errors import AlreadyInConsultation, InvalidState, NotFound
from signaling.live import (
    ONLINE,
    AwayReason,
    ExpertPresence,
    LiveCall,
    OpenCall,
    Phase,
    PresenceStatus,
    Side,
    call_key,
    experts_set,
    open_key,
    presence_key,
)
from signaling.messages import OfferRevoked, PeerStatus, RevokeReason
from signaling.queue import pick_expert
from signaling.reconcile import Mismatch, Repair
from signaling.views import (
    consultation_view,
    ended_view,
    offer_view,
    presence_view,
    record_ended_view,
)
from storage.records import (
    Account,
    AuditEvent,
    ConsultationRecord,
    EndReason,
)

GRACE_KEYS = ("kiosk", "expert", "media:kiosk", "media:expert")
DEFAULTS = SignalingConfig()


def deadline_key(kind: str, *parts: str) -> str:
    return "|".join((kind, *parts))


@dataclass(frozen=True)
class Snapshot:
    """What a transition may look at: values read together, at ``now``."""

    now: float
    call: LiveCall | None = None
    presences: Mapping[str, ExpertPresence] = field(default_factory=dict)
    """By expert id: the call's expert and the acting expert, where there are."""
    open_calls: Mapping[str, OpenCall] = field(default_factory=dict)
    calls: Mapping[str, LiveCall] = field(default_factory=dict)
    """Other calls by id (the one ringing for an expert, the one an expert is in)."""
    online_in_department: int = 0
    """Experts of the call's department available or busy (read, not compared)."""

    def presence(self, expert_id: str | None) -> ExpertPresence | None:
        return self.presences.get(expert_id) if expert_id else None


# ---- helpers -------------------------------------------------------------------------


def _audit(
    actor: str, action: str, subject: str, remote: str, **detail: str | int | float | bool | None
) -> AuditEvent:
    return AuditEvent(actor, action, subject, dict(detail), remote)


def call_for(
    snapshot: Snapshot,
    account: Account,
    right: Right = Right.FOLLOW,
    not_now: str = "not at this stage of the consultation",
) -> LiveCall:
    """The open consultation, if this account has ``right`` on it now
    (``signaling.access``); else InvalidState(``not_now``) for one who follows it,
    and for anyone else the same NotFound as for a missing one (nobody learns
    another's consultation exists)."""
    call = snapshot.call
    found = Verdict.HIDDEN if call is None else access.on_call(account, call, right)
    if found is Verdict.HIDDEN:
        raise NotFound("no open consultation with this id for you")
    if found is Verdict.NOT_NOW:
        raise InvalidState(not_now)
    assert call is not None
    return call


def _take_back(
    d: Decision,
    s: Snapshot,
    call: LiveCall,
    reason: RevokeReason,
    config: SignalingConfig,
    *,
    missed: bool = False,
    declined: bool = False,
) -> tuple[LiveCall, ExpertPresence | None]:
    """An offered consultation returns to waiting (it keeps its place: the queue is
    ordered by waiting time) and the expert is told."""
    expert_id = call.expert_id
    assert expert_id is not None
    back = dataclasses.replace(
        call,
        phase=Phase.WAITING,
        expert_id=None,
        expert_username=None,
        offered_at=None,
        missed_by=(*call.missed_by, expert_id) if missed else call.missed_by,
        declined_by=(*call.declined_by, expert_id) if declined else call.declined_by,
    )
    d.put(back)
    d.commit.deadlines_clear.append(deadline_key("ring", call.id))
    d.notify(
        expert_id,
        "offer_revoked",
        OfferRevoked(consultation_id=call.id, reason=reason),
        not_actor=declined,
    )
    d.notify(call.kiosk_id, "consultation", consultation_view(back))
    presence = s.presence(expert_id)
    if presence is None or presence.offer != call.id:
        return back, None
    changed = dataclasses.replace(presence, offer=None)
    if missed:
        # A missed offer sends the expert to the back of the idle order.
        changed = dataclasses.replace(
            changed, missed_in_a_row=presence.missed_in_a_row + 1, idle_since=s.now
        )
        if (
            changed.missed_in_a_row >= config.missed_offers_before_away
            and changed.status is PresenceStatus.AVAILABLE
        ):
            changed = dataclasses.replace(
                changed, status=PresenceStatus.AWAY, away_reason=AwayReason.MISSED_OFFERS
            )
    elif declined:
        changed = dataclasses.replace(changed, missed_in_a_row=0)
    d.put(changed)
    if changed.status != presence.status or missed:
        d.notify(expert_id, "presence", presence_view(changed))
    if not changed.online:
        d.effects.append(ArmNoExpert(call.department))
    return back, changed


def _follow_ups(d: Decision, department: str) -> None:
    d.effects.append(Dispatch(department))
    d.effects.append(PublishQueue(department))


# ---- kiosk ---------------------------------------------------------------------------


def request(
    s: Snapshot,
    kiosk: Account,
    call_id: str,
    department: str,
    case_number: str | None,
    remote: str,
    config: SignalingConfig,
    *,
    recorded: bool = False,
    hall_names: tuple[str, str] | None = None,
) -> Decision:
    """A citizen joins a department's queue (the record is created first);
    ``hall_names`` (zh, en) name the kiosk's hall in the expert's offer."""
    if not recorded and kiosk.id in s.open_calls:
        raise AlreadyInConsultation("this kiosk already has an open consultation")
    call = LiveCall(
        id=call_id,
        department=department,
        kiosk_id=kiosk.id,
        kiosk_username=kiosk.username,
        hall=kiosk.hall,
        case_number=case_number,
        phase=Phase.WAITING,
        waiting_since=s.now,
        hall_name_zh=hall_names[0] if hall_names else None,
        hall_name_en=hall_names[1] if hall_names else None,
    )
    d = Decision(reply=consultation_view(call))
    d.record = CreateConsultation(
        call_id,
        kiosk.id,
        kiosk.hall,
        department,
        case_number,
        s.now,
        _audit(
            kiosk.username,
            "consultation.request",
            call_id,
            remote,
            department=department,
            case_number_given=case_number is not None,
        ),
    )
    d.put(call)
    d.put(OpenCall(kiosk.id, call_id))
    d.commit.queue_add.append((department, call_id, s.now))
    # Fires only if nobody of the department is online by then (checked at the time).
    d.commit.deadlines_set[deadline_key("noexpert", call_id)] = s.now + config.no_expert_wait
    _follow_ups(d, department)
    return d


def cancel(
    s: Snapshot,
    kiosk: Account,
    remote: str,
    *,
    recorded: bool = False,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """The citizen leaves the queue before the call starts."""
    if not recorded:
        call_for(s, kiosk, Right.CANCEL, "the call has started; end it instead")
    return finish(
        s,
        EndReason.ABANDONED,
        kiosk.username,
        remote,
        actor=kiosk,
        recorded=recorded,
        config=config,
    )


# ---- expert --------------------------------------------------------------------------


def offer(s: Snapshot, expert_id: str, config: SignalingConfig) -> Decision:
    """Dispatch: ring the call for this expert, if both are still as planned."""
    call = s.call
    presence = s.presence(expert_id)
    d = Decision()
    if call is None or call.phase is not Phase.WAITING or presence is None or not presence.free:
        return d
    if presence.department != call.department:
        return d
    offered = dataclasses.replace(
        call,
        phase=Phase.OFFERED,
        expert_id=expert_id,
        expert_username=presence.username,
        offered_at=s.now,
    )
    d.put(offered)
    d.put(dataclasses.replace(presence, offer=call.id))
    d.commit.deadlines_set[deadline_key("ring", call.id)] = s.now + config.ring_timeout
    d.notify(expert_id, "offer", offer_view(offered, config.ring_timeout))
    d.notify(call.kiosk_id, "consultation", consultation_view(offered))
    d.effects.append(PublishQueue(call.department))
    return d


def accept(
    s: Snapshot,
    expert: Account,
    tokens: Mapping[str, str],
    remote: str,
    *,
    recorded: bool = False,
) -> Decision:
    """The expert takes the consultation ringing for them: the call starts."""
    call = s.call
    if not recorded:
        call = call_for(s, expert, Right.ANSWER, "this consultation is not being offered to you")
    if call is None:
        raise InvalidState("the consultation has ended")
    d = Decision()
    if not recorded:
        d.record = MarkActive(
            call.id,
            expert.id,
            call.offered_at,
            s.now,
            _audit(expert.username, "consultation.accept", call.id, remote),
        )
    elif call.phase is Phase.OFFERED and call.expert_id not in (None, expert.id):
        # Ringing for a colleague meanwhile: the records say this expert took it.
        other = s.presence(call.expert_id)
        if other is not None and other.offer == call.id:
            d.put(dataclasses.replace(other, offer=None))
        d.notify(
            call.expert_id,
            "offer_revoked",
            OfferRevoked(consultation_id=call.id, reason="ended"),
        )
    active = dataclasses.replace(
        call,
        phase=Phase.ACTIVE,
        expert_id=expert.id,
        expert_username=expert.username,
        offered_at=call.offered_at or s.now,
        active_at=s.now,
        media_tokens=tuple(sorted(tokens.items())),
    )
    d.put(active)
    d.put(OpenCall(expert.id, call.id))
    d.commit.queue_remove.append((call.department, call.id))
    d.commit.deadlines_clear += [deadline_key("ring", call.id), deadline_key("noexpert", call.id)]
    presence = s.presence(expert.id)
    if presence is not None:
        busy = dataclasses.replace(
            presence, offer=None, call=call.id, missed_in_a_row=0, status=PresenceStatus.BUSY
        )
        d.put(busy)
        d.notify(expert.id, "presence", presence_view(busy))
    view = consultation_view(active, Side.EXPERT.value)
    d.notify(call.kiosk_id, "consultation", consultation_view(active, Side.KIOSK.value))
    d.notify(expert.id, "consultation", view, not_actor=True)
    d.effects.append(PublishQueue(call.department))
    d.reply = view
    return d


def decline(s: Snapshot, expert: Account, config: SignalingConfig) -> Decision:
    """The expert declines: the consultation goes to the next expert, not back to them."""
    call = call_for(s, expert, Right.ANSWER, "this consultation is not being offered to you")
    d = Decision()
    _take_back(d, s, call, "declined", config, declined=True)
    _follow_ups(d, call.department)
    return d


def ring_timeout(s: Snapshot, config: SignalingConfig) -> Decision:
    """Nobody answered in time: the offer goes back, counted against the expert."""
    call = s.call
    d = Decision()
    if call is None or call.phase is not Phase.OFFERED or call.offered_at is None:
        return d
    if s.now < call.offered_at + config.ring_timeout - 0.001:
        return d  # a newer offer, with its own deadline
    _take_back(d, s, call, "timeout", config, missed=True)
    _follow_ups(d, call.department)
    return d


# ---- both sides ----------------------------------------------------------------------


def end(
    s: Snapshot,
    account: Account,
    remote: str,
    *,
    recorded: bool = False,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """A participant ends: a kiosk leaving the queue abandons it, a call completes."""
    call = (
        s.call
        if recorded
        else call_for(s, account, Right.END, "you can only end a call you are in")
    )
    reason = (
        EndReason.COMPLETED
        if call is not None and call.phase is Phase.ACTIVE
        else EndReason.ABANDONED
    )
    return finish(
        s, reason, account.username, remote, actor=account, recorded=recorded, config=config
    )


def withdraw(
    s: Snapshot,
    admin: Account,
    remote: str,
    record: ConsultationRecord | None = None,
    kiosk_username: str = "",
    *,
    recorded: bool = False,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """An admin ends an open consultation as cancelled. One the records hold open
    without its live state (its live commit never happened) is ended in the
    records alone, the live state's absence checked by the commit."""
    if s.call is not None and not recorded:
        call_for(s, admin, Right.WITHDRAW)
    if s.call is None and not recorded:
        if record is None or access.on_record(admin, record, Right.WITHDRAW) is not Verdict.ALLOWED:
            raise NotFound("no open consultation with this id")
        d = Decision(
            record=MarkEnded(
                record.id,
                EndReason.CANCELLED,
                admin.username,
                s.now,
                record.offered_at,
                _audit(
                    admin.username,
                    "consultation.end",
                    record.id,
                    remote,
                    reason=EndReason.CANCELLED.value,
                ),
            ),
            reply=record_ended_view(record, kiosk_username, s.now, EndReason.CANCELLED.value),
        )
        d.effects.append(DiscardUploads(record.id))
        return d
    return finish(
        s,
        EndReason.CANCELLED,
        admin.username,
        remote,
        actor=admin,
        recorded=recorded,
        config=config,
    )


def repair(
    s: Snapshot, planned: Repair, *, recorded: bool = False, config: SignalingConfig = DEFAULTS
) -> Decision:
    """Apply one repair of ``signaling.reconcile`` to the live state as it is now."""
    call = s.call
    if call is None:
        if not planned.write_record or recorded:
            return Decision()  # nothing live to remove, or already ended by this repair
        d = Decision(
            record=MarkEnded(
                planned.consultation_id,
                planned.reason,
                "system",
                s.now,
                planned.offered_at,
                _audit(
                    "system",
                    "consultation.end",
                    planned.consultation_id,
                    "",
                    reason=planned.reason.value,
                    repair=planned.mismatch.value,
                ),
            ),
            reply=True,
        )
        d.effects.append(DiscardUploads(planned.consultation_id))
        return d
    if planned.mismatch is Mismatch.NO_LIVE_STATE and not recorded:
        return Decision()  # its live state has appeared since: nothing disagrees
    return finish(
        s,
        planned.reason,
        "system",
        recorded=recorded or not planned.write_record,
        repair=planned.mismatch.value,
        config=config,
    )


_REVOKE_REASON: dict[EndReason, RevokeReason] = {
    EndReason.ABANDONED: "cancelled",
    EndReason.CANCELLED: "cancelled",
}


def finish(
    s: Snapshot,
    reason: EndReason,
    ended_by: str,
    remote: str = "",
    *,
    actor: Account | None = None,
    recorded: bool = False,
    expert_gone: bool = False,
    repair: str | None = None,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """End the open consultation: record, live state, both sides told.
    ``expert_gone``: it ends because the expert's own grace period ran out;
    ``repair``: it ends to make records and live state agree (said in the audit).
    The expert of an answered call then wraps it up (``config.wrap_up_limit``)."""
    call = s.call
    d = Decision()
    if call is None:
        if recorded:
            return d  # someone else removed it already
        raise InvalidState("the consultation has already ended")
    if not recorded:
        why = {"repair": repair} if repair is not None else {}
        d.record = MarkEnded(
            call.id,
            reason,
            ended_by,
            s.now,
            call.offered_at,
            _audit(ended_by, "consultation.end", call.id, remote, reason=reason.value, **why),
        )
    d.delete(call_key(call.id))
    d.commit.queue_remove.append((call.department, call.id))
    d.commit.deadlines_clear += [deadline_key("ring", call.id), deadline_key("noexpert", call.id)]
    d.commit.deadlines_clear += [deadline_key("grace", call.id, k) for k in GRACE_KEYS]
    for account_id in (call.kiosk_id, call.expert_id):
        own = s.open_calls.get(account_id or "")
        if own is not None and own.call_id == call.id:
            d.delete(open_key(own.account_id))
    view = ended_view(call, s.now, reason.value)
    actor_id = actor.id if actor is not None else None
    d.notify(call.kiosk_id, "consultation", view, not_actor=actor_id == call.kiosk_id)
    expert_id = call.expert_id
    presence = s.presence(expert_id)
    if call.phase is Phase.OFFERED and expert_id is not None:
        d.notify(
            expert_id,
            "offer_revoked",
            OfferRevoked(
                consultation_id=call.id,
                reason=_REVOKE_REASON.get(reason, "ended"),
            ),
        )
        if presence is not None and presence.offer == call.id:
            d.put(dataclasses.replace(presence, offer=None))
    elif call.phase is Phase.ACTIVE and expert_id is not None:
        d.notify(expert_id, "consultation", view, not_actor=actor_id == expert_id)
        d.effects.append(CloseRelay(call.id, call.relay))
        # Documents travel only during the call: what is half-sent is dropped.
        d.effects.append(DiscardUploads(call.id))
        if reason is EndReason.COMPLETED and call.active_at is not None:
            d.commit.handle_times.append((call.department, s.now - call.active_at, 20))
        if presence is not None and presence.call == call.id:
            if presence.status is PresenceStatus.OFFLINE and expert_gone:
                # Gone for good: the call outlived the expert's grace period.
                d.delete(presence_key(expert_id))
                d.commit.members_remove.append((experts_set(call.department), expert_id))
            elif presence.status is PresenceStatus.OFFLINE:
                # Still within their grace period (else the call would have ended by
                # it): back in time they get what they had (and the call's wrap-up);
                # if not, their pending offline deadline forgets them.
                gone = dataclasses.replace(presence, call=None, idle_since=s.now)
                if config.wrap_up_limit > 0:
                    gone = dataclasses.replace(
                        _wrapping_up(d, gone, call.id, s.now, config),
                        status=PresenceStatus.OFFLINE,
                        status_before_drop=PresenceStatus.WRAP_UP,
                    )
                d.put(gone)
            elif config.wrap_up_limit > 0:
                # No offer until the record is saved or put off (or the limit ends it).
                after = _wrapping_up(d, presence, call.id, s.now, config)
                d.put(after)
                d.notify(expert_id, "presence", presence_view(after))
            else:
                after = dataclasses.replace(
                    presence,
                    call=None,
                    idle_since=s.now,
                    status=presence.status_after_call,
                    status_after_call=PresenceStatus.AVAILABLE,
                )
                d.put(after)
                d.notify(expert_id, "presence", presence_view(after))
    _follow_ups(d, call.department)
    d.reply = view
    return d


def _wrapping_up(
    d: Decision, presence: ExpertPresence, call_id: str, now: float, config: SignalingConfig
) -> ExpertPresence:
    """The expert of a call that ended completes its record: offered nobody until it
    is saved or put off, or ``config.wrap_up_limit`` has passed."""
    until = now + config.wrap_up_limit
    d.commit.deadlines_set[deadline_key("wrapup", presence.expert_id)] = until
    return dataclasses.replace(
        presence,
        call=None,
        idle_since=now,
        status=PresenceStatus.WRAP_UP,
        wrap_up=call_id,
        wrap_up_until=until,
        away_reason=None,
    )


def wrap_up_done(s: Snapshot, expert_id: str, call_id: str, *, expired: bool = False) -> Decision:
    """The record of ``call_id`` was saved or put off (稍后填写): the expert takes calls
    again (or is away, if they asked for it during the call). ``expired``: the wrap-up
    limit passed first, and the expert, who may have walked away, is set away. Nothing
    changes unless the expert is wrapping up that very consultation."""
    presence = s.presence(expert_id)
    d = Decision(reply=presence_view(presence) if presence is not None else None)
    if presence is None or presence.wrap_up != call_id:
        return d
    if expired and s.now < (presence.wrap_up_until or 0.0) - 0.001:
        return d  # a newer wrap-up, with its own deadline
    if expired:
        then, reason = PresenceStatus.AWAY, AwayReason.WRAP_UP_EXPIRED
    else:
        then, reason = presence.status_after_call, None
        d.commit.deadlines_clear.append(deadline_key("wrapup", expert_id))
    after = dataclasses.replace(
        presence, wrap_up=None, wrap_up_until=None, status_after_call=PresenceStatus.AVAILABLE
    )
    if presence.status is PresenceStatus.OFFLINE:
        after = dataclasses.replace(after, status_before_drop=then, away_reason=reason)
    else:
        after = dataclasses.replace(after, status=then, away_reason=reason)
    d.put(after)
    d.reply = presence_view(after)
    d.notify(expert_id, "presence", presence_view(after))
    if presence.online and not after.online:
        d.effects.append(ArmNoExpert(presence.department))
    _follow_ups(d, presence.department)
    return d


# ---- connections, media, deadlines ----------------------------------------------------


def participant_left(s: Snapshot, account_id: str, key: str, config: SignalingConfig) -> Decision:
    """A side's socket (``kiosk``/``expert``) or media (``media:kiosk``) went away: its
    grace period starts, and the other side is told."""
    call = s.call
    d = Decision()
    if call is None or call.dropped_since(key) is not None:
        return d
    side = Side(key.removeprefix("media:"))
    if call.account_of(side) != account_id:
        return d
    if (key.startswith("media:") or side is Side.EXPERT) and call.phase is not Phase.ACTIVE:
        return d
    d.put(call.with_dropped(key, s.now))
    d.commit.deadlines_set[deadline_key("grace", call.id, key)] = s.now + config.grace_period
    if call.phase is Phase.ACTIVE:
        other = call.account_of(Side.EXPERT if side is Side.KIOSK else Side.KIOSK)
        d.notify(
            other,
            "peer_status",
            PeerStatus(
                consultation_id=call.id,
                side=side.value,
                status="reconnecting",
                grace_s=config.grace_period,
            ),
        )
    return d


def participant_returned(s: Snapshot, account_id: str, key: str) -> Decision:
    """It came back within the grace period: the call goes on; both sides resync."""
    call = s.call
    d = Decision()
    if call is None:
        return d
    side = Side(key.removeprefix("media:"))
    if call.account_of(side) != account_id:
        return d
    if call.dropped_since(key) is not None:
        d.put(call.without_dropped(key))
        d.commit.deadlines_clear.append(deadline_key("grace", call.id, key))
        if call.phase is Phase.ACTIVE:
            other = call.account_of(Side.EXPERT if side is Side.KIOSK else Side.KIOSK)
            d.notify(
                other,
                "peer_status",
                PeerStatus(consultation_id=call.id, side=side.value, status="connected"),
            )
    if not key.startswith("media:"):
        d.notify(account_id, "consultation", consultation_view(call, side.value))
    return d


def grace_expired(
    s: Snapshot, key: str, *, recorded: bool = False, config: SignalingConfig = DEFAULTS
) -> Decision:
    """A socket or media that did not come back in time: a citizen who walks away from
    the queue has abandoned it; a call that loses a participant has dropped."""
    call = s.call
    if call is None or (call.dropped_since(key) is None and not recorded):
        return Decision()
    reason = EndReason.DROPPED if call.phase is Phase.ACTIVE else EndReason.ABANDONED
    return finish(
        s, reason, "system", recorded=recorded, expert_gone=key == "expert", config=config
    )


def no_expert_expired(
    s: Snapshot, *, recorded: bool = False, config: SignalingConfig = DEFAULTS
) -> Decision:
    """Nobody of the department came online for the configured wait."""
    call = s.call
    if not recorded and (
        call is None or call.phase is not Phase.WAITING or s.online_in_department > 0
    ):
        return Decision()
    return finish(s, EndReason.NO_EXPERT, "system", recorded=recorded, config=config)


def place_relay(s: Snapshot, candidate: str, unreachable: str | None = None) -> Decision:
    """Where the active call's media goes: where it already is, or ``candidate`` when
    it has no place yet or its place (``unreachable``) is gone. Whoever commits first
    places it; the reply is the placement everyone then uses."""
    call = s.call
    if call is None or call.phase is not Phase.ACTIVE:
        raise NotFound("no active consultation with this id")
    d = Decision()
    if call.relay is not None and call.relay != unreachable:
        d.reply = call.relay
        return d
    d.put(dataclasses.replace(call, relay=candidate))
    d.reply = candidate
    return d


# ---- presence ------------------------------------------------------------------------


def _new_presence(expert: Account, now: float) -> ExpertPresence:
    assert expert.department is not None
    return ExpertPresence(
        expert_id=expert.id,
        username=expert.username,
        department=expert.department,
        status=PresenceStatus.AWAY,
        idle_since=now,
    )


def _register(d: Decision, presence: ExpertPresence, existed: bool) -> None:
    d.put(presence)
    if not existed:
        d.commit.members_add.append((experts_set(presence.department), presence.expert_id))


def set_status(
    s: Snapshot, expert: Account, status: PresenceStatus, config: SignalingConfig
) -> Decision:
    """The expert's own choice: available or away (in a call: once it ends)."""
    existing = s.presence(expert.id)
    presence = existing or _new_presence(expert, s.now)
    was_online = presence.online
    d = Decision()
    presence = dataclasses.replace(presence, away_reason=None)
    if presence.call is not None:
        presence = dataclasses.replace(presence, status_after_call=status)
    elif presence.wrap_up is not None and status is PresenceStatus.AVAILABLE:
        # Offers come once the record is saved or put off, not before.
        presence = dataclasses.replace(presence, status_after_call=status)
    elif presence.wrap_up is not None:
        # Away ends the wrap-up: the record waits among the unfinished ones.
        presence = dataclasses.replace(
            presence,
            status=status,
            wrap_up=None,
            wrap_up_until=None,
            status_after_call=PresenceStatus.AVAILABLE,
        )
        d.commit.deadlines_clear.append(deadline_key("wrapup", expert.id))
    elif status is PresenceStatus.AVAILABLE:
        presence = dataclasses.replace(
            presence,
            status=status,
            missed_in_a_row=0,
            idle_since=(
                presence.idle_since if presence.status is PresenceStatus.AVAILABLE else s.now
            ),
        )
    else:
        presence = dataclasses.replace(presence, status=status)
    ringing = s.calls.get(presence.offer or "")
    if status is PresenceStatus.AWAY and ringing is not None and ringing.phase is Phase.OFFERED:
        _take_back(d, s, ringing, "declined", config)
        presence = dataclasses.replace(presence, offer=None)
    _register(d, presence, existing is not None)
    d.reply = presence_view(presence)
    d.notify(expert.id, "presence", presence_view(presence), not_actor=True)
    if was_online and not presence.online:
        d.effects.append(ArmNoExpert(presence.department))
    _follow_ups(d, presence.department)
    return d


def expert_connected(s: Snapshot, expert: Account) -> Decision:
    """An expert's first connection: back as before a short drop, else away."""
    existing = s.presence(expert.id)
    presence = existing or _new_presence(expert, s.now)
    if presence.status is PresenceStatus.OFFLINE:
        if presence.call is not None:
            presence = dataclasses.replace(presence, status=PresenceStatus.BUSY)
        else:
            presence = dataclasses.replace(
                presence,
                status=presence.status_before_drop or PresenceStatus.AWAY,
                idle_since=s.now,
            )
        presence = dataclasses.replace(presence, status_before_drop=None)
    d = Decision()
    _register(d, presence, existing is not None)
    d.commit.deadlines_clear.append(deadline_key("offline", expert.id))
    d.notify(expert.id, "presence", presence_view(presence))
    _follow_ups(d, presence.department)
    if presence.call is not None:
        d.effects.append(Participant(expert.id, connected=True))
    return d


def expert_disconnected(s: Snapshot, expert: Account, config: SignalingConfig) -> Decision:
    """The expert's last connection closed: offline; a ringing offer goes back."""
    presence = s.presence(expert.id)
    d = Decision()
    if presence is None or presence.status is PresenceStatus.OFFLINE:
        return d
    ringing = s.calls.get(presence.offer or "")
    if ringing is not None and ringing.phase is Phase.OFFERED:
        _take_back(d, s, ringing, "declined", config)
    was_online = presence.status in ONLINE
    presence = dataclasses.replace(
        presence,
        offer=None,
        status_before_drop=(
            presence.status_after_call if presence.call is not None else presence.status
        ),
        status=PresenceStatus.OFFLINE,
    )
    d.put(presence)
    d.commit.deadlines_set[deadline_key("offline", expert.id)] = s.now + config.grace_period
    if was_online:
        # One fewer online: the department's waiting consultations may now have nobody.
        # An away expert leaving changes nothing there (and must not restart the wait).
        d.effects.append(ArmNoExpert(presence.department))
    _follow_ups(d, presence.department)
    if presence.call is not None:
        d.effects.append(Participant(expert.id, connected=False))
    return d


def offline_expired(s: Snapshot, expert_id: str) -> Decision:
    """An expert who did not come back is forgotten (unless still in a call)."""
    presence = s.presence(expert_id)
    d = Decision()
    if presence is None or presence.status is not PresenceStatus.OFFLINE or presence.call:
        return d
    d.delete(presence_key(expert_id))
    d.commit.members_remove.append((experts_set(presence.department), expert_id))
    d.effects.append(PublishQueue(presence.department))
    return d


# ---- routing -------------------------------------------------------------------------


def plan_offers(
    waiting: Sequence[LiveCall], presences: Sequence[ExpertPresence]
) -> list[tuple[str, str]]:
    """(call, expert) pairs to ring: each waiting consultation, oldest first, to the
    best free expert (``signaling.queue.pick_expert``)."""
    free = [p for p in presences if p.free]
    plan: list[tuple[str, str]] = []
    for call in waiting:
        if not free:
            break
        if call.phase is not Phase.WAITING:
            continue
        expert = pick_expert(call, free)
        if expert is None:
            continue
        free.remove(expert)
        plan.append((call.id, expert.expert_id))
    return plan


def no_expert_deadlines(
    waiting: Sequence[LiveCall], online: int, now: float, config: SignalingConfig
) -> dict[str, float]:
    """With nobody online, each waiting consultation's no-expert wait starts now."""
    if online > 0:
        return {}
    return {
        deadline_key("noexpert", c.id): now + config.no_expert_wait
        for c in waiting
        if c.phase is Phase.WAITING
    }
