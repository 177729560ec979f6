"""The native pump on this process's event loop: a thread of C (``media._native.Pump``)
reads the legs' host sockets and forwards every steady packet itself; what it
leaves (STUN, DTLS, RTCP, a stream's first packets, RTX, anything without a
route) comes back here a batch at a time and goes to the handler of the socket
it arrived on, as asyncio would have handed it.

Python stays the control plane: it installs a route once a stream is steady
(Relay._forward_now), and says what changes (a stream's steady source, a leg's
sending state, a route set cleared); the pump checks those per packet.

Only on asyncio's own loop (a uvloop transport's reader cannot be taken over)
and where the native module loads: ``PumpIO.usable``.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from media import datapath

if TYPE_CHECKING:
    from media import _native

log = logging.getLogger(__name__)

Handler = Callable[[bytes, Any], None]
"""(datagram, source address): what a socket's datagrams go to."""
TAKE_BATCH = 256
"""Datagrams taken from the pump per call."""
TAKES_PER_WAKEUP = 8
"""Calls per wake-up at most: the loop's other work is not held up by a flood."""


class PumpIO:
    """A ``media._native.Pump`` and its side on this loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from media import _native

        self._loop = loop
        self.pump = _native.Pump()
        self.tally = _native.Tally()
        """What the pump forwarded (counted into the pool's figures)."""
        self._handlers: dict[int, Handler] = {}
        loop.add_reader(self.pump.fileno(), self._ready)
        self.closed = False

    @staticmethod
    def usable(loop: asyncio.AbstractEventLoop) -> bool:
        """The pump can read this loop's sockets: asyncio's own loop (its private
        ``_remove_reader`` stops a transport reading) and the native module built."""
        return datapath.native_available() and callable(getattr(loop, "_remove_reader", None))

    def take_over(self, fd: int, inbound: "_native.Inbound", handler: Handler) -> int:
        """The pump reads socket ``fd`` from now on (the loop no longer does): its
        RTP goes by ``inbound``'s routes, the rest to ``handler``. Returns its tag."""
        loop: Any = self._loop  # asyncio's own (usable): its transports' readers
        tag = self.pump.add_socket(fd, inbound)
        loop._remove_reader(fd)
        self._handlers[tag] = handler
        return tag

    def release(self, tag: int) -> None:
        """The pump never reads or writes that socket again (before it is closed)."""
        self._handlers.pop(tag, None)
        self.pump.remove_socket(tag)

    def _ready(self) -> None:
        for _ in range(TAKES_PER_WAKEUP):
            batch = self.pump.take(TAKE_BATCH)
            for tag, data, address in batch:
                handler = self._handlers.get(tag)
                if handler is None:
                    continue  # its leg went while the datagram waited
                try:
                    handler(data, address)
                except Exception:
                    log.exception("a datagram the pump left could not be handled")
            if len(batch) < TAKE_BATCH:
                return

    def stats(self) -> dict[str, int]:
        return self.pump.stats()

    def close(self) -> None:
        """Stop the thread (every socket forgotten)."""
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.pump.fileno())
        self._handlers.clear()
        self.pump.close()
