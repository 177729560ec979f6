"""Transport-wide congestion control feedback (RTPFB FMT 15,
draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1), as bytes.

The first part of terminating congestion control on each leg (issue 12): the
relay records the transport-wide sequence number and arrival time of every
packet a sender sends it and tells the sender, every ~50-100 ms, which arrived
and when, so that each browser measures its own uplink instead of relying on
the far receiver's REMB. ``ArrivalRecorder`` keeps what arrived; ``build`` and
``parse`` are the wire format (``parse`` also reads what receivers report on
the relay's own numbers, for media/downlink.py). Pure: no
sockets, no clock of its own; tests/media/test_twcc.py holds them to a packet
captured from Chromium and to each other.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from struct import pack, unpack_from

FMT = 15
PT_RTPFB = 205
DELTA_UNIT_US = 250
"""Receive deltas count quarter milliseconds."""
REFERENCE_UNIT_US = 64_000
"""The reference time counts 64 ms."""
MAX_STATUSES = 0xFFFF
SEQ_MOD = 1 << 16

NOT_RECEIVED, SMALL, LARGE = 0, 1, 2


@dataclass(frozen=True)
class Feedback:
    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    reference_time: int
    """In units of 64 ms (24 bits, wrapping)."""
    count: int
    """This feedback's number, 0-255, wrapping: a sender notices lost feedback."""
    arrivals: tuple[int | None, ...]
    """Per sequence number from ``base_sequence``: arrival in µs after the
    reference time (in whole quarter milliseconds), or None if not received."""


def _symbol(delta: int) -> int:
    return SMALL if 0 <= delta <= 0xFF else LARGE


def _chunks(symbols: list[int]) -> bytes:
    """Run-length chunks for runs of seven or more, two-bit status vectors
    (seven symbols each) otherwise."""
    out = bytearray()
    at = 0
    while at < len(symbols):
        run = 1
        while at + run < len(symbols) and symbols[at + run] == symbols[at] and run < 0x1FFF:
            run += 1
        if run >= 7:
            out += pack("!H", (symbols[at] << 13) | run)
            at += run
            continue
        vector = symbols[at : at + 7]
        value = 0xC000
        for index, symbol in enumerate(vector):
            value |= symbol << (12 - 2 * index)
        out += pack("!H", value)
        at += len(vector)
    return bytes(out)


