"""Every use of aiortc's and aioice's private names, in one place.

RTP-level forwarding needs to take packets right after SRTP unprotect and to
send rewritten packets through a transport's SRTP protect, which aiortc has
no public API for. ``tests/media/test_aiortc_private.py`` checks each name
used here exists with the expected shape, so that an aiortc upgrade that
moves them fails loudly there rather than silently in a call. Pinned:
aiortc 1.16.0, aioice 0.13.0.
"""

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import aioice.ice
import pylibsrtp
from aiortc import (
    RTCDtlsTransport,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.rtcdtlstransport import State as DtlsState

from media import datapath
from media.addresses import is_loopback

if TYPE_CHECKING:
    from media import _native

SRTP_ERRORS = (pylibsrtp.Error, ValueError)
"""What protecting or unprotecting a datagram raises, with either library's
sessions: damaged or replayed (pylibsrtp.Error, which the native one raises too),
or longer than SRTP takes (ValueError). Such a datagram is dropped."""

RtpHandler = Callable[[bytes, int], Awaitable[None]]
RtcpHandler = Callable[[bytes], Awaitable[None]]


def intercept(transport: RTCDtlsTransport, on_rtp: RtpHandler, on_rtcp: RtcpHandler) -> None:
    """Route this transport's unprotected RTP and RTCP to our handlers instead of
    aiortc's router (per instance: other peer connections are untouched)."""

    # aiortc passes arrival_time_ms by keyword; our handlers take it by position.
    async def rtp(data: bytes, arrival_time_ms: int) -> None:
        await on_rtp(data, arrival_time_ms)

    transport._handle_rtp_data = rtp  # type: ignore[method-assign]
    transport._handle_rtcp_data = on_rtcp  # type: ignore[method-assign,assignment]


async def send_protected(transport: RTCDtlsTransport, data: bytes) -> None:
    """SRTP/SRTCP-protect ``data`` and send it (raises ConnectionError if not connected)."""
    await transport._send_rtp(data)


async def _discard(*_args: Any) -> None:
    return None


def silence(party: RTCRtpSender | RTCRtpReceiver) -> None:
    """Stop aiortc's own sender/receiver reports (zero counts, empty RRs) and BYE:
    the relay forwards the real endpoints' RTCP instead. Its report task does not
    even run: one wake-up a second for each of a leg's seven senders and seven
    receivers, each building a report to discard, is most of an idle call's CPU."""
    party._send_rtcp = _discard  # type: ignore[method-assign,assignment]
    name = type(party).__name__  # the private events aiortc's stop() waits for
    started: asyncio.Event = getattr(party, f"_{name}__rtcp_started")
    exited: asyncio.Event = getattr(party, f"_{name}__rtcp_exited")

    async def run_rtcp() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # until stop() cancels it
        finally:
            exited.set()

    party._run_rtcp = run_rtcp  # type: ignore[method-assign]


def without_decoder(receiver: RTCRtpReceiver) -> None:
    """The relay never decodes: end the decoder thread aiortc starts for every
    receiver as soon as it has started it (otherwise a thread per receiver, two
    per leg, held idle for the whole call). Its track ends with it; nothing reads
    it."""
    receive = receiver.receive

    async def receive_without_decoder(parameters: Any) -> None:
        await receive(parameters)
        receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]

    receiver.receive = receive_without_decoder  # type: ignore[method-assign]


def tap_outgoing(transport: RTCDtlsTransport, keep: Callable[[bytes], bool]) -> None:
    """Drop outgoing RTP/RTCP for which ``keep`` is false, before protection: how
    the tests and the benchmark inject packet loss on one client's link."""
    send = transport._send_rtp

    async def filtered(data: bytes) -> None:
        if keep(data):
            await send(data)

    transport._send_rtp = filtered  # type: ignore[method-assign]


def native_srtp(transport: RTCDtlsTransport) -> None:
    """Key this transport's SRTP with native sessions (media._native) instead of
    pylibsrtp's, from the same exported keys, as soon as aiortc sets them up: its
    own path (what arrives before DTLS is up, what the native forwarder declines,
    a TURN allocation's sends), ours (RTCP, retransmissions) and the native one then
    share one replay window and rollover counter per direction."""
    setup = transport._setup_srtp

    def setup_native() -> None:
        setup()
        if transport._rx_srtp is None:
            return  # no profile negotiated: aiortc failed the transport
        ssl = transport._ssl
        assert ssl is not None  # set up before the handshake that led here
        profile = next(
            p
            for p in transport._srtp_profiles
            if p.openssl_profile == ssl.get_selected_srtp_profile()
        )
        # The same export aiortc just made (RFC 5705: the same bytes every time).
        keys = ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
        )
        rx, tx = datapath.session_pair(
            profile.openssl_profile, keys, is_server=transport._role == "server"
        )
        transport._rx_srtp, transport._tx_srtp = rx, tx  # type: ignore[assignment]

    transport._setup_srtp = setup_native  # type: ignore[method-assign]


