"""The live state of signaling: consultations that have not ended, experts'
presence, who is in which consultation. Immutable values: a transition returns
new ones, the store keeps them (in this process, or in Redis for several), and
nobody can change a value another holds.
"""

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self


class Phase(StrEnum):
    """The states of a consultation while it lives (``ended`` is only a record)."""

    WAITING = "waiting"
    OFFERED = "offered"
    ACTIVE = "active"


class Side(StrEnum):
    """The two participants of a call before calls had more: the kiosk (position 0)
    and the expert who answered (position 1)."""

    KIOSK = "kiosk"
    EXPERT = "expert"


MAX_PARTICIPANTS = 4
"""The citizen's kiosk and up to three staff (experts, interpreters)."""
KIOSK_POSITION = 0
LEAD_POSITION = 1
"""Where the expert who answers a consultation sits."""


def seat_name(position: int) -> str:
    """A position's name in the live state's keys (its media token, its socket's and
    its media's drops): the two of a two-party call keep the names they had before
    calls had more ("kiosk", "expert"), so that values an older node wrote still
    read the same; the others are "p2", "p3"."""
    if position == KIOSK_POSITION:
        return Side.KIOSK.value
    if position == LEAD_POSITION:
        return Side.EXPERT.value
    return f"p{position}"


def position_of_name(name: str) -> int | None:
    """The position a seat name or a relay leg names ("kiosk", "expert", "p0".."p3"),
    or None for anything else."""
    if name == Side.KIOSK.value:
        return KIOSK_POSITION
    if name == Side.EXPERT.value:
        return LEAD_POSITION
    if len(name) == 2 and name[0] == "p" and name[1].isdigit():
        position = int(name[1])
        return position if position < MAX_PARTICIPANTS else None
    return None


def leg_name(position: int) -> str:
    """The relay leg of a position (docs/PROTOCOL.md, "Media")."""
    return f"p{position}"


def media_url(call_id: str) -> str:
    """Where a call's participants (and its listener) POST their offers."""
    return f"/api/v1/media/{call_id}"


class StaffRole(StrEnum):
    EXPERT = "expert"
    INTERPRETER = "interpreter"
    SUPERVISOR = "supervisor"
    """A service-centre supervisor who stepped into the call (issue 23)."""


class PresenceStatus(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    """After a call, until its record is saved or put off: no offers meanwhile."""
    AWAY = "away"
    OFFLINE = "offline"


ONLINE = frozenset({PresenceStatus.AVAILABLE, PresenceStatus.BUSY, PresenceStatus.WRAP_UP})
"""At the desk: a citizen waiting for the department is not told nobody is there."""


class AwayReason(StrEnum):
    """Why the server, not the expert, set an expert away (told on their page)."""

    MISSED_OFFERS = "missed_offers"
    WRAP_UP_EXPIRED = "wrap_up_expired"


def _pairs(value: Any) -> tuple[tuple[str, Any], ...]:
    """Key-value pairs in key order, the last of a repeated key winning: the same
    value whether it was built here or read back from JSON."""
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted({str(k): v for k, v in items}.items()))


class _Record:
    """JSON for the shared store: the value without its version."""

    def to_json(self) -> str:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        data.pop("version", None)
        for name, value in list(data.items()):
            if isinstance(value, tuple) and value and isinstance(value[0], list | tuple):
                data[name] = dict(value)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes, version: int) -> Self:
        data = json.loads(raw)
        return cls(**data, version=version)  # type: ignore[call-arg]


@dataclass(frozen=True)
class Seat:
    """A staff member taking part in a call, at a position that stays theirs until
    they leave."""

    position: int
    account_id: str
    username: str
    role: StaffRole
    department: str
    joined_at: float
    name: str = ""
    """Their display name (told to the other participants)."""
    department_name_zh: str | None = None
    department_name_en: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", StaffRole(self.role))


@dataclass(frozen=True)
class InvitationRef:
    """An open invitation of a call (its ringing state is the ``LiveInvitation``)."""

    id: str
    department: str
    note: str | None
    created_at: float
    by: str
    """The inviter's account id."""