def build(
    sender_ssrc: int,
    media_ssrc: int,
    base_sequence: int,
    count: int,
    arrivals_us: list[int | None],
) -> bytes:
    """A feedback packet for ``arrivals_us`` (absolute µs on the receiver's clock,
    None for a packet not received), one per sequence number from
    ``base_sequence``. Raises ValueError when two arrivals are too far apart for
    one packet (over ±8 s): the caller then reports them in two."""
    if not arrivals_us or len(arrivals_us) > MAX_STATUSES:
        raise ValueError("feedback covers 1 to 65535 packets")
    received = [a for a in arrivals_us if a is not None]
    if not received:
        raise ValueError("feedback needs at least one packet received")
    reference = received[0] // REFERENCE_UNIT_US
    previous = reference * REFERENCE_UNIT_US
    symbols: list[int] = []
    deltas = bytearray()
    for arrival in arrivals_us:
        if arrival is None:
            symbols.append(NOT_RECEIVED)
            continue
        delta = round((arrival - previous) / DELTA_UNIT_US)
        symbol = _symbol(delta)
        if symbol == LARGE and not -0x8000 <= delta <= 0x7FFF:
            raise ValueError("arrivals too far apart for one feedback packet")
        deltas += pack("!B", delta) if symbol == SMALL else pack("!h", delta)
        symbols.append(symbol)
        # Relative to what the sender will reconstruct, so that rounding never adds up.
        previous += delta * DELTA_UNIT_US
    body = (
        pack(
            "!LLHHL",
            sender_ssrc,
            media_ssrc,
            base_sequence % SEQ_MOD,
            len(arrivals_us),
            ((reference & 0xFFFFFF) << 8) | (count & 0xFF),
        )
        + _chunks(symbols)
        + bytes(deltas)
    )
    padding = -len(body) % 4
    first = 0x80 | FMT
    if padding:
        first |= 0x20
        body += bytes(padding - 1) + bytes([padding])
    return pack("!BBH", first, PT_RTPFB, (len(body) + 4) // 4 - 1) + body


def parse(data: bytes, max_statuses: int = MAX_STATUSES) -> Feedback:
    """One feedback packet (the first RTCP packet of ``data``); ValueError if it
    is not one, is malformed or reports on more than ``max_statuses`` packets (a
    40-byte packet can claim 65,535 of them)."""
    if len(data) < 20 or data[0] >> 6 != 2 or data[0] & 0x1F != FMT or data[1] != PT_RTPFB:
        raise ValueError("not a transport-wide feedback packet")
    end = 4 * (unpack_from("!H", data, 2)[0] + 1)
    if end > len(data):
        raise ValueError("truncated feedback packet")
    if data[0] & 0x20:
        end -= data[end - 1]
    sender, media, base, status_count, reference_and_count = unpack_from("!LLHHL", data, 4)
    if status_count > max_statuses:
        raise ValueError("feedback on more packets than anyone sends between two")
    reference = reference_and_count >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    at = 20
    symbols: list[int] = []
    while len(symbols) < status_count:
        if at + 2 > end:
            raise ValueError("feedback chunks run past the packet")
        chunk = unpack_from("!H", data, at)[0]
        at += 2
        if not chunk & 0x8000:
            symbols += [(chunk >> 13) & 0x3] * (chunk & 0x1FFF)
        elif chunk & 0x4000:
            symbols += [(chunk >> (12 - 2 * i)) & 0x3 for i in range(7)]
        else:
            symbols += [(chunk >> (13 - i)) & 0x1 for i in range(14)]
    symbols = symbols[:status_count]
    arrivals: list[int | None] = []
    time = 0
    for symbol in symbols:
        if symbol == NOT_RECEIVED:
            arrivals.append(None)
            continue
        if symbol == SMALL:
            if at + 1 > end:
                raise ValueError("feedback deltas run past the packet")
            time += data[at] * DELTA_UNIT_US
            at += 1
        elif symbol == LARGE:
            if at + 2 > end:
                raise ValueError("feedback deltas run past the packet")
            time += unpack_from("!h", data, at)[0] * DELTA_UNIT_US
            at += 2
        else:
            raise ValueError("reserved packet status symbol")
        arrivals.append(time)
    return Feedback(sender, media, base, reference, reference_and_count & 0xFF, tuple(arrivals))


@dataclass
class ArrivalRecorder:
    """What arrived on one leg, by transport-wide sequence number, until reported."""

    sender_ssrc: int
    media_ssrc: int
    max_per_feedback: int = 1000
    _arrivals: dict[int, int] = field(default_factory=dict)
    _highest: int | None = None
    _next_to_report: int | None = None
    _count: int = 0
    reported: int = 0
    """Packets reported so far (received or not)."""

    def record(self, sequence_number: int, arrival_us: int) -> None:
        """A packet carrying ``sequence_number`` (16 bits) arrived."""
        if self._highest is None:
            unwrapped = sequence_number
        else:
            step = (sequence_number - self._highest) % SEQ_MOD
            unwrapped = self._highest + (step if step < SEQ_MOD // 2 else step - SEQ_MOD)
        if self._next_to_report is not None and unwrapped < self._next_to_report:
            return  # already reported (a late duplicate or reordering past a report)
        self._arrivals.setdefault(unwrapped, arrival_us)
        if self._highest is None or unwrapped > self._highest:
            self._highest = unwrapped
        if self._next_to_report is None:
            self._next_to_report = unwrapped

    def take(self) -> list[bytes]:
        """Feedback for everything recorded since the last call (none if nothing)."""
        packets: list[bytes] = []
        while self._next_to_report is not None and self._highest is not None:
            start = self._next_to_report
            if start > self._highest:
                break
            stop = min(self._highest, start + self.max_per_feedback - 1)
            if not any(s in self._arrivals for s in range(start, stop + 1)):
                # A gap longer than one packet can report: what the gap hid stays
                # unreported (the sender counts it lost); go on from the next arrival.
                self._next_to_report = min(s for s in self._arrivals if s > stop)
                continue
            arrivals = [self._arrivals.pop(s, None) for s in range(start, stop + 1)]
            try:
                packet = build(self.sender_ssrc, self.media_ssrc, start, self._count, arrivals)
            except ValueError:
                # Arrivals seconds apart (a stalled link): report the first alone.
                first = next(i for i, a in enumerate(arrivals) if a is not None)
                stop = start + first
                packet = build(
                    self.sender_ssrc, self.media_ssrc, start, self._count, arrivals[: first + 1]
                )
                for offset, arrival in enumerate(arrivals[first + 1 :], start=first + 1):
                    if arrival is not None:
                        self._arrivals[start + offset] = arrival
            packets.append(packet)
            self._count = (self._count + 1) & 0xFF
            self.reported += stop + 1 - start
            self._next_to_report = stop + 1
        return packets


READ_TIMES_KEPT = 256
"""Read times kept (a probe burst is some dozens of packets)."""
READ_TIME_MAX_AGE_US = 500_000
"""A read time older than this is not this packet's (its number reused, or forged)."""


@dataclass
class ReadTimes:
    """When the datagrams the fast path left to aiortc's path were read, by their
    transport-wide number. aiortc's path reaches the relay a loop turn or more
    later (a queue, a task): stamped then, a burst of probes would arrive bunched
    or spread by the relay's own scheduling, not the link's, and the sender's
    estimate would take that for the link. Noted before authentication, so a
    time is only taken for a packet that then authenticates, and only while fresh."""

    _at: dict[int, int] = field(default_factory=dict)
    """Number -> read time (µs); insertion order is age."""

    def note(self, number: int, read_us: int) -> None:
        self._at[number] = read_us
        if len(self._at) > READ_TIMES_KEPT:
            del self._at[next(iter(self._at))]

    def arrival(self, number: int, now_us: int) -> int:
        """The arrival time of the authenticated packet ``number`` seen ``now_us``:
        when it was read, if that was noted and is fresh, else now."""
        read_us = self._at.pop(number, None)
        if read_us is not None and 0 <= now_us - read_us <= READ_TIME_MAX_AGE_US:
            return read_us
        return now_us


FEEDBACK_PER_COMPOUND = 2
"""Feedback packets read from one compound packet (a browser sends one)."""
FEEDBACK_STATUSES = 8192
"""Packets one received feedback may report on (Chromium's cover 50-250 ms)."""


STATUS_RATE = 5_000
"""Feedback statuses one leg may have read per second. A receiver reports each
packet the relay sends it once: some 300 a second for a 2.5 Mbit/s camera with its
audio, so this is several times the most a participant receives; beyond it, a
participant's feedback is dropped (a 24-byte packet can claim 8,192 statuses)."""
STATUS_BURST = 2 * FEEDBACK_STATUSES
"""Statuses a leg may have read at once (a receiver catching up after a stall)."""


@dataclass(frozen=True)
class StatusBudget:
    """What is left of a leg's budget of feedback statuses, and as of when."""

    statuses: float = STATUS_BURST
    at_us: int | None = None


def spend_statuses(budget: StatusBudget, statuses: int, now_us: int) -> tuple[bool, StatusBudget]:
    """Whether a feedback claiming ``statuses`` is read now, and the budget after:
    refilled at STATUS_RATE a second up to STATUS_BURST, spent by what is read;
    a feedback the budget cannot pay for is dropped and costs nothing."""
    elapsed = 0 if budget.at_us is None else max(0, now_us - budget.at_us)
    left = min(STATUS_BURST, budget.statuses + elapsed * STATUS_RATE / 1_000_000)
    if statuses > left:
        return False, StatusBudget(left, now_us)
    return True, StatusBudget(left - statuses, now_us)


def _admit_all(_statuses: int) -> bool:
    return True


def split_feedback(
    data: bytes, admit: Callable[[int], bool] = _admit_all
) -> tuple[list[Feedback], bytes]:
    """A compound RTCP packet's transport-wide feedback, parsed, and the rest of it
    as a compound of its own (aiortc's parser cannot read feedback packets: their
    status chunks do not come in whole words). Malformed feedback, feedback on
    more than FEEDBACK_STATUSES packets, any beyond FEEDBACK_PER_COMPOUND and any
    that ``admit`` (told the statuses it claims, before anything is parsed: the
    leg's budget) refuses are dropped, so that one datagram costs little whatever
    it claims; anything else malformed is left in the rest for the caller's parser
    to refuse."""
    found: list[Feedback] = []
    rest = bytearray()
    at = 0
    while at + 4 <= len(data):
        end = at + 4 * (unpack_from("!H", data, at + 2)[0] + 1)
        if end > len(data):
            break
        if data[at + 1] == PT_RTPFB and data[at] & 0x1F == FMT:
            claimed = unpack_from("!H", data, at + 14)[0] if end - at >= 20 else 0
            if (
                len(found) < FEEDBACK_PER_COMPOUND
                and claimed <= FEEDBACK_STATUSES
                and admit(claimed)
            ):
                with contextlib.suppress(ValueError):
                    found.append(parse(data[at:end], FEEDBACK_STATUSES))
        else:
            rest += data[at:end]
        at = end
    rest += data[at:]
    return found, bytes(rest)
