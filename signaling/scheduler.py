"""Fires deadlines (ring timeouts, grace periods) kept in the ``StateStore``.

Deadlines live in the store rather than as ``asyncio`` timers so that any node
can claim one when it falls due (each exactly once), and none is lost with a
node's memory: a deadline set by a process that died still fires.
"""

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable

from signaling.background import cancel_unfinished, finish
from signaling.errors import Unavailable
from signaling.store import Commit, LiveStore, StoreUnavailable
from storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

BACKSTOP_SECONDS = 1.0
"""Longest sleep between two looks at the store: deadlines another node set (and
fires itself, unless it died) and leases that ran out are found within it. A
deadline this node sets wakes it at its time (``DeadlineScheduler.soon``)."""
CLAIM_LIMIT = 100
"""Deadlines claimed in one look (a burst of more is claimed in the next looks,
EARLIEST_SECONDS apart)."""
MAX_TIMES = 100_000
EARLIEST_SECONDS = 0.05
"""Shortest sleep: a burst of deadlines due together is claimed in a few looks."""
RETRY_AFTER = 2.0


class DeadlineScheduler:
    def __init__(
        self,
        store: LiveStore,
        fire: Callable[[str], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._fire = fire
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        # Instead of looking at the store 20 times a second, idle or not (an idle
        # node's largest cost): the times of the deadlines this node set, earliest
        # first, and an event that cuts the sleep short when an earlier one comes.
        self._times: list[float] = []
        self._earlier = asyncio.Event()

    def soon(self, at: float) -> None:
        """A deadline due at ``at`` (this scheduler's clock) was just set."""
        if len(self._times) >= MAX_TIMES:
            # Only ever this many outstanding by a flood of calls: the backstop's look
            # every second finds the rest.
            return
        earlier = not self._times or at < self._times[0]
        heapq.heappush(self._times, at)
        if earlier:
            self._earlier.set()

    def _sleep_for(self, now: float) -> float:
        while self._times and self._times[0] <= now:
            heapq.heappop(self._times)
        if not self._times:
            return BACKSTOP_SECONDS
        return min(BACKSTOP_SECONDS, max(EARLIEST_SECONDS, self._times[0] - now))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deadline-scheduler")

    async def stop(self, within: float) -> None:
        """Claim nothing more; give the deadlines being carried out ``within`` seconds,
        then cancel them (a cancelled one is claimed again when its lease runs out)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await finish(self._running, within)
        await cancel_unfinished(self._running, "deadlines being carried out")

    async def _run(self) -> None:
        while True:
            self._earlier.clear()
            now = self._clock()
            full = False
            try:
                due = await self._store.claim_due(now, CLAIM_LIMIT)
                # A look that took as many as it may leaves more due: look again soon.
                full = len(due) >= CLAIM_LIMIT
                for key in due:
                    task = asyncio.create_task(
                        self._fire_one(key), name=f"deadline {key.split('|', 1)[0]}"
                    )
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
            except StoreUnavailable:
                # Said once by /healthz and the events that fail; due deadlines are
                # claimed when the store is back.
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("deadline scheduler tick failed")
            delay = EARLIEST_SECONDS if full else self._sleep_for(now)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancel (stop) that comes as the event is set, and stop would hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._earlier.wait()

    async def _fire_one(self, key: str) -> None:
        try:
            await self._fire(key)
            await self._store.done([key])
        except (Unavailable, StoreUnavailable, StorageUnavailable) as exc:
            # Claimed but not carried out (the records or the store are down): due
            # again shortly, so that it is not lost.
            log.warning("deadline %s postponed: %s", key.split("|", 1)[0], exc)
            try:
                at = self._clock() + RETRY_AFTER
                await self._store.commit(Commit(deadlines_set={key: at}))
                self.soon(at)
            except StoreUnavailable:
                log.error("deadline %s lost: the store is unreachable", key.split("|", 1)[0])
        except Exception:
            # A bug, not an outage: trying again would fail the same way.
            log.exception("deadline %s failed", key.split("|", 1)[0])
            with contextlib.suppress(StoreUnavailable):
                await self._store.done([key])
