"""Fires deadlines (ring timeouts, grace periods) kept in the ``StateStore``.

Deadlines live in the store rather than as ``asyncio`` timers so that any node
can claim one when it falls due (each exactly once), and none is lost with a
node's memory: a deadline set by a process that died still fires.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from signaling.background import cancel_unfinished, finish
from signaling.errors import Unavailable
from signaling.store import Commit, LiveStore, StoreUnavailable
from storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05
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
            try:
                for key in await self._store.claim_due(self._clock()):
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
            await asyncio.sleep(TICK_SECONDS)

    async def _fire_one(self, key: str) -> None:
        try:
            await self._fire(key)
            await self._store.done([key])
        except (Unavailable, StoreUnavailable, StorageUnavailable) as exc:
            # Claimed but not carried out (the records or the store are down): due
            # again shortly, so that it is not lost.
            log.warning("deadline %s postponed: %s", key.split("|", 1)[0], exc)
            try:
                await self._store.commit(Commit(deadlines_set={key: self._clock() + RETRY_AFTER}))
            except StoreUnavailable:
                log.error("deadline %s lost: the store is unreachable", key.split("|", 1)[0])
        except Exception:
            # A bug, not an outage: trying again would fail the same way.
            log.exception("deadline %s failed", key.split("|", 1)[0])
            with contextlib.suppress(StoreUnavailable):
                await self._store.done([key])
