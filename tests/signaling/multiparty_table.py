"""Calls of more than two (issue 21) as one table, beside ``transition_table`` and
shared in the same way by the pure tests and the executor tests
(``tests/signaling/test_multiparty_transitions.py``): invitations (made, rung, taken,
declined, rung out, waited out, cancelled), joining, leaving (the lead passing on, the
last expert ending the call), a staff member's drop, transfers, screen sharing.

A row is a named live state built for a cast, an event, and what must come of it:
the call's label (phase, positions taken, screen, transfer, open invitations), the
invitation's label, the presences that change, the other store changes, the effects,
the record written; or the error that refuses the event.
"""

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from signaling import transitions
from signaling.config import SignalingConfig
from signaling.effects import (
    ArmNoExpert,
    AuditOnly,
    CloseLeg,
    CloseRelay,
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
    ResumeCall,
    TransferCall,
)
from signaling.errors import CallFull, Forbidden, InvalidState, NotFound, SignalingError
from signaling.executor import Executor, Reads
from signaling.live import (
    ExpertPresence,
    InvitationRef,
    Live,
    LiveCall,
    LiveInvitation,
    OpenCall,
    Phase,
    PresenceStatus,
    Seat,
    StaffRole,
    Transfer,
    key_of,
)
from signaling.service import ConsultationService, PresenceService
from signaling.store import Commit
from signaling.transitions import GRACE_KEYS, Snapshot, deadline_key, head_of_queue
from storage.records import Account, Role

CALL = "c0ffee0000000021"
INV = "i-0000000000000021"
"""The invitation the states hold."""
NEW_INV = "i-0000000000000022"
"""The one an invite makes (in the pure tests; the service picks its own)."""
DEPT = "tax"
LAND = "land"
POOL = "lang"
REMOTE = "192.0.2.21"
TOKENS = {"kiosk": "tok-kiosk", "expert": "tok-expert", "p2": "tok-p2", "p3": "tok-p3"}

CONFIG = SignalingConfig(
    ring_timeout=20.0,
    grace_period=30.0,
    no_expert_wait=120.0,
    missed_offers_before_away=2,
    wrap_up_limit=10.0,
)
T_IDLE = 900.0
T_WAIT = 900.0
T_ACTIVE = 905.0
T_INVITE = 1000.0
T_JOIN = 1002.0
T_RING = 1010.0
T_TRANSFER = 1012.0
T_DROP = 1020.0
NOW = 1030.0
"""Every event happens now: a ring from T_RING is due, an invitation made at T_INVITE
has not waited out (its wait is due at T_INVITE + 120)."""
LATE = T_INVITE + CONFIG.no_expert_wait
"""When the invitation of the states has waited out."""

# ---- the cast --------------------------------------------------------------------------

CAST_NAMES = ("kiosk", "expert", "expert2", "outsider", "outsider2", "interpreter", "admin")

# (username, role, department, hall, display name) of each, in CAST_NAMES order.
CAST_ACCOUNTS: dict[str, tuple[str, Role, str | None, str | None, str]] = {
    "kiosk": ("kiosk21", Role.KIOSK, None, "hall-21", "一号终端"),
    "expert": ("expert_tax", Role.EXPERT, DEPT, None, "税务专家"),
    "expert2": ("expert_tax2", Role.EXPERT, DEPT, None, "税务专家二"),
    "outsider": ("expert_land", Role.EXPERT, LAND, None, "不动产专家"),
    "outsider2": ("expert_land2", Role.EXPERT, LAND, None, "不动产专家二"),
    "interpreter": ("interpreter21", Role.INTERPRETER, POOL, None, "手语翻译"),
    "admin": ("admin21", Role.ADMIN, None, None, "管理员"),
}


@dataclass(frozen=True)
class Cast:
    """A kiosk; two experts of the call's department (tax); two of another (land),
    which tax may transfer to; an interpreter of the pool (lang); an admin."""

    accounts: Mapping[str, Account]

    def named(self, name: str) -> Account:
        return self.accounts[name]

    def name_of(self, account_id: str) -> str:
        for name, account in self.accounts.items():
            if account.id == account_id:
                return name
        raise KeyError(account_id)


FIXED_CAST = Cast(
    {
        name: Account(f"id-{name}", username, role, department, hall, display, False, 0.0)
        for name, (username, role, department, hall, display) in CAST_ACCOUNTS.items()
    }
)

# ---- the states ------------------------------------------------------------------------


def seat(c: Cast, name: str, position: int, joined_at: float = T_JOIN) -> Seat:
    account = c.named(name)
    assert account.department is not None
    role = StaffRole.INTERPRETER if account.role is Role.INTERPRETER else StaffRole.EXPERT
    return Seat(
        position,
        account.id,
        account.username,
        role,
        account.department,
        joined_at,
        account.display_name,
    )


