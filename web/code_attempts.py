"""How many wrong booking codes a kiosk may type: a few in a window, then 429 until
the oldest leaves it. Guessing a code (24^8 of them) at that rate takes centuries;
a citizen who mistypes twice is not held up.

Kept in the process (the clock passed in, no I/O): under ``--processes`` or several
nodes each counts its own, so a kiosk gets at most that many times the budget, which
still leaves guessing hopeless.
"""

import math
import time
from collections import deque
from collections.abc import Callable

FAILURES = 5
WINDOW = 600.0
MAX_KIOSKS = 10_000
"""Kiosks tracked at once (the oldest forgotten beyond): bounded memory."""


class CodeAttempts:
    def __init__(
        self,
        failures: int = FAILURES,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failures = failures
        self._window = window
        self._clock = clock
        self._by_kiosk: dict[str, deque[float]] = {}

    def _recent(self, kiosk: str, now: float) -> deque[float]:
        times = self._by_kiosk.get(kiosk, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        return times

    def retry_after(self, kiosk: str) -> int | None:
        """Seconds until the kiosk may try again; None: it may now."""
        now = self._clock()
        times = self._recent(kiosk, now)
        if len(times) < self._failures:
            return None
        return max(1, math.ceil(times[0] + self._window - now))

    def failed(self, kiosk: str) -> None:
        now = self._clock()
        times = self._recent(kiosk, now)
        times.append(now)
        self._by_kiosk.pop(kiosk, None)
        self._by_kiosk[kiosk] = times
        if len(self._by_kiosk) > MAX_KIOSKS:
            del self._by_kiosk[next(iter(self._by_kiosk))]
