"""Fires deadlines (ring timeouts, grace periods) kept in the ``StateStore``.

Deadlines live in the store rather than as ``asyncio`` timers so that any node
can claim one when it falls due, and none is lost with a node's memory.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from signaling.state import StateStore

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05


class DeadlineScheduler:
    def __init__(
        self,
        store: StateStore,
        fire: Callable[[str], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._fire = fire
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deadline-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                for key in await self._store.pop_due(self._clock()):
                    task = asyncio.create_task(self._fire_one(key))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
            except Exception:
                log.exception("deadline scheduler tick failed")
            await asyncio.sleep(TICK_SECONDS)

    async def _fire_one(self, key: str) -> None:
        try:
            await self._fire(key)
        except Exception:
            log.exception("deadline %s failed", key.split("|", 1)[0])
