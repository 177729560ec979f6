"""One participant's peer connection to the relay: answers the client's offer
and hands every unprotected packet to the relay."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from media.addresses import reachable_candidates
from media.aiortc_private import (
    SrtpPath,
    dtls_transports,
    every_media_past_stun,
    gathering_addresses,
    host_protocols,
    intercept,
    media_past_stun,
    native_srtp,
    send_protected,
    silence,
    take_rtp_early,
    without_decoder,
)
from media.downlink import LinkEstimate, SentLog, results
from media.errors import BadOffer
from media.fastpath import transport_sequence
from media.forwarding import OutboundStream, StreamState
from media.ice import IceServer
from media.session import (
    TRANSPORT_CC_URI,
    Negotiated,
    Section,
    negotiated,
    offer_places,
    with_transport_cc,
)
from media.slots import CAMERA, MICROPHONE, OWN, Place
from media.twcc import ArrivalRecorder, Feedback, ReadTimes, StatusBudget, spend_statuses

if TYPE_CHECKING:
    from media import _native
    from media.pump import PumpIO

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 256
"""Packets waiting for aiortc's path at most (send_soon's fallback): a second or
two of a leg's RTCP and retransmissions; beyond, dropped and counted."""

MAX_OFFER_BYTES = 64 * 1024
CLOSE_SECONDS = 2.0
"""Longest a leg's close waits (see Leg.close)."""
_REVERSE = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


