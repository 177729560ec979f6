"""How many password checks run at once."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from web.errors import TooManyRequests


class PasswordCheckGate:
    """Bounds the memory-hard password checks running at once: one per username
    (its other attempts wait their turn) and a few overall, with a bounded number
    waiting; beyond that a login is refused at once (429) instead of queueing, so
    a burst costs neither the CPU nor unbounded memory."""

    def __init__(self, concurrent: int, max_waiting: int) -> None:
        self._overall = asyncio.Semaphore(concurrent)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._per_user: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def admit(self, username: str) -> AsyncIterator[None]:
        if self._waiting >= self._max_waiting:
            raise TooManyRequests("the server is busy; try again in a moment", retry_after=1)
        key = username.lower()
        lock, users = self._per_user.get(key, (asyncio.Lock(), 0))
        self._per_user[key] = (lock, users + 1)
        self._waiting += 1
        try:
            async with lock, self._overall:
                self._waiting -= 1
                try:
                    yield
                finally:
                    self._waiting += 1
        finally:
            self._waiting -= 1
            lock, users = self._per_user[key]
            if users <= 1:
                del self._per_user[key]
            else:
                self._per_user[key] = (lock, users - 1)
