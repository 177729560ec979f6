"""Arbitrary bytes at every entry point of media._native that an attacker's packet
reaches: SRTP/SRTCP of random and mutated packets (refused as pylibsrtp refuses
them), the header plan, the forwarder with any destination numbers, and drain of
random datagrams. The C fuzz targets (fuzz/) go deeper; this runs in CI."""

import os
import select
import socket
from collections.abc import Iterator

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy

from media.datapath import native_unavailable_reason

if (_reason := native_unavailable_reason()) is not None:
    pytest.fail(
        f"media._native is not built ({_reason}): install gcc, python3-dev and libssl-dev "
        "(Debian), then pip install -e .",
        pytrace=False,
    )

from media import _native

KEY_LENGTH = {1: 30, 2: 30, 7: 28, 8: 44}
METHODS = ["protect", "protect_rtcp", "unprotect", "unprotect_rtcp"]


def outcome(session: object, method: str, data: bytes) -> tuple[str, bytes | str]:
    try:
        return ("ok", bytes(getattr(session, method)(data)))
    except pylibsrtp.Error as error:
        return ("srtp", str(error))
    except ValueError as error:
        return ("ValueError", str(error))


def rtp_like(raw: bytes, first: int, x: bool, cc: int, extension_words: int) -> bytes:
    """Random bytes under a header whose lengths say more or less than there is."""
    header = bytes([0x80 | (0x10 if x else 0) | cc, 96]) + raw[:10].ljust(10, b"\0")
    block = b"\xbe\xde" + extension_words.to_bytes(2, "big") if x else b""
    return (header + bytes(4 * cc) + block + raw[10:])[:first] if first else header + raw


@settings(max_examples=400, deadline=None)
@given(
    profile=st.sampled_from([1, 2, 7, 8]),
    method=st.sampled_from(METHODS),
    data=st.one_of(
        st.binary(max_size=1600),
        st.builds(
            rtp_like,
            st.binary(max_size=200),
            st.integers(0, 120),
            st.booleans(),
            st.integers(0, 15),
            st.integers(0, 0xFFFF),
        ),
    ),
)
def test_random_packets_are_refused_as_pylibsrtp_refuses_them(
    profile: int, method: str, data: bytes
) -> None:
    key = bytes(range(KEY_LENGTH[profile]))
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    policy.window_size = 1024
    policy.allow_repeat_tx = True
    theirs = pylibsrtp.Session(policy)
    ours = _native.Session(key, profile, 1024, True)
    assert outcome(ours, method, data) == outcome(theirs, method, data)


@settings(max_examples=300, deadline=None)
@given(
    profile=st.sampled_from([1, 2, 7, 8]),
    plain=st.binary(min_size=12, max_size=300),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), min_size=1, max_size=3),
    rtcp=st.booleans(),
)
def test_mutated_protected_packets_are_refused_as_pylibsrtp_refuses_them(
    profile: int, plain: bytes, flips: list[tuple[int, int]], rtcp: bool
) -> None:
    key = os.urandom(KEY_LENGTH[profile])
    writer = _native.Session(key, profile)
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    theirs = pylibsrtp.Session(policy)
    ours = _native.Session(key, profile)
    plain = bytes([0x80 | (plain[0] & 0x3F)]) + plain[1:]
    protected = outcome(writer, "protect_rtcp" if rtcp else "protect", plain)
    if protected[0] != "ok":
        return
    assert isinstance(protected[1], bytes)
    mutated = bytearray(protected[1])
    for at, flip in flips:
        mutated[at % len(mutated)] ^= flip
    method = "unprotect_rtcp" if rtcp else "unprotect"
    assert outcome(ours, method, bytes(mutated)) == outcome(theirs, method, bytes(mutated))


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.binary(min_size=16, max_size=16).map(lambda b: bytes(x % 4 for x in b)),
    ids=st.tuples(st.integers(0, 14), st.integers(0, 14), st.integers(0, 14)),
    mid=st.binary(max_size=17),
    data=st.binary(max_size=100),
)
def test_the_plan_reads_any_bytes(
    kinds: bytes, ids: tuple[int, int, int], mid: bytes, data: bytes
) -> None:
    plan = _native.Plan(kinds, *ids, 96, 1, mid)
    found = plan.header(data)
    if found is not None:
        head, payload_at, transport_at = found
        assert len(head) >= 12 and payload_at <= len(data)
        assert transport_at == 0 or transport_at + 2 <= len(head)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    yield a, b
    a.close()
    b.close()


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=2100),
    head=st.binary(min_size=8, max_size=256),
    payload_at=st.integers(0, 2048),
    transport_at=st.integers(0, 256),
    seq_offset=st.integers(-(1 << 62), 1 << 62),
    ts_offset=st.integers(-(1 << 62), 1 << 62),
    transport=st.integers(0, 0xFFFF),
    valid=st.booleans(),
)
def test_the_forwarder_takes_any_packet_and_any_numbers(
    pair: tuple[socket.socket, socket.socket],
    data: bytes,
    head: bytes,
    payload_at: int,
    transport_at: int,
    seq_offset: int,
    ts_offset: int,
    transport: int,
    valid: bool,
) -> None:
    sender, receiver = pair
    key = bytes(30)
    rx, tx = _native.Session(key), _native.Session(key)
    if valid and len(data) >= 12:
        # a packet that authenticates, so that the rewrite runs on it
        data = _native.Session(key).protect(bytes([0x80]) + data[1:1300])
    destination = (
        tx,
        sender.fileno(),
        _native.Address(*receiver.getsockname()),
        head,
        payload_at,
        transport_at,
        seq_offset,
        ts_offset,
        transport,
    )
    forwarder = _native.Forwarder(batch=2)
    try:
        result = forwarder.forward(rx, data, [destination, destination])
    except ValueError:
        assert transport_at and transport_at + 2 > len(head)
        return
    assert result == _native.REFUSED or result >= 12
    forwarder.flush()
    while select.select([receiver], [], [], 0)[0]:
        receiver.recv(4096)


@settings(max_examples=100, deadline=None)
@given(
    datagrams=st.lists(st.binary(max_size=300), min_size=1, max_size=20), size=st.integers(64, 512)
)
def test_drain_takes_any_datagrams(
    pair: tuple[socket.socket, socket.socket], datagrams: list[bytes], size: int
) -> None:
    sender, receiver = pair
    for d in datagrams:
        sender.sendto(d, receiver.getsockname())
    select.select([receiver], [], [], 1)
    forwarder = _native.Forwarder(batch=8, datagram_size=size)
    got: list[bytes] = []
    for _ in range(50):
        got += [d for d, _ in forwarder.drain(receiver.fileno(), 8)]
        if len(got) + forwarder.stats()["truncated"] == len(datagrams):
            break
        select.select([receiver], [], [], 0.1)
    assert got == [d for d in datagrams if len(d) <= size]
