"""The in-process ``LiveStore``: the single-node default, no Redis needed.

Every operation runs without awaiting anything, so on one event loop each is
atomic, as the contract asks. Values are immutable, so holding them as they
are (not serialised) cannot let a caller change what another sees.
"""

import bisect
import dataclasses
import heapq
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping

from signaling.live import Live
from signaling.store import Commit, LiveStore, used_while_closed


class InProcessStore(LiveStore):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, Live] = {}
        self._queues: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self._members: dict[str, set[str]] = defaultdict(set)
        self._deadlines: dict[str, float] = {}
        self._deadline_heap: list[tuple[float, str]] = []
        self._handle_times: dict[str, deque[float]] = {}
        self._hits: dict[str, list[float]] = defaultdict(list)
        self._claims: dict[str, float] = {}
        self._connections: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._beats: dict[str, dict[str, tuple[str, float]]] = defaultdict(dict)
        self._inflight: dict[str, float] = {}
        self._versions = 0
        self._windows: dict[str, float] = {}
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise used_while_closed()

    async def ping(self) -> None:
        self._refuse_if_closed()
        return None

    async def read(self, keys: Iterable[str]) -> dict[str, Live]:
        self._refuse_if_closed()
        return {k: self._values[k] for k in keys if k in self._values}

    async def commit(self, commit: Commit) -> bool:
        self._refuse_if_closed()
        # Refused before anything changes: deque() would raise half-way through.
        for _department, _seconds, keep in commit.handle_times:
            if keep < 0:
                raise ValueError(f"cannot keep {keep} handle times")
        for key, version in commit.expect.items():
            current = self._values.get(key)
            if (0 if current is None else current.version) != version:
                return False
        for key, value in commit.put.items():
            if value is None:
                self._values.pop(key, None)
            else:
                # One counter for the whole store (see Commit.put).
                self._versions += 1
                self._values[key] = dataclasses.replace(value, version=self._versions)
        for department, call_id in commit.queue_remove:
            queue = self._queues.get(department)
            if queue:
                queue[:] = [entry for entry in queue if entry[1] != call_id]
        for department, call_id, score in commit.queue_add:
            queue = self._queues[department]
            if all(entry[1] != call_id for entry in queue):
                bisect.insort(queue, (score, call_id))
        for name, member in commit.members_remove:
            self._members[name].discard(member)
        for name, member in commit.members_add:
            self._members[name].add(member)
        for key in commit.deadlines_clear:
            self._deadlines.pop(key, None)
            self._inflight.pop(key, None)
        for key, at in commit.deadlines_set.items():
            self._deadlines[key] = at
            self._inflight.pop(key, None)
            heapq.heappush(self._deadline_heap, (at, key))
        for department, seconds, keep in commit.handle_times:
            times = self._handle_times.get(department)
            if times is None or times.maxlen != keep:
                times = self._handle_times[department] = deque(times or (), maxlen=keep)
            times.append(seconds)
        return True

    async def queue(self, department: str) -> list[str]:
        self._refuse_if_closed()
        return [call_id for _score, call_id in self._queues.get(department, ())]

    async def members(self, name: str) -> list[str]:
        self._refuse_if_closed()
        return sorted(self._members.get(name, ()))

    async def handle_times(self, department: str) -> list[float]:
        self._refuse_if_closed()
        return list(self._handle_times.get(department, ()))

    async def claim_due(self, now: float, limit: int = 100, lease: float = 30.0) -> list[str]:
        self._refuse_if_closed()
        for key, until in list(self._inflight.items()):
            if until <= now and key not in self._deadlines:
                del self._inflight[key]
                self._deadlines[key] = now
                heapq.heappush(self._deadline_heap, (now, key))
        due: list[str] = []
        heap = self._deadline_heap
        while heap and heap[0][0] <= now and len(due) < limit:
            at, key = heapq.heappop(heap)
            # Entries replaced or cleared since they were pushed are stale.
            if self._deadlines.get(key) == at:
                del self._deadlines[key]
                self._inflight[key] = now + lease
                due.append(key)
        return due

    async def done(self, keys: Iterable[str]) -> None:
        self._refuse_if_closed()
        for key in keys:
            self._inflight.pop(key, None)

    async def deadline(self, key: str) -> float | None:
        self._refuse_if_closed()
        return self._deadlines.get(key)

    async def take_slot(self, key: str, window: float, limit: int, now: float) -> bool:
        self._refuse_if_closed()
        self._windows[key] = window
        if len(self._hits) > 10_000:
            self._prune_hits(now)
        hits = self._hits[key]
        del hits[: bisect.bisect_left(hits, now - window)]
        if len(hits) >= limit:
            if not hits:
                del self._hits[key]
            return False
        bisect.insort(hits, now)
        return True

    def _prune_hits(self, now: float) -> None:
        """Forget keys whose every event has left its window (one guess per name
        would otherwise grow memory without bound)."""
        for key in [
            k
            for k, hits in self._hits.items()
            if not hits or hits[-1] < now - self._windows.get(k, 0.0)
        ]:
            self._hits.pop(key, None)
            self._windows.pop(key, None)

    async def release_slot(self, key: str, at: float) -> None:
        self._refuse_if_closed()
        hits = self._hits.get(key)
        if not hits:
            return
        index = bisect.bisect_left(hits, at)
        if index < len(hits) and hits[index] == at:
            del hits[index]
        if not hits:
            del self._hits[key]

    async def claim(self, key: str, ttl: float) -> bool:
        self._refuse_if_closed()
        now = self._clock()
        if len(self._claims) > 10_000:
            self._claims = {k: until for k, until in self._claims.items() if until > now}
        if self._claims.get(key, 0.0) > now:
            return False
        self._claims[key] = now + ttl
        return True

    async def release(self, key: str) -> bool:
        self._refuse_if_closed()
        return self._claims.pop(key, 0.0) > self._clock()

    async def add_connection(self, account_id: str, node: str, sid: str) -> int:
        self._refuse_if_closed()
        self._connections[account_id].add((node, sid))
        return len(self._connections[account_id])

    async def remove_connection(self, account_id: str, node: str, sid: str) -> int:
        self._refuse_if_closed()
        sids = self._connections.get(account_id)
        if sids is None:
            return 0
        sids.discard((node, sid))
        if not sids:
            del self._connections[account_id]
            return 0
        return len(sids)

    async def connections_of_node(self, node: str) -> list[tuple[str, str]]:
        self._refuse_if_closed()
        return sorted(
            (account, sid)
            for account, sids in self._connections.items()
            for owner, sid in sids
            if owner == node
        )

    async def heartbeat(self, group: str, member: str, info: str, ttl: float) -> None:
        self._refuse_if_closed()
        self._beats[group][member] = (info, self._clock() + ttl)

    async def alive(self, group: str) -> Mapping[str, str]:
        self._refuse_if_closed()
        now = self._clock()
        return {m: info for m, (info, until) in self._beats.get(group, {}).items() if until > now}

    async def known(self, group: str) -> list[str]:
        self._refuse_if_closed()
        return sorted(self._beats.get(group, {}))

    async def forget(self, group: str, member: str) -> None:
        self._refuse_if_closed()
        self._beats.get(group, {}).pop(member, None)
