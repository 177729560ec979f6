"""The downlink half of congestion control: what each receiver's link can take.

The relay stamps its own transport-wide sequence number on every RTP packet it
sends on a leg that negotiated transport-cc (``SentLog.assign``), keeps when it
sent each and how large it was, and reads the receiver's transport-wide
feedback (media/twcc.parse) back into per-packet send and arrival times. From
those ``LinkEstimate`` keeps one number per leg: the bitrate the link to that
receiver takes without a queue building up or packets being lost, or None
while nothing has ever limited it. The relay tells each source the lowest
estimate of its receivers (REMB), so a poor expert downlink slows the kiosk's
camera while a good one never holds it back (issue 12).

The estimator is a small delay-and-loss controller in the manner of Google
congestion control (draft-ietf-rmcat-gcc), simplified where a relay can be:
- queueing delay: each packet's arrival minus send time, against the lowest
  such difference of the last BASE_WINDOW_US (the two clocks differ by a
  constant, which the minimum cancels); a link whose queue grows past
  OVERUSE_US while it keeps growing, or past 2 x OVERUSE_US at all, is overused;
- loss: the share of packets the feedback reports as not received;
- the rate: None (no limit) until the first overuse or heavy loss, then 85 %
  of the rate the receiver acknowledged, growing 8 % a second while the link
  is fine, never above 1.5 x what it acknowledged (so that a source that
  sends less than it may does not earn an estimate the link never carried).
Pure: no sockets and no clock of its own (times are passed in, in µs);
tests/media/test_downlink.py drives it as a table.
"""

from collections import Counter, deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from media.twcc import REFERENCE_UNIT_US, SEQ_MOD, Feedback

if TYPE_CHECKING:
    from media import _native

HISTORY = 8192
"""Sent packets remembered (about 8 s of a 1 Mbit/s video and its audio)."""
BASE_WINDOW_US = 10_000_000
"""How long the lowest one-way delay counts as the link's empty-queue delay."""
OVERUSE_US = 25_000
"""Queueing delay beyond which a growing queue counts as overuse."""
ACKED_WINDOW_US = 1_000_000
"""The acknowledged rate is what arrived over this long."""
DECREASE = 0.85
"""On overuse the estimate falls to this share of the acknowledged rate."""
DECREASE_INTERVAL_US = 500_000
"""At most one decrease per this long: the queue needs time to drain."""
INCREASE_PER_SECOND = 1.08
HEADROOM = 1.5
"""The estimate never exceeds this multiple of the acknowledged rate."""
FLOOR_BPS = 50_000
"""No estimate below this: audio and a small picture always fit."""
LOSS_HIGH = 0.10
LOSS_WINDOW = 200
LOSS_LOW = 0.02
OVERHEAD_BYTES = 10 + 8 + 20
"""Per packet on the wire beyond the RTP packet: SRTP tag, UDP and IPv4 headers."""
REFERENCE_MOD = 1 << 24
REMB_REFRESH_US = 1_000_000
"""A source hears its limit again at least this often (a lost REMB is not fatal)."""
LIFTED_BPS = 10_000_000
"""A REMB well above any camera: what lifts a limit the source still holds."""


UNREPORTED, REPORTED_LOST, REPORTED_RECEIVED = 0, 1, 2


@dataclass
class _Sent:
    at_us: int
    size: int
    reported: int = UNREPORTED
    """What feedback said of it so far: each packet counts once (a receiver may
    report one again, and a late arrival turns "lost" into "received")."""


