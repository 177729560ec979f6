"""The native SRTP sessions give pylibsrtp's bytes and refusals, packet by packet:
the same protected packets from the same plain ones, the same plain ones back, and
the same error for a replayed, reordered, tampered, short or foreign packet, across
sequence number wraps (the rollover counter) and new SSRCs, for every profile aiortc
negotiates (and SHA1_32, which libsrtp also has)."""

import os
from collections.abc import Callable
from struct import pack

import pylibsrtp
import pytest
from aiortc.rtcdtlstransport import SRTP_PROFILES
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy

from media.datapath import AIORTC_WINDOW, native_unavailable_reason, session_pair

if (_reason := native_unavailable_reason()) is not None:
    pytest.fail(
        f"media._native is not built ({_reason}): install gcc, python3-dev and libssl-dev "
        "(Debian), then pip install -e .",
        pytrace=False,
    )

from media import _native

PROFILES = {
    "aes128_cm_sha1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "aes128_cm_sha1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "aead_aes_128_gcm": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "aead_aes_256_gcm": Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}
KEY_LENGTH = {1: 30, 2: 30, 7: 28, 8: 44}
SSRCS = (0x11223344, 0xDEADBEEF, 7)

Outcome = tuple[str, bytes | str]


def reference(key: bytes, profile: int, window: int, repeat: bool, kind: int) -> pylibsrtp.Session:
    policy = Policy(key=key, ssrc_type=kind, srtp_profile=profile)
    policy.window_size = window
    policy.allow_repeat_tx = repeat
    return pylibsrtp.Session(policy)


def outcome(call: Callable[[], bytes]) -> Outcome:
    """What a call gave: its bytes, or how it refused (the native Error is a
    pylibsrtp.Error with libsrtp's message)."""
    try:
        return ("ok", bytes(call()))
    except pylibsrtp.Error as error:
        return ("srtp", str(error))
    except (ValueError, TypeError) as error:
        return (type(error).__name__, str(error))


def rtp(
    ssrc: int,
    seq: int,
    *,
    csrcs: int = 0,
    extension: bytes | None = None,
    marker: bool = False,
    padding: bool = False,
    payload: bytes = b"payload",
) -> bytes:
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension is not None else 0) | csrcs
    header = pack(
        "!BBHLL", first, (0x80 if marker else 0) | 96, seq & 0xFFFF, (seq * 90) & 0xFFFFFFFF, ssrc
    )
    header += b"".join(pack("!L", 1000 + i) for i in range(csrcs))
    if extension is not None:
        header += pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return header + payload


def rtcp(ssrc: int, body: bytes) -> bytes:
    return pack("!BBHL", 0x81, 200, (len(body) + 4) // 4, ssrc) + body


class Pair:
    """The same session twice: pylibsrtp's and the native one."""

    def __init__(self, key: bytes, profile: int, window: int, repeat: bool, kind: int) -> None:
        self.reference = reference(key, profile, window, repeat, kind)
        self.native = _native.Session(key, profile, window, repeat)

    def run(self, method: str, packet: bytes) -> Outcome:
        expected = outcome(lambda: getattr(self.reference, method)(packet))
        found = outcome(lambda: getattr(self.native, method)(packet))
        assert found == expected, (method, packet.hex())
        return found


seq_steps = st.one_of(
    st.integers(1, 3),
    st.integers(-6, 0),
    st.sampled_from([32767, 32768, 32769, -32767, -32768, 1023, 1024, 1025, -1023, -1024]),
    st.sampled_from([-1025, 65535, 65536, 30000, -30000, 127, 128, 129, -127, -128]),
    st.integers(-70000, 70000),
)
layouts = st.fixed_dictionaries(
    {
        "csrcs": st.sampled_from([0, 0, 0, 1, 15]),
        "extension": st.one_of(
            st.none(), st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))
        ),
        "marker": st.booleans(),
        "padding": st.booleans(),
        "payload": st.binary(max_size=80),
    }
)
send = st.tuples(st.just("send"), st.integers(0, 2), seq_steps, layouts)
changes = st.one_of(st.none(), st.tuples(st.integers(0, 2000), st.integers(1, 255)))
events = st.lists(
    st.one_of(
        send,
        send,
        send,
        st.tuples(st.just("send_rtcp"), st.integers(0, 2), st.binary(max_size=60)),
        st.tuples(st.just("receive"), st.integers(0, 10**6), changes),
        st.tuples(st.just("receive"), st.integers(0, 10**6), changes),
        st.tuples(st.just("receive_rtcp"), st.integers(0, 10**6), changes),
        st.tuples(st.just("garbage"), st.binary(max_size=120), st.booleans()),
    ),
    min_size=5,
    max_size=60,
)