def on_host_socket(protocol: object) -> bool:
    """An ICE candidate's protocol that reads and writes a plain UDP socket of this
    host. A TURN allocation's is a StunProtocol too, over aioice's TurnTransport
    (no socket of its own: its datagrams go through the TURN client)."""
    if type(protocol) is not aioice.ice.StunProtocol or protocol.transport is None:
        return False
    return protocol.transport.get_extra_info("socket") is not None


class SrtpPath:
    """A bundled transport's SRTP sessions and selected UDP path, to handle media
    and RTCP where the datagram arrives: unprotect, and protect + ``sendto`` at
    once, without aiortc's queue, receive coroutine and awaited sends. It shares
    the SRTP sessions with aiortc's own path (DTLS, anything before DTLS is up,
    a TURN allocation's sends still go there), so replay windows and rollover
    counters stay one."""

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self._dtls = transport
        self.connection: aioice.ice.Connection = transport.transport._connection
        """The ICE connection the transport's datagrams come through."""
        self._target_of: tuple[object, object] | None = None
        self._target: tuple[_native.Session, int, _native.Address] | None = None

    def unprotect(self, data: bytes) -> bytes | None:
        """The packet decrypted and authenticated, or None (damaged or replayed:
        aiortc drops those too)."""
        session = self._dtls._rx_srtp
        if session is None:
            return None  # before DTLS completes aiortc drops SRTP too
        try:
            return bytes(session.unprotect(data))
        except SRTP_ERRORS:
            return None

    def connected(self) -> bool:
        """DTLS is up (per packet: the private state, not the public ``state`` string)."""
        return self._dtls._state is DtlsState.CONNECTED

    def can_send(self) -> bool:
        """Connected, on a pair whose local side is a plain UDP socket (a TURN
        allocation sends through its own client: those packets take aiortc's path).
        Per packet: the private state, not the public ``state`` string."""
        if self._dtls._state is not DtlsState.CONNECTED:
            return False
        pair = self.connection._nominated.get(1)
        return pair is not None and on_host_socket(pair.protocol)

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        """An SRTCP packet decrypted and authenticated, or None (as ``unprotect``)."""
        session = self._dtls._rx_srtp
        if session is None:
            return None
        try:
            return bytes(session.unprotect_rtcp(data))
        except SRTP_ERRORS:
            return None

    def send(self, plain: bytes) -> None:
        """Protect (SRTP, or SRTCP for RTCP) and send now (call ``can_send`` first)."""
        pair = self.connection._nominated[1]
        session = self._dtls._tx_srtp
        try:
            protect = session.protect_rtcp if is_rtcp(plain) else session.protect
            protected = protect(plain)
        except SRTP_ERRORS:
            return
        pair.protocol.transport.sendto(protected, pair.remote_addr)

    def native_rx(self) -> "_native.Session | None":
        """The receiving SRTP session when it is a native one (see native_srtp)."""
        session: Any = self._dtls._rx_srtp
        return session if type(session).__module__ == "media._native" else None

    def native_target(self) -> "tuple[_native.Session, int, _native.Address] | None":
        """(tx session, socket fd, remote address) of the nominated pair for the native
        forwarder (call ``can_send`` first), or None when the sessions are not native.
        Worked out again only when the pair or the session changes."""
        pair = self.connection._nominated[1]
        session: Any = self._dtls._tx_srtp
        known = self._target_of
        if known is None or known[0] is not pair or known[1] is not session:
            if type(session).__module__ != "media._native":
                return None
            from media import _native

            sock = pair.protocol.transport.get_extra_info("socket")
            if sock is None:
                return None  # (a TURN allocation: can_send says so first)
            host, port = pair.remote_addr[:2]
            self._target = (session, sock.fileno(), _native.Address(host, port))
            self._target_of = (pair, session)
        return self._target


