"""The native forwarder gives each destination what the Python path sends, byte for
byte (``stamp(header, ...) + plain[payload_at:]`` protected with pylibsrtp), sends
it with sendmmsg per socket, and drains a socket with recvmmsg; its header plan is
fastpath.plan_header's. Real loopback UDP sockets, no aiortc peers."""

import errno
import os
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from struct import pack

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy

from media.datapath import AIORTC_WINDOW, native_plan, native_unavailable_reason
from media.fastpath import (
    ABS_SEND_TIME,
    AUDIO_LEVEL,
    MID,
    RID,
    TOFFSET,
    TRANSPORT_CC,
    ExtensionPlan,
    HeaderPlan,
    plan_header,
    stamp,
)

if (_reason := native_unavailable_reason()) is not None:
    pytest.fail(
        f"media._native is not built ({_reason}): install gcc, python3-dev and libssl-dev "
        "(Debian), then pip install -e .",
        pytrace=False,
    )

from media import _native

SOURCE_IDS = {MID: 4, ABS_SEND_TIME: 2, AUDIO_LEVEL: 1, TRANSPORT_CC: 3, RID: 10}
TARGET_IDS = {MID: 9, ABS_SEND_TIME: 12, AUDIO_LEVEL: 13}
TARGET_WITH_TWCC = {**TARGET_IDS, TRANSPORT_CC: 6}
KEY_LENGTH = {1: 30, 2: 30, 7: 28, 8: 44}
SSRC = 0x01020304