def tampered(packet: bytes, change: tuple[int, int] | None) -> bytes:
    if change is None:
        return packet
    at, flip = change
    mutable = bytearray(packet)
    mutable[at % len(mutable)] ^= flip
    return bytes(mutable)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
@settings(max_examples=60, deadline=None)
@given(
    window=st.sampled_from([64, 100, 128, AIORTC_WINDOW]),
    repeat=st.booleans(),
    start=st.lists(st.integers(0, 0xFFFF), min_size=3, max_size=3),
    script=events,
)
def test_both_implementations_agree_on_every_packet(
    profile: int,
    window: int,
    repeat: bool,
    start: list[int],
    script: list[tuple[str, int | bytes, object]],
) -> None:
    key = os.urandom(KEY_LENGTH[profile])
    sender = Pair(key, profile, window, repeat, Policy.SSRC_ANY_OUTBOUND)
    receiver = Pair(key, profile, window, repeat, Policy.SSRC_ANY_INBOUND)
    seqs = list(start)
    wire: list[tuple[bytes, bytes]] = []
    rtcp_wire: list[tuple[bytes, bytes]] = []
    for event in script:
        match event:
            case ("send", int(which), int(step), dict(layout)):
                seqs[which] += step
                plain = rtp(SSRCS[which], seqs[which], **layout)
                result = sender.run("protect", plain)
                if result[0] == "ok":
                    assert isinstance(result[1], bytes)
                    wire.append((result[1], plain))
            case ("send_rtcp", int(which), bytes(body)):
                plain = rtcp(SSRCS[which], body)
                result = sender.run("protect_rtcp", plain)
                if result[0] == "ok":
                    assert isinstance(result[1], bytes)
                    rtcp_wire.append((result[1], plain))
            case ("receive", int(index), change) if wire:
                packet, plain = wire[index % len(wire)]
                result = receiver.run("unprotect", tampered(packet, change))  # type: ignore[arg-type]
                if result[0] == "ok" and change is None:
                    assert result[1] == plain
            case ("receive_rtcp", int(index), change) if rtcp_wire:
                packet, plain = rtcp_wire[index % len(rtcp_wire)]
                result = receiver.run("unprotect_rtcp", tampered(packet, change))  # type: ignore[arg-type]
                if result[0] == "ok" and change is None:
                    assert result[1] == plain
            case ("garbage", bytes(data), bool(as_rtcp)):
                receiver.run("unprotect_rtcp" if as_rtcp else "unprotect", data)
    assert receiver.native.streams <= len(SSRCS)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_the_rollover_counter_follows_many_wraps_and_reordering(profile: int) -> None:
    key = os.urandom(KEY_LENGTH[profile])
    sender = Pair(key, profile, AIORTC_WINDOW, True, Policy.SSRC_ANY_OUTBOUND)
    receiver = Pair(key, profile, AIORTC_WINDOW, True, Policy.SSRC_ANY_INBOUND)
    sent = []
    seq = 65000
    for n in range(600):
        # forward by odd strides, now and then a step back (a reordered packet)
        seq += -3 if n % 7 == 6 else 997
        plain = rtp(SSRCS[0], seq, payload=n.to_bytes(2, "big") * 40)
        protected = sender.run("protect", plain)
        assert protected[0] == "ok", protected
        sent.append((protected[1], plain))
    for packet, plain in sent:
        assert isinstance(packet, bytes)
        assert receiver.run("unprotect", packet) == ("ok", plain)
    # now the last ones again: replays (in the window), too old (behind it), and
    # those far enough behind to be taken for the next roll-over (failing their tag)
    refusals = set()
    for packet, _ in sent[-40:]:
        assert isinstance(packet, bytes)
        refusals.add(receiver.run("unprotect", packet))
    assert refusals == {
        ("srtp", "replay check failed (bad index)"),
        ("srtp", "replay check failed (index too old)"),
        ("srtp", "authentication failure"),
    }


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_each_side_reads_what_the_other_protects(profile: int) -> None:
    key = os.urandom(KEY_LENGTH[profile])
    ours = _native.Session(key, profile, AIORTC_WINDOW, True)
    theirs = reference(key, profile, AIORTC_WINDOW, True, Policy.SSRC_ANY_INBOUND)
    our_reader = _native.Session(key, profile, AIORTC_WINDOW, True)
    their_writer = reference(key, profile, AIORTC_WINDOW, True, Policy.SSRC_ANY_OUTBOUND)
    for seq in range(0, 70000, 611):
        plain = rtp(SSRCS[1], seq, payload=os.urandom(1100))
        assert theirs.unprotect(ours.protect(plain)) == plain
        assert our_reader.unprotect(their_writer.protect(plain)) == plain
        report = rtcp(SSRCS[1], os.urandom(40))
        assert theirs.unprotect_rtcp(ours.protect_rtcp(report)) == report
        assert our_reader.unprotect_rtcp(their_writer.protect_rtcp(report)) == report