@dataclass
class SentLog:
    """The relay's transport-wide sequence numbers on one leg, and what each was.

    Kept here, or (``store``) in the native pump's memory, where the pump takes
    numbers for the packets it sends itself: then what a packet was is read from
    there, and only what feedback said of it (``reported``) is kept here."""

    _next: int = 0
    _sent: dict[int, _Sent] = field(default_factory=dict)
    _reference: int | None = None
    store: "_native.SentLog | None" = None

    @classmethod
    def native(cls) -> "SentLog":
        """A log kept in a ``media._native.SentLog`` (for the pump)."""
        from media import _native

        return cls(store=_native.SentLog(HISTORY, OVERHEAD_BYTES))

    def assign(self, size: int, now_us: int) -> int:
        """The next sequence number (16 bits) for a packet of ``size`` bytes sent now."""
        if self.store is not None:
            return self.store.assign(size, now_us)
        unwrapped = self._next
        self._next += 1
        self._sent[unwrapped] = _Sent(now_us, size + OVERHEAD_BYTES)
        self._sent.pop(unwrapped - HISTORY, None)
        return unwrapped % SEQ_MOD

    @property
    def next(self) -> int:
        """The unwrapped number ``assign`` gives next."""
        return self._next if self.store is None else self.store.next

    def peek(self) -> int:
        """The number (16 bits) ``assign`` gives next, not taken: written into a
        packet that may still be refused (media/forwarding.py sent_steady)."""
        return self.next % SEQ_MOD

    def unwrap(self, sequence_number: int) -> int:
        """The sent packet a 16-bit number from feedback refers to (the nearest)."""
        latest = self.next - 1
        step = (sequence_number - latest) % SEQ_MOD
        return latest + (step if step < SEQ_MOD // 2 else step - SEQ_MOD)

    def get(self, unwrapped: int) -> _Sent | None:
        if self.store is None:
            return self._sent.get(unwrapped)
        found = self.store.get(unwrapped)
        if found is None:
            return None
        known = self._sent.get(unwrapped)
        if known is None or (known.at_us, known.size) != found:
            # What feedback says of it is kept with it, while the store holds it.
            known = self._sent[unwrapped] = _Sent(*found)
            if len(self._sent) > 2 * HISTORY:
                oldest = self.next - HISTORY
                self._sent = {k: v for k, v in self._sent.items() if k >= oldest}
        return known

    def window(self) -> range:
        """The unwrapped numbers the log can still hold."""
        return range(max(0, self.next - HISTORY), self.next)

    def reference_us(self, feedback: Feedback) -> int:
        """The feedback's reference time in µs on the receiver's clock, unwrapped
        (24 bits of 64 ms wrap, and a receiver may start anywhere in them)."""
        reference = feedback.reference_time % REFERENCE_MOD
        if self._reference is not None:
            step = (reference - self._reference) % REFERENCE_MOD
            reference = self._reference + (
                step if step < REFERENCE_MOD // 2 else step - REFERENCE_MOD
            )
        self._reference = reference
        return reference * REFERENCE_UNIT_US


@dataclass(frozen=True)
class PacketResult:
    sent_us: int
    size: int
    arrived_us: int | None
    """On the receiver's clock; None if the receiver reports it lost."""


def results(log: SentLog, feedback: Feedback) -> list[PacketResult]:
    """What the feedback says that is news of packets the log still knows: each
    packet once as lost or received, or lost first and received later. Only the
    part of the feedback the log can still hold is looked at, so a feedback that
    claims 65,535 packets costs no more than HISTORY look-ups."""
    base = log.unwrap(feedback.base_sequence)
    reference = log.reference_us(feedback)
    held = log.window()
    out = []
    for unwrapped in range(max(base, held.start), min(base + len(feedback.arrivals), held.stop)):
        sent = log.get(unwrapped)
        if sent is None or sent.reported == REPORTED_RECEIVED:
            continue
        arrival = feedback.arrivals[unwrapped - base]
        if arrival is None:
            if sent.reported == REPORTED_LOST:
                continue
            sent.reported = REPORTED_LOST
            out.append(PacketResult(sent.at_us, sent.size, None))
        else:
            sent.reported = REPORTED_RECEIVED
            out.append(PacketResult(sent.at_us, sent.size, reference + arrival))
    return out


@dataclass
class LinkEstimate:
    """One receiver's link: its estimate in bit/s, or None while nothing limited it."""

    bitrate: int | None = None
    overuses: int = 0
    _base: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    """(send time, one-way delay) kept increasing in delay: a sliding minimum."""
    _acked: deque[tuple[int, int, int]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    """(send time, arrival time, bytes) of what arrived, of the packets the relay
    sent over the last ACKED_WINDOW_US: kept by the relay's own clock, whatever
    the receiver's says."""
    _outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=LOSS_WINDOW))
    """Whether each of the last LOSS_WINDOW packets arrived: loss is a share of
    some hundred packets, not of one feedback's dozen (where 3 % random loss
    would often look like 10 %)."""
    _queue_us: float = 0.0
    _last_decrease_us: int | None = None
    _last_update_us: int | None = None

    def acknowledged(self) -> int | None:
        """What reached the receiver of the last second's packets, in bit/s over the
        time they took to arrive."""
        if len(self._acked) < 2:
            return None
        arrivals = [arrived for _, arrived, _ in self._acked]
        span = max(arrivals) - min(arrivals)
        if span < ACKED_WINDOW_US // 4:
            return None
        return int(sum(size for _, _, size in self._acked) * 8 * 1_000_000 / span)

    def update(self, packets: list[PacketResult], now_us: int) -> int | None:
        """Take one feedback's packets (sent by the relay at ``sent_us``); the new
        estimate."""
        received = [p for p in packets if p.arrived_us is not None]
        if not packets:
            return self.bitrate
        self._outcomes.extend(p.arrived_us is not None for p in packets)
        loss = 0.0
        if len(self._outcomes) >= LOSS_WINDOW // 2:
            loss = self._outcomes.count(False) / len(self._outcomes)
        previous_queue = self._queue_us
        for packet in sorted(received, key=lambda p: p.sent_us):
            assert packet.arrived_us is not None
            delay = packet.arrived_us - packet.sent_us
            while self._base and self._base[-1][1] >= delay:
                self._base.pop()
            self._base.append((packet.sent_us, delay))
            while self._base[0][0] < packet.sent_us - BASE_WINDOW_US:
                self._base.popleft()
            queue = delay - self._base[0][1]
            self._queue_us += 0.3 * (queue - self._queue_us)
            self._acked.append((packet.sent_us, packet.arrived_us, packet.size))
        if self._acked:
            newest = max(sent for sent, _, _ in self._acked)
            while self._acked[0][0] < newest - ACKED_WINDOW_US:
                self._acked.popleft()
        acked = self.acknowledged()
        overused = self._queue_us > 2 * OVERUSE_US or (
            self._queue_us > OVERUSE_US and self._queue_us > previous_queue
        )
        elapsed = 0 if self._last_update_us is None else now_us - self._last_update_us
        self._last_update_us = now_us
        before = self.bitrate
        self.bitrate = next_bitrate(
            before,
            acked,
            overused=overused,
            loss=loss,
            elapsed_us=elapsed,
            may_decrease=self._last_decrease_us is None
            or now_us - self._last_decrease_us >= DECREASE_INTERVAL_US,
        )
        if self.bitrate is not None and (before is None or self.bitrate < before):
            self._last_decrease_us = now_us
            self.overuses += 1
        return self.bitrate


