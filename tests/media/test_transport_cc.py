"""Transport-wide congestion control on each leg, without sockets: the answer
accepts it where the offer asks, the sequence number is read from the header,
and a receiver's REMB reaches a source that measures its own link only once it
drops (its downlink overuses) and for a while after."""

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from media.fastpath import transport_sequence
from media.leg import Leg
from media.relay import REMB_HOLD, Relay
from media.session import TRANSPORT_CC_URI, with_transport_cc
from media.twcc import ArrivalRecorder

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        f"a=extmap:3 {TRANSPORT_CC_URI}",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        f"a=extmap:3 {TRANSPORT_CC_URI}",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 transport-cc",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "",
    ]
)
ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 5 6 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "",
    ]
)


def test_the_answer_accepts_transport_cc_where_the_offer_asks() -> None:
    answer = with_transport_cc(OFFER, ANSWER)
    lines = answer.split("\r\n")
    assert lines.count(f"a=extmap:3 {TRANSPORT_CC_URI}") == 2
    assert "a=rtcp-fb:111 transport-cc" in lines and "a=rtcp-fb:96 transport-cc" in lines
    assert "a=rtcp-fb:97 transport-cc" not in lines  # not for RTX
    audio, video = answer.split("m=")[1:]
    assert "transport-cc" in audio and "transport-cc" in video
    # Applied twice it is the same answer; without an ask it changes nothing.
    assert with_transport_cc(OFFER, answer) == answer
    plain_offer = "\r\n".join(line for line in OFFER.split("\r\n") if "transport" not in line)
    assert with_transport_cc(plain_offer, ANSWER) == ANSWER


def test_an_offer_with_a_rejected_section_keeps_it_rejected() -> None:
    answer = ANSWER.replace("m=video 9 ", "m=video 0 ")
    assert "a=rtcp-fb:96 transport-cc" not in with_transport_cc(OFFER, answer)


@pytest.mark.parametrize(
    "packet,expected",
    [
        (b"\x90\x60\x00\x01" + bytes(8) + b"\xbe\xde\x00\x01" + b"\x31\x12\x34\x00", 0x1234),
        (b"\x90\x60\x00\x01" + bytes(8) + b"\xbe\xde\x00\x01" + b"\x10\x00\x31\x99", None),
        (b"\x80\x60\x00\x01" + bytes(8) + b"payload!", None),  # no extension
        (b"\x91\x60\x00\x01" + bytes(12) + b"\xbe\xde\x00\x01" + b"\x31\x12\x34\x00", None),
        (b"\x90\x60\x00\x01" + bytes(8) + b"\x10\x00\x00\x01" + b"\x03\x02\x12\x34", None),
        (
            b"\x90\x60\x00\x01"
            + bytes(8)
            + b"\xbe\xde\x00\x02"
            + b"\x00\x10\x07\x31\x00\x05\x00\x00",
            5,
        ),
    ],
    ids=["id 3", "id 3 too short", "none", "a CSRC", "two-byte", "after padding and another"],
)
def test_the_transport_sequence_number_is_read_from_the_header(
    packet: bytes, expected: int | None
) -> None:
    assert transport_sequence(packet, 3) == expected


def source(*, transport_cc: bool, held_until: float = 0.0) -> Any:
    return SimpleNamespace(
        arrivals=ArrivalRecorder(1, 2) if transport_cc else None,
        remb_held_until=held_until,
    )


# (transport-cc, held until, REMB bitrate, the receiver's previous one, now) -> passed on
CASES = [
    (False, 0.0, 5_000_000, None, 100.0, True),  # no transport-cc: REMB is all it has
    (False, 0.0, 300_000, 900_000, 100.0, True),
    (True, 0.0, 300_000, None, 100.0, False),  # a first estimate: not a limit yet
    (True, 0.0, 330_000, 300_000, 100.0, False),  # growing: a lag behind the source
    (True, 0.0, 290_000, 300_000, 100.0, False),  # within 5 %: noise
    (True, 0.0, 250_000, 300_000, 100.0, True),  # dropped: the downlink overuses
    (True, 110.0, 5_000_000, 4_000_000, 100.0, True),  # held after a drop
    (True, 110.0, 5_000_000, 4_000_000, 111.0, False),  # hold over
]


