"""The native pump (media._native.Pump): a thread that reads sockets, forwards a
steady packet by its leg's route exactly as the Python path would (byte for byte on
the wire, the same stream state, NACK history, transport-wide numbers and
arrivals), skips a destination still connecting, and leaves everything else to
Python untouched, with its source address. Real loopback UDP sockets, no peers."""

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from struct import pack

import pylibsrtp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy

from media.datapath import AIORTC_WINDOW, native_plan, native_unavailable_reason
from media.downlink import HISTORY, OVERHEAD_BYTES, SentLog
from media.fastpath import ABS_SEND_TIME, MID, TRANSPORT_CC, ExtensionPlan, plan_header, stamp

if (_reason := native_unavailable_reason()) is not None:
    pytest.fail(f"media._native is not built ({_reason})", pytrace=False)

from media import _native

SOURCE_IDS = {MID: 4, ABS_SEND_TIME: 2, TRANSPORT_CC: 3}
TARGET_IDS = {MID: 9, ABS_SEND_TIME: 12, TRANSPORT_CC: 6}
SSRC = 0x01020304
KEY = 0x5_0000_0000 | SSRC
"""The source as the pump knows it (media.forwarding.source_key)."""


def packet(seq: int, transport: int, payload: bytes = b"v" * 1100) -> bytes:
    """A camera packet with abs-send-time, mid and a transport-wide number."""
    block = bytes([0x22]) + b"\1\2\3" + bytes([0x40]) + b"1" + bytes([0x31]) + pack("!H", transport)
    block += bytes(-len(block) % 4)
    header = pack("!BBHLL", 0x90, 96, seq & 0xFFFF, seq * 3000, SSRC)
    return header + pack("!HH", 0xBEDE, len(block) // 4) + block + payload


def session(key: bytes, kind: int) -> pylibsrtp.Session:
    policy = Policy(key=key, ssrc_type=kind, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    policy.window_size = AIORTC_WINDOW
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def wait(sock: socket.socket | int, seconds: float = 1.0) -> bool:
    return bool(select.select([sock], [], [], seconds)[0])


@dataclass
class Bench:
    """A browser sending to the relay's socket of its leg, the pump reading that
    socket and sending from another leg's socket to that leg's browser."""

    pump: _native.Pump
    tally: _native.Tally
    browser: socket.socket
    source: socket.socket
    destination: socket.socket
    receiver: socket.socket
    inbound: _native.Inbound
    tag_in: int
    tag_out: int
    encrypt: pylibsrtp.Session
    rx: _native.Session
    tx: _native.Session
    decrypt: pylibsrtp.Session
    stream: _native.Stream
    sent: SentLog
    out: _native.Outbound
    plan: ExtensionPlan

    def send(self, data: bytes) -> None:
        self.browser.sendto(data, self.source.getsockname())

    def route(self) -> bool:
        native = native_plan(self.plan, 111, 0xAABBCCDD)
        return self.inbound.route(SSRC, 96, KEY, self.rx, [(self.stream, self.out, native)])


@pytest.fixture
def bench() -> Iterator[Bench]:
    source_key, destination_key = os.urandom(30), os.urandom(30)
    pump = _native.Pump()
    tally = _native.Tally()
    sockets = [udp() for _ in range(4)]
    browser, source, destination, receiver = sockets
    inbound = _native.Inbound(tally, SOURCE_IDS[TRANSPORT_CC])
    tag_in = pump.add_socket(source.fileno(), inbound)
    tag_out = pump.add_socket(destination.fileno(), _native.Inbound(tally))
    sent = SentLog.native()
    assert sent.store is not None
    out = _native.Outbound(sent.store)
    tx = _native.Session(destination_key, 1, AIORTC_WINDOW, True)
    out.target(tag_out, tx, _native.Address(*receiver.getsockname()))
    out.state = _native.SEND
    stream = _native.Stream()
    stream.seq_offset, stream.ts_offset, stream.steady_key = 1000, 77, KEY
    made = Bench(
        pump,
        tally,
        browser,
        source,
        destination,
        receiver,
        inbound,
        tag_in,
        tag_out,
        session(source_key, Policy.SSRC_ANY_OUTBOUND),
        _native.Session(source_key, 1, AIORTC_WINDOW, True),
        tx,
        session(destination_key, Policy.SSRC_ANY_INBOUND),
        stream,
        sent,
        out,
        ExtensionPlan.between(SOURCE_IDS, TARGET_IDS, "1"),
    )
    yield made
    pump.close()
    for s in sockets:
        s.close()


def expected(bench: Bench, plain: bytes, transport: int) -> bytes:
    """What Relay._forward_now sends for ``plain`` (OutboundStream.forward_steady)."""
    header = plan_header(plain, bench.plan, 111, 0xAABBCCDD)
    assert header is not None
    seq = (int.from_bytes(plain[2:4], "big") + 1000) % (1 << 16)
    ts = (int.from_bytes(plain[4:8], "big") + 77) % (1 << 32)
    return stamp(header, seq, ts, transport) + plain[header.payload_at :]


def test_a_steady_packet_is_forwarded_as_the_python_path_does(bench: Bench) -> None:
    assert bench.route()
    for n in range(5):
        plain = packet(40 + n, 900 + n)
        bench.send(bench.encrypt.protect(plain))
        assert wait(bench.receiver)
        wire = bench.receiver.recv(4096)
        rewritten = expected(bench, plain, n)
        assert bench.decrypt.unprotect(wire) == rewritten
        # The state Python reads: sequence, NACK history, transport-wide log.
        seq = (40 + n + 1000) % (1 << 16)
        assert bench.stream.last_seq == seq
        assert bench.stream.last_ts == ((40 + n) * 3000 + 77) % (1 << 32)
        assert bench.stream.get(seq % _native.HISTORY) == rewritten
        found = bench.sent.get(n)
        assert found is not None
        header = plan_header(plain, bench.plan, 111, 0xAABBCCDD)
        assert header is not None
        assert found.size == len(plain) - header.payload_at + 24 + OVERHEAD_BYTES
    assert bench.stream.forwarded == 5
    assert bench.sent.next == 5 and bench.sent.window() == range(0, 5)
    assert [number for number, _ in bench.inbound.take_arrivals()] == [900, 901, 902, 903, 904]
    assert bench.inbound.take_arrivals() == []
    assert bench.inbound.packets_in == bench.inbound.packets_at_once == 5
    assert bench.inbound.bytes_in == 5 * len(packet(0, 0))
    assert bench.out.packets_out == 5
    assert bench.tally.packets == 5
    stats = bench.pump.stats()
    assert stats["forwarded"] == stats["sent"] == 5 and stats["queued"] == 0
    assert not wait(bench.pump.fileno(), 0.05)  # nothing for Python


def test_python_s_numbers_and_the_pump_s_are_one_sequence(bench: Bench) -> None:
    """A packet Python sends on the leg takes the next transport-wide number of the
    same log, and what it keeps in the history is there for a NACK."""
    assert bench.route()
    assert bench.sent.assign(100, 1) == 0  # Python's
    bench.send(bench.encrypt.protect(packet(1, 1)))
    assert wait(bench.receiver)
    wire = bench.decrypt.unprotect(bench.receiver.recv(4096))
    assert wire == expected(bench, packet(1, 1), 1)
    assert bench.sent.peek() == 2
    bench.stream[7] = b"kept by python"
    assert bench.stream.get(7) == b"kept by python"
    assert bench.stream.get(8) is None and bench.stream.get(HISTORY * 99) is None


def test_what_has_no_route_goes_up_to_python_untouched_with_its_address(bench: Bench) -> None:
    stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    rtcp = pack("!BBH", 0x81, 201, 7) + os.urandom(28)
    media = bench.encrypt.protect(packet(3, 3))  # no route yet
    for datagram in (stun, rtcp, media):
        bench.send(datagram)
    assert wait(bench.pump.fileno())
    taken: list[tuple[int, bytes, object]] = []
    for _ in range(20):
        taken += bench.pump.take(64)
        if len(taken) == 3:
            break
        wait(bench.pump.fileno(), 0.1)
    assert taken == [(bench.tag_in, d, bench.browser.getsockname()) for d in (stun, rtcp, media)]
    assert not wait(bench.receiver, 0.05)
    assert bench.inbound.packets_in == 0


@pytest.mark.parametrize("change", ["wait", "decline", "not steady", "cleared", "no target"])
def test_a_destination_that_cannot_take_it_now(bench: Bench, change: str) -> None:
    """Still connecting (WAIT): skipped, the packet counted in and nothing sent.
    Anything else Python must decide goes up to it untouched (before unprotect)."""
    assert bench.route()
    if change == "wait":
        bench.out.state = _native.WAIT
    elif change == "decline":
        bench.out.state = _native.DECLINE
    elif change == "not steady":
        bench.stream.steady_key = 0
    elif change == "cleared":
        bench.inbound.clear_routes()
    else:
        assert bench.pump.remove_socket(bench.tag_out)
    data = bench.encrypt.protect(packet(9, 9))
    bench.send(data)
    if change == "wait":
        assert not wait(bench.receiver, 0.2)
        assert bench.inbound.packets_in == 1
        assert bench.pump.take(8) == []
    else:
        assert wait(bench.pump.fileno())
        assert bench.pump.take(8) == [(bench.tag_in, data, bench.browser.getsockname())]
        assert bench.inbound.packets_in == 0
        # not unprotected: Python's session takes it as the first time
        assert bench.rx.unprotect(data) == packet(9, 9)
    assert bench.stream.forwarded == 0


def test_a_forged_packet_is_refused_and_counted_not_sent(bench: Bench) -> None:
    assert bench.route()
    data = bench.encrypt.protect(packet(4, 4))
    bench.send(data[:-1] + bytes([data[-1] ^ 1]))
    bench.send(data)
    assert wait(bench.receiver)
    assert bench.decrypt.unprotect(bench.receiver.recv(4096)) == expected(bench, packet(4, 4), 0)
    assert bench.pump.stats()["refused"] == 1
    assert bench.inbound.packets_in == 1 and bench.stream.forwarded == 1
    assert bench.pump.take(8) == []


def test_the_pump_keeps_its_own_socket_until_removed(bench: Bench) -> None:
    """Python's descriptor closed: the pump still reads the socket (a dup of its
    own); removed: never read or written again, whatever takes the number."""
    assert bench.route()
    port = bench.source.getsockname()
    bench.source.close()
    bench.browser.sendto(bench.encrypt.protect(packet(5, 5)), port)
    assert wait(bench.receiver)
    bench.receiver.recv(4096)
    assert bench.pump.remove_socket(bench.tag_in)
    assert not bench.pump.remove_socket(bench.tag_in)
    bench.browser.sendto(bench.encrypt.protect(packet(6, 6)), port)
    assert not wait(bench.receiver, 0.2)
    assert not wait(bench.pump.fileno(), 0.05)
    assert bench.pump.stats()["read"] == 1


def pump_threads() -> int:
    """This process's pump threads (named wl-pump, as top -H shows them)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/comm") as comm:
            count += comm.read().strip() == "wl-pump"
    return count


def test_closing_the_pump_ends_its_thread() -> None:
    before = pump_threads()
    pump = _native.Pump()
    assert pump_threads() == before + 1
    pump.close()
    pump.close()
    assert pump_threads() == before
    with pytest.raises(RuntimeError):
        pump.add_socket(0)
    del pump
    another = _native.Pump()
    assert pump_threads() == before + 1
    del another  # (dropped without close: its thread ends all the same)
    assert pump_threads() == before


def test_python_and_the_pump_share_the_sessions_safely(bench: Bench) -> None:
    """While the pump forwards, Python protects on the same sending session (RTCP,
    a retransmission) from another thread: every datagram the receiver gets
    authenticates, none is lost to a torn SRTP state."""
    assert bench.route()
    stop = threading.Event()
    python_sent: list[bytes] = []
    rtcp = pack("!BBHL", 0x80, 200, 6, 0xAABBCCDD) + bytes(20)

    def python_side() -> None:
        while not stop.is_set() and len(python_sent) < 400:
            python_sent.append(bench.tx.protect_rtcp(rtcp))

    worker = threading.Thread(target=python_side)
    worker.start()
    try:
        for n in range(300):
            bench.send(bench.encrypt.protect(packet(100 + n, n)))
            assert wait(bench.receiver)
            wire = bench.receiver.recv(4096)
            assert bench.decrypt.unprotect(wire) == expected(bench, packet(100 + n, n), n)
    finally:
        stop.set()
        worker.join()
    for data in python_sent:
        assert bench.decrypt.unprotect_rtcp(data) == rtcp


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(min_size=0, max_size=1600), head=st.binary(min_size=12, max_size=40))
def test_any_datagram_is_forwarded_refused_or_left_to_python(
    bench: Bench, data: bytes, head: bytes
) -> None:
    """Whatever arrives (the route's SSRC and payload type on arbitrary bytes
    too), the pump neither crashes nor forwards what does not authenticate."""
    bench.route()
    forged = bytes([0x80 | (head[0] & 0x3F), 96]) + head[2:8] + pack("!L", SSRC) + head[12:] + data
    before = bench.pump.stats()
    for datagram in (data, forged):
        bench.send(datagram)
    deadline = time.monotonic() + 10  # (a bound for a loaded machine, not a claim)
    while bench.pump.stats()["read"] - before["read"] < 2 and time.monotonic() < deadline:
        bench.pump.take(8)
        time.sleep(0.002)
    stats = bench.pump.stats()
    assert stats["read"] - before["read"] == 2
    assert stats["forwarded"] == before["forwarded"]
    bench.pump.take(8)
    assert not wait(bench.receiver, 0)


def test_a_busy_moment_s_backlog_waits_for_python(bench: Bench) -> None:
    """Calls starting together: Python busy with DTLS handshakes while every leg's
    first packets and handshakes queue up for it. The queue holds what the sockets'
    own buffers held before the pump (thousands of datagrams), not a thousand."""
    bench.browser.setblocking(True)
    datagrams = [b"\x00\x01" + n.to_bytes(4, "big") + bytes(100) for n in range(3000)]
    deadline = time.monotonic() + 20  # (a bound for a loaded machine, not a claim)
    for at in range(0, len(datagrams), 100):
        for datagram in datagrams[at : at + 100]:
            bench.send(datagram)
        # As fast as the pump reads (not the socket's buffer's limit: the pump's).
        while bench.pump.stats()["read"] < at + 100 and time.monotonic() < deadline:
            time.sleep(0.001)
    taken: list[bytes] = []
    while len(taken) < len(datagrams) and wait(bench.pump.fileno(), 1.0):
        taken += [data for _, data, _ in bench.pump.take(1000)]
    assert bench.pump.stats()["queue_dropped"] == 0
    assert taken == datagrams
