"""The signaling state machine as one table, shared by the pure tests and the
executor tests in ``tests/signaling/test_transitions.py``.

A row is a named live state (values built for a cast of accounts), an event, and
what must come of it. If the event is allowed, that is the consultation's phase
(or "ended" and why), the expert's presence, the other changes to the store
(open calls, queue, members, deadlines) and the effects. If it is refused, it
is the error class. The states and events are built for a ``Cast``: fixed ids
in the pure tests, accounts created in storage in the executor tests.
"""

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signaling import transitions
from signaling.config import SignalingConfig
from signaling.effects import (
    ArmNoExpert,
    CloseRelay,
    CreateConsultation,
    Decision,
    DiscardUploads,
    Dispatch,
    Effect,
    MarkActive,
    MarkEnded,
    Notify,
    Participant,
    PublishQueue,
    RecordChange,
)
from signaling.errors import AlreadyInConsultation, InvalidState, NotFound, SignalingError
from signaling.executor import Executor, Reads
from signaling.live import (
    ExpertPresence,
    Live,
    LiveCall,
    OpenCall,
    Phase,
    PresenceStatus,
    key_of,
)
from signaling.service import ConsultationService, PresenceService
from signaling.store import Commit
from signaling.transitions import GRACE_KEYS, Snapshot, deadline_key
from storage.records import Account, Role

CALL = "c0ffee0000000001"
"""The consultation every state is about."""
NEW_CALL = "c0ffee0000000002"
"""The one a request creates (in the pure tests; the service picks its own)."""
DEPT = "tax"
OTHER_DEPT = "land"
CASE = "SL-2026-0042"
REMOTE = "192.0.2.7"
TOKENS = {"kiosk": "tok-kiosk", "expert": "tok-expert"}

CONFIG = SignalingConfig(
    ring_timeout=20.0,
    grace_period=30.0,
    no_expert_wait=120.0,
    missed_offers_before_away=2,
    wrap_up_limit=10.0,
)
T_IDLE = 900.0
T_WAIT = 1000.0
T_OFFER = 1010.0
T_ACTIVE = 1015.0
T_DROP = 1020.0
T_REOFFER = 1025.0
NOW = 1030.0
"""Every event happens now: the ring offered at T_OFFER is due, the one offered anew
at T_REOFFER is not; the grace of a drop at T_DROP has not run out by the clock
(grace deadlines are claimed by the scheduler, which is not under test); the wrap-up
of a call that ended at T_DROP is due, one of a call that ended at T_REOFFER not."""


# ---- the cast --------------------------------------------------------------------------

CAST_NAMES = ("kiosk", "kiosk2", "expert", "expert2", "outsider", "admin")


@dataclass(frozen=True)
class Cast:
    """The accounts of the table: two kiosks, two experts of the department, an
    expert of another department, an administrator."""

    kiosk: Account
    kiosk2: Account
    expert: Account
    expert2: Account
    outsider: Account
    admin: Account

    def named(self, name: str) -> Account:
        account = getattr(self, name)
        assert isinstance(account, Account)
        return account

    def name_of(self, account_id: str) -> str:
        for name in CAST_NAMES:
            if self.named(name).id == account_id:
                return name
        raise KeyError(account_id)


# (username, role, department, hall) of each, in CAST_NAMES order.
CAST_ACCOUNTS: dict[str, tuple[str, Role, str | None, str | None]] = {
    "kiosk": ("kiosk01", Role.KIOSK, None, "hall-1"),
    "kiosk2": ("kiosk02", Role.KIOSK, None, "hall-1"),
    "expert": ("expert_tax", Role.EXPERT, DEPT, None),
    "expert2": ("expert_tax2", Role.EXPERT, DEPT, None),
    "outsider": ("expert_land", Role.EXPERT, OTHER_DEPT, None),
    "admin": ("admin", Role.ADMIN, None, None),
}

FIXED_CAST = Cast(
    **{
        name: Account(f"id-{name}", username, role, department, hall, username, False, 0.0)
        for name, (username, role, department, hall) in CAST_ACCOUNTS.items()
    }
)


# ---- the states ------------------------------------------------------------------------


def call(c: Cast, phase: Phase, **changes: Any) -> LiveCall:
    """The consultation in ``phase``, offered to (or answered by) ``c.expert``."""
    value = LiveCall(
        id=CALL,
        department=DEPT,
        kiosk_id=c.kiosk.id,
        kiosk_username=c.kiosk.username,
        hall=c.kiosk.hall,
        case_number=CASE,
        phase=phase,
        waiting_since=T_WAIT,
    )
    if phase is not Phase.WAITING:
        value = dataclasses.replace(
            value, expert_id=c.expert.id, expert_username=c.expert.username, offered_at=T_OFFER
        )
    if phase is Phase.ACTIVE:
        value = dataclasses.replace(
            value,
            active_at=T_ACTIVE,
            media_tokens=tuple(TOKENS.items()),
            relay="relay-1",
        )
    return dataclasses.replace(value, **changes)


def presence(expert: Account, status: PresenceStatus, **changes: Any) -> ExpertPresence:
    assert expert.department is not None
    value = ExpertPresence(
        expert_id=expert.id,
        username=expert.username,
        department=expert.department,
        status=status,
        idle_since=T_IDLE,
    )
    return dataclasses.replace(value, **changes)