def call(c: Cast, *seated: tuple[str, int], **changes: Any) -> LiveCall:
    """The active call of the kiosk with ``c.expert`` at 1 and ``seated`` (name,
    position) joined."""
    seats = (seat(c, "expert", 1, T_ACTIVE), *(seat(c, n, p) for n, p in seated))
    names = ["kiosk", "expert", *(f"p{p}" for _, p in seated)]
    value = LiveCall(
        id=CALL,
        department=DEPT,
        kiosk_id=c.named("kiosk").id,
        kiosk_username=c.named("kiosk").username,
        hall="hall-21",
        case_number="SL-21",
        phase=Phase.ACTIVE,
        waiting_since=T_WAIT,
        expert_id=c.named("expert").id,
        expert_username=c.named("expert").username,
        offered_at=T_WAIT,
        active_at=T_ACTIVE,
        media_tokens=tuple((n, TOKENS[n]) for n in names),
        relay="relay-1",
        seats=seats,
    )
    return dataclasses.replace(value, **changes)


def invitation(c: Cast, department: str = LAND, **changes: Any) -> LiveInvitation:
    expert = c.named("expert")
    value = LiveInvitation(
        id=INV,
        call_id=CALL,
        department=department,
        note="请会商",
        created_at=T_INVITE,
        by_id=expert.id,
        by_username=expert.username,
        by_name=expert.display_name,
        by_department=DEPT,
    )
    return dataclasses.replace(value, **changes)


def ref(c: Cast, department: str = LAND) -> InvitationRef:
    return invitation(c, department).ref()


def presence(c: Cast, name: str, status: PresenceStatus, **changes: Any) -> ExpertPresence:
    account = c.named(name)
    assert account.department is not None
    value = ExpertPresence(
        expert_id=account.id,
        username=account.username,
        department=account.department,
        status=status,
        idle_since=T_IDLE,
    )
    return dataclasses.replace(value, **changes)


def in_call(c: Cast, name: str) -> OpenCall:
    return OpenCall(c.named(name).id, CALL)


AVAILABLE = PresenceStatus.AVAILABLE
AWAY = PresenceStatus.AWAY
BUSY = PresenceStatus.BUSY
OFFLINE = PresenceStatus.OFFLINE


def transferred(c: Cast, **changes: Any) -> LiveCall:
    """Handed by c.expert to land, the interpreter staying at 2."""
    value = dataclasses.replace(
        call(c, ("interpreter", 2)),
        phase=Phase.WAITING,
        department=LAND,
        expert_id=None,
        expert_username=None,
        offered_at=None,
        seats=(seat(c, "interpreter", 2),),
        media_tokens=(("kiosk", TOKENS["kiosk"]), ("p2", TOKENS["p2"])),
        transfer=Transfer(LAND, "需不动产登记", "expert_tax", "税务专家", DEPT, T_TRANSFER),
    )
    return dataclasses.replace(value, **changes)


def _staff(c: Cast, **status: PresenceStatus) -> tuple[ExpertPresence, ...]:
    """The desks not in the call: available unless said otherwise."""
    defaults = {
        "expert2": AVAILABLE,
        "outsider": AVAILABLE,
        "outsider2": AWAY,
        "interpreter": AVAILABLE,
    }
    return tuple(presence(c, n, s) for n, s in {**defaults, **status}.items())


State = Callable[[Cast], tuple[Live, ...]]