@pytest.mark.parametrize(
    ("key_length", "profile", "window"),
    [
        (30, 1, 128),
        (29, 1, 128),
        (27, 7, 128),
        (30, 99, 128),
        (30, 1, 0),
        (30, 1, 1),
        (30, 1, 63),
        (30, 1, 64),
        (30, 1, 0x7FFF),
        (30, 1, 0x8000),
    ],
)
def test_a_session_is_refused_as_pylibsrtp_refuses_it(
    key_length: int, profile: int, window: int
) -> None:
    key = os.urandom(key_length)

    def theirs() -> bytes:
        reference(key, profile, window, False, Policy.SSRC_ANY_INBOUND)
        return b""

    def ours() -> bytes:
        _native.Session(key, profile, window, False)
        return b""

    assert outcome(ours) == outcome(theirs)


def test_packets_too_long_or_not_bytes_are_refused_as_pylibsrtp_refuses_them() -> None:
    key = os.urandom(30)
    pair = Pair(key, 1, 128, False, Policy.SSRC_ANY_OUTBOUND)
    for size in (1355, 1356, 1357, 1352, 1353, 1500, 1501):
        packet = rtp(1, 1, payload=bytes(size - 12))
        pair.run("protect", packet)
        pair.run("protect_rtcp", packet)
        pair.run("unprotect", packet)
        pair.run("unprotect_rtcp", packet)
    # short ones, under headers that claim more than there is
    for size in range(0, 48):
        for first in (0x80, 0x81, 0x90, 0x9F):
            packet = bytes([first, 96]) + bytes(range(2, max(2, size)))[: max(0, size - 2)]
            pair.run("unprotect", packet[:size])
            pair.run("unprotect_rtcp", packet[:size])
            pair.run("protect", packet[:size])
            pair.run("protect_rtcp", packet[:size])
    for method in ("protect", "unprotect", "protect_rtcp", "unprotect_rtcp"):
        assert outcome(lambda m=method: getattr(pair.native, m)(bytearray(20))) == (  # type: ignore[misc]
            "TypeError",
            "packet must be bytes",
        )


@pytest.mark.parametrize("profile", SRTP_PROFILES, ids=lambda p: p.openssl_profile.decode())
@pytest.mark.parametrize("is_server", [False, True], ids=["client", "server"])
def test_sessions_from_dtls_keys_are_aiortcs(profile: object, is_server: bool) -> None:
    """session_pair splits the exported keying material as aiortc's _setup_srtp
    does: each side's native sessions talk to the other side's aiortc ones."""
    from aiortc.rtcdtlstransport import SRTPProtectionProfile

    assert isinstance(profile, SRTPProtectionProfile)
    material = os.urandom(2 * (profile.key_length + profile.salt_length))
    rx, tx = session_pair(profile.openssl_profile, material, is_server)
    # the far side, keyed as aiortc keys it (rtcdtlstransport.py _setup_srtp)
    far_is_server = not is_server
    far_tx_key = profile.get_key_and_salt(material, 1 if far_is_server else 0)
    far_rx_key = profile.get_key_and_salt(material, 0 if far_is_server else 1)
    far_tx = reference(far_tx_key, profile.libsrtp_profile, 1024, True, Policy.SSRC_ANY_OUTBOUND)
    far_rx = reference(far_rx_key, profile.libsrtp_profile, 1024, True, Policy.SSRC_ANY_INBOUND)
    packet = rtp(5, 100, payload=os.urandom(200))
    assert rx.unprotect(far_tx.protect(packet)) == packet
    assert far_rx.unprotect(tx.protect(packet)) == packet
    assert tx.rtp_overhead == (10 if profile.libsrtp_profile == 1 else 16)


def test_the_native_error_is_a_pylibsrtp_error() -> None:
    """aiortc catches pylibsrtp.Error around its sessions: ours is one."""
    session = _native.Session(os.urandom(30))
    with pytest.raises(pylibsrtp.Error, match="authentication failure"):
        session.unprotect(rtp(1, 1, payload=bytes(40)))
    assert issubclass(_native.Error, pylibsrtp.Error)