def in_call(account: Account) -> OpenCall:
    return OpenCall(account.id, CALL)


def wrapping_up(expert: Account, ended_at: float = T_DROP, **changes: Any) -> ExpertPresence:
    """``expert`` completing the record of CALL, whose call ended at ``ended_at``."""
    return dataclasses.replace(
        presence(expert, WRAP_UP, wrap_up=CALL, wrap_up_until=ended_at + CONFIG.wrap_up_limit),
        **changes,
    )


AVAILABLE = PresenceStatus.AVAILABLE
AWAY = PresenceStatus.AWAY
BUSY = PresenceStatus.BUSY
WRAP_UP = PresenceStatus.WRAP_UP
OFFLINE = PresenceStatus.OFFLINE

State = Callable[[Cast], tuple[Live, ...]]

STATES: dict[str, State] = {
    # -- the consultation's phases (the expert's presence as it goes with them)
    "no call": lambda c: (presence(c.expert, AVAILABLE),),
    "waiting": lambda c: (
        call(c, Phase.WAITING),
        in_call(c.kiosk),
        presence(c.expert, AVAILABLE),
        presence(c.outsider, AVAILABLE),
    ),
    "waiting, nobody online": lambda c: (
        call(c, Phase.WAITING),
        in_call(c.kiosk),
        presence(c.expert, AWAY),
    ),
    "waiting, kiosk dropped": lambda c: (
        call(c, Phase.WAITING, dropped=(("kiosk", T_DROP),)),
        in_call(c.kiosk),
        presence(c.expert, AWAY),
    ),
    "offered": lambda c: (
        call(c, Phase.OFFERED),
        in_call(c.kiosk),
        presence(c.expert, AVAILABLE, offer=CALL),
        presence(c.expert2, AVAILABLE),
    ),
    "offered, missed once": lambda c: (
        call(c, Phase.OFFERED),
        in_call(c.kiosk),
        presence(c.expert, AVAILABLE, offer=CALL, missed_in_a_row=1),
    ),
    "offered anew": lambda c: (
        call(c, Phase.OFFERED, offered_at=T_REOFFER),
        in_call(c.kiosk),
        presence(c.expert, AVAILABLE, offer=CALL),
    ),
    "offered to expert2": lambda c: (
        call(c, Phase.OFFERED, expert_id=c.expert2.id, expert_username=c.expert2.username),
        in_call(c.kiosk),
        presence(c.expert, AVAILABLE),
        presence(c.expert2, AVAILABLE, offer=CALL),
    ),
    "active": lambda c: (
        call(c, Phase.ACTIVE),
        in_call(c.kiosk),
        in_call(c.expert),
        presence(c.expert, BUSY, call=CALL),
    ),
    "active, kiosk dropped": lambda c: (
        call(c, Phase.ACTIVE, dropped=(("kiosk", T_DROP),)),
        in_call(c.kiosk),
        in_call(c.expert),
        presence(c.expert, BUSY, call=CALL),
    ),
    "active, expert media dropped": lambda c: (
        call(c, Phase.ACTIVE, dropped=(("media:expert", T_DROP),)),
        in_call(c.kiosk),
        in_call(c.expert),
        presence(c.expert, BUSY, call=CALL),
    ),
    "active, expert offline": lambda c: (
        call(c, Phase.ACTIVE, dropped=(("expert", T_DROP),)),
        in_call(c.kiosk),
        in_call(c.expert),
        presence(c.expert, OFFLINE, call=CALL, status_before_drop=AVAILABLE),
    ),
    "active, away after": lambda c: (
        call(c, Phase.ACTIVE),
        in_call(c.kiosk),
        in_call(c.expert),
        presence(c.expert, BUSY, call=CALL, status_after_call=AWAY),
    ),
    # -- the expert's presence without a consultation
    "no presence": lambda c: (),
    "available": lambda c: (presence(c.expert, AVAILABLE),),
    "away": lambda c: (presence(c.expert, AWAY),),
    "offline": lambda c: (presence(c.expert, OFFLINE, status_before_drop=AVAILABLE),),
    # -- after a call: its record to complete (the consultation has ended)
    "wrapping up": lambda c: (wrapping_up(c.expert),),
    "wrapping up anew": lambda c: (wrapping_up(c.expert, T_REOFFER),),
    "wrapping up, away after": lambda c: (wrapping_up(c.expert, status_after_call=AWAY),),
    "wrapping up, offline": lambda c: (
        wrapping_up(c.expert, status=OFFLINE, status_before_drop=WRAP_UP),
    ),
}


def state_of(name: str, cast: Cast) -> dict[str, Live]:
    return {key_of(value): value for value in STATES[name](cast)}


