"""A call's relay: one leg per participant (up to four, named by position), every
leg's audio and video forwarded as RTP into its slot on each of the others
(media/slots.py), the shared screen into everyone else's screen m-line, and the
RTCP that makes that work translated between them (keyframe requests, NACKs,
bandwidth estimates, reports)."""

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from struct import unpack
from typing import TYPE_CHECKING

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from media import datapath
from media.counters import RelayCounters
from media.downlink import remb_to_send, source_limits
from media.errors import NotAParticipant, UnknownCall
from media.fastpath import ExtensionPlan, HeaderPlan, plan_header, transport_sequence
from media.forwarding import OutboundStream, Source, StreamState, source_key
from media.ice import IceServer
from media.leg import Leg
from media.pump import PumpIO
from media.recording_dump import DumpWriter
from media.session import CodecId
from media.slots import (
    SCREEN,
    Place,
    ScreenSource,
    position_of,
    received_in,
    screen_packet,
    screen_sharer,
)
from media.twcc import split_feedback

if TYPE_CHECKING:
    from media import _native

log = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL = 0.3
"""Seconds between keyframe requests to one source: decoders ask often."""
MEDIA_TIMEOUT = 5.0
"""Seconds without RTP after which a leg that should send counts as stalled."""
FEEDBACK_INTERVAL = 0.1
"""Seconds between transport-wide feedback packets to each sender (Chromium's
own receivers send one every 50-250 ms)."""
REMB_HOLD = 15.0
"""Seconds a receiver's estimate keeps being passed to a source after it last
said the source sends more than it can take (see _translate_remb)."""
STREAM_ACTIVE = 1.0
"""Seconds since its last packet during which a forwarded video stream counts as
taking a share of its receiver's link (see _send_limits)."""
WATCH_INTERVAL = 1.0
"""How often a relay looks for media that stopped (_watch)."""


def until_tick(now: float, interval: float) -> float:
    """Seconds from ``now`` to the next multiple of ``interval`` on the loop's clock.
    Every relay of a process ticks on the same instants: one wake-up of the process
    serves them all, instead of one per call at its own phase (ten calls' feedback
    woke a relay worker a hundred times a second). A wake-up a hair before its
    instant (the loop's clock resolution), or late by most of an interval, goes on
    to the instant after: never two ticks at once."""
    delay = interval - now % interval
    return delay if delay > interval / 10 else delay + interval


MediaListener = Callable[[str, str, str], None]
"""(call_id, participant, status) with status "connected" or "lost"."""


@dataclass(frozen=True)
class _Destination:
    leg: Leg
    stream: OutboundStream
    plan: ExtensionPlan
    payload_type: int
    native: "_native.Plan | None" = None
    """``plan`` for the native forwarder (on the native data path)."""


@dataclass(frozen=True)
class _Route:
    """Where a source SSRC's primary packets of one payload type go, worked out
    once per leg set and screen sharer (a change clears every route)."""

    source: Source
    destinations: tuple[_Destination, ...]
    screen: bool


