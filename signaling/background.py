"""Work started in the background (a routing pass, a connection's bookkeeping)
that must neither fail silently nor outlive the stop: one runner that logs what
went wrong and can be waited for."""

import asyncio
import logging
from collections.abc import Awaitable

from signaling.errors import SignalingError
from signaling.store import StoreUnavailable
from storage.errors import StorageUnavailable

log = logging.getLogger(__name__)


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

    def spawn(self, work: Awaitable[None]) -> None:
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

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Until every task, including those started meanwhile, has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