def seed_commit(values: Iterable[Live], config: SignalingConfig = CONFIG) -> Commit:
    """Everything that goes with these values in the store, as the transitions that
    led to them would have left it: queue entries, expert sets, deadlines."""
    commit = Commit(put={key_of(v): v for v in values})
    for value in commit.put.values():
        if isinstance(value, LiveCall):
            if value.phase is not Phase.ACTIVE:
                commit.queue_add.append((value.department, value.id, value.waiting_since))
                no_expert = deadline_key("noexpert", value.id)
                commit.deadlines_set[no_expert] = value.waiting_since + config.no_expert_wait
            if value.phase is Phase.OFFERED and value.offered_at is not None:
                ring = deadline_key("ring", value.id)
                commit.deadlines_set[ring] = value.offered_at + config.ring_timeout
            for key, since in value.dropped:
                grace = deadline_key("grace", value.id, key)
                commit.deadlines_set[grace] = since + config.grace_period
        elif isinstance(value, ExpertPresence):
            commit.members_add.append((f"experts:{value.department}", value.expert_id))
            if value.status is PresenceStatus.OFFLINE:
                offline = deadline_key("offline", value.expert_id)
                commit.deadlines_set[offline] = T_DROP + config.grace_period
            if value.wrap_up is not None and value.wrap_up_until is not None:
                commit.deadlines_set[deadline_key("wrapup", value.expert_id)] = value.wrap_up_until
    return commit


def snapshot(values: Mapping[str, Live], now: float = NOW) -> Snapshot:
    """What the executor would read for any event of the table (a superset does no
    harm: each transition looks only at what concerns it)."""
    calls = {v.id: v for v in values.values() if isinstance(v, LiveCall)}
    presences = {v.expert_id: v for v in values.values() if isinstance(v, ExpertPresence)}
    opens = {v.account_id: v for v in values.values() if isinstance(v, OpenCall)}
    the_call = calls.get(CALL)
    department = the_call.department if the_call else DEPT
    online = sum(1 for p in presences.values() if p.department == department and p.online)
    return Snapshot(
        now=now,
        call=the_call,
        presences=presences,
        open_calls=opens,
        calls=calls,
        online_in_department=online,
    )


# ---- the events ------------------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    """The real services, over an executor, as the hub wires them."""

    executor: Executor
    consultations: ConsultationService
    presence: PresenceService


@dataclass(frozen=True)
class Event:
    kind: str
    """What happens, whoever does it: the table has a row for it in every phase."""
    name: str
    decide: Callable[[Snapshot, Cast, bool], Decision]
    """The pure transition (the bool: its records are written already)."""
    run: Callable[[Services, Cast], Awaitable[object]]
    """The same event through the service that the gateway or the scheduler calls."""
    actor: str | None = None
    """Who is recorded as ending the consultation: a cast name, or None for "system"."""


def request() -> Event:
    return Event(
        "request",
        "request",
        lambda s, c, r: transitions.request(
            s, c.kiosk, NEW_CALL, DEPT, CASE, REMOTE, CONFIG, recorded=r
        ),
        lambda sv, c: sv.consultations.request(c.kiosk, DEPT, CASE, REMOTE),
        "kiosk",
    )


def cancel(who: str = "kiosk") -> Event:
    return Event(
        "cancel",
        "cancel" if who == "kiosk" else f"cancel by {who}",
        lambda s, c, r: transitions.cancel(s, c.named(who), REMOTE, recorded=r, config=CONFIG),
        lambda sv, c: sv.consultations.cancel(c.named(who), CALL, REMOTE),
        who,
    )


def offer(who: str = "expert") -> Event:
    def run(sv: Services, c: Cast) -> Awaitable[object]:
        expert_id = c.named(who).id
        return sv.executor.run(
            Reads(call_id=CALL, experts=(expert_id,)),
            lambda s, _r: transitions.offer(s, expert_id, CONFIG),
        )

    return Event(
        "offer",
        "offer" if who == "expert" else f"offer to {who}",
        lambda s, c, _r: transitions.offer(s, c.named(who).id, CONFIG),
        run,
    )


def accept(who: str = "expert") -> Event:
    return Event(
        "accept",
        "accept" if who == "expert" else f"accept by {who}",
        lambda s, c, r: transitions.accept(s, c.named(who), TOKENS, REMOTE, recorded=r),
        lambda sv, c: sv.consultations.accept(c.named(who), CALL, REMOTE),
        who,
    )


def decline(who: str = "expert") -> Event:
    return Event(
        "decline",
        "decline" if who == "expert" else f"decline by {who}",
        lambda s, c, _r: transitions.decline(s, c.named(who), CONFIG),
        lambda sv, c: sv.consultations.decline(c.named(who), CALL),
    )


def ring_timeout() -> Event:
    return Event(
        "ring timeout",
        "ring timeout",
        lambda s, c, _r: transitions.ring_timeout(s, CONFIG),
        lambda sv, c: sv.consultations.on_deadline(deadline_key("ring", CALL)),
    )


def end(who: str) -> Event:
    return Event(
        "end",
        f"end by {who}",
        lambda s, c, r: transitions.end(s, c.named(who), REMOTE, recorded=r, config=CONFIG),
        lambda sv, c: sv.consultations.end(c.named(who), CALL, REMOTE),
        who,
    )


def withdraw() -> Event:
    return Event(
        "withdraw",
        "withdraw",
        lambda s, c, r: transitions.withdraw(s, c.admin, REMOTE, recorded=r, config=CONFIG),
        lambda sv, c: sv.consultations.withdraw(c.admin, CALL, REMOTE),
        "admin",
    )


def _connection(sv: Services, c: Cast, who: str, key: str, back: bool) -> Awaitable[None]:
    """A socket (through the account's open call) or media (from the relay)."""
    if key.startswith("media:"):
        status = "connected" if back else "lost"
        return sv.consultations.media_changed(CALL, key.removeprefix("media:"), status)
    return sv.consultations.participant_changed(c.named(who).id, back)


