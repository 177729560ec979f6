"""The relay's estimate of each receiver's link, from that receiver's transport
feedback: the decisions as tables, and the whole loop (source, relay, a
bottleneck link, feedback, REMB) simulated in virtual time, so that no test
here depends on how fast this machine is."""

import random
import time
from types import SimpleNamespace

import pytest

from media.downlink import (
    FLOOR_BPS,
    LIFTED_BPS,
    LinkEstimate,
    PacketResult,
    SentLog,
    next_bitrate,
    remb_to_send,
    results,
    source_limits,
)
from media.forwarding import Source
from media.slots import CAMERA, SCREEN, Place
from media.twcc import (
    FEEDBACK_STATUSES,
    STATUS_BURST,
    STATUS_RATE,
    ArrivalRecorder,
    Feedback,
    StatusBudget,
    build,
    parse,
    spend_statuses,
    split_feedback,
)

MBIT = 1_000_000


@pytest.mark.parametrize(
    ("bitrate", "acked", "overused", "loss", "elapsed_us", "may_decrease", "expected"),
    [
        # Never limited: stays unlimited while the link is fine, lossy or not.
        (None, 800_000, False, 0.0, 100_000, True, None),
        (None, 800_000, False, 0.05, 100_000, True, None),
        # Nothing acknowledged yet: nothing to say.
        (None, None, True, 0.5, 100_000, True, None),
        (600_000, None, True, 0.5, 100_000, True, 600_000),
        # Overuse: 85 % of what arrived.
        (None, 800_000, True, 0.0, 100_000, True, 680_000),
        (2 * MBIT, 800_000, True, 0.0, 100_000, True, 680_000),
        # ... unless the last decrease is too recent (the queue still drains).
        (700_000, 800_000, True, 0.0, 100_000, False, 700_000),
        # Heavy loss: cut by half the loss.
        (None, 800_000, False, 0.2, 100_000, True, 720_000),
        # A cut never goes below the floor.
        (None, 40_000, True, 0.0, 100_000, True, FLOOR_BPS),
        # Fine link: 8 % a second, within 1.5x of what arrived.
        (500_000, 500_000, False, 0.0, 1_000_000, True, 540_000),
        (700_000, 450_000, False, 0.0, 1_000_000, True, 700_000),
        # Some loss: hold.
        (500_000, 500_000, False, 0.05, 1_000_000, True, 500_000),
    ],
)
def test_the_estimate_after_one_feedback(
    bitrate: int | None,
    acked: int | None,
    overused: bool,
    loss: float,
    elapsed_us: int,
    may_decrease: bool,
    expected: int | None,
) -> None:
    got = next_bitrate(
        bitrate,
        acked,
        overused=overused,
        loss=loss,
        elapsed_us=elapsed_us,
        may_decrease=may_decrease,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("limit", "last", "last_at", "now", "expected"),
    [
        (None, None, 0, 5_000_000, None),  # never limited: no REMB at all
        (600_000, None, 0, 5_000_000, 600_000),  # the first limit at once
        (500_000, 600_000, 4_900_000, 5_000_000, 500_000),  # a fall at once
        (590_000, 600_000, 4_900_000, 5_000_000, None),  # a small change waits
        (700_000, 600_000, 4_900_000, 5_000_000, None),  # a rise waits ...
        (700_000, 600_000, 4_000_000, 5_000_000, 700_000),  # ... for the refresh
        (None, 600_000, 4_900_000, 5_000_000, LIFTED_BPS),  # limit gone: lift it once
        (None, LIFTED_BPS, 4_900_000, 5_000_000, None),
    ],
)
def test_when_a_source_hears_its_limit(
    limit: int | None, last: int | None, last_at: int, now: int, expected: int | None
) -> None:
    assert remb_to_send(limit, last, last_at, now) == expected


def test_feedback_finds_the_packets_it_reports_on_across_a_wrap() -> None:
    log = SentLog(_next=65_530)
    numbers = [log.assign(1000, 1_000 * i) for i in range(10)]
    assert numbers == [65_530, 65_531, 65_532, 65_533, 65_534, 65_535, 0, 1, 2, 3]
    # The receiver got all but the one numbered 0, 1 ms after each was sent.
    arrivals = [None if n == 0 else 5_000_000 + 1_000 * i + 1_000 for i, n in enumerate(numbers)]
    packet = build(1, 2, 65_530, 0, arrivals)
    found, rest = split_feedback(packet)
    assert rest == b""
    got = results(log, found[0])
    assert [r.arrived_us is None for r in got] == [n == 0 for n in numbers]
    delays = {r.arrived_us - r.sent_us for r in got if r.arrived_us is not None}
    assert max(delays) - min(delays) <= 250  # the same to a quarter millisecond


