"""The fast path's header rewrite gives what the general path gives, byte for
byte, and declines what it does not expect (so that such packets take the
general path), on both data paths: Python's (plan_header + forward_steady) and
the native one (media._native's forwarder + sent_steady, as Relay._forward_native
calls them). Streams, plans and packets; the native one sends to a loopback
socket of the test's."""

import os
import socket
from dataclasses import replace

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, pack_header_extensions
from hypothesis import given, settings
from hypothesis import strategies as st

from media import datapath
from media.downlink import SentLog
from media.fastpath import (
    ABS_SEND_TIME,
    AUDIO_LEVEL,
    MID,
    RID,
    TOFFSET,
    TRANSPORT_CC,
    ExtensionPlan,
    plan_header,
)
from media.forwarding import OutboundStream, Source
from media.session import CodecId, Section

PATHS = ["python", "native"]
"""Each data path (the native one fails, not skips, where it was not built: as
tests/media/test_native_*.py)."""
KEY = bytes(range(30))
"""The source leg's SRTP key and salt (AES128_CM_SHA1_80), and the destination's
reversed."""


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def forward_steady_on(
    path: str, fast: OutboundStream, plan: ExtensionPlan, data: bytes
) -> bytes | None:
    """What the relay's ``path`` sends (unprotected) for ``data`` on the steady
    stream ``fast``, with the stream's state moved as the relay moves it; None
    where that path leaves the packet to the general one."""
    if path == "python":
        header = plan_header(data, plan, 111, fast.ssrc)
        return None if header is None else fast.forward_steady(header, data)
    from media import _native

    source = _native.Session(KEY)
    rx = _native.Session(KEY)
    tx = _native.Session(KEY[::-1])
    receiver = _native.Session(KEY[::-1])
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out_socket,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as in_socket,
    ):
        in_socket.bind(("127.0.0.1", 0))
        destination = (
            tx,
            out_socket.fileno(),
            _native.Address(*in_socket.getsockname()),
            datapath.native_plan(plan, 111, fast.ssrc),
            fast.seq_offset,
            fast.ts_offset,
            fast.next_transport_sequence(),
        )
        forwarder = _native.Forwarder()
        kept = forwarder.forward_keep(rx, source.protect(data), [destination])
        if isinstance(kept, int):
            assert kept == _native.DECLINED
            return None
        assert forwarder.flush() == 1
        plain, (out,) = kept
        assert plain == data and out is not None
        # What went on the wire is that packet, protected for the destination.
        assert receiver.unprotect(in_socket.recv(2048)) == out
    fast.sent_steady(plain, out, bool(plan.transport_id))
    return out


OPUS = CodecId("audio/opus", 48000, 2)
SOURCE_IDS = {MID: 4, ABS_SEND_TIME: 2, AUDIO_LEVEL: 1, TRANSPORT_CC: 3, RID: 10}
TARGET_IDS = {MID: 9, ABS_SEND_TIME: 12, AUDIO_LEVEL: 13}
TARGET_WITH_TWCC = {**TARGET_IDS, TRANSPORT_CC: 6}
"""A destination that negotiated transport-cc: the relay stamps its own numbers."""


def extension_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(i, uri) for uri, i in ids.items()]
        )
    )
    return extensions


def stream(target_ids: dict[str, int], mid: str = "1") -> OutboundStream:
    """A stream of the relay's; with its own transport-wide numbering when the
    destination negotiated transport-cc (two such streams number alike)."""
    section = Section("audio", mid, True, True, codecs={111: OPUS}, relay_ssrc=0xAABBCCDD)
    transport = SentLog() if TRANSPORT_CC in target_ids else None
    return OutboundStream("audio", section, extension_map(target_ids), transport)