def left(who: str, key: str | None = None) -> Event:
    key = key or who
    label = key if key.removeprefix("media:") == who else f"{key} of {who}"
    return Event(
        "left",
        f"{label} left",
        lambda s, c, _r: transitions.participant_left(s, c.named(who).id, key, CONFIG),
        lambda sv, c: _connection(sv, c, who, key, back=False),
    )


def returned(who: str, key: str | None = None) -> Event:
    key = key or who
    label = key if key.removeprefix("media:") == who else f"{key} of {who}"
    return Event(
        "returned",
        f"{label} returned",
        lambda s, c, _r: transitions.participant_returned(s, c.named(who).id, key),
        lambda sv, c: _connection(sv, c, who, key, back=True),
    )


def grace_expired(key: str) -> Event:
    return Event(
        "grace expired",
        f"grace of {key} expired",
        lambda s, c, r: transitions.grace_expired(s, key, recorded=r, config=CONFIG),
        lambda sv, c: sv.consultations.on_deadline(deadline_key("grace", CALL, key)),
    )


def no_expert_expired() -> Event:
    return Event(
        "no-expert expired",
        "no-expert wait expired",
        lambda s, c, r: transitions.no_expert_expired(s, recorded=r, config=CONFIG),
        lambda sv, c: sv.consultations.on_deadline(deadline_key("noexpert", CALL)),
    )


def set_status(status: PresenceStatus) -> Event:
    return Event(
        f"set {status.value}",
        f"set {status.value}",
        lambda s, c, _r: transitions.set_status(s, c.expert, status, CONFIG),
        lambda sv, c: sv.presence.set_status(c.expert, status),
    )


def connected() -> Event:
    return Event(
        "connected",
        "expert connected",
        lambda s, c, _r: transitions.expert_connected(s, c.expert),
        lambda sv, c: sv.presence.connected(c.expert),
    )


def disconnected() -> Event:
    return Event(
        "disconnected",
        "expert disconnected",
        lambda s, c, _r: transitions.expert_disconnected(s, c.expert, CONFIG),
        lambda sv, c: sv.presence.disconnected(c.expert),
    )


def wrap_up_done() -> Event:
    """The expert saved the record of CALL, or put it off (稍后填写)."""

    def run(sv: Services, c: Cast) -> Awaitable[object]:
        expert_id = c.expert.id
        return sv.executor.run(
            Reads(experts=(expert_id,)),
            lambda s, _r: transitions.wrap_up_done(s, expert_id, CALL),
        )

    return Event(
        "wrap-up done",
        "record saved or put off",
        lambda s, c, _r: transitions.wrap_up_done(s, c.expert.id, CALL),
        run,
    )


def wrap_up_expired() -> Event:
    return Event(
        "wrap-up expired",
        "wrap-up limit passed",
        lambda s, c, _r: transitions.wrap_up_done(s, c.expert.id, CALL, expired=True),
        lambda sv, c: sv.presence.on_deadline(deadline_key("wrapup", c.expert.id)),
    )


def offline_expired() -> Event:
    return Event(
        "offline expired",
        "offline expired",
        lambda s, c, _r: transitions.offline_expired(s, c.expert.id),
        lambda sv, c: sv.presence.on_deadline(deadline_key("offline", c.expert.id)),
    )


# ---- the rows --------------------------------------------------------------------------

SAME = "same"
"""The column does not change."""


@dataclass(frozen=True)
class Row:
    state: str
    event: Event
    call: str = SAME
    """The consultation after: a phase ("waiting", "active (dropped kiosk)"), "ended
    <reason>", or "none"."""
    presence: str = SAME
    """``expert``'s presence after: a status, "ringing", "offline in call", or "none"."""
    changes: tuple[str, ...] = ()
    """Store changes beyond the two above: "+open:kiosk"/"-open:expert", "queue+",
    "queue-", "members+", "members-", "+ring"/"-ring" (and noexpert, offline,
    grace:<key>; "-grace:*" for all four), "handle-time"."""
    effects: tuple[str, ...] = ()
    """"<who>:<event>" notifications and "dispatch", "publish", "arm-no-expert",
    "close-relay", "discard-uploads", "participant:<who>+/-"."""
    refused: type[SignalingError] | None = None
    recorded: bool = False
    """Decided again after its records were written (pure table only)."""

    @property
    def id(self) -> str:
        prefix = "recorded: " if self.recorded else ""
        return f"{prefix}{self.state} + {self.event.name}"

    @property
    def stale(self) -> bool:
        """An event that changes nothing and does nothing."""
        return (
            self.refused is None
            and not self.changes
            and not self.effects
            and (self.call == SAME and self.presence == SAME)
        )


def ok(state: str, event: Event, **expected: Any) -> Row:
    return Row(state, event, **expected)


def refused(state: str, event: Event, error: type[SignalingError]) -> Row:
    return Row(state, event, refused=error)


def nothing(state: str, event: Event) -> Row:
    """A stale event (a deadline after the fact, a second disconnect): no-op."""
    return Row(state, event)


def recorded(state: str, event: Event, **expected: Any) -> Row:
    return Row(state, event, recorded=True, **expected)


