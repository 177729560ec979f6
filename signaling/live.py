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
    KIOSK = "kiosk"
    EXPERT = "expert"


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
    version: int = 0

    def __post_init__(self) -> None:
        # Accept what JSON gives back (lists, dicts) and keep tuples.
        object.__setattr__(self, "phase", Phase(self.phase))
        object.__setattr__(self, "declined_by", tuple(self.declined_by))
        object.__setattr__(self, "missed_by", tuple(self.missed_by))
        object.__setattr__(self, "dropped", _pairs(self.dropped))
        object.__setattr__(self, "media_tokens", _pairs(self.media_tokens))

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
class OpenCall(_Record):
    """Which open consultation an account (kiosk or expert) takes part in."""

    account_id: str
    call_id: str
    version: int = 0


Live = LiveCall | ExpertPresence | OpenCall


def call_key(call_id: str) -> str:
    return f"call:{call_id}"


def presence_key(expert_id: str) -> str:
    return f"presence:{expert_id}"


def open_key(account_id: str) -> str:
    return f"open:{account_id}"


def experts_set(department: str) -> str:
    return f"experts:{department}"


def key_of(value: Live) -> str:
    if isinstance(value, LiveCall):
        return call_key(value.id)
    if isinstance(value, ExpertPresence):
        return presence_key(value.expert_id)
    return open_key(value.account_id)


_KINDS: dict[str, type[LiveCall] | type[ExpertPresence] | type[OpenCall]] = {
    "call": LiveCall,
    "presence": ExpertPresence,
    "open": OpenCall,
}


def decode(key: str, raw: str | bytes, version: int) -> Live:
    """A stored value back from its key (which says its kind), JSON and version."""
    return _KINDS[key.split(":", 1)[0]].from_json(raw, version)