def is_rtcp(data: bytes) -> bool:
    """RTCP, not RTP, as aiortc tells them apart (second octet 192-208, RFC 5761)."""
    return len(data) > 1 and 191 < data[1] < 209


def take_rtp_early(
    transport: RTCDtlsTransport,
    handle: Callable[[bytes], bool],
    handle_rtcp: Callable[[bytes], bool],
) -> SrtpPath:
    """Offer every SRTP packet of this transport to ``handle``, and every SRTCP
    packet to ``handle_rtcp``, as it arrives from the socket, before aiortc's
    queue and receive task; what they decline (return False for) goes on to aiortc
    untouched."""
    path = SrtpPath(transport)
    connection = path.connection
    original = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        if not data:
            return  # (an empty datagram: aiortc's receive task would end on it)
        # RTP and RTCP start with 128-191 (RFC 7983): DTLS and STUN are not offered,
        # nor a datagram too short to be either (aiortc drops it).
        offered = 127 < data[0] < 192 and len(data) > 1
        if offered and (handle_rtcp(data) if is_rtcp(data) else handle(data)):
            return
        original(data, component)

    connection.data_received = data_received  # type: ignore[method-assign]
    return path


def host_protocols(connection: aioice.ice.Connection) -> list[aioice.ice.StunProtocol]:
    """The connection's host sockets' protocols (not TURN allocations), gathered."""
    return [p for p in connection._protocols if on_host_socket(p)]


def media_past_stun(connection: aioice.ice.Connection, protocol: aioice.ice.StunProtocol) -> None:
    """Media datagrams of ``protocol`` (first byte 128-191, RFC 7983: never STUN) go
    straight to the connection, past aioice's attempt to parse every datagram as
    STUN first (an exception per media packet); the rest (STUN) to aioice's own
    ``datagram_received`` as before. Whoever reads the socket (the loop, uvloop's C
    reader, the pump) hands every datagram to ``datagram_received``."""
    component = protocol.local_candidate.component
    original = protocol.datagram_received

    def datagram_received(data: bytes | str, address: tuple[Any, ...]) -> None:
        if isinstance(data, bytes) and data and 127 < data[0] < 192:
            connection.data_received(data, component)
        else:
            original(data, address)

    protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]


def every_media_past_stun(connection: aioice.ice.Connection) -> None:
    """``media_past_stun`` for every protocol of the connection, TURN allocations
    included (their client hands relayed datagrams to the same method). Call after
    gathering (the answer)."""
    for protocol in connection._protocols:
        if type(protocol) is aioice.ice.StunProtocol:
            media_past_stun(connection, protocol)


def dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    """The distinct DTLS transports of a peer connection (one when bundled)."""
    seen: list[RTCDtlsTransport] = []
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is not None and all(transport is not t for t in seen):
            seen.append(transport)
    return seen


_original_host_addresses = aioice.ice.get_host_addresses
_original_request_received = aioice.ice.Connection.request_received
_original_connect = aioice.ice.Connection.connect
_original_prune_components = aioice.ice.Connection._prune_components

PEER_REFLEXIVE_WAIT = 10.0
"""Seconds the relay waits for a client's connectivity checks when the client gave
no candidate it can use."""


def _prune_only_with_candidates(self: aioice.ice.Connection) -> None:
    # With no usable remote candidate at all, aioice drops the component and fails
    # at once. Keep it: the client's own checks will reveal its address.
    if self._remote_candidates:
        _original_prune_components(self)


async def _connect_awaiting_checks(self: aioice.ice.Connection) -> None:
    """A browser that hides its addresses behind mDNS names (``<uuid>.local``, which
    never resolve across routed networks) still sends connectivity checks to our
    candidates: wait for them and pair with the peer-reflexive address they come
    from, instead of failing before they can arrive."""
    # aioice offers no event for an arriving check: look every 50 ms, bounded.
    for _ in range(int(PEER_REFLEXIVE_WAIT / 0.05)):
        if self._remote_candidates or self._early_checks or self._closing:
            break
        await asyncio.sleep(0.05)
    await _original_connect(self)


def accept_hidden_candidates() -> None:
    """Let the relay connect to clients whose only candidates are mDNS names (a
    browser without camera or microphone permission, Firefox with fake devices).
    Process-wide; the relay's processes call it once."""
    aioice.ice.Connection._prune_components = _prune_only_with_candidates  # type: ignore[method-assign]
    aioice.ice.Connection.connect = _connect_awaiting_checks  # type: ignore[method-assign]