ROUTE = ("dispatch", "publish")
ENDS = ("-open:kiosk", "queue-", "-ring", "-noexpert", "-grace:*")
"""What every end clears (an end clears every deadline of the call, set or not)."""
CALL_ENDS = (*ENDS, "-open:expert")
CALL_END_FX = ("kiosk:consultation", "expert:consultation", "close-relay", "discard-uploads")
ACCEPTS = ("+open:expert", "queue-", "-ring", "-noexpert")
ACCEPT_FX = ("expert:presence", "kiosk:consultation", "expert:consultation", "publish")


def _for_each(states: Iterable[str], event: Event, error: type[SignalingError]) -> list[Row]:
    return [refused(s, event, error) for s in states]


CONSULTATION_ROWS: list[Row] = [
    # -- request
    ok(
        "no call",
        request(),
        call="waiting",
        changes=("+open:kiosk", "queue+", "+noexpert"),
        effects=ROUTE,
    ),
    *_for_each(("waiting", "offered", "active"), request(), AlreadyInConsultation),
    # -- cancel (the citizen leaves the queue)
    refused("no call", cancel(), NotFound),
    ok(
        "waiting",
        cancel(),
        call="ended abandoned",
        changes=ENDS,
        effects=("kiosk:consultation", *ROUTE),
    ),
    ok(
        "offered",
        cancel(),
        call="ended abandoned",
        presence="available",
        changes=ENDS,
        effects=("kiosk:consultation", "expert:offer_revoked", *ROUTE),
    ),
    refused("active", cancel(), InvalidState),
    refused("waiting", cancel("kiosk2"), NotFound),
    # -- offer (dispatch rings a free expert)
    ok(
        "waiting",
        offer(),
        call="offered",
        presence="ringing",
        changes=("+ring",),
        effects=("expert:offer", "kiosk:consultation", "publish"),
    ),
    nothing("waiting, nobody online", offer()),
    nothing("waiting", offer("outsider")),
    nothing("offered", offer()),
    nothing("active", offer()),
    nothing("no call", offer()),
    # -- accept
    refused("no call", accept(), NotFound),
    refused("waiting", accept(), InvalidState),
    ok("offered", accept(), call="active", presence="busy", changes=ACCEPTS, effects=ACCEPT_FX),
    refused("active", accept(), InvalidState),
    refused("offered", accept("expert2"), InvalidState),
    refused("offered", accept("outsider"), NotFound),
    refused("offered", accept("kiosk"), InvalidState),
    # -- decline
    refused("no call", decline(), NotFound),
    refused("waiting", decline(), InvalidState),
    ok(
        "offered",
        decline(),
        call="waiting",
        presence="available",
        changes=("-ring",),
        effects=("expert:offer_revoked", "kiosk:consultation", *ROUTE),
    ),
    refused("active", decline(), InvalidState),
    refused("offered", decline("expert2"), InvalidState),
    refused("offered", decline("outsider"), NotFound),
    # -- ring timeout
    ok(
        "offered",
        ring_timeout(),
        call="waiting",
        presence="available",
        changes=("-ring",),
        effects=("expert:offer_revoked", "kiosk:consultation", "expert:presence", *ROUTE),
    ),
    ok(
        "offered, missed once",
        ring_timeout(),
        call="waiting",
        presence="away",
        changes=("-ring",),
        effects=(
            "expert:offer_revoked",
            "kiosk:consultation",
            "expert:presence",
            "arm-no-expert",
            *ROUTE,
        ),
    ),
    nothing("offered anew", ring_timeout()),
    nothing("waiting", ring_timeout()),
    nothing("active", ring_timeout()),
    nothing("no call", ring_timeout()),
    # -- end
    refused("no call", end("kiosk"), NotFound),
    ok(
        "waiting",
        end("kiosk"),
        call="ended abandoned",
        changes=ENDS,
        effects=("kiosk:consultation", *ROUTE),
    ),
    ok(
        "offered",
        end("kiosk"),
        call="ended abandoned",
        presence="available",
        changes=ENDS,
        effects=("kiosk:consultation", "expert:offer_revoked", *ROUTE),
    ),
    ok(
        "active",
        end("kiosk"),
        call="ended completed",
        presence="wrap_up",
        changes=(*CALL_ENDS, "handle-time", "+wrapup"),
        effects=(*CALL_END_FX, "expert:presence", *ROUTE),
    ),
    ok(
        "active",
        end("expert"),
        call="ended completed",
        presence="wrap_up",
        changes=(*CALL_ENDS, "handle-time", "+wrapup"),
        effects=(*CALL_END_FX, "expert:presence", *ROUTE),
    ),
    ok(
        # Away once the record is done (wrap-up done below).
        "active, away after",
        end("expert"),
        call="ended completed",
        presence="wrap_up",
        changes=(*CALL_ENDS, "handle-time", "+wrapup"),
        effects=(*CALL_END_FX, "expert:presence", *ROUTE),
    ),
    ok(
        # The expert's presence goes: see test_a_call_ending_in_its_experts_grace_*.
        "active, expert offline",
        end("kiosk"),
        call="ended completed",
        # Still in the grace period: offline, out of the call, forgotten by the
        # pending offline deadline unless back in time (then wrapping it up).
        presence="offline",
        changes=(*CALL_ENDS, "handle-time", "+wrapup"),
        effects=(*CALL_END_FX, *ROUTE),
    ),
    refused("no call", end("expert"), NotFound),
    refused("waiting", end("expert"), InvalidState),
    refused("offered", end("expert"), InvalidState),
    refused("active", end("expert2"), InvalidState),
    refused("active", end("outsider"), NotFound),
    refused("active", end("admin"), NotFound),
    refused("active", end("kiosk2"), NotFound),
    # -- withdraw (staff)
    refused("no call", withdraw(), NotFound),
    ok(
        "waiting",
        withdraw(),
        call="ended cancelled",
        changes=ENDS,
        effects=("kiosk:consultation", *ROUTE),
    ),
    ok(
        "offered",
        withdraw(),
        call="ended cancelled",
        presence="available",
        changes=ENDS,
        effects=("kiosk:consultation", "expert:offer_revoked", *ROUTE),
    ),
    ok(
        "active",
        withdraw(),
        call="ended cancelled",
        presence="wrap_up",
        changes=(*CALL_ENDS, "+wrapup"),
        effects=(*CALL_END_FX, "expert:presence", *ROUTE),
    ),
    # -- a participant's socket or media goes
    ok("waiting", left("kiosk"), call="waiting (dropped kiosk)", changes=("+grace:kiosk",)),
    ok("offered", left("kiosk"), call="offered (dropped kiosk)", changes=("+grace:kiosk",)),
    ok(
        "active",
        left("kiosk"),
        call="active (dropped kiosk)",
        changes=("+grace:kiosk",),
        effects=("expert:peer_status",),
    ),
    ok(
        "active",
        left("expert"),
        call="active (dropped expert)",
        changes=("+grace:expert",),
        effects=("kiosk:peer_status",),
    ),
    ok(
        "active",
        left("kiosk", "media:kiosk"),
        call="active (dropped media:kiosk)",
        changes=("+grace:media:kiosk",),
        effects=("expert:peer_status",),
    ),
    nothing("active, kiosk dropped", left("kiosk")),
    nothing("waiting", left("expert")),
    # Only a call's participants have a grace period: not an expert it rings for.
    nothing("offered", left("expert")),
    nothing("waiting", left("kiosk", "media:kiosk")),
    nothing("active", left("kiosk2", "kiosk")),
    nothing("no call", left("kiosk")),
    # -- ... and comes back
    ok(
        "waiting, kiosk dropped",
        returned("kiosk"),
        call="waiting",
        changes=("-grace:kiosk",),
        effects=("kiosk:consultation",),
    ),
    ok(
        "active, kiosk dropped",
        returned("kiosk"),
        call="active",
        changes=("-grace:kiosk",),
        effects=("expert:peer_status", "kiosk:consultation"),
    ),
    ok(
        "active, expert media dropped",
        returned("expert", "media:expert"),
        call="active",
        changes=("-grace:media:expert",),
        effects=("kiosk:peer_status",),
    ),
    # A second socket, or one that was never counted as gone: the view is sent again.
    ok("active", returned("kiosk"), effects=("kiosk:consultation",)),
    ok("offered", returned("kiosk"), effects=("kiosk:consultation",)),
    nothing("active", returned("kiosk2", "kiosk")),
    nothing("no call", returned("kiosk")),
    # -- the grace period runs out
    ok(
        "waiting, kiosk dropped",
        grace_expired("kiosk"),
        call="ended abandoned",
        changes=ENDS,
        effects=("kiosk:consultation", *ROUTE),
    ),
    ok(
        "active, kiosk dropped",
        grace_expired("kiosk"),
        call="ended dropped",
        presence="wrap_up",
        changes=(*CALL_ENDS, "+wrapup"),
        effects=(*CALL_END_FX, "expert:presence", *ROUTE),
    ),
    ok(
        "active, expert media dropped",
        grace_expired("media:expert"),
        call="ended dropped",
        presence="wrap_up",
        changes=(*CALL_ENDS, "+wrapup"),
        effects=(*CALL_END_FX, "expert:presence", *ROUTE),
    ),
    ok(
        "active, expert offline",
        grace_expired("expert"),
        call="ended dropped",
        presence="none",
        changes=(*CALL_ENDS, "members-"),
        effects=(*CALL_END_FX, *ROUTE),
    ),
    nothing("active", grace_expired("kiosk")),
    nothing("offered", grace_expired("kiosk")),
    nothing("active, kiosk dropped", grace_expired("media:kiosk")),
    nothing("no call", grace_expired("kiosk")),
    # -- nobody of the department came online in time
    ok(
        "waiting, nobody online",
        no_expert_expired(),
        call="ended no_expert",
        changes=ENDS,
        effects=("kiosk:consultation", *ROUTE),
    ),
    nothing("waiting", no_expert_expired()),
    nothing("offered", no_expert_expired()),
    nothing("active", no_expert_expired()),
    nothing("no call", no_expert_expired()),
]