@dataclass(frozen=True)
class Transfer:
    """A call handed to another department, waiting there for an expert."""

    department: str
    """Where it goes (the call's department is that one already)."""
    reason: str
    by: str
    """The username of the expert who transferred it."""
    by_name: str
    from_department: str
    at: float


LISTEN_CLAIM_SECONDS = 30.0
"""How long a supervisor's claim to listen holds before its media connects: then
another supervisor may take the call over (a page closed before it connected
does not keep everyone else out)."""


@dataclass(frozen=True)
class Listener:
    """A supervisor receiving the call's media without sending any (issue 23): at a
    position nobody holds, so that the relay gives them everyone's slots; shown to
    nobody as a participant. One per call."""

    account_id: str
    username: str
    position: int
    token: str
    """Their media token (the listening leg's, ``p{position}``)."""
    since: float
    notice: bool = True
    """Whether the staff in the call are shown that it is listened to (the
    deployment may turn that notice off)."""
    connected: bool = False
    """Their media reached the relay."""

    def holds_claim(self, now: float) -> bool:
        """Whether a second supervisor is refused: the listener's media is up, or
        their claim is young enough to be on its way."""
        return self.connected or now - self.since < LISTEN_CLAIM_SECONDS


def _seats(value: Any) -> tuple[Seat, ...]:
    return tuple(
        sorted((v if isinstance(v, Seat) else Seat(**v) for v in value), key=lambda s: s.position)
    )


