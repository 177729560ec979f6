"""Every use of python-socketio's private names, in one place.

The server must look at each client event before python-socketio dispatches it:
a client may send events named ``connect`` or ``disconnect``, which the library
would hand to the server's connection handlers (logging a kiosk out while its
socket stays); an event flood must be refused before the library starts a task
for each event; a packet that does not decode (100,000-deep JSON, a 5,000-digit
number) must close that one connection quietly instead of raising in the
engine.io loop. ``tests/signaling/test_socketio_private.py`` checks that each
name used here exists with the expected shape. Pinned: python-socketio 5.18.1.
"""

import inspect
import logging
from collections.abc import Callable
from typing import Any

import socketio
from socketio import packet

from signaling.limits import Verdict

log = logging.getLogger(__name__)

# Names the library reserves for its own lifecycle handlers; never a client's event.
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", "message"})

RATE_LIMITED_ACK = {
    "error": {"code": "rate_limited", "message": "too many events at once; slow down"}
}


class GuardedAsyncServer(socketio.AsyncServer):  # type: ignore[misc]
    """``socketio.AsyncServer`` that drops reserved event names from clients, asks
    ``admit(sid)`` before dispatching any event (refused: a ``rate_limited`` error
    ack, handler not run), and closes a connection whose packet does not decode."""

    def __init__(self, *, admit: Callable[[str], Verdict], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._admit = admit

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        namespace = namespace or "/"
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            log.debug("dropped a malformed event packet")
            return
        name = data[0]
        if name in RESERVED_EVENTS:
            log.debug("dropped a client event with the reserved name %r", name[:32])
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is not None:
            verdict = self._admit(sid)
            if verdict is Verdict.CLOSE:
                log.info("closing a connection that kept flooding events")
                await self.eio.disconnect(eio_sid)
                return
            if verdict is Verdict.REFUSE:
                if id is not None:
                    ack = self.packet_class(
                        packet.ACK, namespace=namespace, id=id, data=[RATE_LIMITED_ACK]
                    )
                    await self._send_packet(eio_sid, ack)
                return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, RecursionError, TypeError, KeyError, IndexError) as exc:
            # A client that sends what no socket.io client sends: close it, one line.
            log.info("closing a connection that sent an undecodable packet: %s", type(exc).__name__)
            await self.eio.disconnect(eio_sid)


def check_private_names() -> list[str]:
    """What is missing or changed shape in python-socketio (empty when all is well)."""
    problems = []
    expected = {
        "_handle_event": ["self", "eio_sid", "namespace", "id", "data"],
        "_handle_eio_message": ["self", "eio_sid", "data"],
        "_send_packet": ["self", "eio_sid", "pkt"],
    }
    for name, parameters in expected.items():
        method = getattr(socketio.AsyncServer, name, None)
        if method is None:
            problems.append(f"socketio.AsyncServer.{name} is gone")
            continue
        if list(inspect.signature(method).parameters) != parameters:
            problems.append(f"socketio.AsyncServer.{name} changed its signature")
    if not hasattr(socketio.AsyncServer(), "packet_class"):
        problems.append("socketio.AsyncServer.packet_class is gone")
    if not hasattr(packet, "ACK"):
        problems.append("socketio.packet.ACK is gone")
    return problems
