"""A stop that always stops: every step of it bounded by one budget, and a last
resort for what no deadline can reach.

SIGTERM (or SIGINT) makes aiohttp stop listening, run the application's
``on_shutdown`` hooks (the budget starts there, and signaling refuses events and
closes every socket's transport), give open requests ``server.SHUTDOWN_SECONDS``
(then cancel them, once more as long), and run the ``cleanup_ctx`` steps in
reverse: retention, figures, signaling, relays, documents, records. Each step
runs under ``StopBudget.step``: at most its own bound and never past the budget's
end; a step that overruns is abandoned with a log line (what it held is released
by the process exit: the database rolls back what was not committed, Redis and
the relay workers see their connections close).

``ExitWatchdog`` is for what a deadline cannot cancel (a thread blocked in a
driver, a task that ignores its cancellation): armed by ``server.py`` when the
stop begins, it ends the process ``EXIT_WITHIN`` seconds later whatever it is
doing, after saying so in the log.
"""

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable

log = logging.getLogger(__name__)

STOP_BUDGET = 7.5
"""Seconds from the start of a stop within which every step has run or been
abandoned."""
EXIT_WITHIN = 9.0
"""Seconds from the start of a stop after which the process ends regardless (the
promise to operators and init systems is 10 s from SIGTERM)."""
EXIT_OVERRAN = 70
"""The exit status when the watchdog had to end the process (EX_SOFTWARE)."""


class StopBudget:
    """The time a stop may take, shared by its steps in order."""

    def __init__(self, seconds: float = STOP_BUDGET) -> None:
        self.seconds = seconds
        self._ends: float | None = None

    @property
    def started(self) -> bool:
        return self._ends is not None

    def start(self) -> None:
        """The stop begins (idempotent: the first call counts)."""
        if self._ends is None:
            self._ends = time.monotonic() + self.seconds

    def left(self, at_most: float) -> float:
        """What a step bounded by ``at_most`` seconds may take now."""
        if self._ends is None:
            return at_most
        return max(0.0, min(at_most, self._ends - time.monotonic()))

    async def step(self, what: str, work: Awaitable[object], at_most: float) -> bool:
        """Run one step of the stop within ``left(at_most)``; a step that overruns is
        cancelled and one that fails is logged, and the stop goes on either way.
        Whether it finished."""
        within = self.left(at_most)
        try:
            async with asyncio.timeout(within):
                await work
        except TimeoutError:
            log.warning("stop: %s abandoned after %.1f s", what, within)
            return False
        except Exception:
            log.exception("stop: %s failed", what)
            return False
        return True


class ExitWatchdog:
    """Ends the process ``seconds`` after ``arm`` unless it has exited by then."""

    def __init__(self, seconds: float = EXIT_WITHIN) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is not None:
            return
        # A daemon thread: it neither keeps a finished process alive nor depends on
        # the event loop, which may be what is stuck.
        self._timer = threading.Timer(self.seconds, self._overran)
        self._timer.daemon = True
        self._timer.start()

    def _overran(self) -> None:
        log.error(
            "stop: still running %.0f s after it began; exiting now (status %d)",
            self.seconds,
            EXIT_OVERRAN,
        )
        logging.shutdown()
        os._exit(EXIT_OVERRAN)