def packet(
    seq: int,
    elements: list[tuple[int, bytes]],
    *,
    marker: bool = False,
    payload: bytes = b"payload",
    ssrc: int = SSRC,
) -> bytes:
    """An RTP packet with a one-byte-header extension block of ``elements``."""
    header = pack("!BBHLL", 0x80, (0x80 if marker else 0) | 96, seq & 0xFFFF, seq * 960, ssrc)
    if not elements:
        return header + payload
    block = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements)
    block += bytes(-len(block) % 4)
    return bytes([0x90]) + header[1:] + pack("!HH", 0xBEDE, len(block) // 4) + block + payload


@dataclass
class Link:
    """A loopback UDP socket the relay sends from and one per receiver."""

    sender: socket.socket
    receivers: list[socket.socket]

    @staticmethod
    def drain(receiver: socket.socket, count: int = 1) -> list[bytes]:
        """The ``count`` datagrams expected (waiting a second at most for each),
        and any more already there."""
        got: list[bytes] = []
        while len(got) < count and select.select([receiver], [], [], 1.0)[0]:
            got.append(receiver.recv(4096))
        while select.select([receiver], [], [], 0)[0]:
            got.append(receiver.recv(4096))
        return got


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    def udp() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return s

    made = Link(udp(), [udp(), udp()])
    yield made
    for s in [made.sender, *made.receivers]:
        s.close()


class Keys:
    """One source leg's sessions and each destination's, twice: pylibsrtp's (the
    Python path) and the native ones, keyed alike."""

    def __init__(self, profile: int, destinations: int) -> None:
        self.profile = profile
        source = os.urandom(KEY_LENGTH[profile])
        self.browser = self.reference(source, Policy.SSRC_ANY_OUTBOUND)
        self.rx = self.reference(source, Policy.SSRC_ANY_INBOUND)
        self.native_rx = _native.Session(source, profile, AIORTC_WINDOW, True)
        keys = [os.urandom(KEY_LENGTH[profile]) for _ in range(destinations)]
        self.tx = [self.reference(k, Policy.SSRC_ANY_OUTBOUND) for k in keys]
        self.native_tx = [_native.Session(k, profile, AIORTC_WINDOW, True) for k in keys]

    def reference(self, key: bytes, kind: int) -> pylibsrtp.Session:
        policy = Policy(key=key, ssrc_type=kind, srtp_profile=self.profile)
        policy.window_size = AIORTC_WINDOW
        policy.allow_repeat_tx = True
        return pylibsrtp.Session(policy)


@dataclass
class Way:
    """One destination of a forwarded stream."""

    plan: ExtensionPlan
    payload_type: int
    ssrc: int
    seq_offset: int
    ts_offset: int
    transport: int


def python_path(keys: Keys, data: bytes, ways: list[Way]) -> tuple[bytes, list[bytes], list[bytes]]:
    """What Relay._forward_now does for a steady packet: plain, each destination's
    rewritten packet and what goes on the wire."""
    headers = [plan_header(data, w.plan, w.payload_type, w.ssrc) for w in ways]
    plain = keys.rx.unprotect(data)
    outs, wire = [], []
    for way, header, tx in zip(ways, headers, keys.tx, strict=True):
        assert header is not None
        seq = (int.from_bytes(plain[2:4], "big") + way.seq_offset) % (1 << 16)
        ts = (int.from_bytes(plain[4:8], "big") + way.ts_offset) % (1 << 32)
        out = stamp(header, seq, ts, way.transport) + plain[header.payload_at :]
        outs.append(out)
        wire.append(tx.protect(out))
    return plain, outs, wire


def head_destination(
    keys: Keys, link: Link, i: int, way: Way, header: HeaderPlan
) -> "_native.HeadDestination":
    return (
        keys.native_tx[i],
        link.sender.fileno(),
        _native.Address(*link.receivers[i].getsockname()),
        bytes(header.head),
        header.payload_at,
        header.transport_at,
        way.seq_offset,
        way.ts_offset,
        way.transport,
    )


def plan_destination(keys: Keys, link: Link, i: int, way: Way) -> "_native.PlanDestination":
    return (
        keys.native_tx[i],
        link.sender.fileno(),
        link.receivers[i].getsockname(),
        native_plan(way.plan, way.payload_type, way.ssrc),
        way.seq_offset,
        way.ts_offset,
        way.transport,
    )


element_values = {
    "level": (1, st.binary(min_size=1, max_size=1)),
    "abs": (2, st.binary(min_size=3, max_size=3)),
    "mid": (4, st.sampled_from([b"0", b"1", b"video"])),
    "twcc": (3, st.binary(min_size=2, max_size=2)),
    "rid": (10, st.sampled_from([b"h", b"lo"])),
    "unknown": (7, st.binary(min_size=1, max_size=4)),
}


@st.composite
def browser_packets(draw: st.DrawFn) -> tuple[int, list[tuple[int, bytes]], bool, bytes]:
    names = draw(st.lists(st.sampled_from(list(element_values)), unique=True))
    elements = [(element_values[n][0], draw(element_values[n][1])) for n in names]
    size = draw(st.sampled_from([0, 1, 90, 1100, 1180]))
    return draw(st.integers(0, 0xFFFF)), elements, draw(st.booleans()), os.urandom(size)


offsets = st.one_of(st.integers(0, 0xFFFF), st.integers(-(1 << 40), 1 << 40))


@settings(max_examples=150, deadline=None)
@given(
    profile=st.sampled_from([1, 2, 7, 8]),
    source=browser_packets(),
    mids=st.tuples(st.sampled_from(["1", "3", "6", ""]), st.sampled_from(["2", "4"])),
    seq_offsets=st.tuples(offsets, offsets),
    ts_offsets=st.tuples(offsets, offsets),
    transport=st.integers(0, 0xFFFF),
    as_plans=st.booleans(),
)
def test_forwarded_packets_are_the_python_paths_byte_for_byte(
    link: Link,
    profile: int,
    source: tuple[int, list[tuple[int, bytes]], bool, bytes],
    mids: tuple[str, str],
    seq_offsets: tuple[int, int],
    ts_offsets: tuple[int, int],
    transport: int,
    as_plans: bool,
) -> None:
    seq, elements, marker, payload = source
    keys = Keys(profile, 2)
    data = keys.browser.protect(packet(seq, elements, marker=marker, payload=payload))
    ways = [
        Way(
            ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, mids[0]),
            111,
            0xAABBCCDD,
            seq_offsets[0],
            ts_offsets[0],
            0,
        ),
        Way(
            ExtensionPlan.between(SOURCE_IDS, TARGET_WITH_TWCC, mids[1]),
            96,
            0x0BADCAFE,
            seq_offsets[1],
            ts_offsets[1],
            transport,
        ),
    ]
    headers = [plan_header(data, w.plan, w.payload_type, w.ssrc) for w in ways]
    assert all(h is not None for h in headers)
    destinations: list[_native.Destination] = []
    for i, (way, header) in enumerate(zip(ways, headers, strict=True)):
        assert header is not None
        destinations.append(
            plan_destination(keys, link, i, way)
            if as_plans
            else head_destination(keys, link, i, way, header)
        )
    forwarder = _native.Forwarder()
    result = forwarder.forward_keep(keys.native_rx, data, destinations)
    assert forwarder.flush() == 2
    plain, outs, wire = python_path(keys, data, ways)
    assert result == (plain, outs)
    for receiver, expected in zip(link.receivers, wire, strict=True):
        assert link.drain(receiver) == [expected]


