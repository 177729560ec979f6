"""The in-process ``StateStore``: the single-node default, no Redis needed."""

import asyncio
import bisect
import heapq
from collections import defaultdict, deque
from contextlib import AbstractAsyncContextManager

from signaling.state import ExpertPresence, LiveCall, StateStore


class InProcessStateStore(StateStore):
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        # Values are stored serialised, exactly as a shared store would hold
        # them, so that no caller can come to rely on object identity.
        self._calls: dict[str, str] = {}
        self._open_call: dict[str, str] = {}
        self._queues: dict[str, list[str]] = defaultdict(list)
        self._presence: dict[str, dict[str, str]] = defaultdict(dict)
        self._presence_dept: dict[str, str] = {}
        self._connections: dict[str, set[str]] = defaultdict(set)
        self._deadlines: dict[str, float] = {}
        self._deadline_heap: list[tuple[float, str]] = []
        self._handle_times: dict[str, deque[float]] = {}
        self._hits: dict[str, list[float]] = defaultdict(list)

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def get_call(self, call_id: str) -> LiveCall | None:
        raw = self._calls.get(call_id)
        return LiveCall.from_json(raw) if raw is not None else None

    async def put_call(self, call: LiveCall) -> None:
        self._calls[call.id] = call.to_json()

    async def delete_call(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    async def open_call_of(self, account_id: str) -> str | None:
        return self._open_call.get(account_id)

    async def set_open_call_of(self, account_id: str, call_id: str | None) -> None:
        if call_id is None:
            self._open_call.pop(account_id, None)
        else:
            self._open_call[account_id] = call_id

    async def queue_push(self, department: str, call_id: str) -> None:
        self._queues[department].append(call_id)

    async def queue_remove(self, department: str, call_id: str) -> bool:
        queue = self._queues.get(department)
        if not queue or call_id not in queue:
            return False
        queue.remove(call_id)
        if not queue:
            del self._queues[department]
        return True

    async def queue(self, department: str) -> list[str]:
        return list(self._queues.get(department, ()))

    async def departments_with_queues(self) -> list[str]:
        return sorted(self._queues)

    async def get_presence(self, expert_id: str) -> ExpertPresence | None:
        department = self._presence_dept.get(expert_id)
        if department is None:
            return None
        return ExpertPresence.from_json(self._presence[department][expert_id])

    async def put_presence(self, presence: ExpertPresence) -> None:
        self._presence_dept[presence.expert_id] = presence.department
        self._presence[presence.department][presence.expert_id] = presence.to_json()

    async def delete_presence(self, expert_id: str, department: str) -> None:
        self._presence_dept.pop(expert_id, None)
        self._presence[department].pop(expert_id, None)

    async def department_presence(self, department: str) -> list[ExpertPresence]:
        return [ExpertPresence.from_json(raw) for raw in self._presence[department].values()]

    async def add_connection(self, account_id: str, sid: str) -> int:
        self._connections[account_id].add(sid)
        return len(self._connections[account_id])

    async def remove_connection(self, account_id: str, sid: str) -> int:
        sids = self._connections.get(account_id)
        if sids is None:
            return 0
        sids.discard(sid)
        if not sids:
            del self._connections[account_id]
            return 0
        return len(sids)

    async def set_deadline(self, key: str, at: float) -> None:
        self._deadlines[key] = at
        heapq.heappush(self._deadline_heap, (at, key))

    async def clear_deadline(self, key: str) -> None:
        self._deadlines.pop(key, None)

    async def pop_due(self, now: float, limit: int = 100) -> list[str]:
        due: list[str] = []
        heap = self._deadline_heap
        while heap and heap[0][0] <= now and len(due) < limit:
            at, key = heapq.heappop(heap)
            # Entries replaced or cleared since they were pushed are stale.
            if self._deadlines.get(key) == at:
                del self._deadlines[key]
                due.append(key)
        return due

    async def add_handle_time(self, department: str, seconds: float, keep: int) -> None:
        times = self._handle_times.get(department)
        if times is None or times.maxlen != keep:
            times = self._handle_times[department] = deque(times or (), maxlen=keep)
        times.append(seconds)

    async def handle_times(self, department: str) -> list[float]:
        return list(self._handle_times.get(department, ()))

    async def take_slot(self, key: str, window: float, limit: int, now: float) -> bool:
        hits = self._hits[key]
        del hits[: bisect.bisect_left(hits, now - window)]
        if len(hits) >= limit:
            if not hits:
                del self._hits[key]
            return False
        bisect.insort(hits, now)
        return True

    async def release_slot(self, key: str, at: float) -> None:
        hits = self._hits.get(key)
        if not hits:
            return
        index = bisect.bisect_left(hits, at)
        if index < len(hits) and hits[index] == at:
            del hits[index]
        if not hits:
            del self._hits[key]
