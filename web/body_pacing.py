"""Request bodies must keep moving: a client that trickles a part in at a byte a
second holds a connection, an upload lock and a handler for as long as it likes."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass


class BodyTooSlow(Exception):
    """The body stalled, or arrived slower than the minimum rate."""


@dataclass(frozen=True)
class Pace:
    idle: float = 30.0
    """Seconds without a byte before the body is given up."""
    min_rate: float = 1024.0
    """Bytes per second the body must average once ``grace`` has passed (a kiosk on a
    poor 250 kbit/s uplink sends ~30,000)."""
    grace: float = 30.0


async def paced(
    chunks: AsyncIterator[bytes], pace: Pace, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[bytes]:
    """``chunks`` as they come, or ``BodyTooSlow`` when they stall or crawl."""
    start = clock()
    received = 0
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(pace.idle):
                data = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyTooSlow(f"nothing arrived for {pace.idle:.0f} s") from None
        received += len(data)
        elapsed = clock() - start
        if elapsed > pace.grace and received < pace.min_rate * elapsed:
            raise BodyTooSlow(f"the body arrives slower than {pace.min_rate:.0f} bytes/s")
        yield data