@st.composite
def extension_plans(draw: st.DrawFn) -> ExtensionPlan:
    uris = [MID, ABS_SEND_TIME, AUDIO_LEVEL, TRANSPORT_CC, RID, TOFFSET]
    ids = st.integers(1, 15)
    source = draw(st.dictionaries(st.sampled_from(uris), ids))
    target = draw(st.dictionaries(st.sampled_from(uris), ids))
    mid = draw(st.text(alphabet="0123456789abcdefghijklmnopq", max_size=18))
    return ExtensionPlan.between(source, target, mid)


@st.composite
def any_headers(draw: st.DrawFn) -> bytes:
    """Browser-like headers and everything a sender could make of one instead."""
    base = packet(
        draw(st.integers(0, 0xFFFF)),
        draw(
            st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=5)
        ),
        marker=draw(st.booleans()),
        payload=draw(st.binary(max_size=8)),
    )
    data = bytearray(base)
    for at, value in draw(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3)):
        if at < len(data):
            data[at] = value
    return bytes(data[: draw(st.integers(1, len(data)))])


@settings(max_examples=200, deadline=None)
@given(
    plan=extension_plans(),
    data=st.one_of(any_headers(), st.binary(min_size=1, max_size=60)),
    payload_type=st.integers(0, 127),
    ssrc=st.integers(0, 0xFFFFFFFF),
)
def test_the_native_plan_is_plan_header(
    plan: ExtensionPlan, data: bytes, payload_type: int, ssrc: int
) -> None:
    expected = plan_header(data, plan, payload_type, ssrc)
    found = native_plan(plan, payload_type, ssrc).header(data)
    assert found == (
        None
        if expected is None
        else (bytes(expected.head), expected.payload_at, expected.transport_at)
    )


def test_a_plan_that_needs_the_general_path_declines_before_unprotect(link: Link) -> None:
    keys = Keys(1, 1)
    with_csrc = bytes([0x81]) + packet(5, [])[1:12] + b"\0\0\0\1" + b"payload"
    data = keys.browser.protect(with_csrc)
    way = Way(ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, "1"), 111, 9, 0, 0, 0)
    forwarder = _native.Forwarder()
    assert forwarder.forward(keys.native_rx, data, [plan_destination(keys, link, 0, way)]) == (
        _native.DECLINED
    )
    assert keys.native_rx.streams == 0  # not unprotected: aiortc's path will
    assert forwarder.pending == 0
    assert forwarder.stats()["declined"] == 1
    # the same packet through aiortc's session then works (its replay window untouched)
    assert keys.native_rx.unprotect(data) == with_csrc


def test_refused_packets_are_counted_and_nothing_is_sent(link: Link) -> None:
    keys = Keys(7, 1)
    data = keys.browser.protect(packet(9, [], payload=b"x" * 100))
    plan = ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, "1")
    header = plan_header(data, plan, 111, 9)
    assert header is not None
    destination = head_destination(keys, link, 0, Way(plan, 111, 9, 0, 0, 0), header)
    forwarder = _native.Forwarder()
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    assert forwarder.forward(keys.native_rx, tampered, [destination]) == _native.REFUSED
    assert forwarder.forward(keys.native_rx, data, [destination]) == len(data) - 16
    assert forwarder.forward(keys.native_rx, data, [destination]) == _native.REFUSED
    stats = forwarder.stats()
    assert (stats["refused"], stats["replayed"], stats["queued"]) == (2, 1, 1)
    assert forwarder.flush() == 1
    assert len(link.drain(link.receivers[0])) == 1


def test_datagrams_go_per_socket_in_order_and_a_full_queue_flushes_itself(link: Link) -> None:
    keys = Keys(1, 2)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    plan = ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, "1")
    forwarder = _native.Forwarder(batch=4)
    expected: list[list[bytes]] = [[], []]
    for seq in range(10):
        data = keys.browser.protect(packet(seq, [(1, b"\x10")], payload=bytes([seq]) * 50))
        header = plan_header(data, plan, 111, 5)
        assert header is not None
        way = Way(plan, 111, 5, 100, 200, 0)
        dest0 = head_destination(keys, link, 0, way, header)
        dest1 = list(head_destination(keys, link, 1, way, header))
        dest1[1] = other.fileno()  # the second destination from another socket
        assert forwarder.forward(keys.native_rx, data, [dest0, tuple(dest1)]) > 0  # type: ignore[list-item]
        _, _, wire = python_path(keys, data, [way, way])
        expected[0].append(wire[0])
        expected[1].append(wire[1])
    assert forwarder.pending == 4  # flushed by itself at 4, 8, 12 and 16
    forwarder.flush()
    assert [link.drain(r, 10) for r in link.receivers] == expected
    assert forwarder.stats()["sent"] == 20
    other.close()