PRESENCE_FX = ("expert:presence", *ROUTE)

PRESENCE_ROWS: list[Row] = [
    # -- set available
    ok(
        "no presence",
        set_status(AVAILABLE),
        presence="available",
        changes=("members+",),
        effects=PRESENCE_FX,
    ),
    ok("away", set_status(AVAILABLE), presence="available", effects=PRESENCE_FX),
    ok("available", set_status(AVAILABLE), effects=PRESENCE_FX),
    ok("active, away after", set_status(AVAILABLE), effects=PRESENCE_FX),
    ok("offered", set_status(AVAILABLE), effects=PRESENCE_FX),
    ok("offline", set_status(AVAILABLE), presence="available", effects=PRESENCE_FX),
    # -- set away
    ok(
        "no presence", set_status(AWAY), presence="away", changes=("members+",), effects=PRESENCE_FX
    ),
    ok("available", set_status(AWAY), presence="away", effects=(*PRESENCE_FX, "arm-no-expert")),
    ok(
        "offered",
        set_status(AWAY),
        call="waiting",
        presence="away",
        changes=("-ring",),
        effects=("expert:offer_revoked", "kiosk:consultation", *PRESENCE_FX, "arm-no-expert"),
    ),
    ok("active", set_status(AWAY), effects=PRESENCE_FX),
    ok("away", set_status(AWAY), effects=PRESENCE_FX),
    ok("offline", set_status(AWAY), presence="away", effects=PRESENCE_FX),
    # -- the expert's first socket connects
    ok(
        "no presence",
        connected(),
        presence="away",
        changes=("members+", "-offline"),
        effects=PRESENCE_FX,
    ),
    ok("available", connected(), changes=("-offline",), effects=PRESENCE_FX),
    ok("away", connected(), changes=("-offline",), effects=PRESENCE_FX),
    ok("offline", connected(), presence="available", changes=("-offline",), effects=PRESENCE_FX),
    ok("offered", connected(), changes=("-offline",), effects=PRESENCE_FX),
    ok(
        "active",
        connected(),
        changes=("-offline",),
        effects=(*PRESENCE_FX, "participant:expert+"),
    ),
    ok(
        "active, expert offline",
        connected(),
        presence="busy",
        changes=("-offline",),
        effects=(*PRESENCE_FX, "participant:expert+"),
    ),
    # -- the expert's last socket closes
    nothing("no presence", disconnected()),
    ok(
        "available",
        disconnected(),
        presence="offline",
        changes=("+offline",),
        effects=("arm-no-expert", *ROUTE),
    ),
    ok(
        "away",
        disconnected(),
        presence="offline",
        changes=("+offline",),
        # Away was not online: nobody fewer online, the no-expert wait is not restarted.
        effects=ROUTE,
    ),
    ok(
        "offered",
        disconnected(),
        call="waiting",
        presence="offline",
        changes=("-ring", "+offline"),
        effects=("expert:offer_revoked", "kiosk:consultation", "arm-no-expert", *ROUTE),
    ),
    ok(
        "active",
        disconnected(),
        presence="offline in call",
        changes=("+offline",),
        effects=("arm-no-expert", *ROUTE, "participant:expert-"),
    ),
    nothing("offline", disconnected()),
    nothing("active, expert offline", disconnected()),
    # -- the expert did not come back
    ok("offline", offline_expired(), presence="none", changes=("members-",), effects=("publish",)),
    nothing("active, expert offline", offline_expired()),
    nothing("available", offline_expired()),
    nothing("no presence", offline_expired()),
    nothing("away", offline_expired()),
    nothing("offered", offline_expired()),
    nothing("active", offline_expired()),
    nothing("wrapping up", offline_expired()),
    # -- after a call, while its record is completed: no offer, the desk counts online
    ok("wrapping up", set_status(AVAILABLE), effects=PRESENCE_FX),
    ok(
        # Away ends the wrap-up: the record waits among the unfinished ones.
        "wrapping up",
        set_status(AWAY),
        presence="away",
        changes=("-wrapup",),
        effects=(*PRESENCE_FX, "arm-no-expert"),
    ),
    ok(
        "wrapping up",
        disconnected(),
        presence="offline",
        changes=("+offline",),
        effects=("arm-no-expert", *ROUTE),
    ),
    ok(
        "wrapping up, offline",
        connected(),
        presence="wrap_up",
        changes=("-offline",),
        effects=PRESENCE_FX,
    ),
    # -- the record is saved or put off (稍后填写): calls come again
    ok(
        "wrapping up",
        wrap_up_done(),
        presence="available",
        changes=("-wrapup",),
        effects=PRESENCE_FX,
    ),
    ok(
        "wrapping up, away after",
        wrap_up_done(),
        presence="away",
        changes=("-wrapup",),
        effects=(*PRESENCE_FX, "arm-no-expert"),
    ),
    # Back within the grace period, they take calls (the offline deadline still runs).
    ok("wrapping up, offline", wrap_up_done(), changes=("-wrapup",), effects=PRESENCE_FX),
    *[
        nothing(state, wrap_up_done())
        for state in ("no presence", "available", "away", "offered", "active", "offline")
    ],
    # -- ... or the limit passes first: away, told why (the record stays unfinished)
    ok(
        "wrapping up",
        wrap_up_expired(),
        presence="away",
        effects=(*PRESENCE_FX, "arm-no-expert"),
    ),
    ok("wrapping up, offline", wrap_up_expired(), effects=PRESENCE_FX),
    nothing("wrapping up anew", wrap_up_expired()),
    *[
        nothing(state, wrap_up_expired())
        for state in ("no presence", "available", "away", "offered", "active", "offline")
    ],
]