STATES: dict[str, State] = {
    "two": lambda c: (
        call(c),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
    ),
    "inviting land": lambda c: (
        call(c, invitations=(ref(c),)),
        invitation(c),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
    ),
    "ringing outsider": lambda c: (
        call(c, invitations=(ref(c),)),
        invitation(c, phase=Phase.OFFERED, expert_id=c.named("outsider").id, offered_at=T_RING),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
        presence(c, "outsider", AVAILABLE, offer=INV),
    ),
    "ringing outsider, outsider2 available": lambda c: (
        call(c, invitations=(ref(c),)),
        invitation(c, phase=Phase.OFFERED, expert_id=c.named("outsider").id, offered_at=T_RING),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c, outsider2=AVAILABLE),
        presence(c, "outsider", AVAILABLE, offer=INV),
    ),
    "three": lambda c: (
        call(c, ("outsider", 2)),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        in_call(c, "outsider"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
        presence(c, "outsider", BUSY, call=CALL),
    ),
    "three, outsider sharing": lambda c: (
        call(c, ("outsider", 2), screen=2),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        in_call(c, "outsider"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
        presence(c, "outsider", BUSY, call=CALL),
    ),
    "three, outsider offline": lambda c: (
        call(c, ("outsider", 2), dropped=(("p2", T_DROP),)),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        in_call(c, "outsider"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
        presence(c, "outsider", OFFLINE, call=CALL, status_before_drop=AVAILABLE),
    ),
    "three, inviting the pool": lambda c: (
        call(c, ("outsider", 2), invitations=(ref(c, POOL),)),
        invitation(c, POOL),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        in_call(c, "outsider"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
        presence(c, "outsider", BUSY, call=CALL),
    ),
    "four": lambda c: (
        call(c, ("outsider", 2), ("interpreter", 3)),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        in_call(c, "outsider"),
        in_call(c, "interpreter"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
        presence(c, "outsider", BUSY, call=CALL),
        presence(c, "interpreter", BUSY, call=CALL),
    ),
    "with interpreter": lambda c: (
        call(c, ("interpreter", 2)),
        in_call(c, "kiosk"),
        in_call(c, "expert"),
        in_call(c, "interpreter"),
        presence(c, "expert", BUSY, call=CALL),
        *_staff(c),
        presence(c, "interpreter", BUSY, call=CALL),
    ),
    "transferred": lambda c: (
        transferred(c),
        in_call(c, "kiosk"),
        in_call(c, "interpreter"),
        *_staff(c),
        presence(c, "interpreter", BUSY, call=CALL),
    ),
    "transferred, ringing outsider": lambda c: (
        transferred(
            c,
            phase=Phase.OFFERED,
            expert_id=c.named("outsider").id,
            expert_username=c.named("outsider").username,
            offered_at=T_RING,
        ),
        in_call(c, "kiosk"),
        in_call(c, "interpreter"),
        *_staff(c),
        presence(c, "outsider", AVAILABLE, offer=CALL),
        presence(c, "interpreter", BUSY, call=CALL),
    ),
}


def state_of(name: str, cast: Cast) -> dict[str, Live]:
    return {key_of(value): value for value in STATES[name](cast)}


def seed_commit(values: Iterable[Live], config: SignalingConfig = CONFIG) -> Commit:
    """What goes with these values in the store: queue entries, expert sets, deadlines."""
    commit = Commit(put={key_of(v): v for v in values})
    for value in commit.put.values():
        if isinstance(value, LiveCall):
            if value.phase is not Phase.ACTIVE:
                commit.queue_add.append((value.department, value.id, head_of_queue(T_TRANSFER)))
                commit.deadlines_set[deadline_key("noexpert", value.id)] = (
                    T_TRANSFER + config.no_expert_wait
                )
            if value.phase is Phase.OFFERED and value.offered_at is not None:
                commit.deadlines_set[deadline_key("ring", value.id)] = (
                    value.offered_at + config.ring_timeout
                )
            for key, since in value.dropped:
                commit.deadlines_set[deadline_key("grace", value.id, key)] = (
                    since + config.grace_period
                )
        elif isinstance(value, LiveInvitation):
            commit.queue_add.append((value.department, value.id, head_of_queue(value.created_at)))
            commit.deadlines_set[deadline_key("iwait", value.id)] = (
                value.created_at + config.no_expert_wait
            )
            if value.offered_at is not None:
                commit.deadlines_set[deadline_key("iring", value.id)] = (
                    value.offered_at + config.ring_timeout
                )
        elif isinstance(value, ExpertPresence):
            commit.members_add.append((f"experts:{value.department}", value.expert_id))
            if value.status is PresenceStatus.OFFLINE:
                commit.deadlines_set[deadline_key("offline", value.expert_id)] = (
                    T_DROP + config.grace_period
                )
    return commit


def snapshot(values: Mapping[str, Live], now: float = NOW) -> Snapshot:
    """What the executor would read for any event of the table (a superset)."""
    calls = {v.id: v for v in values.values() if isinstance(v, LiveCall)}
    presences = {v.expert_id: v for v in values.values() if isinstance(v, ExpertPresence)}
    invitations = {v.id: v for v in values.values() if isinstance(v, LiveInvitation)}
    the_call = calls.get(CALL)
    department = the_call.department if the_call else DEPT
    invited = next(iter(invitations.values()), None)
    return Snapshot(
        now=now,
        call=the_call,
        presences=presences,
        open_calls={v.account_id: v for v in values.values() if isinstance(v, OpenCall)},
        calls=calls,
        online_in_department=sum(
            1 for p in presences.values() if p.department == department and p.online
        ),
        invitations=invitations,
        department_staff=[
            p for p in presences.values() if invited and p.department == invited.department
        ],
    )


# ---- the events ------------------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    executor: Executor
    consultations: ConsultationService
    presence: PresenceService


@dataclass(frozen=True)
class Event:
    name: str
    decide: Callable[[Snapshot, Cast, bool], Decision]
    run: Callable[[Services, Cast], Awaitable[object]]
    now: float = NOW


def invite(who: str = "expert", department: str = LAND) -> Event:
    return Event(
        f"{who} invites {department}",
        lambda s, c, r: transitions.invite(
            s, c.named(who), NEW_INV, department, "请会商", REMOTE, recorded=r, config=CONFIG
        ),
        lambda sv, c: sv.consultations.invite(c.named(who), CALL, department, "请会商", REMOTE),
    )


def cancel_invite(who: str = "expert") -> Event:
    return Event(
        f"{who} cancels the invitation",
        lambda s, c, _r: transitions.cancel_invitation(s, c.named(who), INV, REMOTE),
        lambda sv, c: sv.consultations.cancel_invitation(c.named(who), INV, REMOTE),
    )


def offer_invitation(to: str) -> Event:
    def run(sv: Services, c: Cast) -> Awaitable[object]:
        staff_id = c.named(to).id
        return sv.executor.run(
            Reads(invitation_id=INV, experts=(staff_id,)),
            lambda s, _r: transitions.offer_invitation(s, INV, staff_id, CONFIG),
        )

    return Event(
        f"invitation rings {to}",
        lambda s, c, _r: transitions.offer_invitation(s, INV, c.named(to).id, CONFIG),
        run,
    )


def accept_invitation(who: str) -> Event:
    return Event(
        f"{who} accepts the invitation",
        lambda s, c, r: transitions.accept_invitation(
            s, c.named(who), INV, "tok-new", REMOTE, recorded=r
        ),
        lambda sv, c: sv.consultations.accept_invitation(c.named(who), INV, REMOTE),
    )


def decline_invitation(who: str) -> Event:
    return Event(
        f"{who} declines the invitation",
        lambda s, c, _r: transitions.decline_invitation(s, c.named(who), INV, CONFIG),
        lambda sv, c: sv.consultations.decline_invitation(c.named(who), INV),
    )


def invitation_rang_out() -> Event:
    return Event(
        "invitation rings out",
        lambda s, c, _r: transitions.invitation_ring_timeout(s, INV, CONFIG),
        lambda sv, c: sv.consultations.on_deadline(deadline_key("iring", INV)),
    )


def invitation_waited_out(now: float = LATE) -> Event:
    return Event(
        "invitation waits out" if now >= LATE else "invitation's wait, early",
        lambda s, c, _r: transitions.invitation_wait_expired(s, INV, CONFIG),
        lambda sv, c: sv.consultations.on_deadline(deadline_key("iwait", INV)),
        now,
    )


def leave(who: str) -> Event:
    return Event(
        f"{who} leaves",
        lambda s, c, r: transitions.leave(s, c.named(who), REMOTE, recorded=r, config=CONFIG),
        lambda sv, c: sv.consultations.leave(c.named(who), CALL, REMOTE),
    )


def transfer(who: str = "expert", department: str = LAND) -> Event:
    allowed = department == LAND  # tax may transfer to land only (the template says so)
    return Event(
        f"{who} transfers to {department}",
        lambda s, c, r: transitions.transfer(
            s, c.named(who), department, "需不动产登记", allowed, REMOTE, recorded=r, config=CONFIG
        ),
        lambda sv, c: sv.consultations.transfer(
            c.named(who), CALL, department, "需不动产登记", REMOTE
        ),
    )


def share(who: str, sharing: bool = True) -> Event:
    return Event(
        f"{who} {'shares' if sharing else 'stops sharing'}",
        lambda s, c, _r: transitions.share_screen(s, c.named(who), sharing),
        lambda sv, c: sv.consultations.share_screen(c.named(who), CALL, sharing),
    )


def accept(who: str) -> Event:
    return Event(
        f"{who} accepts",
        lambda s, c, r: transitions.accept(s, c.named(who), TOKENS, REMOTE, recorded=r),
        lambda sv, c: sv.consultations.accept(c.named(who), CALL, REMOTE),
    )


def end(who: str) -> Event:
    return Event(
        f"{who} ends",
        lambda s, c, r: transitions.end(s, c.named(who), REMOTE, recorded=r, config=CONFIG),
        lambda sv, c: sv.consultations.end(c.named(who), CALL, REMOTE),
    )


def left(who: str, key: str) -> Event:
    return Event(
        f"{key} of {who} lost",
        lambda s, c, _r: transitions.participant_left(s, c.named(who).id, key, CONFIG),
        lambda sv, c: (
            sv.consultations.participant_changed(c.named(who).id, False)
            if not key.startswith("media:")
            else sv.consultations.media_changed(CALL, key.removeprefix("media:"), "lost")
        ),
    )


def returned(who: str, key: str) -> Event:
    return Event(
        f"{key} of {who} back",
        lambda s, c, _r: transitions.participant_returned(s, c.named(who).id, key),
        lambda sv, c: sv.consultations.participant_changed(c.named(who).id, True),
    )


def grace_expired(key: str) -> Event:
    return Event(
        f"grace of {key} expired",
        lambda s, c, r: transitions.grace_expired(s, key, recorded=r, config=CONFIG),
        lambda sv, c: sv.consultations.on_deadline(deadline_key("grace", CALL, key)),
    )


# ---- the rows --------------------------------------------------------------------------

SAME = "same"


@dataclass(frozen=True)
class Row:
    state: str
    event: Event
    call: str = SAME
    """The call after (``call_label``), or "ended <reason>"."""
    invitation: str = SAME
    """The invitation INV after: "waiting", "ringing <name>", "none"."""
    presences: tuple[str, ...] = ()
    """"<name>:<label>" of every presence that changes."""
    changes: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    record: str | None = None
    """"join", "leave", "transfer", "resume", "invite", "invite_cancel", "ended <reason>"."""
    refused: type[SignalingError] | None = None

    @property
    def id(self) -> str:
        return f"{self.state} + {self.event.name}"


def ok(state: str, event: Event, **expected: Any) -> Row:
    return Row(state, event, **expected)


def refused(state: str, event: Event, error: type[SignalingError]) -> Row:
    return Row(state, event, refused=error)


def nothing(state: str, event: Event) -> Row:
    return Row(state, event)


ALL = ("kiosk:consultation", "expert:consultation")
"""The call's two told (as they see it)."""
THREE = (*ALL, "outsider:consultation")
STAFF_TOLD = "expert:invitation"
INVITATION_ENDS = ("-invite", "queue-:land", "-iring", "-iwait")

ROWS: list[Row] = [
    # -- an expert of the call invites a department: at the head of its queue
    ok(
        "two",
        invite(),
        call="active 0,1 +1 invitation",
        invitation="waiting",
        changes=("+invite", "queue+:land", "+iwait"),
        effects=(*ALL, STAFF_TOLD, "dispatch:land", "publish:land"),
        record="invite",
    ),
    refused("two", invite("outsider"), NotFound),
    refused("two", invite("kiosk"), InvalidState),
    refused("transferred", invite("interpreter"), InvalidState),
    refused("inviting land", invite(), InvalidState),
    refused("three, inviting the pool", invite(department=LAND), CallFull),
    refused("four", invite(department="tax"), CallFull),
    # -- dispatch rings a free staff member of that department, once each
    ok(
        "inviting land",
        offer_invitation("outsider"),
        invitation="ringing outsider",
        presences=("outsider:ringing",),
        changes=("+iring",),
        effects=("outsider:offer", STAFF_TOLD),
    ),
    nothing("inviting land", offer_invitation("outsider2")),  # away
    nothing("inviting land", offer_invitation("expert2")),  # another department
    nothing("ringing outsider", offer_invitation("outsider")),
    # -- the one rung takes it: joins at the lowest free position
    ok(
        "ringing outsider",
        accept_invitation("outsider"),
        call="active 0,1,2",
        invitation="none",
        presences=("outsider:busy",),
        changes=("+open:outsider", *INVITATION_ENDS),
        effects=(*THREE, STAFF_TOLD, "outsider:presence"),
        record="join",
    ),
    refused("ringing outsider", accept_invitation("outsider2"), InvalidState),
    refused("ringing outsider", accept_invitation("expert2"), NotFound),
    refused("inviting land", accept_invitation("outsider"), InvalidState),
    refused("two", accept_invitation("outsider"), NotFound),
    # -- declined: the next available one, or nobody left (expired; the call goes on)
    ok(
        "ringing outsider, outsider2 available",
        decline_invitation("outsider"),
        invitation="waiting",
        presences=("outsider:available",),
        changes=("-iring",),
        effects=("outsider:offer_revoked", STAFF_TOLD, "dispatch:land", "publish:land"),
    ),
    ok(
        "ringing outsider",
        decline_invitation("outsider"),
        call="active 0,1",
        invitation="none",
        presences=("outsider:available",),
        changes=INVITATION_ENDS,
        effects=(*ALL, "outsider:offer_revoked", STAFF_TOLD),
    ),
    refused("ringing outsider", decline_invitation("outsider2"), InvalidState),
    # -- rung out: counted against the one rung (as an offer), then as declined
    ok(
        "ringing outsider",
        invitation_rang_out(),
        call="active 0,1",
        invitation="none",
        presences=("outsider:available",),
        changes=INVITATION_ENDS,
        effects=(
            *ALL,
            "outsider:offer_revoked",
            "outsider:presence",
            STAFF_TOLD,
        ),
    ),
    nothing("inviting land", invitation_rang_out()),
    # -- waited out with nobody taking it
    ok(
        "inviting land",
        invitation_waited_out(),
        call="active 0,1",
        invitation="none",
        changes=("-invite", "queue-:land", "-iring", "-iwait"),
        effects=(*ALL, STAFF_TOLD),
    ),
    nothing("inviting land", invitation_waited_out(NOW)),
    nothing("ringing outsider", invitation_waited_out()),
    # -- its inviter takes it back; the one rung is told
    ok(
        "ringing outsider",
        cancel_invite(),
        call="active 0,1",
        invitation="none",
        presences=("outsider:available",),
        changes=INVITATION_ENDS,
        effects=(*ALL, "outsider:offer_revoked", STAFF_TOLD),
        record="invite_cancel",
    ),
    refused("ringing outsider", cancel_invite("expert2"), NotFound),
    refused("two", cancel_invite(), NotFound),
    # -- leaving: the call goes on while the citizen and an expert remain
    ok(
        "three",
        leave("outsider"),
        call="active 0,1",
        presences=("outsider:wrap_up",),
        changes=("-open:outsider", "-grace:p2", "-grace:media:p2", "+wrapup:outsider"),
        effects=(
            *THREE,
            "outsider:presence",
            "close-leg:2",
            "dispatch:land",
            "publish:land",
        ),
        record="leave",
    ),
    ok(
        # The lead leaves: the other expert leads (expert = expert_land).
        "three",
        leave("expert"),
        call="active 0,2 lead outsider",
        presences=("expert:wrap_up",),
        changes=("-open:expert", "-grace:expert", "-grace:media:expert", "+wrapup:expert"),
        effects=(*THREE, "expert:presence", "close-leg:1", "dispatch:tax", "publish:tax"),
        record="leave",
    ),
    ok(
        # An interpreter writes no record: free at once.
        "with interpreter",
        leave("interpreter"),
        call="active 0,1",
        presences=("interpreter:available",),
        changes=("-open:interpreter", "-grace:p2", "-grace:media:p2"),
        effects=(
            *ALL,
            "interpreter:consultation",
            "interpreter:presence",
            "close-leg:2",
            "dispatch:lang",
            "publish:lang",
        ),
        record="leave",
    ),
    ok(
        # The last expert leaving ends the call (an interpreter does not keep it).
        "with interpreter",
        leave("expert"),
        call="ended completed",
        presences=("expert:wrap_up", "interpreter:available"),
        changes=(
            "-open:kiosk",
            "-open:expert",
            "-open:interpreter",
            "queue-:tax",
            "-ring",
            "-noexpert",
            "-grace:*",
            "+wrapup:expert",
            "handle-time",
        ),
        effects=(
            *ALL,
            "interpreter:consultation",
            "expert:presence",
            "interpreter:presence",
            "close-relay",
            "discard-uploads",
            "dispatch:tax",
            "publish:tax",
            "dispatch:lang",
            "publish:lang",
        ),
        record="ended completed",
    ),
    refused("two", leave("outsider"), NotFound),
    refused("two", leave("kiosk"), InvalidState),
    refused("transferred, ringing outsider", leave("outsider"), InvalidState),
    # -- a staff member lost past the grace period leaves (dropped) while an expert stays
    ok(
        "three, outsider offline",
        grace_expired("p2"),
        call="active 0,1",
        presences=("outsider:none",),
        changes=("-open:outsider", "-grace:p2", "-grace:media:p2", "members-:land"),
        effects=(*THREE, "close-leg:2", "dispatch:land", "publish:land"),
        record="leave",
    ),
    ok(
        "three",
        left("outsider", "p2"),
        call="active 0,1,2 (dropped p2)",
        changes=("+grace:p2",),
        effects=("kiosk:peer_status", "expert:peer_status"),
    ),
    ok(
        "three, outsider offline",
        returned("outsider", "p2"),
        call="active 0,1,2",
        changes=("-grace:p2",),
        effects=("kiosk:peer_status", "expert:peer_status", "outsider:consultation"),
    ),
    # -- screens: one at a time, taken over
    ok(
        "three",
        share("expert"),
        call="active 0,1,2 screen 1",
        effects=THREE,
    ),
    ok(
        "three, outsider sharing",
        share("expert"),
        call="active 0,1,2 screen 1",
        effects=THREE,
    ),
    nothing("three, outsider sharing", share("expert", False)),
    ok(
        "three, outsider sharing",
        share("outsider", False),
        call="active 0,1,2",
        effects=THREE,
    ),
    refused("with interpreter", share("interpreter"), InvalidState),
    refused("transferred, ringing outsider", share("outsider"), InvalidState),
    # -- transfer: the expert leaves, the citizen (and the interpreter) wait in land
    ok(
        "with interpreter",
        transfer(),
        call="waiting 0,2 ->land",
        presences=("expert:wrap_up",),
        changes=(
            "-open:expert",
            "queue+:land",
            "+noexpert",
            "-grace:expert",
            "-grace:media:expert",
            "+wrapup:expert",
        ),
        effects=(
            *ALL,
            "interpreter:consultation",
            "expert:presence",
            "close-leg:1",
            "dispatch:tax",
            "publish:tax",
            "dispatch:land",
            "publish:land",
        ),
        record="transfer",
    ),
    ok(
        # Open invitations end with it.
        "inviting land",
        transfer(),
        call="waiting 0 ->land",
        invitation="none",
        presences=("expert:wrap_up",),
        changes=(
            "-open:expert",
            "-invite",
            "queue-:land",
            "-iring",
            "-iwait",
            "queue+:land",
            "+noexpert",
            "-grace:expert",
            "-grace:media:expert",
            "+wrapup:expert",
        ),
        effects=(
            *ALL,
            "expert:invitation",
            "expert:presence",
            "close-leg:1",
            "dispatch:tax",
            "publish:tax",
            "dispatch:land",
            "publish:land",
        ),
        record="transfer",
    ),
    refused("two", transfer(department=POOL), Forbidden),
    refused("three", transfer(), InvalidState),  # another expert is in the call
    refused("transferred", transfer("interpreter"), InvalidState),
    refused("two", transfer("outsider"), NotFound),
    # -- rung in the target department, taken: active again, the newcomer at 1
    ok(
        "transferred",
        Event(
            "land rings outsider",
            lambda s, c, _r: transitions.offer(s, c.named("outsider").id, CONFIG),
            lambda sv, c: sv.executor.run(
                Reads(call_id=CALL, experts=(c.named("outsider").id,)),
                lambda s, _r: transitions.offer(s, c.named("outsider").id, CONFIG),
            ),
        ),
        call="offered 0,2 ->land",
        presences=("outsider:ringing",),
        changes=("+ring",),
        effects=(
            "outsider:offer",
            "kiosk:consultation",
            "interpreter:consultation",
            "publish:land",
        ),
    ),
    ok(
        "transferred, ringing outsider",
        accept("outsider"),
        call="active 0,1,2 lead outsider",
        presences=("outsider:busy",),
        changes=("+open:outsider", "queue-:land", "-ring", "-noexpert"),
        effects=(
            "kiosk:consultation",
            "outsider:consultation",
            "interpreter:consultation",
            "outsider:presence",
            "publish:land",
        ),
        record="resume",
    ),
    refused("transferred, ringing outsider", accept("outsider2"), InvalidState),
    # -- the kiosk waits through the transfer: it may end, not cancel
    ok(
        "transferred",
        end("kiosk"),
        call="ended abandoned",
        presences=("interpreter:available",),
        changes=(
            "-open:kiosk",
            "-open:interpreter",
            "queue-:land",
            "-ring",
            "-noexpert",
            "-grace:*",
        ),
        effects=(
            "kiosk:consultation",
            "interpreter:consultation",
            "interpreter:presence",
            "close-relay",
            "discard-uploads",
            "dispatch:land",
            "publish:land",
            "dispatch:lang",
            "publish:lang",
        ),
        record="ended abandoned",
    ),
    # -- any expert of the call ends it for everyone
    ok(
        "three",
        end("outsider"),
        call="ended completed",
        presences=("expert:wrap_up", "outsider:wrap_up"),
        changes=(
            "-open:kiosk",
            "-open:expert",
            "-open:outsider",
            "queue-:tax",
            "-ring",
            "-noexpert",
            "-grace:*",
            "+wrapup:expert",
            "+wrapup:outsider",
            "handle-time",
        ),
        effects=(
            *THREE,
            "expert:presence",
            "outsider:presence",
            "close-relay",
            "discard-uploads",
            "dispatch:tax",
            "publish:tax",
            "dispatch:land",
            "publish:land",
        ),
        record="ended completed",
    ),
    refused("with interpreter", end("interpreter"), InvalidState),
]

# ---- what a decision amounts to, in the table's terms ----------------------------------


def call_label(value: LiveCall | None, cast: Cast) -> str:
    """Its phase, the positions taken, and what else is so: another lead than the
    expert who answered, a screen shared, a transfer waiting, open invitations, drops."""
    if value is None:
        return "none"
    positions = ",".join(str(p) for p in [0, *(s.position for s in value.seats)])
    label = f"{value.phase.value} {positions}"
    if value.phase is Phase.ACTIVE and value.expert_id not in (None, cast.named("expert").id):
        assert value.expert_id is not None
        label += f" lead {cast.name_of(value.expert_id)}"
    if value.screen is not None:
        label += f" screen {value.screen}"
    if value.in_transfer and value.transfer is not None:
        label += f" ->{value.transfer.department}"
    if value.invitations:
        label += f" +{len(value.invitations)} invitation"
    dropped = ", ".join(k for k, _ in value.dropped)
    return f"{label} (dropped {dropped})" if dropped else label


def invitation_label(value: LiveInvitation | None, cast: Cast) -> str:
    if value is None:
        return "none"
    if value.phase is Phase.OFFERED and value.expert_id is not None:
        return f"ringing {cast.name_of(value.expert_id)}"
    return "waiting"


def presence_label(value: ExpertPresence | None) -> str:
    if value is None:
        return "none"
    if value.offer is not None:
        return "ringing"
    return value.status.value


def presence_changes(
    before: Mapping[str, Live], after: Mapping[str, Live], cast: Cast
) -> list[str]:
    changed = []
    for name in CAST_NAMES:
        key = f"presence:{cast.named(name).id}"
        old, new = before.get(key), after.get(key)
        assert old is None or isinstance(old, ExpertPresence)
        assert new is None or isinstance(new, ExpertPresence)
        if presence_label(old) != presence_label(new):
            changed.append(f"{name}:{presence_label(new)}")
    return sorted(changed)


def _deadline_token(key: str, cast: Cast) -> str:
    kind, *parts = key.split("|")
    if kind == "grace":
        return f"grace:{parts[1]}"
    if kind in ("wrapup", "offline"):
        return f"{kind}:{cast.name_of(parts[0])}"
    return kind


def change_tokens(decision: Decision, cast: Cast) -> list[str]:
    commit = decision.commit
    tokens: list[str] = []
    for key, value in commit.put.items():
        kind, _, name = key.partition(":")
        if kind == "open":
            tokens.append(f"{'+' if value is not None else '-'}open:{cast.name_of(name)}")
        elif kind == "invite" and value is None:
            tokens.append("-invite")
        elif kind == "invite" and name == NEW_INV:
            tokens.append("+invite")
    tokens += [f"queue+:{d}" for d, _i, _s in commit.queue_add]
    # An invitation closed twice in one decision (taken by another) counts once.
    tokens += [f"queue-:{d}" for d, _i in dict.fromkeys(commit.queue_remove)]
    tokens += [f"members+:{m.split(':')[1]}" for m, _ in commit.members_add]
    tokens += [f"members-:{m.split(':')[1]}" for m, _ in commit.members_remove]
    tokens += ["handle-time"] * len(commit.handle_times)
    cleared = list(dict.fromkeys(_deadline_token(k, cast) for k in commit.deadlines_clear))
    every_grace = [f"grace:{k}" for k in GRACE_KEYS]
    if all(g in cleared for g in every_grace):
        cleared = [t for t in cleared if t not in every_grace] + ["grace:*"]
    tokens += [f"-{t}" for t in cleared]
    tokens += [f"+{_deadline_token(k, cast)}" for k in commit.deadlines_set]
    return sorted(tokens)


def effect_token(effect: Effect, cast: Cast) -> str:
    if isinstance(effect, Notify):
        return f"{cast.name_of(effect.account_id)}:{effect.event}"
    if isinstance(effect, Participant):
        return f"participant:{cast.name_of(effect.account_id)}{'+' if effect.connected else '-'}"
    if isinstance(effect, Dispatch):
        return f"dispatch:{effect.department}"
    if isinstance(effect, PublishQueue):
        return f"publish:{effect.department}"
    if isinstance(effect, CloseLeg):
        return f"close-leg:{effect.position}"
    names: dict[type, str] = {
        ArmNoExpert: "arm-no-expert",
        CloseRelay: "close-relay",
        DiscardUploads: "discard-uploads",
    }
    return names[type(effect)]


def record_token(record: RecordChange | None) -> str | None:
    if record is None:
        return None
    if isinstance(record, MarkEnded):
        return f"ended {record.reason.value}"
    if isinstance(record, AuditOnly):
        return record.audit.action.removeprefix("consultation.")
    names: dict[type, str] = {
        MarkActive: "active",
        ResumeCall: "resume",
        JoinCall: "join",
        LeaveCall: "leave",
        TransferCall: "transfer",
    }
    return names[type(record)]


AUDIT_OF = {
    "active": "consultation.accept",
    "resume": "consultation.accept",
    "join": "consultation.join",
    "leave": "consultation.leave",
    "transfer": "consultation.transfer",
    "invite": "consultation.invite",
    "invite_cancel": "consultation.invite_cancel",
}


def audit_of(record: str | None) -> list[str]:
    if record is None:
        return []
    return ["consultation.end" if record.startswith("ended") else AUDIT_OF[record]]


def apply(values: Mapping[str, Live], commit: Commit) -> dict[str, Live]:
    after = dict(values)
    for key, value in commit.put.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    return after


def the_call(values: Mapping[str, Live]) -> LiveCall | None:
    found = values.get(f"call:{CALL}")
    return found if isinstance(found, LiveCall) else None


def the_invitation(values: Mapping[str, Live]) -> LiveInvitation | None:
    for key in (f"invite:{INV}", f"invite:{NEW_INV}"):
        found = values.get(key)
        if isinstance(found, LiveInvitation):
            return found
    for value in values.values():
        if isinstance(value, LiveInvitation):
            return value
    return None


@dataclass
class Outcome:
    call: str
    invitation: str
    presences: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    record: str | None = None