@dataclass(frozen=True)
class LiveCall(_Record):
    """A consultation that has not ended."""

    id: str
    department: str
    kiosk_id: str
    kiosk_username: str
    hall: str | None
    case_number: str | None
    phase: Phase
    waiting_since: float
    expert_id: str | None = None
    expert_username: str | None = None
    offered_at: float | None = None
    active_at: float | None = None
    declined_by: tuple[str, ...] = ()
    missed_by: tuple[str, ...] = ()
    dropped: tuple[tuple[str, float], ...] = ()
    """"kiosk"/"expert" (socket) or "media:kiosk"/"media:expert" -> since when."""
    media_tokens: tuple[tuple[str, str], ...] = ()
    """side -> that side's media token, while the call is active."""
    relay: str | None = None
    """The relay worker holding the call's media (placed with the first offer)."""
    hall_name_zh: str | None = None
    hall_name_en: str | None = None
    """The kiosk's hall as it was named when the citizen asked (for the offer)."""
    kiosk_name: str | None = None
    """The kiosk's display name (told to the staff in the call)."""
    seats: tuple[Seat, ...] = ()
    """The staff taking part now, by position (the lead, ``expert_id``, among them
    while the call is active)."""
    invitations: tuple[InvitationRef, ...] = ()
    """Invitations of this call still open (ringing or waiting for someone)."""
    transfer: Transfer | None = None
    """Set while the call waits in the department it was transferred to."""
    screen: int | None = None
    """The position of whoever shares their screen now."""
    recording: str = "off"
    """"off", "asked" (an expert asked; the kiosk asks the citizen) or "on"."""
    listener: Listener | None = None
    """A supervisor listening in, while the call is active (gone as soon as it is
    not, or when someone takes the listener's position)."""
    version: int = 0

    def __post_init__(self) -> None:
        # Accept what JSON gives back (lists, dicts) and keep tuples.
        object.__setattr__(self, "phase", Phase(self.phase))
        object.__setattr__(self, "declined_by", tuple(self.declined_by))
        object.__setattr__(self, "missed_by", tuple(self.missed_by))
        object.__setattr__(self, "dropped", _pairs(self.dropped))
        object.__setattr__(self, "media_tokens", _pairs(self.media_tokens))
        seats = _seats(self.seats)
        if (
            self.phase is Phase.ACTIVE
            and self.expert_id is not None
            and all(s.account_id != self.expert_id for s in seats)
        ):
            # Written by a node from before calls had more than two (or built so): its
            # expert sits where the one who answers does.
            seats = _seats(
                (
                    *seats,
                    Seat(
                        LEAD_POSITION,
                        self.expert_id,
                        self.expert_username or "",
                        StaffRole.EXPERT,
                        self.department,
                        self.active_at or self.waiting_since,
                    ),
                )
            )
        object.__setattr__(self, "seats", seats)
        object.__setattr__(
            self,
            "invitations",
            tuple(
                v if isinstance(v, InvitationRef) else InvitationRef(**v) for v in self.invitations
            ),
        )
        if isinstance(self.transfer, Mapping):
            object.__setattr__(self, "transfer", Transfer(**self.transfer))
        listener = self.listener
        if isinstance(listener, Mapping):
            listener = Listener(**listener)
        if listener is not None and (
            self.phase is not Phase.ACTIVE
            or self.in_transfer
            or any(s.position == listener.position for s in seats)
        ):
            # One rule for every way a listen ends with the call's shape: the call
            # stopped being an active one, or a participant took the position.
            listener = None
        object.__setattr__(self, "listener", listener)

    # ---- who sits where --------------------------------------------------------------

    def seat_of(self, account_id: str) -> Seat | None:
        return next((s for s in self.seats if s.account_id == account_id), None)

    def seat_at(self, position: int) -> Seat | None:
        return next((s for s in self.seats if s.position == position), None)

    def position_of(self, account_id: str) -> int | None:
        """Where the account sits in the call (0 for its kiosk), or None."""
        if account_id == self.kiosk_id:
            return KIOSK_POSITION
        seat = self.seat_of(account_id)
        return seat.position if seat is not None else None

    def account_at(self, position: int) -> str | None:
        if position == KIOSK_POSITION:
            return self.kiosk_id
        seat = self.seat_at(position)
        return seat.account_id if seat is not None else None

    def listen_position(self) -> int | None:
        """Where a listener goes: the highest position nobody holds (joiners take the
        lowest, so a listener is moved out last), or None in a call of four."""
        taken = {s.position for s in self.seats}
        return next(
            (p for p in range(MAX_PARTICIPANTS - 1, LEAD_POSITION - 1, -1) if p not in taken),
            None,
        )

    def free_position(self) -> int | None:
        """The lowest position nobody holds, or None when the call is full."""
        taken = {s.position for s in self.seats}
        return next((p for p in range(LEAD_POSITION, MAX_PARTICIPANTS) if p not in taken), None)

    @property
    def experts(self) -> tuple[Seat, ...]:
        return tuple(s for s in self.seats if s.role is StaffRole.EXPERT)

    @property
    def seat_ids(self) -> tuple[str, ...]:
        return tuple(s.account_id for s in self.seats)

    @property
    def participant_ids(self) -> tuple[str, ...]:
        """The kiosk and the staff taking part now."""
        return (self.kiosk_id, *(s.account_id for s in self.seats))

    @property
    def in_transfer(self) -> bool:
        return self.transfer is not None and self.phase is not Phase.ACTIVE

    def dropped_since(self, key: str) -> float | None:
        return dict(self.dropped).get(key)

    def with_dropped(self, key: str, at: float) -> "LiveCall":
        return dataclasses.replace(self, dropped=(*self.dropped, (key, at)))  # _pairs sorts

    def without_dropped(self, key: str) -> "LiveCall":
        return dataclasses.replace(self, dropped=tuple(p for p in self.dropped if p[0] != key))

    def token_of(self, side: str) -> str | None:
        return dict(self.media_tokens).get(side)

    def side_of(self, account_id: str) -> Side | None:
        if account_id == self.kiosk_id:
            return Side.KIOSK
        if self.phase is Phase.ACTIVE and account_id == self.expert_id:
            return Side.EXPERT
        return None

    def account_of(self, side: Side) -> str | None:
        return self.kiosk_id if side is Side.KIOSK else self.expert_id