@pytest.mark.parametrize("transport_cc,held,bitrate,previous,now,passed", CASES)
def test_which_receiver_estimates_reach_the_source(
    transport_cc: bool, held: float, bitrate: int, previous: int | None, now: float, passed: bool
) -> None:
    leg = source(transport_cc=transport_cc, held_until=held)
    assert Relay._passes_remb(cast(Leg, leg), bitrate, previous, now) is passed


def test_a_drop_holds_the_source_for_the_hold_time() -> None:
    leg = source(transport_cc=True)
    assert Relay._passes_remb(cast(Leg, leg), 500_000, 800_000, 100.0)
    assert leg.remb_held_until == 100.0 + REMB_HOLD


def packet_numbered(number: int) -> bytes:
    """An RTP packet carrying transport-wide ``number`` under extension id 3."""
    header = bytes([0x90, 96, 0, 1]) + (1000).to_bytes(4, "big") + (42).to_bytes(4, "big")
    extension = b"\xbe\xde\x00\x01" + bytes([0x31]) + number.to_bytes(2, "big") + b"\x00"
    return header + extension + b"payload"


async def test_a_packet_left_to_aiortcs_path_arrives_when_its_datagram_was_read() -> None:
    """The leg notes when each datagram the fast path declined was read; the relay's
    general path, reached later, records that time for the sender's feedback (and
    a steady packet, recorded where it is read, the time it is recorded)."""

    async def nothing(*_: Any) -> None:
        return None

    leg = Leg("p0", 0, 1, nothing, lambda *_: None, lambda *_: None, forward_now=lambda *_: False)
    try:
        leg.transport_cc_id = 3
        leg.arrivals = ArrivalRecorder(1, 2)
        assert leg._rtp_now(packet_numbered(7)) is False  # declined: aiortc's path
        read_after = time.monotonic_ns() // 1000
        await asyncio.sleep(0.05)  # aiortc's queue and task, slow
        leg.transport_arrival(7, read_earlier=True)
        leg.transport_arrival(8, read_earlier=True)  # never read by _rtp_now: now
        leg.transport_arrival(9)
        recorded = dict(leg.arrivals._arrivals)
        assert recorded[7] <= read_after
        assert recorded[8] > read_after and recorded[9] > read_after
    finally:
        await leg.pc.close()


async def test_what_a_leg_without_its_own_socket_sends_goes_in_order_bounded_and_stops() -> None:
    """send_soon's fallback (a TURN allocation: aiortc's path, which awaits): one
    sender in order, never more than OUTBOX_LIMIT waiting (a stalled TURN server
    drops and counts the rest), an error costs that packet only, and closing the
    leg ends the sender."""
    from media.leg import OUTBOX_LIMIT

    async def nothing(*_: Any) -> None:
        return None

    leg = Leg("p0", 0, 1, nothing, lambda *_: None, lambda *_: None, forward_now=lambda *_: False)
    sent: list[bytes] = []
    stalled = asyncio.Event()

    async def send(data: bytes) -> None:
        if data == b"bad":
            raise RuntimeError("channel bind failed")
        await stalled.wait()
        sent.append(data)

    leg.send = send  # type: ignore[method-assign]
    leg._transports = [object()]
    try:
        leg.send_soon(b"bad")
        for n in range(OUTBOX_LIMIT + 10):
            leg.send_soon(n.to_bytes(2, "big"))
        await asyncio.sleep(0.05)
        assert leg.outbox_dropped > 0
        stalled.set()
        for _ in range(100):
            if len(sent) >= OUTBOX_LIMIT + 10 - leg.outbox_dropped:
                break
            await asyncio.sleep(0.01)
        assert sent == [n.to_bytes(2, "big") for n in range(len(sent))]
        assert len(sent) + leg.outbox_dropped == OUTBOX_LIMIT + 10
        task = leg._outbox_task
        assert task is not None and not task.done()
    finally:
        leg._transports = []
        await leg.close()
    assert task.done()