def next_bitrate(
    bitrate: int | None,
    acked: int | None,
    *,
    overused: bool,
    loss: float,
    elapsed_us: int,
    may_decrease: bool,
) -> int | None:
    """The estimate after one feedback: the decision alone, as a table can hold it."""
    if acked is None:
        return bitrate  # too little seen yet to say anything
    if (overused or loss > LOSS_HIGH) and may_decrease:
        cut = acked * DECREASE if overused else acked * (1 - 0.5 * loss)
        limit = cut if bitrate is None else min(bitrate, cut)
        return max(FLOOR_BPS, int(limit))
    if bitrate is None or overused or loss > LOSS_HIGH:
        return bitrate  # never limited yet, or waiting for the queue to drain
    if loss >= LOSS_LOW:
        return bitrate  # some loss: hold
    # Never more than a second's growth at once: a receiver silent for hours earns
    # nothing (and 1.08 ** hours overflows).
    seconds = max(0.0, min(elapsed_us / 1_000_000, 1.0))
    grown = bitrate * INCREASE_PER_SECOND**seconds
    return max(FLOOR_BPS, int(min(grown, max(bitrate, acked * HEADROOM))))


SourceKey = TypeVar("SourceKey", bound=Hashable)


def source_limits(
    receivers: Mapping[str, tuple[int | None, Sequence[SourceKey]]],
) -> dict[SourceKey, int]:
    """What each source may send: the lowest of its receivers' shares. A receiver
    (its link's estimate, or None while nothing limited it; the source of each
    video stream it gets now) shares its estimate evenly among those streams, so
    that three cameras feeding one link are told a third of it each, not all of
    it each (two-party calls: the whole of it, as before). A source no limiting
    receiver gets is absent: nothing holds it back."""
    limits: dict[SourceKey, int] = {}
    for estimate, sources in receivers.values():
        if estimate is None or not sources:
            continue
        for source, streams in Counter(sources).items():
            share = max(FLOOR_BPS, estimate * streams // len(sources))
            limits[source] = min(limits.get(source, share), share)
    return limits


def remb_to_send(
    limit: int | None, last_sent: int | None, last_sent_us: int, now_us: int
) -> int | None:
    """What REMB to send a source now, if any: its receivers' lowest estimate,
    at once when it falls by 5 % or more, otherwise once a second. When every
    receiver's limit has gone (a receiver left), one last REMB well above any
    camera lifts the cap the source still holds."""
    if limit is None:
        return LIFTED_BPS if last_sent is not None and last_sent != LIFTED_BPS else None
    if last_sent is None or limit < 0.95 * last_sent:
        return limit
    if now_us - last_sent_us >= REMB_REFRESH_US:
        return limit
    return None