def test_the_receivers_reference_time_is_unwrapped() -> None:
    log = SentLog()
    first = parse(build(1, 2, 0, 0, [(1 << 24) * 64_000 - 64_000]))
    log.assign(100, 0)
    before = log.reference_us(first)
    after = log.reference_us(parse(build(1, 2, 0, 1, [128_000])))
    assert after - before == 3 * 64_000


def test_feedback_is_split_from_the_rest_of_a_compound_packet() -> None:
    receiver_report = bytes([0x80, 201, 0, 1]) + (7).to_bytes(4, "big")
    feedback = build(1, 2, 10, 0, [1_000, None, 3_000])
    found, rest = split_feedback(receiver_report + feedback + receiver_report)
    assert [f.base_sequence for f in found] == [10]
    assert rest == receiver_report + receiver_report
    # Damaged feedback is dropped, not passed on to a parser that would refuse it all.
    found, rest = split_feedback(receiver_report + feedback[:4] + b"\xff" * (len(feedback) - 4))
    assert found == [] and rest == receiver_report


def simulate(
    capacity_bps: int,
    *,
    camera_bps: int = 1_500_000,
    seconds: float = 30.0,
    loss: float = 0.0,
    seed: int = 1,
) -> tuple[LinkEstimate, list[int | None], list[float], list[float]]:
    """A source sending ``camera_bps`` (or its REMB limit, whichever is lower)
    in 1,200-byte packets through the relay to a receiver behind a FIFO link of
    ``capacity_bps``; the receiver reports every 100 ms; the relay sends the
    estimate as REMB and the source follows it at once. Returns the estimator,
    the estimate, the queueing delay of each packet (s) and the rate sent in
    each second."""
    rng = random.Random(seed)
    log = SentLog()
    estimate = LinkEstimate()
    recorder = ArrivalRecorder(1, 2)
    now = 0
    link_free_at = 0
    sent_bits = [0.0] * int(seconds + 1)
    queue_delays: list[float] = []
    estimates: list[int | None] = []
    limit: int | None = None
    last_sent: int | None = None
    last_sent_at = 0
    next_feedback = 100_000
    in_flight: list[tuple[int, int]] = []
    while now < seconds * 1_000_000:
        rate = camera_bps if limit is None else min(camera_bps, limit)
        size = 1_200
        number = log.assign(size - 38, now)
        sent_bits[now // 1_000_000] += size * 8
        if rng.random() >= loss:
            start = max(now, link_free_at)
            link_free_at = start + size * 8 * 1_000_000 // capacity_bps
            arrival = link_free_at + 10_000  # 10 ms of propagation
            queue_delays.append((start - now) / 1_000_000)
            in_flight.append((arrival, number))
        now += size * 8 * 1_000_000 // rate
        while now >= next_feedback:
            for arrival, number in [f for f in in_flight if f[0] <= next_feedback]:
                recorder.record(number, arrival + 7_000_000)  # another clock
            in_flight = [f for f in in_flight if f[0] > next_feedback]
            for packet in recorder.take():
                estimate.update(results(log, parse(packet)), next_feedback)
            estimates.append(estimate.bitrate)
            remb = remb_to_send(estimate.bitrate, last_sent, last_sent_at, next_feedback)
            if remb is not None:
                last_sent, last_sent_at = remb, next_feedback
                limit = remb
            next_feedback += 100_000
    return estimate, estimates, queue_delays, sent_bits


def test_a_link_wider_than_the_camera_never_limits_it() -> None:
    estimate, estimates, delays, _ = simulate(10 * MBIT)
    assert set(estimates) == {None}
    assert estimate.overuses == 0
    # No packet ever waits behind another (virtual time: nothing here is timed).
    assert max(delays) == 0


def test_random_loss_on_a_wide_link_does_not_limit_the_camera() -> None:
    """3 % loss is the link's, not congestion: NACK repairs it, the rate stays."""
    _, estimates, _, _ = simulate(10 * MBIT, loss=0.03)
    assert set(estimates) == {None}


@pytest.mark.parametrize("capacity", [250_000, 500_000, 1_000_000])
def test_behind_a_narrow_link_the_source_settles_below_it_without_a_queue(capacity: int) -> None:
    estimate, _estimates, delays, sent = simulate(capacity, seconds=40)
    assert estimate.overuses >= 1
    settled = sent[20:40]
    # The last 20 s: between 60 % and all of the link, and the queue drained.
    assert 0.6 * capacity <= sum(settled) / len(settled) <= capacity
    # The queue the first second built has drained: in the second half, half the
    # packets find fewer than two packets ahead of them on the link (counted in
    # packets of the simulation, not in anyone's seconds).
    packet_seconds = 1_200 * 8 / capacity
    tail = delays[len(delays) // 2 :]
    assert sorted(tail)[len(tail) // 2] / packet_seconds < 2


def test_an_estimate_follows_what_arrives_not_what_was_offered() -> None:
    estimate = LinkEstimate()
    packets = [PacketResult(i * 10_000, 1_250, 5_000_000 + i * 10_000) for i in range(50)]
    estimate.update(packets, 500_000)
    assert estimate.acknowledged() == pytest.approx(1_000_000, rel=0.05)
    assert estimate.bitrate is None


# ---- what a buggy or hostile receiver can send (review of the first version) ----


def test_a_long_silence_grows_the_estimate_by_one_seconds_worth_at_most() -> None:
    """1.08 ** (hours) overflowed, and the exception would have closed the leg."""
    got = next_bitrate(
        500_000, 500_000, overused=False, loss=0.0, elapsed_us=3 * 3600 * MBIT, may_decrease=True
    )
    assert got == 540_000


def test_the_same_feedback_again_counts_nothing_twice() -> None:
    log = SentLog()
    for i in range(100):
        log.assign(1000, i * 10_000)
    feedback = parse(build(1, 2, 0, 0, [5_000_000 + i * 10_000 for i in range(100)]))
    estimate = LinkEstimate()
    estimate.update(results(log, feedback), 0)
    honest = estimate.acknowledged()
    for k in range(1, 50):
        assert results(log, feedback) == []
        estimate.update(results(log, feedback), k * 50_000)
    assert estimate.acknowledged() == honest


def test_a_packet_reported_lost_and_then_received_counts_as_received() -> None:
    log = SentLog()
    for i in range(3):
        log.assign(1000, i * 10_000)
    lost = results(log, parse(build(1, 2, 0, 0, [5_000_000, None, 5_020_000])))
    assert [r.arrived_us is None for r in lost] == [False, True, False]
    late = results(log, parse(build(1, 2, 0, 1, [5_000_000, 5_030_000, 5_020_000])))
    assert len(late) == 1 and late[0].arrived_us is not None


def test_a_receiver_clock_stepping_back_keeps_only_the_last_second() -> None:
    log = SentLog()
    for i in range(2000):
        log.assign(1000, i * 1_000)
    estimate = LinkEstimate()
    for k in range(20):
        reference = (10_000 - k) * 64_000
        feedback = build(1, 2, 100 * k, k, [reference + i * 250 for i in range(100)])
        estimate.update(results(log, parse(feedback)), k * 100_000)
    # Sent 1 ms apart: one second of the relay's own clock is 1,001 packets.
    assert len(estimate._acked) <= 1_001


def test_a_feedback_claiming_every_packet_costs_nothing() -> None:
    """40 bytes can claim 65,535 statuses (nine run-length chunks): refused before
    anything is built for them; and only two feedbacks of a compound are read."""
    from struct import pack

    claim = pack("!LLHHL", 1, 2, 0, 0xFFFF, 0) + pack("!H", 0x1FFF) * 9 + b"\0\0"
    packet = pack("!BBH", 0x80 | 15, 205, (len(claim) + 4) // 4 - 1) + claim
    assert split_feedback(packet) == ([], b"")
    honest = build(1, 2, 0, 0, [1_000])
    found, _ = split_feedback(honest * 30)
    assert len(found) == 2


SECOND = 1_000_000


@pytest.mark.parametrize(
    ("left", "at_us", "statuses", "now_us", "admitted", "left_after"),
    [
        # A fresh leg may have two of the largest feedbacks read at once.
        (STATUS_BURST, None, FEEDBACK_STATUSES, 0, True, STATUS_BURST - FEEDBACK_STATUSES),
        (FEEDBACK_STATUSES, 0, FEEDBACK_STATUSES, 0, True, 0),
        # Then nothing more until the budget refills at STATUS_RATE a second...
        (0, 0, FEEDBACK_STATUSES, 0, False, 0),
        (0, 0, 1, 100, False, 0.5),
        (0, 0, FEEDBACK_STATUSES, SECOND, False, STATUS_RATE),
        (0, 0, 300, SECOND // 10, True, STATUS_RATE / 10 - 300),
        # ... never above the burst, whatever the silence.
        (0, 0, 1, 3600 * SECOND, True, STATUS_BURST - 1),
        # A clock stepping back refills nothing.
        (10, SECOND, 5, 0, True, 5),
    ],
)
def test_a_legs_budget_of_feedback_statuses(
    left: float, at_us: int | None, statuses: int, now_us: int, admitted: bool, left_after: float
) -> None:
    got, after = spend_statuses(StatusBudget(left, at_us), statuses, now_us)
    assert (got, after) == (admitted, StatusBudget(left_after, now_us))


def test_a_flood_of_small_feedback_claiming_thousands_of_statuses_is_dropped() -> None:
    """24 bytes claiming 8,192 statuses (~270 us to read each): a second of them
    from one participant is read only as far as the leg's budget goes."""
    from struct import pack

    # Two run-length chunks: 8,191 and one more packets "not received".
    claim = pack("!LLHHL", 1, 2, 0, FEEDBACK_STATUSES, 0) + pack("!HH", 0x1FFF, 0x0001)
    packet = pack("!BBH", 0x80 | 15, 205, (len(claim) + 4) // 4 - 1) + claim
    assert len(packet) == 24
    budget = StatusBudget()
    read = 0

    def admit(statuses: int) -> bool:
        nonlocal budget
        admitted, budget = spend_statuses(budget, statuses, now_us)
        return admitted

    for index in range(3000):
        now_us = index * SECOND // 3000
        found, _ = split_feedback(packet * 2, admit)
        read += sum(len(f.arrivals) for f in found)
    assert read <= STATUS_BURST + STATUS_RATE
    # An honest receiver's feedback, one every 100 ms on 300 packets a second,
    # is always read.
    budget = StatusBudget()
    honest = build(1, 2, 0, 0, [1_000 * n for n in range(30)])
    for index in range(100):
        now_us = index * SECOND // 10
        assert len(split_feedback(honest, admit)[0]) == 1


async def test_feedback_beyond_a_legs_budget_is_dropped_and_counted() -> None:
    from media.relay import Relay

    class Receiver:
        """What Relay._on_rtcp uses of a leg; its budget's clock stands still."""

        def __init__(self) -> None:
            self.participant = "expert"
            self.feedback_dropped = 0
            self.feedback: list[Feedback] = []
            self.budget = StatusBudget()

        def admit_feedback(self, statuses: int) -> bool:
            admitted, self.budget = spend_statuses(self.budget, statuses, 0)
            self.feedback_dropped += not admitted
            return admitted

        def feedback_received(self, feedback: Feedback) -> None:
            self.feedback.append(feedback)

    relay = Relay("c", lambda *_: None, None)
    receiver = Receiver()
    relay.legs = {"expert": receiver}  # type: ignore[dict-item]
    large = build(1, 2, 0, 0, [1_000] * FEEDBACK_STATUSES)
    for _ in range(5):
        relay._on_rtcp(receiver, large)  # type: ignore[arg-type]
    assert len(receiver.feedback) == STATUS_BURST // FEEDBACK_STATUSES
    assert relay.counters.feedback_dropped == 5 - STATUS_BURST // FEEDBACK_STATUSES
    assert relay.counters.feedback_received == STATUS_BURST // FEEDBACK_STATUSES


class _FakeLeg:
    """What Relay._send_limits reads of a leg: one that receives the other's camera
    (``source``) in slot 0, just now."""

    def __init__(
        self, participant: str, video: int | None, limit: int | None, source: str = "kiosk"
    ) -> None:
        self.participant = participant
        self.generation = 1
        self.primary_ssrc = {CAMERA: video} if video else {}
        stream = SimpleNamespace(source=Source(source, 1, 5, 90000), last_sent_at=time.monotonic())
        self.outbound = {CAMERA: stream}
        self.feedback_packets = 0 if limit is None else 10
        self.downlink = LinkEstimate(bitrate=limit)
        self.sent: list[bytes] = []

    def relay_ssrc(self, kind: str) -> int:
        return 1

    def send_soon(self, data: bytes) -> None:
        self.sent.append(data)


async def test_a_camera_is_unlimited_again_when_its_limited_receiver_leaves() -> None:
    from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, unpack_remb_fci

    from media.relay import Relay

    relay = Relay("c", lambda *_: None, None)
    kiosk, expert = _FakeLeg("kiosk", 5, None), _FakeLeg("expert", None, 300_000)
    relay.legs = {"kiosk": kiosk, "expert": expert}  # type: ignore[dict-item]
    relay._send_limits(1_000_000)
    del relay.legs["expert"]
    for second in range(2, 6):
        relay._send_limits(second * MBIT)

    def bitrate(data: bytes) -> int:
        (packet,) = RtcpPacket.parse(data)
        assert isinstance(packet, RtcpPsfbPacket)
        return unpack_remb_fci(packet.fci)[0]

    assert [bitrate(d) for d in kiosk.sent] == [300_000, LIFTED_BPS]


# receivers: name -> (estimate, the source of each video stream it gets) -> limits
LIMITS = [
    ({"p1": (900_000, ["p0"])}, {"p0": 900_000}),  # two parties: the whole link
    ({"p1": (None, ["p0"])}, {}),  # never limited: nothing holds the source
    ({"p0": (900_000, ["p1", "p2", "p3"])}, {"p1": 300_000, "p2": 300_000, "p3": 300_000}),
    # The lowest share of each source's receivers.
    (
        {"p0": (900_000, ["p1", "p2"]), "p2": (300_000, ["p0", "p1"])},
        {"p1": 150_000, "p2": 450_000, "p0": 150_000},
    ),
    # A sharer's camera and screen are two of the receiver's streams.
    ({"p0": (900_000, ["p1", "p1", "p2"])}, {"p1": 600_000, "p2": 300_000}),
    ({"p0": (90_000, ["p1", "p2", "p3"])}, {"p1": FLOOR_BPS, "p2": FLOOR_BPS, "p3": FLOOR_BPS}),
    ({"p0": (900_000, [])}, {}),
]


@pytest.mark.parametrize("receivers,limits", LIMITS)
def test_each_source_is_told_the_lowest_share_of_its_receivers(
    receivers: dict[str, tuple[int | None, list[str]]], limits: dict[str, int]
) -> None:
    assert source_limits(receivers) == limits


class _Receiver:
    """A leg that gets some sources' video (Relay._send_limits reads these)."""

    def __init__(
        self, participant: str, camera: int | None, limit: int | None, gets: dict[Place, str]
    ) -> None:
        self.participant = participant
        self.generation = 1
        self.primary_ssrc = {CAMERA: camera} if camera else {}
        self.outbound = {
            place: SimpleNamespace(
                source=Source(source, 1, 5, 90000), last_sent_at=time.monotonic()
            )
            for place, source in gets.items()
        }
        self.feedback_packets = 0 if limit is None else 10
        self.downlink = LinkEstimate(bitrate=limit)
        self.sent: list[bytes] = []

    def relay_ssrc(self, kind: str) -> int:
        return 1

    def send_soon(self, data: bytes) -> None:
        self.sent.append(data)


async def test_in_a_call_of_three_each_camera_hears_its_poorest_receivers_share() -> None:
    from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, unpack_remb_fci

    from media.relay import Relay

    relay = Relay("c", lambda *_: None, None)
    # p0 gets p1 and p2 over 1.2 Mbit/s; p1 gets p0 and p2 over 400 kbit/s; p2
    # (without transport-cc) is never measured. p1 shares its screen with p0.
    legs = {
        "p0": _Receiver("p0", 10, 1_200_000, {CAMERA: "p1", Place(1, "video"): "p2", SCREEN: "p1"}),
        "p1": _Receiver("p1", 11, 400_000, {CAMERA: "p0", Place(1, "video"): "p2"}),
        "p2": _Receiver("p2", 12, None, {CAMERA: "p0", Place(1, "video"): "p1"}),
    }
    legs["p1"].primary_ssrc[SCREEN] = 21
    relay.legs = legs  # type: ignore[assignment]
    relay._send_limits(1_000_000)

    def told(name: str) -> tuple[int, list[int]]:
        (data,) = legs[name].sent
        (packet,) = RtcpPacket.parse(data)
        assert isinstance(packet, RtcpPsfbPacket)
        bitrate, ssrcs = unpack_remb_fci(packet.fci)
        return bitrate, sorted(ssrcs)

    assert told("p0") == (200_000, [10])  # half of p1's 400 kbit/s
    assert told("p1") == (800_000, [11, 21])  # two thirds of p0's: camera and screen
    assert told("p2") == (200_000, [12])  # p1's half is lower than p0's third
