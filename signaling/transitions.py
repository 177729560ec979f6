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
    AuditOnly,
    CloseLeg,
    CloseRelay,
    CreateConsultation,
    Decision,
    DiscardUploads,
    Dispatch,
    JoinCall,
    LeaveCall,
    MarkActive,
    MarkEnded,
    Participant,
    PublishQueue,
    RecordMedia,
    ResumeCall,
    TransferCall,
)
from signaling.errors import AlreadyInConsultation, CallFull, Forbidden, InvalidState, NotFound
from signaling.live import (
    KIOSK_POSITION,
    LEAD_POSITION,
    MAX_PARTICIPANTS,
    ONLINE,
    AwayReason,
    ExpertPresence,
    LiveCall,
    LiveInvitation,
    OpenCall,
    Phase,
    PresenceStatus,
    Seat,
    StaffRole,
    Transfer,
    call_key,
    experts_set,
    invitation_key,
    open_key,
    position_of_name,
    presence_key,
    seat_name,
)
from signaling.messages import (
    ConsultationView,
    InvitationState,
    InvitationView,
    OfferRevoked,
    PeerStatus,
    RevokeReason,
)
from signaling.queue import pick_expert
from signaling.reconcile import Mismatch, Repair
from signaling.views import (
    consultation_view,
    ended_view,
    invitation_offer_view,
    invitation_view,
    left_view,
    offer_view,
    presence_view,
    record_ended_view,
)
from storage.records import (
    Account,
    AuditEvent,
    ConsultationRecord,
    EndReason,
    LegEnd,
    Role,
)

GRACE_KEYS = tuple(
    f"{prefix}{seat_name(p)}" for prefix in ("", "media:") for p in range(MAX_PARTICIPANTS)
)
"""Every drop a call can have: each position's socket and media."""
DEFAULTS = SignalingConfig()
HEAD = 1e9
"""Seconds taken off a queue entry's time to put it at the head of its department's
queue (an invitation, a transferred citizen), ahead of everyone queued the usual way;
among themselves they keep their order."""


def head_of_queue(at: float) -> float:
    return at - HEAD


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
    invitations: Mapping[str, LiveInvitation] = field(default_factory=dict)
    """By id: the call's open invitations, the one acted on, the one ringing for an
    expert."""
    department_staff: Sequence[ExpertPresence] = ()
    """The staff of the department an invitation is for (read, not compared)."""

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
    _tell_everyone(d, s, back)
    presence = s.presence(expert_id)
    if presence is None or presence.offer != call.id:
        return back, None
    changed = _missed_or_declined(d, s, presence, config, missed=missed, declined=declined)
    if not changed.online:
        d.effects.append(ArmNoExpert(call.department))
    return back, changed


def _missed_or_declined(
    d: Decision,
    s: Snapshot,
    presence: ExpertPresence,
    config: SignalingConfig,
    *,
    missed: bool,
    declined: bool,
) -> ExpertPresence:
    """The rung expert's presence once their offer is gone: a missed one counts against
    them (away after ``missed_offers_before_away`` in a row)."""
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
        d.notify(presence.expert_id, "presence", presence_view(changed))
    return changed


def _follow_ups(d: Decision, department: str) -> None:
    d.effects.append(Dispatch(department))
    d.effects.append(PublishQueue(department))


def _tell_everyone(
    d: Decision,
    s: Snapshot,
    call: LiveCall,
    actor_id: str | None = None,
    *,
    skip: tuple[str, ...] = (),
) -> None:
    """Every participant gets the call as they see it (their own media access): the
    kiosk, and the staff taking part; the acting socket has it in its ack."""
    invitations = {r.id: s.invitations[r.id] for r in call.invitations if r.id in s.invitations}
    for position, account_id in [(KIOSK_POSITION, call.kiosk_id)] + [
        (seat.position, seat.account_id) for seat in call.seats
    ]:
        if account_id in skip:
            continue
        d.notify(
            account_id,
            "consultation",
            consultation_view(call, position, invitations),
            not_actor=account_id == actor_id,
        )


def _staff_of(call: LiveCall, also: str | None = None) -> list[str]:
    """The staff taking part (and ``also``, an inviter who may have left)."""
    ids = [seat.account_id for seat in call.seats]
    if also is not None and also not in ids:
        ids.append(also)
    return ids


def _tell_staff(
    d: Decision,
    call: LiveCall,
    view: InvitationView,
    inviter: str | None,
    actor_id: str | None = None,
) -> None:
    for account_id in _staff_of(call, inviter):
        d.notify(account_id, "invitation", view, not_actor=account_id == actor_id)


def _view_of(s: Snapshot, call: LiveCall, account_id: str) -> ConsultationView:
    invitations = {r.id: s.invitations[r.id] for r in call.invitations if r.id in s.invitations}
    return consultation_view(call, call.position_of(account_id), invitations)


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
    appointment: str | None = None,
) -> Decision:
    """A citizen joins a department's queue (the record is created first);
    ``hall_names`` (zh, en) name the kiosk's hall in the expert's offer. A citizen
    who comes by ``appointment`` (the booking's id) waits at the head of the queue,
    as an invitation or a transferred citizen does."""
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
        kiosk_name=kiosk.display_name or None,
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
            appointment=appointment,
        ),
    )
    d.put(call)
    d.put(OpenCall(kiosk.id, call_id))
    queued_at = s.now if appointment is None else head_of_queue(s.now)
    d.commit.queue_add.append((department, call_id, queued_at))
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
    if presence.department != call.department or expert_id in call.participant_ids:
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
    _tell_everyone(d, s, offered)
    d.effects.append(PublishQueue(call.department))
    return d


