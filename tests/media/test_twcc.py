"""Transport-wide feedback as bytes: a packet captured from Chromium decodes to
what Wireshark reads in it and is what ``build`` makes from the same arrivals;
anything built parses back to its arrivals within a quarter millisecond, never
drifting; the recorder reports each packet once, across sequence wrap and gaps."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.twcc import (
    DELTA_UNIT_US,
    READ_TIME_MAX_AGE_US,
    READ_TIMES_KEPT,
    REFERENCE_UNIT_US,
    ArrivalRecorder,
    ReadTimes,
    build,
    parse,
)

# Chromium's feedback for 9 packets, as captured (olivermichel/webrtc-analysis,
# test/include/data.h) and decoded by Wireshark: base 1, 9 statuses, reference
# time 6197520, feedback 0, one run-length chunk (9 small deltas), deltas 7, 3,
# 11, 14, 0, 1, 0, 2, 6 ms, one byte of padding.
CAPTURED = bytes.fromhex("afcd000700000001dd586eb6000100095e91100020091c0c2c38000400081801")
CAPTURED_DELTAS_MS = [7, 3, 11, 14, 0, 1, 0, 2, 6]


def cumulative_us(deltas_ms: list[int]) -> list[int]:
    total, out = 0, []
    for delta in deltas_ms:
        total += delta * 1000
        out.append(total)
    return out


def test_a_packet_from_chromium_reads_as_wireshark_reads_it() -> None:
    feedback = parse(CAPTURED)
    assert (feedback.sender_ssrc, feedback.media_ssrc) == (1, 0xDD586EB6)
    assert (feedback.base_sequence, feedback.reference_time, feedback.count) == (1, 6197520, 0)
    assert list(feedback.arrivals) == cumulative_us(CAPTURED_DELTAS_MS)


def test_the_same_arrivals_build_the_same_bytes() -> None:
    base = 6197520 * REFERENCE_UNIT_US
    arrivals: list[int | None] = [base + t for t in cumulative_us(CAPTURED_DELTAS_MS)]
    assert build(1, 0xDD586EB6, 1, 0, arrivals) == CAPTURED


def test_losses_large_and_negative_deltas_and_status_vectors() -> None:
    base = 1_000 * REFERENCE_UNIT_US
    arrivals: list[int | None] = [
        base + 1_000,
        None,
        base + 2_000,
        base + 200_000,  # 198 ms after the previous: a large delta
        base + 150_000,  # arrived before the previous one: a negative delta
        None,
        None,
        base + 151_000,
    ]
    packet = build(7, 9, 65530, 255, arrivals)
    assert len(packet) % 4 == 0
    feedback = parse(packet)
    assert (feedback.base_sequence, feedback.count, len(feedback.arrivals)) == (65530, 255, 8)
    assert [a is None for a in feedback.arrivals] == [a is None for a in arrivals]
    origin = feedback.reference_time * REFERENCE_UNIT_US
    for got, sent in zip(feedback.arrivals, arrivals, strict=True):
        if sent is not None:
            assert got is not None and abs(origin + got - sent) < DELTA_UNIT_US


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(st.none(), st.integers(min_value=-20_000, max_value=300_000)),
        min_size=1,
        max_size=300,
    ),
    start=st.integers(min_value=0, max_value=10**12),
)
def test_any_arrivals_parse_back_within_a_quarter_millisecond(
    steps: list[int | None], start: int
) -> None:
    arrivals: list[int | None] = []
    now = start
    for step in steps:
        if step is None:
            arrivals.append(None)
        else:
            now = max(0, now + step)
            arrivals.append(now)
    if all(a is None for a in arrivals):
        arrivals[0] = start
    feedback = parse(build(1, 2, 3, 4, arrivals))
    origin = (feedback.reference_time % (1 << 24)) * REFERENCE_UNIT_US
    first = next(a for a in arrivals if a is not None)
    offset = first // REFERENCE_UNIT_US * REFERENCE_UNIT_US - origin  # the 24-bit wrap
    for got, sent in zip(feedback.arrivals, arrivals, strict=True):
        assert (got is None) == (sent is None)
        if got is not None and sent is not None:
            assert abs(origin + offset + got - sent) <= DELTA_UNIT_US // 2


@pytest.mark.parametrize(
    "bad",
    [
        CAPTURED[:19],
        bytes([0x8E]) + CAPTURED[1:],  # another FMT
        CAPTURED[:1] + bytes([204]) + CAPTURED[2:],  # another packet type
        CAPTURED[:2] + b"\x00\x09" + CAPTURED[4:],  # longer than the data
        CAPTURED[:14] + b"\x00\x30" + CAPTURED[16:],  # more statuses than deltas
    ],
)
def test_malformed_feedback_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse(bad)


def reported(packets: list[bytes]) -> dict[int, bool]:
    """Sequence number -> received, over all the packets."""
    seen: dict[int, bool] = {}
    for packet in packets:
        feedback = parse(packet)
        for index, arrival in enumerate(feedback.arrivals):
            sequence_number = (feedback.base_sequence + index) % 65536
            assert sequence_number not in seen, "reported twice"
            seen[sequence_number] = arrival is not None
    return seen


def test_the_recorder_reports_each_packet_once_across_the_wrap() -> None:
    recorder = ArrivalRecorder(sender_ssrc=1, media_ssrc=2)
    assert recorder.take() == []
    for offset, sequence_number in enumerate([65533, 65534, 0, 1, 3]):
        recorder.record(sequence_number, 5_000_000 + offset * 1_000)
    first = recorder.take()
    assert reported(first) == {
        65533: True,
        65534: True,
        65535: False,
        0: True,
        1: True,
        2: False,
        3: True,
    }
    recorder.record(2, 5_010_000)  # late, after it was reported missing: not again
    recorder.record(3, 5_010_000)  # a duplicate
    assert recorder.take() == []
    recorder.record(4, 5_020_000)
    second = recorder.take()
    assert reported(second) == {4: True}
    assert [parse(p).count for p in first + second] == [0, 1]


def test_the_recorder_splits_long_reports_and_skips_long_gaps() -> None:
    recorder = ArrivalRecorder(sender_ssrc=1, media_ssrc=2, max_per_feedback=10)
    for sequence_number in range(25):
        recorder.record(sequence_number, 1_000_000 + sequence_number * 500)
    recorder.record(100, 1_100_000)  # 75 lost in between: more than one packet covers
    packets = recorder.take()
    seen = reported(packets)
    assert all(seen[s] for s in range(25)) and seen[100]
    assert len(packets) >= 4


def test_arrivals_seconds_apart_go_in_separate_packets() -> None:
    recorder = ArrivalRecorder(sender_ssrc=1, media_ssrc=2)
    recorder.record(10, 1_000_000)
    recorder.record(11, 1_000_000 + 20_000_000)  # 20 s later: beyond a large delta
    packets = recorder.take()
    assert len(packets) == 2 and reported(packets) == {10: True, 11: True}


@pytest.mark.parametrize(
    ("noted", "asked", "now_us", "expected"),
    [
        ({7: 1_000}, 7, 3_000, 1_000),  # read earlier: that is its arrival
        ({}, 7, 3_000, 3_000),  # never noted: now
        ({8: 1_000}, 7, 3_000, 3_000),  # another packet's time is not taken
        ({7: 1_000}, 7, 1_000 + READ_TIME_MAX_AGE_US + 1, 1_000 + READ_TIME_MAX_AGE_US + 1),
        ({7: 5_000}, 7, 3_000, 3_000),  # "read" after now: not this packet's
    ],
)
def test_a_packet_on_aiortcs_path_arrives_when_it_was_read(
    noted: dict[int, int], asked: int, now_us: int, expected: int
) -> None:
    times = ReadTimes()
    for number, at in noted.items():
        times.note(number, at)
    assert times.arrival(asked, now_us) == expected
    assert times.arrival(asked, now_us + 1) == now_us + 1  # taken once


def test_read_times_are_bounded_and_the_oldest_go_first() -> None:
    times = ReadTimes()
    for number in range(READ_TIMES_KEPT + 10):
        times.note(number, 100)
    assert times.arrival(0, 200) == 200  # dropped
    assert times.arrival(9, 200) == 200
    assert times.arrival(10, 200) == 100
    assert times.arrival(READ_TIMES_KEPT + 9, 200) == 100
