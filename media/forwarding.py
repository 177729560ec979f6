"""One forwarded stream: the packets of a source leg's audio or video, rewritten
for the destination leg's sender (SSRC, payload type, sequence numbers,
timestamps, header extensions, mid, RTX), with a history to answer NACKs.

Sequence numbers and timestamps carry an offset that is recomputed whenever
the source changes (a participant reconnects), so that the destination sees
one continuous stream: a jump of more than 2^15 would break its SRTP rollover
counter, and a new SSRC would need renegotiation.
"""

import time
from dataclasses import dataclass, field
from struct import pack, unpack, unpack_from
from typing import TYPE_CHECKING, Protocol

from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media.downlink import SentLog
from media.fastpath import HeaderPlan, stamp
from media.keyframes import is_keyframe_start
from media.session import CodecId, Section

if TYPE_CHECKING:
    from media import _native

HISTORY_SIZE = 512
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def seq_newer(a: int, b: int) -> bool:
    """``a`` comes after ``b`` in 16-bit sequence arithmetic."""
    return a != b and ((a - b) % SEQ_MOD) < (SEQ_MOD // 2)


@dataclass(frozen=True)
class Source:
    """Where a forwarded stream's packets currently come from: a participant's
    leg (its generation changes when they reconnect) and an SSRC on it."""

    participant: str
    generation: int
    ssrc: int
    clock_rate: int


def source_key(source: Source) -> int:
    """A source as the native pump knows it (never 0): its leg's generation, unique
    within a relay, and its SSRC."""
    return (source.generation << 32) | source.ssrc


class History(Protocol):
    """Packets sent on a stream by sequence number % HISTORY_SIZE (to answer NACKs)."""

    def __setitem__(self, index: int, data: bytes) -> None: ...

    def get(self, index: int) -> bytes | None: ...


@dataclass
class StreamState:
    """A forwarded stream's sequence state and history, kept in Python (the native
    pump keeps the same in a ``media._native.Stream``)."""

    seq_offset: int = 0
    ts_offset: int = 0
    last_seq: int | None = None
    last_ts: int | None = None
    last_sent_at: float = 0.0
    forwarded: int = 0
    steady_key: int = 0
    """The source whose packets need nothing but a header rewrite (0: none)."""
    history: dict[int, bytes] = field(default_factory=dict)

    def sent(self, sequence_number: int, timestamp: int) -> None:
        """A packet with these numbers left."""
        if self.last_seq is None or seq_newer(sequence_number, self.last_seq):
            self.last_seq = sequence_number
            self.last_ts = timestamp
            self.last_sent_at = time.monotonic()
        self.forwarded += 1


@dataclass
class OutboundStream:
    """The relay's sender of one kind on the destination leg."""

    kind: str
    section: Section
    extensions: HeaderExtensionsMap
    transport: SentLog | None = None
    """The leg's transport-wide sequence numbers, when it negotiated transport-cc:
    every packet sent on the stream takes the next one."""
    state: "StreamState | _native.Stream" = field(default_factory=lambda: StreamState())
    """Where the sequence state and the history live: here, or in the native pump's
    memory when it forwards this stream's steady packets (media/pump.py)."""
    _source: Source | None = None
    rtx_seq: int = 0
    _waiting_for_keyframe: bool = False
    _offsets_pending: bool = False
    dropped_no_codec: int = 0

    @property
    def ssrc(self) -> int:
        assert self.section.relay_ssrc is not None
        return self.section.relay_ssrc

    # The state, wherever it lives.
    @property
    def seq_offset(self) -> int:
        return self.state.seq_offset

    @seq_offset.setter
    def seq_offset(self, value: int) -> None:
        self.state.seq_offset = value

    @property
    def ts_offset(self) -> int:
        return self.state.ts_offset

    @ts_offset.setter
    def ts_offset(self, value: int) -> None:
        self.state.ts_offset = value

    @property
    def last_seq(self) -> int | None:
        return self.state.last_seq

    @property
    def last_ts(self) -> int | None:
        return self.state.last_ts

    @property
    def last_sent_at(self) -> float:
        return self.state.last_sent_at

    @property
    def forwarded(self) -> int:
        return self.state.forwarded

    @property
    def history(self) -> "History":
        return self.state.history if isinstance(self.state, StreamState) else self.state

    # What makes the stream steady: each change says so to the state (steady_key).
    @property
    def source(self) -> Source | None:
        return self._source

    @source.setter
    def source(self, value: Source | None) -> None:
        self._source = value
        self._steadiness_changed()

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_for_keyframe

    @waiting_for_keyframe.setter
    def waiting_for_keyframe(self, value: bool) -> None:
        self._waiting_for_keyframe = value
        self._steadiness_changed()

    def _steadiness_changed(self) -> None:
        source = self._source
        steady = source is not None and not self._waiting_for_keyframe
        self.state.steady_key = (
            source_key(source) if steady and not self._offsets_pending and source else 0
        )

    def _switch_source(self, source: Source) -> None:
        """A new source: offsets are set at the first packet actually forwarded, so
        that no gap appears in the sequence. Video that replaces another source waits
        for the new one's keyframe (its delta frames, decoded against the old
        source's pictures, would smear them); a stream's first source starts at
        once, as a C SFU's new subscriber does: a decoder that has nothing yet drops
        what it cannot decode and asks for a keyframe (the relay passes that on to
        the source), and a source that cannot make one on demand is not held back
        to its next."""
        self._waiting_for_keyframe = self.kind == "video" and self.source is not None
        self._offsets_pending = True
        self.source = source  # (and says the stream is not steady)

    def _continue_from(self, packet: RtpPacket, source: Source) -> None:
        """The new source continues the stream where the last one stopped."""
        last_seq, last_ts = self.last_seq, self.last_ts
        if last_seq is None or last_ts is None:
            self.seq_offset = 0
            self.ts_offset = 0
        else:
            elapsed = max(0.0, time.monotonic() - self.last_sent_at)
            next_ts = last_ts + max(1, int(elapsed * source.clock_rate))
            self.seq_offset = (last_seq + 1 - packet.sequence_number) % SEQ_MOD
            self.ts_offset = (next_ts - packet.timestamp) % TS_MOD
        # Steady from here: the offsets are set before the pump may use them.
        self._offsets_pending = False
        self._steadiness_changed()

    def rewrite(
        self, packet: RtpPacket, codec: CodecId, source: Source, *, retransmission: bool
    ) -> bytes | None:
        """The packet as the destination must see it, or None to drop it.

        ``packet`` is a primary packet (RTX already unwrapped by the caller) and is
        modified in place.
        """
        pt = self.section.payload_type_for(codec)
        if pt is None:
            self.dropped_no_codec += 1
            return None
        if self.source != source:
            if retransmission:
                return None
            self._switch_source(source)
        if self.waiting_for_keyframe:
            if retransmission or not is_keyframe_start(codec.mime, packet.payload):
                return None
            self.waiting_for_keyframe = False
        if self._offsets_pending:
            if retransmission:
                return None
            self._continue_from(packet, source)
        packet.ssrc = self.ssrc
        packet.payload_type = pt
        packet.sequence_number = (packet.sequence_number + self.seq_offset) % SEQ_MOD
        packet.timestamp = (packet.timestamp + self.ts_offset) % TS_MOD
        extensions = packet.extensions
        extensions.mid = self.section.mid
        extensions.rtp_stream_id = None
        extensions.repaired_rtp_stream_id = None
        # A retransmission takes its number when it is wrapped and sent.
        extensions.transport_sequence_number = (
            None if retransmission else self._transport_sequence(len(packet.payload))
        )
        data = packet.serialize(self.extensions)
        if retransmission:
            self.history[packet.sequence_number % HISTORY_SIZE] = data
            return self.as_retransmission(data)
        self._sent(packet.sequence_number, packet.timestamp, data)
        return data

    def steady(self, source: Source) -> bool:
        """A packet of ``source`` (not a retransmission) needs nothing here but a
        header rewrite: the stream is on that source, with offsets set, and not
        waiting for a keyframe."""
        return self.source == source and not self.waiting_for_keyframe and not self._offsets_pending

    def forward_steady(self, header: HeaderPlan, data: bytes) -> bytes:
        """``data`` (a primary packet of the stream's steady source, unprotected)
        rewritten with ``header``: what ``rewrite`` gives for it, byte for byte."""
        sequence_number = (unpack_from("!H", data, 2)[0] + self.seq_offset) % SEQ_MOD
        timestamp = (unpack_from("!L", data, 4)[0] + self.ts_offset) % TS_MOD
        transport = (
            (self._transport_sequence(len(data) - header.payload_at) or 0)
            if header.transport_at
            else 0
        )
        out = stamp(header, sequence_number, timestamp, transport) + data[header.payload_at :]
        self._sent(sequence_number, timestamp, out)
        return out

    def next_transport_sequence(self) -> int:
        """The transport-wide number the next packet sent on the leg takes (0 without
        transport-cc), not yet taken: the native forwarder writes it into a packet
        that may still be refused, and ``sent_steady`` takes it once it is sent."""
        if self.transport is None:
            return 0
        # The relay is one thread: nothing takes a number between this and sent_steady.
        return self.transport.peek()

    def sent_steady(self, plain: bytes, out: bytes, numbered: bool) -> None:
        """``out``, the steady packet ``plain`` rewritten elsewhere (the native
        forwarder) for this stream, as ``forward_steady`` would have made it: its
        transport-wide number taken when ``numbered`` (its header carries one), with
        the source payload's size as there; its numbers and bytes kept for NACKs."""
        if numbered:
            # Where plain's payload starts (plan_header's payload_at: a planned
            # packet has no CSRC, and one-byte extensions if any).
            payload_at = 16 + 4 * ((plain[14] << 8) | plain[15]) if plain[0] & 0x10 else 12
            self._transport_sequence(len(plain) - payload_at)
        self._sent(unpack_from("!H", out, 2)[0], unpack_from("!L", out, 4)[0], out)

    def _sent(self, sequence_number: int, timestamp: int, data: bytes) -> None:
        self.state.sent(sequence_number, timestamp)
        self.history[sequence_number % HISTORY_SIZE] = data

    def _transport_sequence(self, payload_size: int) -> int | None:
        """The next transport-wide sequence number of the leg, for a packet about to
        be sent (its header is counted as a typical one)."""
        if self.transport is None:
            return None
        return self.transport.assign(payload_size + 24, time.monotonic_ns() // 1000)

    def as_retransmission(self, data: bytes) -> bytes:
        """A stored packet resent: wrapped as RTX when the destination negotiated it,
        with a transport-wide sequence number of its own (it is a new packet on the
        link)."""
        rtx_pt = self.section.rtx_for.get(data[1] & 0x7F)
        rtx_ssrc = self.section.relay_rtx_ssrc
        if (rtx_pt is None or rtx_ssrc is None) and self.transport is None:
            return data
        packet = RtpPacket.parse(data, self.extensions)
        if rtx_pt is None or rtx_ssrc is None:
            packet.extensions.transport_sequence_number = self._transport_sequence(
                len(packet.payload)
            )
            return packet.serialize(self.extensions)
        self.rtx_seq = (self.rtx_seq + 1) % SEQ_MOD
        rtx = RtpPacket(
            payload_type=rtx_pt,
            marker=packet.marker,
            sequence_number=self.rtx_seq,
            timestamp=packet.timestamp,
            ssrc=rtx_ssrc,
            payload=pack("!H", packet.sequence_number) + packet.payload,
        )
        rtx.extensions = packet.extensions
        rtx.extensions.transport_sequence_number = self._transport_sequence(len(rtx.payload))
        return rtx.serialize(self.extensions)

    def stored(self, sequence_number: int) -> bytes | None:
        data = self.history.get(sequence_number % HISTORY_SIZE)
        if data is None or unpack("!H", data[2:4])[0] != sequence_number:
            return None
        return data

    def to_source_seq(self, sequence_number: int) -> int:
        return (sequence_number - self.seq_offset) % SEQ_MOD

    def to_source_ts(self, timestamp: int) -> int:
        return (timestamp - self.ts_offset) % TS_MOD

    def from_source_ts(self, timestamp: int) -> int:
        return (timestamp + self.ts_offset) % TS_MOD