def accept(
    s: Snapshot,
    expert: Account,
    tokens: Mapping[str, str],
    remote: str,
    *,
    recorded: bool = False,
    department_names: tuple[str, str] | None = None,
) -> Decision:
    """The expert takes the consultation ringing for them: the call starts (or, for a
    transferred one, goes on with them). ``tokens``: a media token for each seat name
    (those the call needs are taken); ``department_names`` (zh, en) name their
    department to the others."""
    call = s.call
    if not recorded:
        call = call_for(s, expert, Right.ANSWER, "this consultation is not being offered to you")
    if call is None:
        raise InvalidState("the consultation has ended")
    if call.phase is Phase.ACTIVE and call.seat_of(expert.id) is not None:
        return Decision(reply=_view_of(s, call, expert.id))  # the records' retry: done
    resumed = call.transfer is not None
    position = call.free_position() if resumed else LEAD_POSITION
    if position is None:
        raise CallFull("four take part in this call already")
    d = Decision()
    if not recorded and resumed:
        assert call.transfer is not None
        d.record = ResumeCall(
            call.id,
            expert.id,
            position,
            s.now,
            call.transfer.by,
            call.transfer.reason,
            _audit(expert.username, "consultation.accept", call.id, remote, transferred=True),
        )
    elif not recorded:
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
    seat = Seat(
        position,
        expert.id,
        expert.username,
        StaffRole.EXPERT,
        expert.department or call.department,
        s.now,
        expert.display_name,
        department_names[0] if department_names else None,
        department_names[1] if department_names else None,
    )
    if resumed:
        kept = dict(call.media_tokens)
        kept[seat_name(position)] = tokens[seat_name(position)]
        media_tokens = tuple(sorted(kept.items()))
    else:
        needed = (seat_name(KIOSK_POSITION), seat_name(position))
        media_tokens = tuple(sorted((k, v) for k, v in tokens.items() if k in needed))
    active = dataclasses.replace(
        call,
        phase=Phase.ACTIVE,
        expert_id=expert.id,
        expert_username=expert.username,
        offered_at=call.offered_at or s.now,
        active_at=call.active_at if resumed and call.active_at else s.now,
        media_tokens=media_tokens,
        seats=(*call.seats, seat),
        transfer=None,
        declined_by=() if resumed else call.declined_by,
        missed_by=() if resumed else call.missed_by,
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
    _tell_everyone(d, s, active, expert.id)
    d.effects.append(PublishQueue(call.department))
    d.reply = consultation_view(active, position)
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
    gone: str | None = None,
    repair: str | None = None,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """End the open consultation: record, live state, everyone told. ``gone``: it ends
    because that staff member's own grace period ran out (``expert_gone``: the lead
    expert's); ``repair``: it ends to make records and live state agree (said in the
    audit). Each expert who took part then wraps it up (``config.wrap_up_limit``);
    interpreters write no record and are free at once."""
    call = s.call
    d = Decision()
    if call is None:
        if recorded:
            return d  # someone else removed it already
        raise InvalidState("the consultation has already ended")
    if expert_gone and gone is None:
        gone = call.expert_id
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
    for account_id in dict.fromkeys((*call.participant_ids, call.expert_id)):
        own = s.open_calls.get(account_id or "")
        if own is not None and own.call_id == call.id:
            d.delete(open_key(own.account_id))
    # Open invitations end with the call (whoever is rung for one is told it is gone).
    for ref in call.invitations:
        invitation = s.invitations.get(ref.id)
        _close_invitation(d, s, ref.id, ref.department, invitation, "ended")
    view = ended_view(call, s.now, reason.value)
    actor_id = actor.id if actor is not None else None
    d.notify(call.kiosk_id, "consultation", view, not_actor=actor_id == call.kiosk_id)
    expert_id = call.expert_id
    in_call = call.phase is Phase.ACTIVE or call.in_transfer
    if call.phase is Phase.OFFERED and expert_id is not None:
        presence = s.presence(expert_id)
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
    if in_call:
        for seat in call.seats:
            d.notify(seat.account_id, "consultation", view, not_actor=actor_id == seat.account_id)
        d.effects.append(CloseRelay(call.id, call.relay))
        # Documents travel only during the call: what is half-sent is dropped.
        d.effects.append(DiscardUploads(call.id))
        if reason is EndReason.COMPLETED and call.active_at is not None:
            d.commit.handle_times.append((call.department, s.now - call.active_at, 20))
        for seat in call.seats:
            _release(
                d,
                s,
                seat,
                call.id,
                config,
                gone=seat.account_id == gone,
                wrap_up=seat.role is StaffRole.EXPERT,
            )
    departments = dict.fromkeys(
        (call.department, *(seat.department for seat in call.seats if in_call))
    )
    for department in departments:
        _follow_ups(d, department)
    d.reply = view
    return d


def _release(
    d: Decision,
    s: Snapshot,
    seat: Seat,
    call_id: str,
    config: SignalingConfig,
    *,
    gone: bool = False,
    wrap_up: bool = True,
) -> None:
    """A staff member's part in the call is over: an expert wraps it up (offered
    nobody until its record is saved or put off), an interpreter is free at once (or
    away, if they asked for it during the call). ``gone``: their own grace period ran
    out, and they are forgotten."""
    presence = s.presence(seat.account_id)
    if presence is None or presence.call != call_id:
        return
    wrap_up = wrap_up and config.wrap_up_limit > 0
    if presence.status is PresenceStatus.OFFLINE and gone:
        # Gone for good: the call outlived the staff member's grace period.
        d.delete(presence_key(seat.account_id))
        d.commit.members_remove.append((experts_set(presence.department), seat.account_id))
    elif presence.status is PresenceStatus.OFFLINE:
        # Still within their grace period (else they would have left by it): back in
        # time they get what they had (and the call's wrap-up); if not, their pending
        # offline deadline forgets them.
        after = dataclasses.replace(presence, call=None, idle_since=s.now)
        if wrap_up:
            after = dataclasses.replace(
                _wrapping_up(d, after, call_id, s.now, config),
                status=PresenceStatus.OFFLINE,
                status_before_drop=PresenceStatus.WRAP_UP,
            )
        d.put(after)
    elif wrap_up:
        # No offer until the record is saved or put off (or the limit ends it).
        after = _wrapping_up(d, presence, call_id, s.now, config)
        d.put(after)
        d.notify(seat.account_id, "presence", presence_view(after))
    else:
        after = dataclasses.replace(
            presence,
            call=None,
            idle_since=s.now,
            status=presence.status_after_call,
            status_after_call=PresenceStatus.AVAILABLE,
        )
        d.put(after)
        d.notify(seat.account_id, "presence", presence_view(after))
        if not after.online:
            d.effects.append(ArmNoExpert(presence.department))


def _close_invitation(
    d: Decision,
    s: Snapshot,
    invitation_id: str,
    department: str,
    invitation: LiveInvitation | None,
    reason: RevokeReason,
) -> None:
    """An invitation is gone from the live state (and its department's queue); whoever
    it rings for is told (the call's own value is the caller's to change). Nobody's
    queue view shows invitations, so there is no queue to publish."""
    d.delete(invitation_key(invitation_id))
    d.commit.queue_remove.append((department, invitation_id))
    d.commit.deadlines_clear += [
        deadline_key("iring", invitation_id),
        deadline_key("iwait", invitation_id),
    ]
    if invitation is None or invitation.phase is not Phase.OFFERED:
        return
    assert invitation.expert_id is not None
    d.notify(
        invitation.expert_id,
        "offer_revoked",
        OfferRevoked(
            consultation_id=invitation.call_id, reason=reason, invitation_id=invitation_id
        ),
    )
    presence = s.presence(invitation.expert_id)
    if presence is not None and presence.offer == invitation_id:
        d.put(dataclasses.replace(presence, offer=None))


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


# ---- calls of more than two ---------------------------------------------------------


def _without_seat(call: LiveCall, seat: Seat) -> LiveCall:
    """The call without ``seat``: its token, its drops and its screen share go with it;
    the lead passes to the remaining expert with the lowest position."""
    name = seat_name(seat.position)
    seats = tuple(x for x in call.seats if x.position != seat.position)
    expert_id, expert_username = call.expert_id, call.expert_username
    if expert_id == seat.account_id:
        lead = next((x for x in seats if x.role is StaffRole.EXPERT), None)
        expert_id = lead.account_id if lead is not None else None
        expert_username = lead.username if lead is not None else None
    return dataclasses.replace(
        call,
        seats=seats,
        expert_id=expert_id,
        expert_username=expert_username,
        media_tokens=tuple(p for p in call.media_tokens if p[0] != name),
        dropped=tuple(p for p in call.dropped if p[0] not in (name, f"media:{name}")),
        screen=None if call.screen == seat.position else call.screen,
    )


def _seat_goes(
    d: Decision, s: Snapshot, call: LiveCall, seat: Seat, config: SignalingConfig, *, gone: bool
) -> None:
    """What goes with a staff member leaving a call that goes on: their open call,
    grace deadlines and media leg; their presence (an expert's wrap-up)."""
    name = seat_name(seat.position)
    d.commit.deadlines_clear += [
        deadline_key("grace", call.id, name),
        deadline_key("grace", call.id, f"media:{name}"),
    ]
    own = s.open_calls.get(seat.account_id)
    if own is not None and own.call_id == call.id:
        d.delete(open_key(seat.account_id))
    d.effects.append(CloseLeg(call.id, call.relay, seat.position))
    _release(d, s, seat, call.id, config, gone=gone, wrap_up=seat.role is StaffRole.EXPERT)
    _follow_ups(d, seat.department)


def _part_ends(
    s: Snapshot,
    call: LiveCall,
    seat: Seat,
    why: LegEnd,
    by: str,
    remote: str,
    *,
    actor_id: str | None = None,
    recorded: bool = False,
    gone: str | None = None,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """A staff member's part ends while the call goes on for the others."""
    d = Decision()
    if not recorded:
        d.record = LeaveCall(
            call.id,
            seat.account_id,
            s.now,
            why,
            _audit(
                by,
                "consultation.leave",
                call.id,
                remote,
                account=seat.username,
                position=seat.position,
                reason=why.value,
            ),
        )
    after = _without_seat(call, seat)
    d.put(after)
    _seat_goes(d, s, call, seat, config, gone=gone == seat.account_id)
    view = left_view(after, s.now, why.value)
    d.notify(seat.account_id, "consultation", view, not_actor=actor_id == seat.account_id)
    _tell_everyone(d, s, after)
    d.reply = view
    return d


def leave(
    s: Snapshot,
    staff: Account,
    remote: str,
    *,
    recorded: bool = False,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """A staff member leaves the call. It goes on while the citizen and an expert
    remain; the last expert leaving ends it (completed), as ending it would. (The
    records refuse to end the last expert's part alone: whichever of two experts
    leaving at once is second is told to end the call instead.)"""
    call = s.call
    if not recorded:
        call = call_for(s, staff, Right.LEAVE, "you are not taking part in this call")
    seat = call.seat_of(staff.id) if call is not None else None
    if call is None or seat is None:
        if recorded:
            return Decision()
        raise InvalidState("you are not taking part in this call")
    others = [e for e in call.experts if e.account_id != staff.id]
    if seat.role is StaffRole.EXPERT and not others and call.phase is Phase.ACTIVE:
        return finish(
            s,
            EndReason.COMPLETED,
            staff.username,
            remote,
            actor=staff,
            recorded=recorded,
            config=config,
        )
    return _part_ends(
        s,
        call,
        seat,
        LegEnd.LEFT,
        staff.username,
        remote,
        actor_id=staff.id,
        recorded=recorded,
        config=config,
    )


def transfer(
    s: Snapshot,
    expert: Account,
    department: str,
    reason: str,
    allowed: bool,
    remote: str,
    *,
    recorded: bool = False,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """The expert hands the citizen to ``department`` (``allowed``: their department may
    transfer there, as the admin set): they leave the call (their wrap-up begins); the
    consultation waits at the head of that department's queue with its case number,
    documents and chat, the kiosk (and an interpreter) staying in the call meanwhile.
    Only the call's one expert transfers it (another would be left without a call),
    and one transfer at a time."""
    call = s.call
    if not recorded:
        call = call_for(s, expert, Right.TRANSFER, "only a call going on can be transferred")
        if not allowed:
            raise Forbidden("your department may not transfer to that department")
    seat = call.seat_of(expert.id) if call is not None else None
    if call is None or seat is None:
        if recorded:
            return Decision()
        raise InvalidState("you are not taking part in this call")
    if not recorded and any(e.account_id != expert.id for e in call.experts):
        raise InvalidState(
            "another expert is in the call: they go on with the citizen, or leave first"
        )
    if not recorded and department == call.department:
        raise InvalidState("the consultation is with that department already")
    d = Decision()
    if not recorded:
        d.record = TransferCall(
            call.id,
            expert.id,
            department,
            s.now,
            _audit(
                expert.username,
                "consultation.transfer",
                call.id,
                remote,
                department=department,
                from_department=call.department,
                reason=reason,
            ),
        )
    for ref in call.invitations:
        _close_invitation(d, s, ref.id, ref.department, s.invitations.get(ref.id), "ended")
        _tell_staff(
            d,
            call,
            _closed_view(call.id, ref.id, ref.department, ref.note, ref.created_at, "cancelled"),
            ref.by,
        )
    after = dataclasses.replace(
        _without_seat(call, seat),
        phase=Phase.WAITING,
        department=department,
        expert_id=None,
        expert_username=None,
        offered_at=None,
        declined_by=(),
        missed_by=(),
        invitations=(),
        screen=None,
        transfer=Transfer(
            department,
            reason,
            expert.username,
            expert.display_name,
            call.department,
            s.now,
        ),
    )
    # The experts left are those who are not staying: with the lead gone, nobody
    # (an interpreter and a supervisor who stepped in stay with the citizen).
    after = dataclasses.replace(
        after, seats=tuple(x for x in after.seats if x.role is not StaffRole.EXPERT)
    )
    d.put(after)
    d.commit.queue_add.append((department, call.id, head_of_queue(s.now)))
    d.commit.deadlines_set[deadline_key("noexpert", call.id)] = s.now + config.no_expert_wait
    _seat_goes(d, s, call, seat, config, gone=False)
    view = left_view(after, s.now, LegEnd.TRANSFERRED.value)
    d.notify(expert.id, "consultation", view, not_actor=True)
    _tell_everyone(d, s, after)
    _follow_ups(d, department)
    d.reply = view
    return d


def share_screen(s: Snapshot, expert: Account, sharing: bool) -> Decision:
    """The expert starts sharing their screen (taking over from whoever shared) or
    stops; everyone's view says who shares."""
    call = call_for(s, expert, Right.SHARE, "screens are shared during the call")
    seat = call.seat_of(expert.id)
    if seat is None:
        raise InvalidState("you are not taking part in this call")
    screen = seat.position if sharing else (None if call.screen == seat.position else call.screen)
    d = Decision()
    if screen == call.screen:
        d.reply = _view_of(s, call, expert.id)
        return d
    after = dataclasses.replace(call, screen=screen)
    d.put(after)
    _tell_everyone(d, s, after, expert.id)
    d.reply = _view_of(s, after, expert.id)
    return d


# -- recording (with the citizen's consent)


def request_recording(s: Snapshot, expert: Account) -> Decision:
    """An expert asks to record the call (their department records: the service
    checks): the kiosk asks the citizen; everyone's view says a request is open."""
    call = call_for(s, expert, Right.SHARE, "a call is recorded while it is going on")
    if call.recording != "off":
        raise InvalidState("the call is recorded, or the citizen is being asked already")
    return _set_recording(s, call, expert.id, "asked")


def answer_recording(s: Snapshot, kiosk: Account, accept: bool) -> Decision:
    """The citizen accepts (recording starts) or declines (nothing is written)."""
    call = call_for(s, kiosk, Right.TAKE_PART, "a call is recorded while it is going on")
    if call.position_of(kiosk.id) != KIOSK_POSITION:
        raise Forbidden("only the citizen answers")
    if call.recording != "asked":
        raise InvalidState("nobody asked to record this call")
    return _set_recording(s, call, kiosk.id, "on" if accept else "off")


def stop_recording(s: Snapshot, account: Account) -> Decision:
    """Either side stops the recording (or withdraws the request)."""
    right = Right.TAKE_PART if account.role is Role.KIOSK else Right.SHARE
    call = call_for(s, account, right, "a call is recorded while it is going on")
    if call.recording == "off":
        d = Decision()
        d.reply = _view_of(s, call, account.id)
        return d
    return _set_recording(s, call, account.id, "off")


def _set_recording(s: Snapshot, call: LiveCall, actor_id: str, state: str) -> Decision:
    d = Decision()
    after = dataclasses.replace(call, recording=state)
    d.put(after)
    if state == "on":
        d.effects.append(RecordMedia(call.id, call.relay, True))
    elif call.recording == "on":
        d.effects.append(RecordMedia(call.id, call.relay, False))
    _tell_everyone(d, s, after, actor_id)
    d.reply = _view_of(s, after, actor_id)
    return d


# -- invitations


def _closed_view(
    call_id: str,
    invitation_id: str,
    department: str,
    note: str | None,
    created_at: float,
    state: InvitationState,
) -> InvitationView:
    return InvitationView(
        invitation_id=invitation_id,
        consultation_id=call_id,
        department=department,
        state=state,
        note=note,
        created_at=created_at,
    )


def invite(
    s: Snapshot,
    expert: Account,
    invitation_id: str,
    department: str,
    note: str,
    remote: str,
    *,
    recorded: bool = False,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """An expert in the call invites a department (or an interpreting pool): the
    invitation waits at the head of its queue and rings its staff like an offer. At
    most one open invitation per department, and participants and open invitations
    together at most four."""
    call = call_for(s, expert, Right.INVITE, "invitations are made during the call")
    if expert.department is None or call.seat_of(expert.id) is None:
        raise InvalidState("you are not taking part in this call")
    if not recorded:
        if any(ref.department == department for ref in call.invitations):
            raise InvalidState("an invitation to that department is open already")
        if 1 + len(call.seats) + len(call.invitations) >= MAX_PARTICIPANTS:
            raise CallFull("four take part in this call (or are invited) already")
    invitation = LiveInvitation(
        id=invitation_id,
        call_id=call.id,
        department=department,
        note=note or None,
        created_at=s.now,
        by_id=expert.id,
        by_username=expert.username,
        by_name=expert.display_name,
        by_department=expert.department,
    )
    d = Decision()
    if not recorded:
        d.record = AuditOnly(
            _audit(
                expert.username,
                "consultation.invite",
                call.id,
                remote,
                department=department,
                invitation=invitation_id,
            )
        )
    after = dataclasses.replace(call, invitations=(*call.invitations, invitation.ref()))
    d.put(invitation)
    d.put(after)
    d.commit.queue_add.append((department, invitation_id, head_of_queue(s.now)))
    d.commit.deadlines_set[deadline_key("iwait", invitation_id)] = s.now + config.no_expert_wait
    view = invitation_view(call.id, invitation)
    _tell_staff(d, after, view, None, expert.id)
    # The inviter's acting socket too: its ack is the invitation, not the call.
    _tell_everyone(d, _with(s, invitation), after)
    _follow_ups(d, department)
    d.reply = view
    return d


def _with(s: Snapshot, invitation: LiveInvitation) -> Snapshot:
    """The snapshot as the call's views should show ``invitation`` now."""
    return dataclasses.replace(s, invitations={**s.invitations, invitation.id: invitation})


def _invitation_ends(
    d: Decision,
    s: Snapshot,
    invitation: LiveInvitation,
    state: InvitationState,
    actor_id: str | None = None,
) -> InvitationView:
    """The invitation is over (cancelled, expired): gone from the queue and the call,
    whoever it rang for told, the inviter and the call's staff told, everyone's view
    updated."""
    _close_invitation(d, s, invitation.id, invitation.department, invitation, "cancelled")
    view = invitation_view(invitation.call_id, invitation, state)
    call = s.call
    if call is not None and call.id == invitation.call_id:
        after = dataclasses.replace(
            call, invitations=tuple(r for r in call.invitations if r.id != invitation.id)
        )
        d.put(after)
        _tell_staff(d, after, view, invitation.by_id, actor_id)
        _tell_everyone(d, s, after)
    else:
        d.notify(invitation.by_id, "invitation", view, not_actor=invitation.by_id == actor_id)
    return view


def cancel_invitation(s: Snapshot, expert: Account, invitation_id: str, remote: str) -> Decision:
    """Its inviter takes an open invitation back."""
    invitation = s.invitations.get(invitation_id)
    if invitation is None or invitation.by_id != expert.id:
        raise NotFound("no open invitation with this id of yours")
    d = Decision(
        record=AuditOnly(
            _audit(
                expert.username,
                "consultation.invite_cancel",
                invitation.call_id,
                remote,
                department=invitation.department,
                invitation=invitation_id,
            )
        )
    )
    d.reply = _invitation_ends(d, s, invitation, "cancelled", expert.id)
    return d


def offer_invitation(
    s: Snapshot, invitation_id: str, staff_id: str, config: SignalingConfig
) -> Decision:
    """Dispatch: ring the invitation for this staff member, if both are still as
    planned (nobody already in the call, nobody rung for it before)."""
    invitation = s.invitations.get(invitation_id)
    call = s.call
    presence = s.presence(staff_id)
    d = Decision()
    if (
        invitation is None
        or invitation.phase is not Phase.WAITING
        or presence is None
        or not presence.free
        or presence.department != invitation.department
        or call is None
        or call.id != invitation.call_id
        or call.phase is not Phase.ACTIVE
        or staff_id in call.participant_ids
        or staff_id in invitation.rung
    ):
        return d
    offered = dataclasses.replace(
        invitation, phase=Phase.OFFERED, expert_id=staff_id, offered_at=s.now
    )
    d.put(offered)
    d.put(dataclasses.replace(presence, offer=invitation.id))
    d.commit.deadlines_set[deadline_key("iring", invitation.id)] = s.now + config.ring_timeout
    d.notify(staff_id, "offer", invitation_offer_view(offered, call, config.ring_timeout))
    _tell_staff(d, call, invitation_view(call.id, offered), invitation.by_id)
    return d


def accept_invitation(
    s: Snapshot,
    staff: Account,
    invitation_id: str,
    token: str,
    remote: str,
    *,
    recorded: bool = False,
    department_names: tuple[str, str] | None = None,
) -> Decision:
    """The staff member rung for an invitation takes it: they join the call at its
    lowest free position, with a media token of their own; everyone is told."""
    invitation = s.invitations.get(invitation_id)
    call = s.call
    if not recorded:
        if invitation is None or invitation.department != staff.department:
            raise NotFound("no invitation with this id for you")
        if invitation.phase is not Phase.OFFERED or invitation.expert_id != staff.id:
            raise InvalidState("this invitation is not ringing for you")
    if call is None or call.phase is not Phase.ACTIVE or staff.department is None:
        if recorded:
            return Decision()
        raise InvalidState("the call has ended")
    if call.seat_of(staff.id) is not None:
        return Decision(reply=_view_of(s, call, staff.id))  # the records' retry: done
    position = call.free_position()
    if position is None:
        raise CallFull("four take part in this call already")
    role = StaffRole.INTERPRETER if staff.role is Role.INTERPRETER else StaffRole.EXPERT
    d = Decision()
    by = invitation.by_username if invitation is not None else ""
    note = invitation.note if invitation is not None else None
    if not recorded:
        d.record = JoinCall(
            call.id,
            staff.id,
            staff.role,
            staff.department,
            position,
            s.now,
            invitation_id,
            by,
            note,
            _audit(
                staff.username,
                "consultation.join",
                call.id,
                remote,
                invitation=invitation_id,
                position=position,
                role=role.value,
                department=staff.department,
            ),
        )
    seat = Seat(
        position,
        staff.id,
        staff.username,
        role,
        staff.department,
        s.now,
        staff.display_name,
        department_names[0] if department_names else None,
        department_names[1] if department_names else None,
    )
    tokens = dict(call.media_tokens)
    tokens[seat_name(position)] = token
    after = dataclasses.replace(
        call,
        seats=(*call.seats, seat),
        invitations=tuple(r for r in call.invitations if r.id != invitation_id),
        media_tokens=tuple(sorted(tokens.items())),
    )
    d.put(after)
    d.put(OpenCall(staff.id, call.id))
    if invitation is not None:
        d.delete(invitation_key(invitation_id))
        d.commit.queue_remove.append((invitation.department, invitation_id))
        d.commit.deadlines_clear += [
            deadline_key("iring", invitation_id),
            deadline_key("iwait", invitation_id),
        ]
        if invitation.expert_id not in (None, staff.id):
            # Ringing for a colleague meanwhile: the records say this one took it.
            _close_invitation(d, s, invitation_id, invitation.department, invitation, "ended")
        # The inviter and the staff who were in the call (the joiner has its ack).
        _tell_staff(d, call, invitation_view(call.id, invitation, "accepted"), invitation.by_id)
    presence = s.presence(staff.id)
    if presence is not None:
        busy = dataclasses.replace(
            presence, offer=None, call=call.id, missed_in_a_row=0, status=PresenceStatus.BUSY
        )
        d.put(busy)
        d.notify(staff.id, "presence", presence_view(busy))
    _tell_everyone(d, s, after, staff.id)
    d.reply = consultation_view(after, position)
    return d


def _invitation_back(
    d: Decision,
    s: Snapshot,
    invitation: LiveInvitation,
    reason: RevokeReason,
    config: SignalingConfig,
    *,
    missed: bool = False,
    declined: bool = False,
    may_expire: bool = True,
) -> None:
    """An invitation whose ring was not answered: counted against whoever was rung
    (as an offer), then rung to the next staff member, or over (expired) when every
    one available has been rung, or its wait has run out."""
    staff_id = invitation.expert_id
    assert staff_id is not None
    back = dataclasses.replace(
        invitation,
        phase=Phase.WAITING,
        expert_id=None,
        offered_at=None,
        missed_by=(*invitation.missed_by, staff_id) if missed else invitation.missed_by,
        declined_by=(*invitation.declined_by, staff_id) if declined else invitation.declined_by,
    )
    d.commit.deadlines_clear.append(deadline_key("iring", invitation.id))
    d.notify(
        staff_id,
        "offer_revoked",
        OfferRevoked(
            consultation_id=invitation.call_id, reason=reason, invitation_id=invitation.id
        ),
        not_actor=declined,
    )
    presence = s.presence(staff_id)
    if presence is not None and presence.offer == invitation.id:
        changed = _missed_or_declined(d, s, presence, config, missed=missed, declined=declined)
        if not changed.online:
            d.effects.append(ArmNoExpert(presence.department))
    call = s.call
    in_call = set(call.participant_ids) if call is not None else set()
    left = [
        p
        for p in s.department_staff
        if p.free and p.expert_id not in back.rung and p.expert_id not in in_call
    ]
    waited_out = s.now >= invitation.created_at + config.no_expert_wait - 0.001
    if may_expire and (not left or waited_out):
        _invitation_ends(d, s, back, "expired")
        return
    d.put(back)
    if call is not None:
        state: InvitationState = "declined" if declined else "waiting"
        _tell_staff(d, call, invitation_view(call.id, back, state), invitation.by_id)
    _follow_ups(d, invitation.department)


def decline_invitation(
    s: Snapshot, staff: Account, invitation_id: str, config: SignalingConfig
) -> Decision:
    """The staff member rung declines: the next one is rung (or it expires)."""
    invitation = s.invitations.get(invitation_id)
    if invitation is None or invitation.department != staff.department:
        raise NotFound("no invitation with this id for you")
    if invitation.phase is not Phase.OFFERED or invitation.expert_id != staff.id:
        raise InvalidState("this invitation is not ringing for you")
    d = Decision()
    _invitation_back(d, s, invitation, "declined", config, declined=True)
    return d


def invitation_ring_timeout(s: Snapshot, invitation_id: str, config: SignalingConfig) -> Decision:
    """Nobody answered the invitation's ring in time."""
    invitation = s.invitations.get(invitation_id)
    d = Decision()
    if (
        invitation is None
        or invitation.phase is not Phase.OFFERED
        or invitation.offered_at is None
        or s.now < invitation.offered_at + config.ring_timeout - 0.001
    ):
        return d
    _invitation_back(d, s, invitation, "timeout", config, missed=True)
    return d


def invitation_wait_expired(s: Snapshot, invitation_id: str, config: SignalingConfig) -> Decision:
    """Nobody took the invitation within ``no_expert_wait``: it expires (one ringing
    now is decided by its ring)."""
    invitation = s.invitations.get(invitation_id)
    d = Decision()
    if (
        invitation is None
        or invitation.phase is not Phase.WAITING
        or s.now < invitation.created_at + config.no_expert_wait - 0.001
    ):
        return d
    _invitation_ends(d, s, invitation, "expired")
    return d


# ---- connections, media, deadlines ----------------------------------------------------


def _in_call(call: LiveCall) -> bool:
    """Whether the call is going on for those in it: active, or being transferred."""
    return call.phase is Phase.ACTIVE or call.in_transfer


def _role_of(call: LiveCall, position: int) -> str:
    if position == KIOSK_POSITION:
        return "kiosk"
    seat = call.seat_at(position)
    return seat.role.value if seat is not None else "expert"


def _tell_others(d: Decision, call: LiveCall, account_id: str, status: PeerStatus) -> None:
    for other in call.participant_ids:
        if other != account_id:
            d.notify(other, "peer_status", status)


def participant_left(s: Snapshot, account_id: str, key: str, config: SignalingConfig) -> Decision:
    """A participant's socket (``kiosk``/``expert``/``p2``...) or media
    (``media:kiosk``...) went away: its grace period starts, and the others are told."""
    call = s.call
    d = Decision()
    if call is None or call.dropped_since(key) is not None:
        return d
    position = position_of_name(key.removeprefix("media:"))
    if position is None or call.account_at(position) != account_id:
        return d
    if (key.startswith("media:") or position != KIOSK_POSITION) and not _in_call(call):
        return d
    d.put(call.with_dropped(key, s.now))
    d.commit.deadlines_set[deadline_key("grace", call.id, key)] = s.now + config.grace_period
    if _in_call(call):
        _tell_others(
            d,
            call,
            account_id,
            PeerStatus(
                consultation_id=call.id,
                side=_role_of(call, position),
                status="reconnecting",
                grace_s=config.grace_period,
                position=position,
            ),
        )
    return d


def participant_returned(s: Snapshot, account_id: str, key: str) -> Decision:
    """It came back within the grace period: the call goes on; everyone resyncs."""
    call = s.call
    d = Decision()
    if call is None:
        return d
    position = position_of_name(key.removeprefix("media:"))
    if position is None or call.account_at(position) != account_id:
        return d
    if call.dropped_since(key) is not None:
        d.put(call.without_dropped(key))
        d.commit.deadlines_clear.append(deadline_key("grace", call.id, key))
        if _in_call(call):
            _tell_others(
                d,
                call,
                account_id,
                PeerStatus(
                    consultation_id=call.id,
                    side=_role_of(call, position),
                    status="connected",
                    position=position,
                ),
            )
    if not key.startswith("media:"):
        d.notify(account_id, "consultation", _view_of(s, call, account_id))
    return d


def grace_expired(
    s: Snapshot,
    key: str,
    *,
    recorded: bool = False,
    config: SignalingConfig = DEFAULTS,
) -> Decision:
    """A socket or media that did not come back in time: a citizen who walks away from
    the queue has abandoned it; a call that loses its citizen or its last expert has
    dropped; a staff member lost while an expert stays leaves the call (dropped)."""
    call = s.call
    if call is None or (call.dropped_since(key) is None and not recorded):
        return Decision()
    position = position_of_name(key.removeprefix("media:"))
    seat = call.seat_at(position) if position not in (None, KIOSK_POSITION) else None
    gone = seat.account_id if seat is not None and not key.startswith("media:") else None
    if seat is not None and (
        seat.role is not StaffRole.EXPERT
        or call.phase is not Phase.ACTIVE
        or any(e.account_id != seat.account_id for e in call.experts)
    ):
        return _part_ends(
            s, call, seat, LegEnd.DROPPED, "system", "", recorded=recorded, gone=gone, config=config
        )
    reason = EndReason.DROPPED if call.phase is Phase.ACTIVE else EndReason.ABANDONED
    return finish(s, reason, "system", recorded=recorded, gone=gone, config=config)


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
    if call is None or not _in_call(call):
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
    inviting = s.invitations.get(presence.offer or "")
    if status is PresenceStatus.AWAY and inviting is not None:
        _ring_stops(d, s, inviting, config)
        presence = dataclasses.replace(presence, offer=None)
    _register(d, presence, existing is not None)
    d.reply = presence_view(presence)
    d.notify(expert.id, "presence", presence_view(presence), not_actor=True)
    if was_online and not presence.online:
        d.effects.append(ArmNoExpert(presence.department))
    _follow_ups(d, presence.department)
    return d


def _ring_stops(
    d: Decision, s: Snapshot, invitation: LiveInvitation, config: SignalingConfig
) -> None:
    """The staff member an invitation rings for went away or offline: it waits for the
    next (its wait bounds how long); their presence is the caller's to change."""
    if invitation.phase is not Phase.OFFERED or invitation.expert_id is None:
        return
    call = s.calls.get(invitation.call_id)
    back = dataclasses.replace(
        invitation,
        phase=Phase.WAITING,
        expert_id=None,
        offered_at=None,
        declined_by=(*invitation.declined_by, invitation.expert_id),
    )
    d.put(back)
    d.commit.deadlines_clear.append(deadline_key("iring", invitation.id))
    d.notify(
        invitation.expert_id,
        "offer_revoked",
        OfferRevoked(
            consultation_id=invitation.call_id, reason="declined", invitation_id=invitation.id
        ),
    )
    if call is not None:
        _tell_staff(d, call, invitation_view(call.id, back), invitation.by_id)
    _follow_ups(d, invitation.department)


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
    inviting = s.invitations.get(presence.offer or "")
    if inviting is not None:
        _ring_stops(d, s, inviting, config)
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
    waiting: Sequence[LiveCall | LiveInvitation], presences: Sequence[ExpertPresence]
) -> list[tuple[str, str]]:
    """(queued, expert) pairs to ring: each waiting consultation or invitation, in the
    queue's order (invitations and transfers first), to the best free staff member
    (``signaling.queue.pick_expert``)."""
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
