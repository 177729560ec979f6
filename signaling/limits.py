"""How much one connection may ask of the server: events per second.

A token bucket per socket, decided here without I/O (the clock is passed in):
within the budget an event goes through; beyond it the client gets a
``rate_limited`` error ack without its handler running; a connection that keeps
flooding after being told is closed.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    ALLOW = "allow"
    REFUSE = "refuse"
    CLOSE = "close"


@dataclass
class TokenBucket:
    rate: float
    """Tokens added per second."""
    burst: float
    """Most tokens held."""
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class _Budget:
    bucket: TokenBucket
    refused_in_a_row: int = 0


class EventRateLimit:
    """Events per connection: ``rate`` a second, bursts of ``burst``; after ``burst``
    refusals in a row the connection is closed."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._budgets: dict[str, _Budget] = {}

    def admit(self, sid: str) -> Verdict:
        now = self._clock()
        budget = self._budgets.get(sid)
        if budget is None:
            budget = self._budgets[sid] = _Budget(
                TokenBucket(self.rate, self.burst, self.burst, now)
            )
        if budget.bucket.take(now):
            budget.refused_in_a_row = 0
            return Verdict.ALLOW
        budget.refused_in_a_row += 1
        if budget.refused_in_a_row > self.burst:
            return Verdict.CLOSE
        return Verdict.REFUSE

    def forget(self, sid: str) -> None:
        self._budgets.pop(sid, None)

    @property
    def tracked(self) -> int:
        return len(self._budgets)