def _loopback_request_received(
    self: aioice.ice.Connection, message: Any, addr: tuple[str, int], protocol: Any
) -> None:
    # A client's check from another address of this machine (Chromium pairs its
    # eth0 candidate with our 127.0.0.1) would teach aioice a peer-reflexive
    # candidate there and make it send to it: not answered, not learnt.
    if is_loopback(addr[0]):
        _original_request_received(self, message, addr, protocol)


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Make ICE gather host candidates on exactly ``addresses`` (aioice otherwise
    takes every interface but loopback); on loopback only, also ignore checks
    arriving from other addresses. Process-wide; empty restores the default."""
    loopback_only = bool(addresses) and all(is_loopback(a) for a in addresses)
    aioice.ice.Connection.request_received = (  # type: ignore[method-assign]
        _loopback_request_received if loopback_only else _original_request_received
    )
    if not addresses:
        aioice.ice.get_host_addresses = _original_host_addresses
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def gathering_addresses() -> list[str]:
    """The addresses ICE gathers host candidates on now (restricted or not)."""
    return list(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True))


def check_private_names() -> list[str]:
    """What is missing or changed among the private names used above."""
    problems = []
    for cls, name, params in (
        (RTCDtlsTransport, "_handle_rtp_data", ["self", "data", "arrival_time_ms"]),
        (RTCDtlsTransport, "_handle_rtcp_data", ["self", "data"]),
        (RTCDtlsTransport, "_send_rtp", ["self", "data"]),
        (RTCDtlsTransport, "_setup_srtp", ["self"]),
        (RTCRtpSender, "_send_rtcp", ["self", "packets"]),
        (RTCRtpReceiver, "_send_rtcp", ["self", "packet"]),
        (RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder", ["self"]),
        (RTCRtpReceiver, "receive", ["self", "parameters"]),
    ):
        member = getattr(cls, name, None)
        if member is None:
            problems.append(f"{cls.__name__}.{name} is gone")
            continue
        found = list(inspect.signature(member).parameters)
        if found != params:
            problems.append(f"{cls.__name__}.{name}{found} != {params}")
    for name, params in (
        ("_prune_components", ["self"]),
        ("connect", ["self"]),
    ):
        member = getattr(aioice.ice.Connection, name, None)
        if member is None or list(inspect.signature(member).parameters) != params:
            problems.append(f"aioice Connection.{name} is gone or changed")
    if not hasattr(asyncio.SelectorEventLoop, "_remove_reader"):
        problems.append("asyncio's selector loop _remove_reader is gone")
    for name, params in (("datagram_received", ["self", "data", "addr"]),):
        member = getattr(aioice.ice.StunProtocol, name, None)
        if member is None or list(inspect.signature(member).parameters) != params:
            problems.append(f"aioice StunProtocol.{name} is gone or changed")
    assigned = aioice.ice.Connection.__init__.__code__.co_names
    for attribute in ("_remote_candidates", "_early_checks", "_closing", "_protocols"):
        if attribute not in assigned:
            problems.append(f"aioice Connection.{attribute} is gone")
    if "_nominated" not in assigned:
        problems.append("aioice Connection._nominated is gone")
    data_received = getattr(aioice.ice.Connection, "data_received", None)
    if data_received is None or list(inspect.signature(data_received).parameters) != [
        "self",
        "data",
        "component",
    ]:
        problems.append("aioice Connection.data_received is gone or changed")
    if "transport" not in aioice.ice.StunProtocol.connection_made.__code__.co_names:
        problems.append("aioice StunProtocol.transport is gone")
    if "_connection" not in RTCIceTransport.__init__.__code__.co_names:
        problems.append("RTCIceTransport._connection is gone")
    if not hasattr(DtlsState, "CONNECTED"):
        problems.append("aiortc's DTLS State.CONNECTED is gone")
    for attribute in ("_rx_srtp", "_tx_srtp", "_state", "_srtp_profiles", "_ssl", "_role"):
        if attribute not in RTCDtlsTransport.__init__.__code__.co_names:
            problems.append(f"RTCDtlsTransport.{attribute} is gone")
    received = list(inspect.signature(_original_request_received).parameters)
    if received != ["self", "message", "addr", "protocol"]:
        problems.append(f"aioice Connection.request_received{received} changed")
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        problems.append("aioice.ice.get_host_addresses is gone")
    return problems
