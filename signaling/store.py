"""The live-state store: a small contract of operations that are each atomic on
their own, so that several processes can share it without a lock around a
sequence of calls.

- ``read`` returns values with their versions; ``commit`` applies a set of
  changes only if none of the values it was decided on has changed since
  (compare-and-set on their versions), together with the queue, index,
  deadline and statistics changes that go with them, all or nothing.
- Department queues are ordered by the time each consultation started waiting,
  so a consultation whose offer is taken back keeps its place.
- Deadlines (ring timeouts, grace periods) are claimed by exactly one caller
  when due, whichever process set them.
- Slots count events in a sliding window (login attempts, chat lines): taking
  one is check-and-count in one step.
- Connections per account are counted across nodes; heartbeats say which nodes
  and relay workers are alive, so that a dead node's connections can be swept.

Implementations: ``signaling.memory_store.InProcessStore`` (one process, no
Redis) and ``signaling.redis_store.RedisStore``; one contract test suite
(``tests/signaling/test_store_contract.py``) runs against both.
"""

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from signaling.live import Live

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The store cannot be reached (Redis down). A read read nothing; a write may or
    may not have been applied (a timed-out command can still run): read again."""


class StoreClosed(StoreUnavailable):
    """The store has been closed (the process is stopping) or not yet started: it
    refuses everything, so that work cut short by a stop cannot act on it."""


def used_while_closed() -> StoreClosed:
    """The refusal of a closed store, logged: whatever asked outlived the stop (or
    ran before the start), which the stop's order is meant to make impossible."""
    log.warning("the live state was used while closed: work outlived the stop")
    return StoreClosed("the live state is closed (before the start or after the stop)")


@dataclass
class Commit:
    """What one transition changes, applied only if ``expect`` still holds. Within
    it, queue and member removals run before additions and deadline clears before
    sets, so that one commit can move an entry."""

    expect: dict[str, int] = field(default_factory=dict)
    """key -> the version it was read at (0: it did not exist)."""
    put: dict[str, Live | None] = field(default_factory=dict)
    """key -> its new value (None: delete). Versions are the store's business: taken
    from one counter for the whole store, so a key deleted and written again never
    returns to a version a stale decision might expect."""
    queue_add: list[tuple[str, str, float]] = field(default_factory=list)
    """(department, call id, waiting since)."""
    queue_remove: list[tuple[str, str]] = field(default_factory=list)
    members_add: list[tuple[str, str]] = field(default_factory=list)
    """(set, member): which experts a department has a presence for."""
    members_remove: list[tuple[str, str]] = field(default_factory=list)
    deadlines_set: dict[str, float] = field(default_factory=dict)
    deadlines_clear: list[str] = field(default_factory=list)
    handle_times: list[tuple[str, float, int]] = field(default_factory=list)
    """(department, seconds, how many to keep): for the wait estimate."""

    def expects(self, key: str, value: Live | None) -> None:
        self.expect[key] = 0 if value is None else value.version


class LiveStore(ABC):
    """Shared live state (see the module docstring for the contract)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to what backs the store."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what backs the store; from then on every operation raises
        ``StoreClosed``."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` if the store cannot be used now."""

    # ---- values and transitions ---------------------------------------------------

    @abstractmethod
    async def read(self, keys: Iterable[str]) -> dict[str, Live]:
        """The values of those keys that exist, each with its version."""

    @abstractmethod
    async def commit(self, commit: Commit) -> bool:
        """Apply ``commit`` if every ``expect``ed key is still at its version; else
        change nothing and return False."""

    @abstractmethod
    async def queue(self, department: str) -> list[str]:
        """The department's queue, oldest first."""

    @abstractmethod
    async def members(self, name: str) -> list[str]: ...

    @abstractmethod
    async def handle_times(self, department: str) -> list[float]: ...

    # ---- deadlines ----------------------------------------------------------------

    @abstractmethod
    async def claim_due(self, now: float, limit: int = 100, lease: float = 30.0) -> list[str]:
        """Deadlines due at ``now``, each returned to one caller across every process
        sharing the store, and leased to it: unless ``done`` within ``lease`` seconds
        (its claimer died), it is due again. Setting or clearing it ends the lease."""

    @abstractmethod
    async def done(self, keys: Iterable[str]) -> None:
        """Deadlines claimed and carried out."""

    @abstractmethod
    async def deadline(self, key: str) -> float | None: ...

    # ---- counting -----------------------------------------------------------------

    @abstractmethod
    async def take_slot(self, key: str, window: float, limit: int, now: float) -> bool:
        """Count one event for ``key`` at ``now`` if fewer than ``limit`` fell within
        ``window``; False (and nothing counted) otherwise. Of N concurrent callers at
        most ``limit`` get True."""

    @abstractmethod
    async def release_slot(self, key: str, at: float) -> None:
        """Forget one event counted at ``at`` (an attempt that turned out not to count)."""

    @abstractmethod
    async def claim(self, key: str, ttl: float) -> bool:
        """True for the first caller until ``ttl`` seconds pass or ``release``."""

    @abstractmethod
    async def release(self, key: str) -> bool:
        """End a claim: True if it was held (and this call ended it); of concurrent
        callers at most one gets True, so a claim can stand for something taken once."""

    # ---- connections and liveness -------------------------------------------------

    @abstractmethod
    async def add_connection(self, account_id: str, node: str, sid: str) -> int:
        """Register a socket; return how many the account now has, on every node."""

    @abstractmethod
    async def remove_connection(self, account_id: str, node: str, sid: str) -> int:
        """Forget a socket; return how many the account still has."""

    @abstractmethod
    async def connections_of_node(self, node: str) -> list[tuple[str, str]]:
        """(account, sid) of every socket a node registered."""

    @abstractmethod
    async def heartbeat(self, group: str, member: str, info: str, ttl: float) -> None:
        """``member`` of ``group`` (a node, a relay worker) is alive for ``ttl``."""

    @abstractmethod
    async def alive(self, group: str) -> Mapping[str, str]:
        """Members of ``group`` whose heartbeat has not expired, with their info."""

    @abstractmethod
    async def known(self, group: str) -> list[str]:
        """Every member ever registered in ``group`` and not yet forgotten."""

    @abstractmethod
    async def forget(self, group: str, member: str) -> None: ...
