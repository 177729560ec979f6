"""Work started in the background (a routing pass, a connection's bookkeeping, a
socket event) that must neither fail silently nor outlive the stop: one runner
that logs what went wrong, and a bounded way to let tasks finish at a stop.

A stop waits for such work only so long (``settle``): what has not finished by
then is cancelled and named in the log, and nothing new starts once the runner
is closed. Work cut short this way is repaired by the reconciliation of records
and live state (``signaling.reconcile``), never waited for without end.
"""

import asyncio
import logging
from collections.abc import Collection, Coroutine
from typing import Any

from signaling.errors import SignalingError
from signaling.store import StoreUnavailable
from storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

CANCEL_GRACE = 0.5
"""Seconds a cancelled task is given to unwind before the stop goes on without it."""


async def finish(tasks: Collection[asyncio.Task[Any]], within: float) -> None:
    """Wait up to ``within`` seconds for ``tasks`` (a live collection: tasks added
    meanwhile are waited for too, under the same deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, within)
    while True:
        running = [t for t in tasks if not t.done()]
        remaining = deadline - loop.time()
        if not running or remaining <= 0:
            return
        await asyncio.wait(running, timeout=remaining)


async def cancel_unfinished(tasks: Collection[asyncio.Task[Any]], what: str) -> int:
    """Cancel those of ``tasks`` still running, name them in the log, and give them
    ``CANCEL_GRACE`` to unwind (not more: a task that ignores its cancellation is
    left to the process exit). How many were cancelled."""
    running = [t for t in tasks if not t.done()]
    if not running:
        return 0
    for task in running:
        task.cancel()
    names = sorted(task.get_name() for task in running)
    log.warning("stop: %d %s cancelled: %s", len(running), what, ", ".join(names))
    await asyncio.wait(running, timeout=CANCEL_GRACE)
    return len(running)


async def settle(tasks: Collection[asyncio.Task[Any]], within: float, what: str) -> int:
    """``finish`` then ``cancel_unfinished``: how many had to be cancelled."""
    await finish(tasks, within)
    return await cancel_unfinished(tasks, what)


class BackgroundTasks:
    def __init__(
        self, what: str, expected_level: int = logging.INFO, trace_expected: bool = False
    ) -> None:
        """``what`` names the work in the log; a refusal or an unreachable store
        (expected now and then) is logged at ``expected_level`` (with its traceback
        if ``trace_expected``), anything else as an error with its traceback."""
        self._what = what
        self._expected_level = expected_level
        self._trace_expected = trace_expected
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background; once closed (stopping), it is not started."""
        if self._closed:
            work.close()
            log.debug("%s not started: stopping", self._what)
            return

        async def run() -> None:
            try:
                await work
            except (SignalingError, StoreUnavailable, StorageUnavailable) as exc:
                log.log(
                    self._expected_level,
                    "%s did not run: %s",
                    self._what,
                    exc,
                    exc_info=self._trace_expected,
                )
            except Exception:
                log.exception("%s failed", self._what)

        name = getattr(work, "__qualname__", "work")
        task = asyncio.create_task(run(), name=f"{self._what}: {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self, within: float) -> bool:
        """Wait up to ``within`` seconds until no task runs (new ones may start after);
        whether none does."""
        await finish(self._tasks, within)
        return all(task.done() for task in self._tasks)

    async def drain(self, within: float) -> bool:
        """Wait up to ``within`` seconds for every task, including those started
        meanwhile; then start nothing more and cancel what is left (logged). Whether
        everything finished by itself."""
        await finish(self._tasks, within)
        # Closed before cancelling: a cancelled task's clean-up starts nothing new.
        self._closed = True
        return await cancel_unfinished(self._tasks, self._what) == 0