class SilentTrack(MediaStreamTrack):
    """What the relay's senders are given: a track that never yields a frame, so
    aiortc never encodes anything; the relay writes the packets itself."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise ConnectionError("silent track stopped")

    def stop(self) -> None:
        super().stop()
        if not self._never.done():
            self._never.cancel()


@dataclass
class Inbound:
    section: Section
    rtx: bool


def answer_direction(offered: str, place: Place) -> str:
    """The relay's direction on an m-line: the offer's reversed, except that the
    relay takes nothing from a participant on the m-lines of slots 1 and 2 (they
    carry the others to it)."""
    direction = _REVERSE.get(offered, "inactive")
    if place in OWN:
        return direction
    return "sendonly" if direction in ("sendrecv", "sendonly") else "inactive"


def _preferred_video_codecs(offer: SessionDescription) -> list[Any]:
    """VP8 when offered (every browser has it, so both legs meet there), else H.264."""
    offered = {
        codec.mimeType.lower()
        for media in offer.media
        if media.kind == "video"
        for codec in media.rtp.codecs
    }
    wanted = "video/vp8" if "video/vp8" in offered else "video/h264"
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in capabilities if c.mimeType.lower() in (wanted, "video/rtx")]


def advertise_public_address(sdp: str, public_address: str | None) -> str:
    """Replace host candidate addresses by the 1:1 NAT address, if one is set."""
    if not public_address:
        return sdp
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split(" ")
            if len(parts) > 4:
                parts[4] = public_address
            line = " ".join(parts)
        elif line.startswith("c=IN IP4 ") and ":" not in public_address:
            line = f"c=IN IP4 {public_address}"
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


class Leg:
    """A participant's connection to a call's relay."""

    def __init__(
        self,
        participant: str,
        position: int,
        generation: int,
        on_rtp: Callable[["Leg", bytes], Awaitable[None]],
        on_rtcp: Callable[["Leg", bytes], None],
        on_state: Callable[["Leg", str], None],
        *,
        forward_now: Callable[["Leg", bytes], bool] | None = None,
        ice_servers: Sequence[IceServer] = (),
        native_srtp: bool = False,
        pump: "PumpIO | None" = None,
    ) -> None:
        self.participant = participant
        self.position = position
        """Where the participant is in the call (media/slots.py): fixed while they are in it."""
        self.generation = generation
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(list(s.urls), username=s.username, credential=s.credential)
                    for s in ice_servers
                ],
                # One transport for every m-line: with aiortc's default (balanced), a
                # second m-line of a kind stays on a transport that the offer's BUNDLE
                # then stops (the slots' m-lines would carry nothing).
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )
        self._on_rtp = on_rtp
        self._on_rtcp = on_rtcp
        self._on_state = on_state
        self._forward_now = forward_now
        self._native_srtp = native_srtp
        """Key SRTP with native sessions (the native data path forwards with them)."""
        self._pump = pump if native_srtp else None
        """The native pump that reads this leg's sockets (media/pump.py), if any."""
        self.pump_in: _native.Inbound | None = None
        """This leg's receiving side in the pump: its counters, arrivals and routes."""
        self.pump_out: _native.Outbound | None = None
        """Its sending side in the pump: socket, SRTP session, peer, state."""
        self._pump_tags: dict[int, int] = {}
        """The pump's tag of each host socket it reads for this leg (by fd)."""
        self._outbox: asyncio.Queue[bytes] | None = None
        """What send_soon sends through aiortc's path (a TURN allocation), in order."""
        self._outbox_task: asyncio.Task[None] | None = None
        self.outbox_dropped = 0
        """Packets send_soon dropped with OUTBOX_LIMIT waiting."""
        self.fast: SrtpPath | None = None
        """Where this leg's media is taken as it arrives and sent at once (bundled
        legs, when the relay gives ``forward_now``)."""
        self._packets_at_once = 0
        """RTP packets of this leg forwarded where they arrived, by Python."""
        self.transport_cc_id: int | None = None
        """The transport-wide sequence number's extension id, when negotiated."""
        self.arrivals: ArrivalRecorder | None = None
        self._read_times = ReadTimes()
        """When the packets the fast path left to aiortc's path were read (_rtp_now)."""
        self.sent: SentLog | None = None
        """The relay's own transport-wide sequence numbers on what it sends here."""
        self.downlink = LinkEstimate()
        """What the link to this participant takes, from their transport feedback."""
        self.feedback_packets = 0
        """Transport-wide feedback packets this participant sent on what it received."""
        self.feedback_dropped = 0
        """Of those, left unread: beyond this leg's budget of statuses per second."""
        self._status_budget = StatusBudget()
        self._bytes_in = 0
        """RTP bytes this participant sent that Python took in (both paths)."""
        self.remb_held_until = 0.0
        """Until when receivers' estimates are passed to this source (see Relay)."""
        self.negotiated: Negotiated | None = None
        self.outbound: dict[Place, OutboundStream] = {}
        """The relay's streams to this participant, by what each carries."""
        self._inbound: dict[int, Inbound] = {}
        self.primary_ssrc: dict[Place, int] = {}
        """What this participant sends (microphone, camera, screen): its SSRC."""
        self.screen_started = 0.0
        self.screen_last = 0.0
        """The current run of this participant's screen (media/slots.py)."""
        self._transports: list[Any] = []
        self._last_rtp_at = 0.0
        self._packets_in = 0
        self._packets_out = 0
        self.closed = False
        self.pc.on("connectionstatechange", self._state_changed)

    def _state_changed(self) -> None:
        self._on_state(self, self.pc.connectionState)

    async def answer(self, offer_sdp: str, public_address: str | None = None) -> str:
        """Answer the client's offer; the relay sends on every section the client receives."""
        if len(offer_sdp.encode("utf-8", "replace")) > MAX_OFFER_BYTES:
            raise BadOffer("the offer is too large")
        try:
            offer = SessionDescription.parse(offer_sdp)
        except (ValueError, IndexError, KeyError, AttributeError) as exc:
            raise BadOffer(f"unreadable SDP: {exc}") from None
        media_lines = [m for m in offer.media if m.kind in ("audio", "video")]
        # Firefox offers every m-line after the first of its kind as bundle-only
        # (port 0, in the BUNDLE group): live, not rejected. aiortc's parser drops the
        # a=bundle-only line itself, so the group says which port-0 lines are bundled.
        bundled = {
            mid for group in offer.group if group.semantic == "BUNDLE" for mid in group.items
        }
        sections = [
            (media, place)
            for media, place in zip(media_lines, offer_places(offer), strict=True)
            if media.port != 0 or (media.rtp.muxId and media.rtp.muxId in bundled)
        ]
        if not sections:
            raise BadOffer("the offer has no audio or video")
        for media, place in sections:
            direction = answer_direction(media.direction or "sendrecv", place)
            if direction in ("sendrecv", "sendonly"):
                transceiver = self.pc.addTransceiver(SilentTrack(media.kind), direction=direction)
            else:
                transceiver = self.pc.addTransceiver(media.kind, direction=direction)
            if media.kind == "video":
                transceiver.setCodecPreferences(_preferred_video_codecs(offer))
        try:
            reachable = reachable_candidates(offer_sdp, gathering_addresses())
            await self.pc.setRemoteDescription(RTCSessionDescription(reachable, "offer"))
            for transport in dtls_transports(self.pc):
                intercept(transport, self._rtp, self._rtcp)
                if self._native_srtp:
                    native_srtp(transport)
                self._transports.append(transport)
            if len(self._transports) == 1 and self._forward_now is not None:
                self.fast = take_rtp_early(self._transports[0], self._rtp_now, self._rtcp_now)
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            if self.fast is None:
                self._pump = None  # (several transports: aiortc's path alone)
            elif self._native_srtp and self._pump is None:
                # uvloop reads the sockets (gathered by now): its reader hands each
                # datagram to the protocols, media past their STUN parse.
                every_media_past_stun(self.fast.connection)
        except BadOffer:
            raise
        except Exception as exc:
            raise BadOffer(f"cannot answer this offer: {exc}") from None
        for transceiver in self.pc.getTransceivers():
            silence(transceiver.sender)
            silence(transceiver.receiver)
            without_decoder(transceiver.receiver)
        local = with_transport_cc(offer_sdp, self.pc.localDescription.sdp)
        self.negotiated = negotiated(offer_sdp, local)
        self.transport_cc_id = self.negotiated.extension_ids.get(TRANSPORT_CC_URI)
        pump = self._pump
        if self.transport_cc_id is not None:
            self.sent = SentLog() if pump is None else SentLog.native()
        for section in self.negotiated.sections:
            if section.relay_sends and section.relay_ssrc is not None:
                self.outbound[section.place] = OutboundStream(
                    section.kind,
                    section,
                    self.negotiated.extensions,
                    self.sent,
                    state=StreamState() if pump is None else _native_stream(),
                )
        if self.transport_cc_id is not None:
            self.arrivals = ArrivalRecorder(self.relay_ssrc("video"), 0)
        if pump is not None and self.fast is not None:
            self._give_to_pump(pump, self.fast)
        return advertise_public_address(local, public_address)

    def _give_to_pump(self, pump: "PumpIO", fast: SrtpPath) -> None:
        """The pump reads the leg's host sockets from now on: what it leaves goes on
        as asyncio would have handed it (media to the ICE connection, past aioice's
        STUN parse; the rest to aioice's protocol)."""
        from media import _native

        self.pump_in = _native.Inbound(pump.tally, self.transport_cc_id or 0)
        self.pump_out = _native.Outbound(None if self.sent is None else self.sent.store)
        connection = fast.connection
        for protocol in host_protocols(connection):
            sock = protocol.transport.get_extra_info("socket")
            media_past_stun(connection, protocol)

            def handle(data: bytes, address: Any, protocol: Any = protocol) -> None:
                if protocol.transport is None or protocol.transport.is_closing():
                    return
                protocol.datagram_received(data, address)

            self._pump_tags[sock.fileno()] = pump.take_over(sock.fileno(), self.pump_in, handle)

    def pump_tag(self, fd: int) -> int | None:
        """The pump's tag of this leg's socket ``fd``, if the pump reads it."""
        return self._pump_tags.get(fd)

    def _leave_pump(self) -> None:
        """Nothing of this leg in the pump any more (before its sockets close)."""
        if self.pump_out is not None:
            from media import _native

            self.pump_out.state = _native.DECLINE
        if self.pump_in is not None:
            self.pump_in.clear_routes()
        if self._pump is not None:
            for tag in self._pump_tags.values():
                self._pump.release(tag)
        self._pump_tags.clear()

    def transport_arrival(self, sequence_number: int | None, *, read_earlier: bool = False) -> None:
        """A packet of this leg carrying a transport-wide sequence number arrived
        (authenticated). ``read_earlier``: it came the general way (``_on_rtp``),
        which reaches here a loop turn or more after the datagram was read; the time
        it was read, when ``_rtp_now`` noted it, is its arrival."""
        if sequence_number is None or self.arrivals is None:
            return
        now_us = time.monotonic_ns() // 1000
        at_us = self._read_times.arrival(sequence_number, now_us) if read_earlier else now_us
        if self.pump_in is not None:
            # In line with what the pump records of the packets it forwards.
            self.pump_in.record(sequence_number, at_us)
        else:
            self.arrivals.record(sequence_number, at_us)

    def transport_feedback(self) -> list[bytes]:
        """Feedback on what arrived since the last call (none without transport-cc)."""
        if self.arrivals is None:
            return []
        if self.pump_in is not None:
            for number, at_us in self.pump_in.take_arrivals():
                self.arrivals.record(number, at_us)
        ssrcs = self.primary_ssrc
        self.arrivals.media_ssrc = ssrcs.get(CAMERA) or ssrcs.get(MICROPHONE) or 0
        return self.arrivals.take()

    def admit_feedback(self, statuses: int) -> bool:
        """Whether a feedback claiming ``statuses`` is read (media/twcc.py's budget)."""
        admitted, self._status_budget = spend_statuses(
            self._status_budget, statuses, time.monotonic_ns() // 1000
        )
        if not admitted:
            self.feedback_dropped += 1
        return admitted

    def feedback_received(self, feedback: Feedback) -> None:
        """The participant's transport feedback on what the relay sent them."""
        if self.sent is None:
            return
        self.feedback_packets += 1
        self.downlink.update(results(self.sent, feedback), time.monotonic_ns() // 1000)

    def known(self, ssrc: int) -> Inbound | None:
        """What an SSRC already seen on an authenticated packet belongs to; never
        learns (the fast path asks before unprotect, so it must not)."""
        return self._inbound.get(ssrc)

    @property
    def known_ssrcs(self) -> int:
        return len(self._inbound)

    def classify(self, ssrc: int, payload_type: int, mid: str | None = None) -> Inbound | None:
        """Which section (and whether RTX) an incoming SSRC belongs to: the one that
        announced it, else the one its mid names, else the first (the camera before
        the screen) whose payload types it uses."""
        known = self._inbound.get(ssrc)
        if known is not None or self.negotiated is None:
            return known
        receiving = [s for s in self.negotiated.sections if s.relay_receives and s.place in OWN]
        found = next(
            (Inbound(s, s.client_ssrcs[ssrc]) for s in receiving if ssrc in s.client_ssrcs),
            None,
        )
        named = [s for s in receiving if mid is not None and s.mid == mid]
        for section in named + receiving:
            if found is not None:
                break
            if payload_type in section.codecs:
                found = Inbound(section, False)
            elif payload_type in section.rtx_apt:
                found = Inbound(section, True)
        if found is None:
            return None
        self._inbound[ssrc] = found
        return found

    async def _rtp(self, data: bytes, arrival_time_ms: int) -> None:
        self.arrived(len(data))
        await self._on_rtp(self, data)

    def _rtp_now(self, data: bytes) -> bool:
        if self.closed or self._forward_now is None:
            return False
        if self._forward_now(self, data):
            return True
        if self.transport_cc_id is not None:
            # Left to aiortc's path (RTX and probes, a stream's first packets), whose
            # queue delays it by a loop turn or more: the sender's estimate wants the
            # time it arrived, as a browser's receiver stamps it. Not trusted yet
            # (unauthenticated): used only if the packet authenticates (_on_rtp),
            # and only while fresh.
            number = transport_sequence(data, self.transport_cc_id)
            if number is not None:
                self._read_times.note(number, time.monotonic_ns() // 1000)
        return False

    def arrived(self, size: int) -> None:
        """A packet of this leg's media arrived (on Python's paths; the pump counts
        what it forwards itself)."""
        self._last_rtp_at = time.monotonic()
        self._packets_in += 1
        self._bytes_in += size

    def forwarded_at_once(self) -> None:
        """One of this leg's packets was forwarded where it arrived, by Python."""
        self._packets_at_once += 1

    def sent_one(self) -> None:
        """Python sent a packet on this leg."""
        self._packets_out += 1

    # Counted by Python and by the pump.
    @property
    def packets_in(self) -> int:
        return self._packets_in + (0 if self.pump_in is None else self.pump_in.packets_in)

    @property
    def bytes_in(self) -> int:
        return self._bytes_in + (0 if self.pump_in is None else self.pump_in.bytes_in)

    @property
    def last_rtp_at(self) -> float:
        pumped = 0.0 if self.pump_in is None else self.pump_in.last_rtp_at
        return max(self._last_rtp_at, pumped)

    @property
    def packets_at_once(self) -> int:
        pumped = 0 if self.pump_in is None else self.pump_in.packets_at_once
        return self._packets_at_once + pumped

    @property
    def packets_out(self) -> int:
        return self._packets_out + (0 if self.pump_out is None else self.pump_out.packets_out)

    @property
    def receiving(self) -> bool:
        """Whether what is sent on this leg now reaches the participant (its DTLS is
        up; before, a packet would be dropped, and a keyframe with it)."""
        transports = self._transports
        return bool(transports) and not self.closed and transports[0].state == "connected"

    def send_now(self, data: bytes) -> None:
        """Send a rewritten RTP packet at once (the relay checked ``fast.can_send``)."""
        assert self.fast is not None
        self.fast.send(data)
        self._packets_out += 1

    async def _rtcp(self, data: bytes) -> None:
        """aiortc's path: RTCP of a leg without ``fast``, or before DTLS was up."""
        self._handle_rtcp(data)

    def _rtcp_now(self, data: bytes) -> bool:
        """An SRTCP datagram as it arrives (``fast``): unprotected and handled here,
        without aiortc's queue and receive task (most of what the worker's Python
        did in a steady call: every endpoint reports a few times a second). Left to
        aiortc (False) only before DTLS is up, where it drops it too."""
        fast = self.fast
        if self.closed or fast is None or not fast.connected():
            return False
        plain = fast.unprotect_rtcp(data)
        if plain is not None:  # (damaged or replayed: dropped, as aiortc does)
            self._handle_rtcp(plain)
        return True

    def _handle_rtcp(self, plain: bytes) -> None:
        try:
            self._on_rtcp(self, plain)
        except Exception:
            # Whatever an endpoint reports must never end its transport (aiortc
            # closes it on an exception from its handler) nor the pump's batch.
            log.exception("RTCP from %s not understood", self.participant)

    def send_soon(self, data: bytes) -> None:
        """Send a packet the relay made (RTCP, a retransmission): at once where the
        leg sends by itself (``fast``, a host socket), else through aiortc's path in
        a task (a TURN allocation's client awaits its sends)."""
        if not self._transports or self.closed:
            return
        fast = self.fast
        if fast is not None and fast.can_send():
            fast.send(data)
            self._packets_out += 1
            return
        if self._outbox is None:
            self._outbox = asyncio.Queue(OUTBOX_LIMIT)
            self._outbox_task = asyncio.get_running_loop().create_task(self._send_outbox())
        try:
            self._outbox.put_nowait(data)
        except asyncio.QueueFull:
            self.outbox_dropped += 1  # (a TURN server that stalls: dropped, not piled up)

    async def _send_outbox(self) -> None:
        """One sender through aiortc's path, in order (send_soon's fallback)."""
        assert self._outbox is not None
        while True:
            data = await self._outbox.get()
            try:
                await self.send(data)
            except Exception:
                # (a TURN channel that could not be bound: this packet is lost, not the sender)
                log.exception("a packet to %s could not be sent", self.participant)

    async def send(self, data: bytes) -> None:
        if not self._transports or self.closed:
            return
        try:
            await send_protected(self._transports[0], data)
            self._packets_out += 1
        except ConnectionError:
            pass

    def outbound_by_ssrc(self, ssrc: int) -> OutboundStream | None:
        return next((o for o in self.outbound.values() if o.ssrc == ssrc), None)

    def relay_ssrc(self, kind: str) -> int:
        """An SSRC of the relay on this leg, to sign the feedback it sends."""
        stream = self.outbound.get(Place(0, kind)) or next(iter(self.outbound.values()), None)
        return stream.ssrc if stream is not None else 1

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._leave_pump()
        if self._outbox_task is not None:
            self._outbox_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._outbox_task
        # Bounded: closing gives up TURN allocations, and with the TURN server gone
        # each waits for its retransmissions to run out (about 40 s); a cancelled
        # deletion still closes its socket and the allocation expires by itself.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), CLOSE_SECONDS)


def _native_stream() -> "_native.Stream":
    """A stream's state in the pump's memory."""
    from media import _native

    return _native.Stream()