@dataclass(frozen=True)
class ExpertPresence(_Record):
    expert_id: str
    username: str
    department: str
    status: PresenceStatus
    idle_since: float
    """Longest idle is offered first; reset when a call ends or an offer is missed."""
    offer: str | None = None
    call: str | None = None
    missed_in_a_row: int = 0
    status_before_drop: PresenceStatus | None = None
    """What to restore when the expert comes back within the grace period."""
    status_after_call: PresenceStatus = PresenceStatus.AVAILABLE
    """What the expert becomes when the current call (and its wrap-up) ends (away if
    they asked for it)."""
    wrap_up: str | None = None
    """The consultation whose record the expert completes after its call (status
    ``wrap_up``, or ``offline`` within the grace period): no offer comes meanwhile."""
    wrap_up_until: float | None = None
    """When the wrap-up ends by itself (the expert is then set away)."""
    away_reason: AwayReason | None = None
    """Set when the server set the expert away; None when the expert chose."""
    version: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", PresenceStatus(self.status))
        object.__setattr__(self, "status_after_call", PresenceStatus(self.status_after_call))
        if self.status_before_drop is not None:
            object.__setattr__(self, "status_before_drop", PresenceStatus(self.status_before_drop))
        if self.away_reason is not None:
            object.__setattr__(self, "away_reason", AwayReason(self.away_reason))

    @property
    def online(self) -> bool:
        return self.status in ONLINE

    @property
    def free(self) -> bool:
        """Available and not ringing: may be offered a consultation."""
        return self.status is PresenceStatus.AVAILABLE and self.offer is None


@dataclass(frozen=True)
class LiveInvitation(_Record):
    """An invitation into a call, queued at the head of the invited department's queue
    and rung to its staff like a consultation's offer."""

    id: str
    call_id: str
    department: str
    """The department invited."""
    note: str | None
    created_at: float
    by_id: str
    by_username: str
    by_name: str
    by_department: str
    phase: Phase = Phase.WAITING
    """waiting, or offered (ringing for ``expert_id``)."""
    expert_id: str | None = None
    offered_at: float | None = None
    declined_by: tuple[str, ...] = ()
    missed_by: tuple[str, ...] = ()
    version: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase", Phase(self.phase))
        object.__setattr__(self, "declined_by", tuple(self.declined_by))
        object.__setattr__(self, "missed_by", tuple(self.missed_by))

    @property
    def rung(self) -> tuple[str, ...]:
        """Who was rung for it and did not take it (each is rung once)."""
        return (*self.declined_by, *self.missed_by)

    def ref(self) -> InvitationRef:
        return InvitationRef(self.id, self.department, self.note, self.created_at, self.by_id)


INVITATION_PREFIX = "i-"
"""Invitation ids start with it; the queues hold them beside consultation ids."""


def is_invitation(queued_id: str) -> bool:
    return queued_id.startswith(INVITATION_PREFIX)


@dataclass(frozen=True)
class OpenCall(_Record):
    """Which open consultation an account (kiosk or expert) takes part in."""

    account_id: str
    call_id: str
    version: int = 0


Live = LiveCall | ExpertPresence | OpenCall | LiveInvitation


def call_key(call_id: str) -> str:
    return f"call:{call_id}"


def presence_key(expert_id: str) -> str:
    return f"presence:{expert_id}"


def open_key(account_id: str) -> str:
    return f"open:{account_id}"


def invitation_key(invitation_id: str) -> str:
    return f"invite:{invitation_id}"


def queued_key(queued_id: str) -> str:
    """The key of what a department's queue holds: a consultation or an invitation."""
    return invitation_key(queued_id) if is_invitation(queued_id) else call_key(queued_id)


def experts_set(department: str) -> str:
    return f"experts:{department}"


def key_of(value: Live) -> str:
    if isinstance(value, LiveCall):
        return call_key(value.id)
    if isinstance(value, ExpertPresence):
        return presence_key(value.expert_id)
    if isinstance(value, LiveInvitation):
        return invitation_key(value.id)
    return open_key(value.account_id)


_KINDS: dict[str, type[LiveCall] | type[ExpertPresence] | type[OpenCall] | type[LiveInvitation]] = {
    "call": LiveCall,
    "presence": ExpertPresence,
    "open": OpenCall,
    "invite": LiveInvitation,
}


def decode(key: str, raw: str | bytes, version: int) -> Live:
    """A stored value back from its key (which says its kind), JSON and version."""
    return _KINDS[key.split(":", 1)[0]].from_json(raw, version)