def packet_bytes(
    sequence_number: int,
    elements: list[tuple[int, bytes]],
    *,
    marker: bool = False,
    payload: bytes = b"opus-payload",
) -> bytes:
    profile, value = pack_header_extensions(elements)
    packet = RtpPacket(
        payload_type=96,
        marker=int(marker),
        sequence_number=sequence_number,
        timestamp=960 * sequence_number,
        ssrc=0x01020304,
        payload=payload,
    )
    data = bytearray(packet.serialize())
    if elements:
        # serialize() writes extensions only from a map: put the raw block in.
        header = bytes(data[:12])
        block = profile.to_bytes(2, "big") + (len(value) // 4).to_bytes(2, "big") + value
        data = bytearray(bytes([header[0] | 0x10]) + header[1:] + block + payload)
    return bytes(data)


def both_ways(
    data: bytes,
    source_ids: dict[str, int] = SOURCE_IDS,
    target_ids: dict[str, int] = TARGET_IDS,
    mid: str = "1",
    path: str = "python",
) -> tuple[bytes | None, bytes | None, OutboundStream, OutboundStream]:
    """The general path's output and the fast path's (on data path ``path``) for
    ``data``, each on a stream made steady by the same first packet."""
    source = Source("kiosk", 1, 0x01020304, 48000)
    general, fast = stream(target_ids, mid), stream(target_ids, mid)
    source_map = extension_map(source_ids)
    first = packet_bytes(100, [])
    for s in (general, fast):
        assert s.rewrite(RtpPacket.parse(first, source_map), OPUS, source, retransmission=False)
        assert s.steady(source)
    slow = general.rewrite(RtpPacket.parse(data, source_map), OPUS, source, retransmission=False)
    plan = ExtensionPlan.between(source_ids, target_ids, mid)
    quick = forward_steady_on(path, fast, plan, data)
    return slow, quick, general, fast


CASES = {
    "no extensions": [],
    "all of a browser's": [
        (1, b"\x9f"),
        (2, b"\x01\x02\x03"),
        (3, b"\x00\x07"),
        (4, b"0"),
    ],
    "rid and an unknown id are dropped": [(10, b"q"), (7, b"\x01\x02"), (2, b"\xaa\xbb\xcc")],
    "order differs from the general path's": [(2, b"\x01\x02\x03"), (1, b"\x80")],
    "mid only": [(4, b"0")],
}


@pytest.mark.parametrize("mid", ["1", "3", "6"], ids=["slot 0", "slot 1", "screen"])
@pytest.mark.parametrize("target", [TARGET_IDS, TARGET_WITH_TWCC], ids=["plain", "twcc"])
@pytest.mark.parametrize("marker", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_the_fast_rewrite_is_the_general_one_byte_for_byte(
    name: str, marker: bool, target: dict[str, int], mid: str, path: str
) -> None:
    """For any receiver's m-line: its slot's video (mids 1, 3, 5) or the screen (6)."""
    data = packet_bytes(101, CASES[name], marker=marker)
    slow, quick, general, fast = both_ways(data, target_ids=target, mid=mid, path=path)
    assert quick is not None and quick == slow
    # The stream's state moves the same way (NACK history included).
    assert (fast.last_seq, fast.last_ts, fast.forwarded) == (
        general.last_seq,
        general.last_ts,
        general.forwarded,
    )
    assert fast.stored(fast.last_seq or 0) == general.stored(general.last_seq or 0)
    if general.transport is not None:
        # The same transport-wide numbers taken, for packets of the same size.
        assert fast.transport is not None
        assert fast.transport.window() == general.transport.window()
        assert [sent_size(fast.transport, n) for n in fast.transport.window()] == [
            sent_size(general.transport, n) for n in general.transport.window()
        ]


def sent_size(log: SentLog, unwrapped: int) -> int | None:
    sent = log.get(unwrapped)
    return None if sent is None else sent.size


def test_the_relay_numbers_each_packet_it_sends_on_a_transport_cc_leg(path: str) -> None:
    """Its own transport-wide sequence numbers, one after the other on the leg,
    never the source's (that one counts the source's link, not this one)."""
    source_map = extension_map(SOURCE_IDS)
    data = packet_bytes(101, CASES["all of a browser's"])
    _slow, quick, _general, fast = both_ways(data, target_ids=TARGET_WITH_TWCC, path=path)
    target_map = extension_map(TARGET_WITH_TWCC)
    assert quick is not None
    # The first packet that made the stream steady took number 0, this one 1.
    assert RtpPacket.parse(quick, target_map).extensions.transport_sequence_number == 1
    assert RtpPacket.parse(data, source_map).extensions.transport_sequence_number == 7
    resent = fast.as_retransmission(quick)
    assert RtpPacket.parse(resent, target_map).extensions.transport_sequence_number == 2
    assert fast.transport is not None and fast.transport.get(2) is not None


def test_a_destination_without_mid_or_levels_gets_neither(path: str) -> None:
    data = packet_bytes(101, CASES["all of a browser's"])
    slow, quick, *_ = both_ways(data, target_ids={ABS_SEND_TIME: 5}, path=path)
    assert quick is not None and quick == slow


def test_sequence_numbers_and_timestamps_wrap_like_the_general_path(path: str) -> None:
    source = Source("kiosk", 1, 0x01020304, 48000)
    general, fast = stream(TARGET_IDS), stream(TARGET_IDS)
    source_map = extension_map(SOURCE_IDS)
    plan = ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, "1")
    for s in (general, fast):
        s.rewrite(
            RtpPacket.parse(packet_bytes(100, []), source_map), OPUS, source, retransmission=False
        )
        s.seq_offset, s.ts_offset = 65500, (1 << 32) - 5000
    for sequence_number in (101, 102, 140):
        data = packet_bytes(sequence_number, [(1, b"\x10")])
        slow = general.rewrite(
            RtpPacket.parse(data, source_map), OPUS, source, retransmission=False
        )
        assert forward_steady_on(path, fast, plan, data) == slow


@pytest.mark.parametrize(
    "name,data",
    [
        ("padding", bytes([0xA0]) + packet_bytes(101, [])[1:]),
        ("a CSRC", bytes([0x81]) + packet_bytes(101, [])[1:12] + b"\0\0\0\1" + b"payload"),
        ("two-byte extensions", packet_bytes(101, [(1, b"")])),
        ("a truncated extension block", packet_bytes(101, [(2, b"\x01\x02\x03")])[:17]),
        ("an abs-send-time of 4 bytes", packet_bytes(101, [(2, b"\x01\x02\x03\x04")])),
        ("too short", b"\x80\x60\x00"),
    ],
)
def test_what_the_fast_path_does_not_expect_goes_to_the_general_path(
    name: str, data: bytes, path: str
) -> None:
    plan = ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, "1")
    assert plan_header(data, plan, 111, 1) is None, name
    if path == "native" and len(data) >= 12:  # shorter is not RTP to SRTP: never offered
        assert datapath.native_plan(plan, 111, 1).header(data) is None, name