# Decided again once the records hold the transition (the live state changed between
# the decision and its commit): the records are the truth, whatever the state now is.
RECORDED_ROWS: list[Row] = [
    recorded(
        "waiting",
        request(),
        call="waiting",
        changes=("+open:kiosk", "queue+", "+noexpert"),
        effects=ROUTE,
    ),
    # The ring timed out meanwhile: the expert took it all the same.
    recorded(
        "waiting", accept(), call="active", presence="busy", changes=ACCEPTS, effects=ACCEPT_FX
    ),
    # ... and it rang for a colleague, who is told it is gone.
    recorded(
        "offered to expert2",
        accept(),
        call="active",
        presence="busy",
        changes=ACCEPTS,
        effects=(*ACCEPT_FX, "expert2:offer_revoked"),
    ),
    Row("no call", accept(), refused=InvalidState, recorded=True),
    recorded(
        "active",
        cancel(),
        call="ended abandoned",
        presence="wrap_up",
        changes=(*CALL_ENDS, "+wrapup"),
        effects=(*CALL_END_FX, "expert:presence", *ROUTE),
    ),
    recorded(
        "active",
        grace_expired("kiosk"),
        call="ended dropped",
        presence="wrap_up",
        changes=(*CALL_ENDS, "+wrapup"),
        effects=(*CALL_END_FX, "expert:presence", *ROUTE),
    ),
    recorded(
        "offered",
        no_expert_expired(),
        call="ended no_expert",
        presence="available",
        changes=ENDS,
        effects=("kiosk:consultation", "expert:offer_revoked", *ROUTE),
    ),
    recorded("no call", cancel()),
    recorded("no call", end("kiosk")),
    recorded("no call", end("expert")),
    recorded("no call", withdraw()),
    recorded("no call", grace_expired("kiosk")),
    recorded("no call", no_expert_expired()),
]