class Relay:
    def __init__(
        self,
        call_id: str,
        listener: MediaListener,
        public_address: str | None,
        counters: RelayCounters | None = None,
        ice: Callable[[], list[IceServer]] = list,
        path: datapath.Datapath | None = None,
        pump: PumpIO | None = None,
    ) -> None:
        self.call_id = call_id
        self.datapath: datapath.Datapath = path or datapath.current()
        """Where steady packets are forwarded: in C (media._native) or in Python."""
        self._forwarder: _native.Forwarder | None = None
        self._declined = 0
        if self.datapath == "native":
            from media import _native as native

            # Sent at once (see _forward_native): a batch holds one packet's copies.
            self._forwarder = native.Forwarder(batch=8, datagram_size=64)
            self._declined = native.DECLINED
        self._pump = pump if self._forwarder is not None else None
        """The native pump that forwards steady packets without Python (media/pump.py)."""
        self._pumped: set[tuple[int, int, int]] = set()
        """The routes (as ``_routes``' keys) the pump was given since they were cleared."""
        self._ice = ice
        self.counters = counters or RelayCounters()
        # (leg generation, source ssrc) -> the receiver's last cumulative loss count
        self._reported_lost: dict[tuple[int, int], int] = {}
        self._listener = listener
        self._public_address = public_address
        self.legs: dict[str, Leg] = {}
        self.participants: frozenset[str] = frozenset()
        """The legs the call may have (``declare``): no other is ever opened."""
        self._generation = 0
        self._last_keyframe_request: dict[tuple[int, int], float] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._feedback: asyncio.Task[None] | None = None
        self._reported: dict[str, str] = {}
        self._routes: dict[tuple[int, int, int], _Route] = {}
        self._sharer: str | None = None
        """The participant whose screen everyone else gets (media/slots.py)."""
        # (receiver, its generation, source, its generation) -> the last REMB bitrate
        self._last_remb: dict[tuple[str, int, str, int], int] = {}
        # (source, its generation) -> the last limit sent to it, and when (µs)
        self._limits_sent: dict[tuple[str, int], tuple[int, int]] = {}
        self.recorder: DumpWriter | None = None
        """While the call is recorded: the dump the packets it forwards are added to."""
        self.closed = False

    # ---- recording ---------------------------------------------------------------

    async def start_recording(self, writer: DumpWriter) -> None:
        """From now on every packet forwarded is also added to ``writer`` (a new
        recording replaces one still open, which is closed). Every video source is
        asked for a keyframe: a recording's pictures start with one."""
        self.stop_recording()
        self.recorder = writer
        # A recorded packet is kept as it is forwarded: the pump's routes go, and
        # none is given while the call is recorded (see _give_route).
        self._clear_routes()
        for leg in list(self.legs.values()):
            for place, ssrc in list(leg.primary_ssrc.items()):
                if place.kind == "video":
                    # Not held back by a request made for a receiver moments ago.
                    self._last_keyframe_request.pop((leg.generation, ssrc), None)
                    self._request_keyframe(leg, ssrc)

    def stop_recording(self) -> DumpWriter | None:
        """The dump closed (its last chunk written); the one that was open, if any."""
        writer, self.recorder = self.recorder, None
        if writer is not None:
            writer.close()
        return writer

    def _record(self, leg: Leg, place: Place, codec: CodecId, plain: bytes) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        kind = "screen" if place == SCREEN else place.kind
        stream = recorder.stream(leg.participant, kind, codec.mime.split("/")[-1], codec.clock_rate)
        if stream is not None:
            recorder.packet(stream, time.time(), plain)

    # ---- legs ------------------------------------------------------------------

    async def declare(self, participants: Collection[str]) -> None:
        """The legs the call may have, as signaling says with each offer (from the
        call's live state, where its participants are): a leg of anyone not among
        them is closed, and no offer of theirs is answered."""
        self.participants = frozenset(participants)
        for participant in [p for p in self.legs if p not in self.participants]:
            await self.disconnect(participant)

    async def connect(self, participant: str, offer_sdp: str) -> str:
        """Answer a participant's offer; a second offer replaces their leg, and the
        other legs keep theirs (their streams just continue from the new source)."""
        if participant not in self.participants:
            raise NotAParticipant("the call has no such participant")
        position = position_of(participant)
        if position is None:
            raise NotAParticipant("a call has four participants at most, p0 to p3")
        self._generation += 1
        leg = Leg(
            participant,
            position,
            self._generation,
            self._on_rtp,
            self._on_rtcp,
            self._on_state,
            forward_now=self._forward_now,
            ice_servers=self._ice(),
            native_srtp=self._forwarder is not None,
            pump=self._pump,
        )
        try:
            answer = await leg.answer(offer_sdp, self._public_address)
        except BaseException:
            await leg.close()
            raise
        if self.closed:
            # The call ended while this offer was being answered.
            await leg.close()
            raise UnknownCall("the call has ended")
        if participant not in self.participants:
            # Declared away while this offer was being answered.
            await leg.close()
            raise NotAParticipant("the call has no such participant")
        # One participant per position (a leg under the two-party name of it goes).
        for name in [n for n, o in self.legs.items() if o.position == position]:
            if name != participant:
                await self.disconnect(name)
        old = self.legs.get(participant)
        self.legs[participant] = leg
        self._clear_routes()
        if old is not None:
            self._limits_sent.pop((participant, old.generation), None)
            await old.close()
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch())
        if self._feedback is None and leg.arrivals is not None:
            # Ten wake-ups a second: only for calls with a leg that asked for it.
            self._feedback = asyncio.create_task(self._send_feedback())
        # Nothing is forwarded to the newcomer before its leg connects; then each of
        # its streams starts on a keyframe, asked of the source with the first packet
        # that is not one (see _on_rtp): its tiles show within a round trip or two.
        return answer

    async def disconnect(self, participant: str, generation: int | None = None) -> bool:
        leg = self.legs.get(participant)
        if leg is None or (generation is not None and leg.generation != generation):
            return False
        del self.legs[participant]
        self._clear_routes()
        self._limits_sent.pop((participant, leg.generation), None)
        await leg.close()
        return True

    async def close(self) -> None:
        self.closed = True
        # A call closed while recorded: its dump ends properly (the last chunk marked).
        self.stop_recording()
        for task in (self._monitor, self._feedback):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:
                    # Ended by an error earlier: the legs are closed all the same.
                    log.exception("a task of call %s had failed", self.call_id)
        legs = list(self.legs.values())
        self.legs.clear()
        await asyncio.gather(*(leg.close() for leg in legs), return_exceptions=True)

    @property
    def peer_connections(self) -> int:
        return sum(1 for leg in self.legs.values() if not leg.closed)

    def _others(self, leg: Leg) -> list[Leg]:
        return [other for other in self.legs.values() if other is not leg]

    def _leg_of(self, source: Source) -> Leg | None:
        leg = self.legs.get(source.participant)
        return leg if leg is not None and leg.generation == source.generation else None

    def _live(self, participant: str, generation: int) -> bool:
        leg = self.legs.get(participant)
        return leg is not None and leg.generation == generation

    def _destinations(self, leg: Leg, place: Place) -> list[tuple[Leg, OutboundStream]]:
        """Where what ``leg`` sends on ``place`` goes: into each other leg's m-line
        for it (its slot there, or the screen's), if that leg offered that m-line.
        A screen goes out only from the participant sharing now."""
        if place == SCREEN and self._sharer != leg.participant:
            return []
        found = []
        for other in self._others(leg):
            target = received_in(other.position, leg.position, place)
            stream = None if target is None else other.outbound.get(target)
            if stream is not None:
                found.append((other, stream))
        return found

    def _screen_seen(self, leg: Leg) -> None:
        """A packet of ``leg``'s screen arrived: it may take over the sharing."""
        now = time.monotonic()
        previous = ScreenSource(leg.screen_started, leg.screen_last) if leg.screen_last else None
        current = screen_packet(previous, now)
        leg.screen_started, leg.screen_last = current.started, current.last
        same_run = previous is not None and previous.started == current.started
        if self._sharer == leg.participant and same_run:
            return  # the sharer goes on: nothing to decide
        screens = {
            name: ScreenSource(other.screen_started, other.screen_last)
            for name, other in self.legs.items()
            if other.screen_last
        }
        sharer = screen_sharer(screens, now)
        if sharer != self._sharer:
            self._sharer = sharer
            self._clear_routes()

    # ---- media state -----------------------------------------------------------

    def _report(self, participant: str, status: str) -> None:
        if self._reported.get(participant) == status or self.closed:
            return
        self._reported[participant] = status
        self._listener(self.call_id, participant, status)

    def _on_state(self, leg: Leg, state: str) -> None:
        try:
            self._pump_state(leg)
        except Exception:
            # Raised here, it would end aiortc's connection task (this runs inside
            # its state change): the pump just goes on declining to Python.
            log.exception("the pump could not be told %s's state", leg.participant)
        if self.legs.get(leg.participant) is not leg:
            return
        if state == "connected":
            self._report(leg.participant, "connected")
        elif state in ("failed", "closed"):
            self._report(leg.participant, "lost")

    async def _send_feedback(self) -> None:
        """Tell each sender which of its packets arrived when (transport-cc), and
        how much its receivers' links take."""
        while True:
            await asyncio.sleep(until_tick(asyncio.get_running_loop().time(), FEEDBACK_INTERVAL))
            try:
                for leg in list(self.legs.values()):
                    for packet in leg.transport_feedback():
                        leg.send_soon(packet)
                        self.counters.transport_feedback += 1
                self._send_limits(time.monotonic_ns() // 1000)
            except Exception:
                # One bad interval must not end the call's feedback for good.
                log.exception("transport feedback of call %s", self.call_id)

    def _send_limits(self, now_us: int) -> None:
        """Each source is told (REMB) the lowest estimate among the receivers whose
        links the relay measures itself (media/downlink.py), each receiver's split
        among the video streams it gets now (media/downlink.source_limits): a poor
        downlink slows the cameras and the screen feeding it, a good one never
        holds them back."""
        now = time.monotonic()
        receivers: dict[str, tuple[int | None, list[tuple[str, int]]]] = {}
        for other in self.legs.values():
            if not other.feedback_packets:
                continue
            receivers[other.participant] = (
                other.downlink.bitrate,
                [
                    (stream.source.participant, stream.source.generation)
                    for place, stream in other.outbound.items()
                    if place.kind == "video"
                    and stream.source is not None
                    and now - stream.last_sent_at <= STREAM_ACTIVE
                    and self._leg_of(stream.source) is not None
                ],
            )
        limits = source_limits(receivers)
        for source in list(self.legs.values()):
            key = (source.participant, source.generation)
            videos = [ssrc for place, ssrc in source.primary_ssrc.items() if place.kind == "video"]
            if not videos:
                continue
            last, last_at = self._limits_sent.get(key, (None, 0))
            # Never limited: nothing to say (a receiver that left lifts the limit).
            bitrate = remb_to_send(limits.get(key), last, last_at, now_us)
            if bitrate is None:
                continue
            self._limits_sent[key] = (bitrate, now_us)
            remb = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=source.relay_ssrc("video"),
                media_ssrc=0,
                fci=pack_remb_fci(bitrate, videos),
            )
            source.send_soon(bytes(remb))
            self.counters.downlink_limits += 1

    async def _watch(self) -> None:
        """Media that stops without ICE noticing (a frozen client) counts as lost."""
        while True:
            await asyncio.sleep(until_tick(asyncio.get_running_loop().time(), WATCH_INTERVAL))
            now = time.monotonic()
            for leg in list(self.legs.values()):
                # What the pump knows of each leg's sending side, checked again (its
                # changes are said as they happen; this catches any that is not).
                self._pump_state(leg)
                sends = leg.negotiated is not None and any(
                    s.relay_receives for s in leg.negotiated.sections
                )
                if not sends or leg.pc.connectionState != "connected":
                    continue
                if leg.last_rtp_at and now - leg.last_rtp_at > MEDIA_TIMEOUT:
                    self._report(leg.participant, "lost")
                elif leg.last_rtp_at:
                    self._report(leg.participant, "connected")

    # ---- the pump ----------------------------------------------------------------

    def _clear_routes(self) -> None:
        """Every route is worked out again, the pump's too."""
        self._routes.clear()
        if self._pumped:
            self._pumped.clear()
            for leg in self.legs.values():
                if leg.pump_in is not None:
                    leg.pump_in.clear_routes()

    def _pump_state(self, leg: Leg) -> None:
        """Tell the pump how a leg takes packets now, as ``_steady_takers`` sees it:
        SEND (connected, a host socket the pump reads, native SRTP), WAIT (still
        connecting: skipped) or DECLINE (the packet goes up to Python)."""
        out = leg.pump_out
        if out is None:
            return
        from media import _native

        fast = leg.fast
        state = _native.DECLINE
        if fast is not None and not leg.closed and self.legs.get(leg.participant) is leg:
            if not fast.connected():
                state = _native.WAIT
            elif fast.can_send():
                target = fast.native_target()
                tag = None if target is None else leg.pump_tag(target[1])
                if target is not None and tag is not None:
                    out.target(tag, target[0], target[2])
                    state = _native.SEND
        out.state = state

    def _give_route(self, leg: Leg, key: tuple[int, int, int], route: _Route) -> None:
        """A steady stream just forwarded by Python: the pump forwards its next
        packets itself. Not a screen (who shares is decided per packet), nor while
        the call is recorded; again only after the routes were cleared, or to tell
        the pump its destinations' states when it left a packet of the route."""
        pump_in = leg.pump_in
        if pump_in is None or route.screen or self.recorder is not None or leg.fast is None:
            return
        for destination in route.destinations:
            self._pump_state(destination.leg)
        if key in self._pumped:
            return
        rx = leg.fast.native_rx()
        destinations: list[tuple[_native.Stream, _native.Outbound, _native.Plan]] = []
        for destination in route.destinations:
            state, out = destination.stream.state, destination.leg.pump_out
            if out is None or destination.native is None or isinstance(state, StreamState):
                return
            destinations.append((state, out, destination.native))
        if rx is None:
            return
        pump_in.route(route.source.ssrc, key[2], source_key(route.source), rx, destinations)
        self._pumped.add(key)

    # ---- RTP -------------------------------------------------------------------

    def _route(self, leg: Leg, ssrc: int, payload_type: int) -> _Route | None:
        """The route of a steady primary stream, or None while anything about it
        is still for the general path to settle (first packets, RTX, an unknown
        SSRC or codec, a destination without that codec)."""
        # Only what an authenticated packet taught the leg: this runs before
        # unprotect, and anyone can send datagrams to the relay's port.
        inbound = leg.known(ssrc)
        if inbound is None or inbound.rtx or leg.negotiated is None:
            return None
        section = inbound.section
        codec = section.codecs.get(payload_type)
        if codec is None or leg.primary_ssrc.get(section.place) != ssrc:
            return None
        destinations = []
        for other, stream in self._destinations(leg, section.place):
            pt = stream.section.payload_type_for(codec)
            if pt is None or other.fast is None or other.negotiated is None:
                return None
            plan = ExtensionPlan.between(
                leg.negotiated.extension_ids,
                other.negotiated.extension_ids,
                stream.section.mid,
            )
            native = (
                None if self._forwarder is None else datapath.native_plan(plan, pt, stream.ssrc)
            )
            destinations.append(_Destination(other, stream, plan, pt, native))
        if not destinations:
            return None
        source = Source(leg.participant, leg.generation, ssrc, codec.clock_rate)
        return _Route(source, tuple(destinations), section.place == SCREEN)

    def _forward_now(self, leg: Leg, data: bytes) -> bool:
        """Forward a protected RTP packet where it arrived, if its stream is steady:
        header rewritten as bytes, unprotected, protected and sent to each
        destination without a coroutine. False leaves it to aiortc's path (and
        ``_on_rtp``), untouched; decided before unprotect, from the clear header."""
        if len(data) < 12 or leg.fast is None or self.legs.get(leg.participant) is not leg:
            return False
        ssrc = int.from_bytes(data[8:12], "big")
        key = (leg.generation, ssrc, data[1] & 0x7F)
        route = self._routes.get(key)
        if route is None:
            route = self._route(leg, ssrc, key[2])
            if route is None:
                return False
            self._routes[key] = route
        if self._forwarder is not None and not route.screen:
            rx = leg.fast.native_rx()
            if rx is not None:
                forwarded = self._forward_native(self._forwarder, rx, leg, data, key[2], route)
                if forwarded and self._pump is not None:
                    self._give_route(leg, key, route)
                return forwarded
        takers = self._steady_takers(route)
        if takers is None:
            return False
        headers: list[HeaderPlan | None] = []
        for destination in takers:
            if destination is None:
                headers.append(None)
                continue
            header = plan_header(
                data, destination.plan, destination.payload_type, destination.stream.ssrc
            )
            if header is None:
                return False
            headers.append(header)
        plain = leg.fast.unprotect(data)
        if plain is None:
            return True
        self._arrived_steady(leg, ssrc, key[2], data, plain)
        if route.screen:
            self._screen_seen(leg)
            if self._sharer != leg.participant:
                return True  # another participant's screen took over just now
        leg.forwarded_at_once()
        for destination, header in zip(route.destinations, headers, strict=True):
            if header is None:
                continue
            out = destination.stream.forward_steady(header, plain)
            destination.leg.send_now(out)
            self.counters.packets_forwarded += 1
            self.counters.packets_forwarded_at_once += 1
            self.counters.bytes_forwarded += len(out)
        return True

    @staticmethod
    def _steady_takers(route: _Route) -> list[_Destination | None] | None:
        """Who takes a steady packet of ``route`` now, for either data path: each
        destination in order, None for one whose leg still connects (it gets
        nothing yet); None altogether when the packet must take the general path
        (a leg closed or without the fast path, a stream not steady on this
        source, a leg that cannot send at once)."""
        takers: list[_Destination | None] = []
        for destination in route.destinations:
            fast = destination.leg.fast
            if fast is None or destination.leg.closed:
                return None
            if not fast.connected():
                takers.append(None)
                continue
            if not destination.stream.steady(route.source) or not fast.can_send():
                return None
            takers.append(destination)
        return takers

    def _arrived_steady(
        self, leg: Leg, ssrc: int, payload_type: int, data: bytes, plain: bytes
    ) -> None:
        """A steady packet authenticated on either data path: recorded when the call
        is, counted in, and its transport-wide number noted for the sender's feedback."""
        if self.recorder is not None:
            inbound = leg.known(ssrc)
            codec = inbound.section.codecs.get(payload_type) if inbound is not None else None
            if inbound is not None and codec is not None:
                self._record(leg, inbound.section.place, codec, plain)
        leg.arrived(len(plain))
        if leg.transport_cc_id is not None:
            leg.transport_arrival(transport_sequence(data, leg.transport_cc_id))

    def _forward_native(
        self,
        forwarder: "_native.Forwarder",
        rx: "_native.Session",
        leg: Leg,
        data: bytes,
        payload_type: int,
        route: _Route,
    ) -> bool:
        """``_forward_now`` on the native data path: the same checks and bookkeeping
        in Python, and one native call that unprotects, rewrites for each
        destination, protects and sends. A screen's packets stay on the Python path:
        who shares is decided from an authenticated packet, before it is sent."""
        takers = self._steady_takers(route)
        if takers is None:
            return False
        sending: list[_Destination] = []
        targets: list[_native.Destination] = []
        for destination in takers:
            if destination is None:
                continue
            stream = destination.stream
            assert destination.leg.fast is not None  # checked by _steady_takers
            target = destination.leg.fast.native_target()
            if target is None or destination.native is None:
                return False
            tx, fd, address = target
            targets.append(
                (
                    tx,
                    fd,
                    address,
                    destination.native,
                    stream.seq_offset,
                    stream.ts_offset,
                    # Taken only once the packet is sent (see sent_steady).
                    stream.next_transport_sequence() if destination.plan.transport_id else 0,
                )
            )
            sending.append(destination)
        kept = forwarder.forward_keep(rx, data, targets)
        # Sent at once: a leg closed later in this wake-up of the loop closes its
        # socket, and a queued datagram would go to whatever reuses that fd.
        forwarder.flush()
        if isinstance(kept, int):
            # DECLINED: a header the plans leave to the general path (untouched);
            # REFUSED: damaged or replayed (aiortc drops those too).
            return kept != self._declined
        plain, outs = kept
        self._arrived_steady(leg, route.source.ssrc, payload_type, data, plain)
        leg.forwarded_at_once()
        for destination, out in zip(sending, outs, strict=True):
            if out is None:
                continue  # out of bounds (counted in the forwarder's stats)
            destination.stream.sent_steady(plain, out, bool(destination.plan.transport_id))
            destination.leg.sent_one()
            self.counters.packets_forwarded += 1
            self.counters.packets_forwarded_at_once += 1
            self.counters.bytes_forwarded += len(out)
        return True

    async def _on_rtp(self, leg: Leg, data: bytes) -> None:
        if self.legs.get(leg.participant) is not leg or leg.negotiated is None:
            return
        try:
            packet = RtpPacket.parse(data, leg.negotiated.extensions)
        except ValueError:
            return
        # Every packet counts for the sender's estimate, its probes (RTX padding) too.
        leg.transport_arrival(packet.extensions.transport_sequence_number, read_earlier=True)
        inbound = leg.classify(packet.ssrc, packet.payload_type, packet.extensions.mid)
        if inbound is None:
            return
        section = inbound.section
        if inbound.rtx:
            primary_pt = section.rtx_apt.get(packet.payload_type)
            primary_ssrc = leg.primary_ssrc.get(section.place)
            if primary_pt is None or primary_ssrc is None or len(packet.payload) < 2:
                return
            packet.sequence_number = unpack("!H", packet.payload[:2])[0]
            packet.payload = packet.payload[2:]
            packet.payload_type = primary_pt
            packet.ssrc = primary_ssrc
        else:
            leg.primary_ssrc[section.place] = packet.ssrc
            if section.place == SCREEN:
                self._screen_seen(leg)
        codec = section.codecs.get(packet.payload_type)
        if codec is None:
            return
        if self.recorder is not None and not inbound.rtx:
            self._record(leg, section.place, codec, data)
        source = Source(leg.participant, leg.generation, packet.ssrc, codec.clock_rate)
        # A leg still connecting gets nothing yet: its streams start with the first
        # packet after (on a keyframe), not on packets it never received.
        destinations = [(o, s) for o, s in self._destinations(leg, section.place) if o.receiving]
        for index, (other, stream) in enumerate(destinations):
            copy = (
                packet
                if index == len(destinations) - 1
                else RtpPacket.parse(
                    packet.serialize(leg.negotiated.extensions), leg.negotiated.extensions
                )
            )
            out = stream.rewrite(copy, codec, source, retransmission=inbound.rtx)
            if out is not None:
                await other.send(out)
                self.counters.packets_forwarded += 1
                self.counters.bytes_forwarded += len(out)
            elif stream.waiting_for_keyframe:
                self._request_keyframe(leg, source.ssrc)

    # ---- RTCP ------------------------------------------------------------------

    def _on_rtcp(self, leg: Leg, data: bytes) -> None:
        if self.legs.get(leg.participant) is not leg:
            return
        dropped = leg.feedback_dropped
        feedback, data = split_feedback(data, leg.admit_feedback)
        self.counters.feedback_dropped += leg.feedback_dropped - dropped
        for one in feedback:
            try:
                leg.feedback_received(one)
            except Exception:
                # Whatever a receiver reports must never end its transport (aiortc
                # closes it on an exception here): log, and keep the call.
                log.exception("transport feedback from %s not understood", leg.participant)
            self.counters.feedback_received += 1
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                self._translate_sender_report(leg, packet)
                self._translate_report_blocks(leg, packet.reports)
            elif isinstance(packet, RtcpRrPacket):
                self._translate_report_blocks(leg, packet.reports)
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self._answer_nack(leg, packet)
            elif isinstance(packet, RtcpPsfbPacket):
                self._payload_feedback(leg, packet)

    def _translate_sender_report(self, leg: Leg, report: RtcpSrPacket) -> None:
        """A source's SR, restated for each stream it feeds (SSRC and RTP time)."""
        for other in self._others(leg):
            for stream in other.outbound.values():
                source = stream.source
                if source is None or source.participant != leg.participant:
                    continue
                if source.ssrc != report.ssrc or source.generation != leg.generation:
                    continue
                info = report.sender_info
                restated = RtcpSrPacket(
                    ssrc=stream.ssrc,
                    sender_info=RtcpSenderInfo(
                        ntp_timestamp=info.ntp_timestamp,
                        rtp_timestamp=stream.from_source_ts(info.rtp_timestamp),
                        packet_count=info.packet_count,
                        octet_count=info.octet_count,
                    ),
                )
                other.send_soon(bytes(restated))

    def _translate_report_blocks(self, leg: Leg, blocks: list[RtcpReceiverInfo]) -> None:
        """A receiver's reports on the relay's streams, passed to each stream's source."""
        for block in blocks:
            stream = leg.outbound_by_ssrc(block.ssrc)
            if stream is None or stream.source is None:
                continue
            source_leg = self._leg_of(stream.source)
            if source_leg is None:
                continue
            key = (leg.generation, block.ssrc)
            before = self._reported_lost.get(key, 0)
            if block.packets_lost > before:
                self.counters.packets_lost += block.packets_lost - before
            self._reported_lost[key] = max(before, block.packets_lost)
            cycles = block.highest_sequence & 0xFFFF0000
            highest = stream.to_source_seq(block.highest_sequence & 0xFFFF)
            translated = RtcpReceiverInfo(
                ssrc=stream.source.ssrc,
                fraction_lost=block.fraction_lost,
                packets_lost=block.packets_lost,
                highest_sequence=cycles | highest,
                jitter=block.jitter,
                lsr=block.lsr,
                dlsr=block.dlsr,
            )
            rr = RtcpRrPacket(ssrc=source_leg.relay_ssrc(stream.kind), reports=[translated])
            source_leg.send_soon(bytes(rr))

    def _answer_nack(self, leg: Leg, nack: RtcpRtpfbPacket) -> None:
        """Resend what the relay still holds; ask the source for the rest."""
        self.counters.nacks += 1
        stream = leg.outbound_by_ssrc(nack.media_ssrc)
        if stream is None:
            return
        missing: list[int] = []
        for sequence_number in nack.lost:
            stored = stream.stored(sequence_number % 65536)
            if stored is not None:
                leg.send_soon(stream.as_retransmission(stored))
            else:
                missing.append(stream.to_source_seq(sequence_number % 65536))
        if not missing or stream.source is None:
            return
        source_leg = self._leg_of(stream.source)
        if source_leg is not None:
            upstream = RtcpRtpfbPacket(
                fmt=RTCP_RTPFB_NACK,
                ssrc=source_leg.relay_ssrc(stream.kind),
                media_ssrc=stream.source.ssrc,
                lost=sorted(set(missing)),
            )
            source_leg.send_soon(bytes(upstream))

    def _payload_feedback(self, leg: Leg, packet: RtcpPsfbPacket) -> None:
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            media_ssrc = packet.media_ssrc
            if packet.fmt == RTCP_PSFB_FIR and len(packet.fci) >= 4:
                media_ssrc = unpack("!L", packet.fci[:4])[0]
            stream = leg.outbound_by_ssrc(media_ssrc)
            if stream is not None and stream.source is not None:
                source_leg = self._leg_of(stream.source)
                if source_leg is not None:
                    self._request_keyframe(source_leg, stream.source.ssrc)
        elif packet.fmt == RTCP_PSFB_APP and packet.fci[:4] == b"REMB":
            self._translate_remb(leg, packet)

    def _translate_remb(self, leg: Leg, packet: RtcpPsfbPacket) -> None:
        """A receiver's bandwidth estimate, passed to the sources it concerns; not
        from a receiver that sends transport feedback (the relay measures its link
        itself, see _send_limits)."""
        if leg.feedback_packets:
            return
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except Exception:
            return
        by_leg: dict[str, tuple[Leg, list[int]]] = {}
        for ssrc in ssrcs:
            stream = leg.outbound_by_ssrc(ssrc)
            if stream is None or stream.source is None:
                continue
            source_leg = self._leg_of(stream.source)
            if source_leg is None:
                continue
            by_leg.setdefault(source_leg.participant, (source_leg, []))[1].append(
                stream.source.ssrc
            )
        streams = sum(len(found) for _, found in by_leg.values())
        now = time.monotonic()
        for key in [k for k in self._last_remb if not self._live(*k[:2]) or not self._live(*k[2:])]:
            del self._last_remb[key]
        for source_leg, source_ssrcs in by_leg.values():
            # The estimate covers every stream it lists: this source's share of it.
            share = bitrate * len(source_ssrcs) // streams
            key = (leg.participant, leg.generation, source_leg.participant, source_leg.generation)
            previous = self._last_remb.get(key)
            self._last_remb[key] = share
            if not self._passes_remb(source_leg, share, previous, now):
                continue
            # The lowest of its receivers' latest shares (each receiver reports apart).
            lowest = min(
                value
                for (_, _, source, generation), value in self._last_remb.items()
                if (source, generation) == (source_leg.participant, source_leg.generation)
            )
            remb = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=source_leg.relay_ssrc("video"),
                media_ssrc=0,
                fci=pack_remb_fci(lowest, sorted(set(source_ssrcs))),
            )
            source_leg.send_soon(bytes(remb))

    @staticmethod
    def _passes_remb(source: Leg, bitrate: int, previous: int | None, now: float) -> bool:
        """Whether a receiver's estimate goes on to its source. A source without
        transport-cc has only these estimates: always. One with it measures its
        own link from the relay's feedback and ramps up at once; a receiver's
        estimate grows only some 8 % a second from what it receives, so while
        it grows it is a lag, not a limit, and is not passed on. Its estimator
        drops it when the downlink overuses (to 85 % of what arrives): from a
        drop on, and for REMB_HOLD seconds after the last one, every estimate
        of it is passed on, so that a poor downlink still slows the camera."""
        if source.arrivals is None:
            return True
        if previous is not None and bitrate < 0.95 * previous:
            source.remb_held_until = now + REMB_HOLD
        return now < source.remb_held_until

    def _request_keyframe(self, source_leg: Leg, ssrc: int) -> None:
        key = (source_leg.generation, ssrc)
        now = time.monotonic()
        if now - self._last_keyframe_request.get(key, 0.0) < KEYFRAME_REQUEST_INTERVAL:
            return
        self._last_keyframe_request[key] = now
        self.counters.keyframe_requests += 1
        pli = RtcpPsfbPacket(
            fmt=RTCP_PSFB_PLI, ssrc=source_leg.relay_ssrc("video"), media_ssrc=ssrc
        )
        source_leg.send_soon(bytes(pli))

    def stats(self) -> dict[str, object]:
        return {
            "call_id": self.call_id,
            "datapath": self.datapath,
            "native": {} if self._forwarder is None else self._forwarder.stats(),
            "pump": {} if self._pump is None else self._pump.stats(),
            "legs": {
                p: {
                    "state": leg.pc.connectionState,
                    "packets_in": leg.packets_in,
                    "packets_out": leg.packets_out,
                    "packets_at_once": leg.packets_at_once,
                    "bytes_in": leg.bytes_in,
                    "position": leg.position,
                    "forwarded": {
                        "screen" if p.slot is None else f"{p.slot}:{p.kind}": s.forwarded
                        for p, s in leg.outbound.items()
                    },
                }
                for p, leg in self.legs.items()
            },
        }