def test_toffset_is_left_to_the_general_path_when_both_sides_have_it(path: str) -> None:
    source_ids = {**SOURCE_IDS, TOFFSET: 5}
    plan = ExtensionPlan.between(source_ids, {**TARGET_IDS, TOFFSET: 6}, "1")
    assert plan_header(packet_bytes(101, [(5, b"\x00\x00\x10")]), plan, 111, 1) is None
    # Without it on the destination it is dropped, as the general path drops it.
    data = packet_bytes(101, [(5, b"\x00\x00\x10")])
    slow, quick, *_ = both_ways(data, source_ids=source_ids, path=path)
    assert quick is not None and quick == slow


@pytest.mark.parametrize("on", PATHS)
@settings(max_examples=200, deadline=None)
@given(
    levels=st.binary(min_size=1, max_size=1),
    abs_time=st.binary(min_size=3, max_size=3),
    include=st.lists(st.sampled_from(["level", "abs", "mid", "twcc", "rid"]), unique=True),
    mid=st.text(alphabet="0123456789abc", min_size=1, max_size=3),
    payload=st.binary(min_size=1, max_size=64),
    marker=st.booleans(),
)
def test_any_browser_like_header_rewrites_as_the_general_path_does(
    levels: bytes,
    abs_time: bytes,
    include: list[str],
    mid: str,
    payload: bytes,
    marker: bool,
    on: str,
) -> None:
    values = {
        "level": (1, levels),
        "abs": (2, abs_time),
        "mid": (4, b"0"),
        "twcc": (3, os.urandom(2)),
        "rid": (10, b"h"),
    }
    data = packet_bytes(101, [values[k] for k in include], marker=marker, payload=payload)
    slow, quick, *_ = both_ways(data, mid=mid, path=on)
    assert quick is not None and quick == slow


def test_a_source_ssrc_change_is_not_steady() -> None:
    source = Source("kiosk", 1, 0x01020304, 48000)
    s = stream(TARGET_IDS)
    s.rewrite(
        RtpPacket.parse(packet_bytes(100, []), extension_map(SOURCE_IDS)),
        OPUS,
        source,
        retransmission=False,
    )
    assert s.steady(source)
    assert not s.steady(replace(source, ssrc=5))
    assert not s.steady(replace(source, generation=2))


VP8 = CodecId("video/vp8", 90000, None)
VP8_KEYFRAME = bytes([0x10, 0x00]) + b"key"
"""S=1, PID=0, and the frame header's P bit clear: a keyframe's first packet."""
VP8_DELTA = bytes([0x10, 0x01]) + b"delta"


def video_stream() -> OutboundStream:
    section = Section("video", "1", True, True, codecs={96: VP8}, relay_ssrc=0xAABBCCDD)
    return OutboundStream("video", section, extension_map(TARGET_IDS))


def video_packet(sequence_number: int, payload: bytes, ssrc: int = 0x01020304) -> RtpPacket:
    packet = RtpPacket(
        payload_type=96,
        sequence_number=sequence_number,
        timestamp=3000 * sequence_number,
        ssrc=ssrc,
        payload=payload,
    )
    return RtpPacket.parse(packet.serialize(), extension_map(SOURCE_IDS))


@pytest.mark.parametrize(
    ("first", "then", "forwarded"),
    [
        # A stream's first source starts at once, keyframe or not (the receiver's
        # decoder asks for a keyframe itself; a source that cannot make one on
        # demand, as the comparator's pre-encoded one, is not held back to its next).
        ([VP8_DELTA], [], [True]),
        ([VP8_KEYFRAME, VP8_DELTA], [], [True, True]),
        # Another source taking the stream over waits for its keyframe: its deltas,
        # decoded against the first source's pictures, would smear them.
        (
            [VP8_DELTA],
            [VP8_DELTA, VP8_DELTA, VP8_KEYFRAME, VP8_DELTA],
            [True, False, False, True, True],
        ),
    ],
)
def test_a_video_stream_s_first_source_starts_at_once_a_new_one_on_its_keyframe(
    first: list[bytes], then: list[bytes], forwarded: list[bool]
) -> None:
    s = video_stream()
    one, two = Source("kiosk", 1, 0x01020304, 90000), Source("kiosk", 2, 0x0A0B0C0D, 90000)
    sent = [
        s.rewrite(video_packet(100 + i, payload), VP8, one, retransmission=False) is not None
        for i, payload in enumerate(first)
    ]
    sent += [
        s.rewrite(video_packet(500 + i, payload, two.ssrc), VP8, two, retransmission=False)
        is not None
        for i, payload in enumerate(then)
    ]
    assert sent == forwarded
