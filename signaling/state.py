"""Live signaling state behind one interface: queues, presence, calls, deadlines.

Values cross the interface as plain dataclasses that serialise to JSON, so a
shared implementation (Redis) can hold them for several nodes; nothing relies
on two callers sharing a Python object. Callers hold ``lock(department)``
around a read-modify-write of a department's queue, presence or calls.
"""

import json
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Self

from storage.records import ConsultationState


class PresenceStatus(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"
    OFFLINE = "offline"


class Side(StrEnum):
    KIOSK = "kiosk"
    EXPERT = "expert"


class _Json:
    def to_json(self) -> str:
        return json.dumps(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, raw: str | bytes) -> Self:
        return cls(**json.loads(raw))


@dataclass
class LiveCall(_Json):
    """A consultation that has not ended yet."""

    id: str
    department: str
    kiosk_id: str
    kiosk_username: str
    hall: str | None
    case_number: str | None
    state: str
    waiting_since: float
    expert_id: str | None = None
    expert_username: str | None = None
    offered_at: float | None = None
    active_at: float | None = None
    declined_by: list[str] = field(default_factory=list)
    missed_by: list[str] = field(default_factory=list)
    # "kiosk"/"expert" (socket) or "media:kiosk"/"media:expert" -> when it went away
    dropped: dict[str, float] = field(default_factory=dict)
    # side -> media token for this call, valid while the call is open
    media_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def phase(self) -> ConsultationState:
        return ConsultationState(self.state)


@dataclass
class ExpertPresence(_Json):
    expert_id: str
    username: str
    department: str
    status: str
    # Longest idle is offered first; reset when a call ends or an offer is missed.
    idle_since: float
    offer: str | None = None
    call: str | None = None
    missed_in_a_row: int = 0
    # What to restore when the expert comes back within the grace period.
    status_before_drop: str | None = None
    # What the expert becomes when the current call ends (away if they asked for it).
    status_after_call: str = "available"

    @property
    def presence(self) -> PresenceStatus:
        return PresenceStatus(self.status)


class StateStore(ABC):
    """Shared live state. Implementations: ``InProcessStateStore``, ``RedisStateStore``."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to what backs the store."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what backs the store."""

    @abstractmethod
    def lock(self, name: str) -> AbstractAsyncContextManager[Any]:
        """Mutual exclusion for ``name`` across every node sharing the store."""

    # calls
    @abstractmethod
    async def get_call(self, call_id: str) -> LiveCall | None: ...

    @abstractmethod
    async def put_call(self, call: LiveCall) -> None: ...

    @abstractmethod
    async def delete_call(self, call_id: str) -> None: ...

    @abstractmethod
    async def open_call_of(self, account_id: str) -> str | None:
        """The id of the open consultation this kiosk or expert takes part in."""

    @abstractmethod
    async def set_open_call_of(self, account_id: str, call_id: str | None) -> None: ...

    # department queues (FIFO of call ids)
    @abstractmethod
    async def queue_push(self, department: str, call_id: str) -> None: ...

    @abstractmethod
    async def queue_remove(self, department: str, call_id: str) -> bool: ...

    @abstractmethod
    async def queue(self, department: str) -> list[str]: ...

    @abstractmethod
    async def departments_with_queues(self) -> list[str]: ...

    # expert presence
    @abstractmethod
    async def get_presence(self, expert_id: str) -> ExpertPresence | None: ...

    @abstractmethod
    async def put_presence(self, presence: ExpertPresence) -> None: ...

    @abstractmethod
    async def delete_presence(self, expert_id: str, department: str) -> None: ...

    @abstractmethod
    async def department_presence(self, department: str) -> list[ExpertPresence]: ...

    # socket connections per account (an account may have several tabs)
    @abstractmethod
    async def add_connection(self, account_id: str, sid: str) -> int:
        """Register a connection; return how many the account now has."""

    @abstractmethod
    async def remove_connection(self, account_id: str, sid: str) -> int:
        """Forget a connection; return how many the account still has."""

    # deadlines (ring timeouts, grace periods): claimed once, by one node
    @abstractmethod
    async def set_deadline(self, key: str, at: float) -> None: ...

    @abstractmethod
    async def clear_deadline(self, key: str) -> None: ...

    @abstractmethod
    async def pop_due(self, now: float, limit: int = 100) -> list[str]:
        """Remove and return the keys whose deadline has passed."""

    # recent handle times per department, for the wait estimate
    @abstractmethod
    async def add_handle_time(self, department: str, seconds: float, keep: int) -> None: ...

    @abstractmethod
    async def handle_times(self, department: str) -> list[float]: ...

    # attempt counting (login throttling, rates): each check-and-count is one step
    @abstractmethod
    async def take_slot(self, key: str, window: float, limit: int, now: float) -> bool:
        """Count one event for ``key`` at ``now`` if fewer than ``limit`` fell within
        ``window``; False (and nothing counted) otherwise. Atomic: of N concurrent
        callers at most ``limit`` get True."""

    @abstractmethod
    async def release_slot(self, key: str, at: float) -> None:
        """Forget one event counted at ``at`` (an attempt that turned out not to count)."""