ROWS = CONSULTATION_ROWS + PRESENCE_ROWS


# ---- what a decision amounts to, in the table's terms ----------------------------------


def call_label(value: LiveCall | None) -> str:
    if value is None:
        return "none"
    dropped = ", ".join(key for key, _since in value.dropped)
    return f"{value.phase.value} (dropped {dropped})" if dropped else value.phase.value


def presence_label(value: ExpertPresence | None) -> str:
    if value is None:
        return "none"
    if value.offer is not None:
        return "ringing"
    if value.status is PresenceStatus.OFFLINE and value.call is not None:
        return "offline in call"
    return value.status.value


def change_tokens(decision: Decision, cast: Cast) -> list[str]:
    commit = decision.commit
    tokens: list[str] = []
    for key, value in commit.put.items():
        kind, _, name = key.partition(":")
        if kind == "open":
            tokens.append(f"{'+' if value is not None else '-'}open:{cast.name_of(name)}")
    tokens += ["queue+"] * len(commit.queue_add) + ["queue-"] * len(commit.queue_remove)
    tokens += ["members+"] * len(commit.members_add) + ["members-"] * len(commit.members_remove)
    tokens += ["handle-time"] * len(commit.handle_times)
    cleared = [_deadline_token(key) for key in commit.deadlines_clear]
    every_grace = [f"grace:{key}" for key in GRACE_KEYS]
    if all(g in cleared for g in every_grace):
        cleared = [t for t in cleared if t not in every_grace] + ["grace:*"]
    tokens += [f"-{t}" for t in cleared]
    tokens += [f"+{_deadline_token(key)}" for key in commit.deadlines_set]
    return sorted(tokens)


def _deadline_token(key: str) -> str:
    kind, *parts = key.split("|")
    if kind == "grace":
        return f"grace:{parts[1]}"
    return kind


def effect_token(effect: Effect, cast: Cast) -> str:
    if isinstance(effect, Notify):
        return f"{cast.name_of(effect.account_id)}:{effect.event}"
    if isinstance(effect, Participant):
        return f"participant:{cast.name_of(effect.account_id)}{'+' if effect.connected else '-'}"
    names: dict[type, str] = {
        Dispatch: "dispatch",
        PublishQueue: "publish",
        ArmNoExpert: "arm-no-expert",
        CloseRelay: "close-relay",
        DiscardUploads: "discard-uploads",
    }
    return names[type(effect)]


def record_token(record: RecordChange | None) -> str | None:
    if isinstance(record, CreateConsultation):
        return "create"
    if isinstance(record, MarkActive):
        return "active"
    if isinstance(record, MarkEnded):
        return f"ended {record.reason.value}"
    return None


def expected_record(row: Row, before: str) -> str | None:
    """The record a row writes follows from its phases: a new consultation, the call
    starting, the consultation ending (nothing when decided as recorded)."""
    if row.recorded or row.refused is not None or row.call == SAME:
        return None
    if row.call.startswith("ended"):
        return row.call
    if row.call.startswith("active") and not before.startswith("active"):
        return "active"
    if before == "none" and row.call.startswith("waiting"):
        return "create"
    return None


def the_call(values: Mapping[str, Live], commit: Commit | None = None) -> LiveCall | None:
    """The call a row is about: one a decision put (a request's), else CALL."""
    for value in commit.put.values() if commit else ():
        if isinstance(value, LiveCall):
            return value
    found = values.get(f"call:{CALL}")
    return found if isinstance(found, LiveCall) else None


def expert_presence(values: Mapping[str, Live], cast: Cast) -> ExpertPresence | None:
    found = values.get(f"presence:{cast.expert.id}")
    return found if isinstance(found, ExpertPresence) else None


def apply(values: Mapping[str, Live], commit: Commit) -> dict[str, Live]:
    after = dict(values)
    for key, value in commit.put.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    return after