def test_drain_gives_datagrams_with_their_source_address(link: Link) -> None:
    forwarder = _native.Forwarder(batch=8, datagram_size=64)
    target = link.receivers[0]
    for n in range(5):
        link.sender.sendto(bytes([n]) * 10, target.getsockname())
    select.select([target], [], [], 1)
    first = forwarder.drain(target.fileno(), 2)
    rest = forwarder.drain(target.fileno(), 64)
    assert [d for d, _ in first + rest] == [bytes([n]) * 10 for n in range(5)]
    assert {a for _, a in first + rest} == {link.sender.getsockname()}
    assert forwarder.drain(target.fileno(), 64) == []
    link.sender.sendto(b"x" * 100, target.getsockname())  # longer than datagram_size
    select.select([target], [], [], 1)
    assert forwarder.drain(target.fileno(), 8) == []
    assert forwarder.stats()["truncated"] == 1


def test_drain_gives_an_ipv6_address_as_socket_does() -> None:
    try:
        a = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        a.bind(("::1", 0))
    except OSError:
        pytest.fail("IPv6 loopback (::1) is needed on this machine")
    b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    b.bind(("::1", 0))
    b.sendto(b"one", a.getsockname())
    b.sendto(b"two", a.getsockname())
    select.select([a], [], [], 1)
    forwarder = _native.Forwarder()
    got = forwarder.drain(a.fileno(), 1)
    assert got[0][1] == a.recvfrom(10)[1] == b.getsockname()
    a.close()
    b.close()


def test_send_errors_are_counted_not_raised(link: Link) -> None:
    keys = Keys(1, 1)
    data = keys.browser.protect(packet(1, []))
    plan = ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, "1")
    header = plan_header(data, plan, 111, 5)
    assert header is not None
    dead = os.dup(link.sender.fileno())
    os.close(dead)
    destination = list(head_destination(keys, link, 0, Way(plan, 111, 5, 0, 0, 0), header))
    destination[1] = dead
    forwarder = _native.Forwarder()
    forwarder.forward(keys.native_rx, data, [tuple(destination)])  # type: ignore[list-item]
    assert forwarder.flush() == 0
    stats = forwarder.stats()
    assert (stats["failed"], stats["last_errno"]) == (1, errno.EBADF)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({0: "not a session"}, TypeError),
        ({1: -1}, ValueError),
        ({1: True}, TypeError),
        ({2: ("not an address", 5)}, ValueError),
        ({2: ("127.0.0.1", 70000)}, ValueError),
        ({3: b"short"}, ValueError),
        ({3: memoryview(b"x" * 16)}, TypeError),
        ({5: 255}, ValueError),
        ({8: 1 << 16}, ValueError),
        ({7: 1 << 64}, OverflowError),
        ({8: None}, TypeError),
    ],
)
def test_a_malformed_destination_raises_and_the_forwarder_goes_on(
    link: Link, change: dict[int, object], error: type[Exception]
) -> None:
    keys = Keys(1, 1)
    data = keys.browser.protect(packet(1, []))
    plan = ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, "1")
    header = plan_header(data, plan, 111, 5)
    assert header is not None
    good = head_destination(keys, link, 0, Way(plan, 111, 5, 0, 0, 0), header)
    bad: list[object] = list(good)
    for at, value in change.items():
        bad[at] = value
    forwarder = _native.Forwarder()
    with pytest.raises(error):
        forwarder.forward(keys.native_rx, data, [tuple(bad)])  # type: ignore[list-item]
    assert keys.native_rx.streams == 0
    assert forwarder.forward(keys.native_rx, data, [good]) > 0
    assert forwarder.flush() == 1
    link.drain(link.receivers[0])


def test_more_destinations_than_the_cap_are_refused(link: Link) -> None:
    keys = Keys(1, 1)
    data = keys.browser.protect(packet(1, []))
    forwarder = _native.Forwarder()
    with pytest.raises(ValueError, match="at most"):
        forwarder.forward(keys.native_rx, data, [None] * (_native.MAX_DESTINATIONS + 1))  # type: ignore[list-item]
