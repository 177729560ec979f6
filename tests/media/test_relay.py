"""The relay with real aiortc peers on loopback: media flows both ways as RTP, on
each data path (steady packets forwarded in Python or by media._native)."""

import asyncio
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator
from struct import pack
from typing import Any

import pytest

from harness.peers import CallPeer, in_order, wait_until
from media import datapath
from media.config import MediaConfig
from media.pool import LocalRelayPool

LEGS = ("kiosk", "expert")


def assert_mostly_at_once(pool: LocalRelayPool) -> None:
    """Most forwarded packets took the fast path (the first ones of each stream, up
    to its keyframe, and retransmissions take the general one)."""
    counters = pool.counters
    assert counters.packets_forwarded_at_once > counters.packets_forwarded / 2, counters
    for relay in pool.relays.values():
        stats = relay.stats()
        assert stats["datapath"] == datapath.current()
        if relay.datapath == "native":
            # Forwarded in C, with the SRTP sessions aiortc's own path uses: the
            # first steady packets of each stream by Python's call, the rest by the
            # pump's thread (asyncio's loop, as here) without Python.
            native = stats["native"]
            assert isinstance(native, dict) and native["queued"] > 0, native
            pump = stats["pump"]
            assert isinstance(pump, dict) and pump["forwarded"] > native["queued"], pump
            assert pump["read"] > pump["queued"], pump
            for leg in relay.legs.values():
                assert leg.fast is not None and leg.fast.native_rx() is not None


@pytest.fixture(params=["python", "native"])
async def pool(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LocalRelayPool]:
    """A relay pool in this process on one data path (chosen as --relay-datapath
    does; the native one fails, not skips, where it was not built)."""
    monkeypatch.setattr(datapath, "_selected", None)
    assert datapath.select(request.param) == request.param
    pool = LocalRelayPool(MediaConfig(addresses=("127.0.0.1",), workers=0, datapath=request.param))
    yield pool
    await pool.close()


async def test_both_sides_decode_each_others_frames_in_order(pool: LocalRelayPool) -> None:
    await pool.open_call("c1")
    kiosk, expert = CallPeer(), CallPeer()
    try:
        await kiosk.accept(await pool.connect("c1", "kiosk", await kiosk.offer(), LEGS))
        await expert.accept(await pool.connect("c1", "expert", await expert.offer(), LEGS))
        assert await wait_until(
            lambda: len(kiosk.received.counters) > 30 and len(expert.received.counters) > 30
        )
        assert await wait_until(
            lambda: kiosk.received.loud_audio_frames > 20 and expert.received.loud_audio_frames > 20
        )
        for peer, other in ((kiosk, expert), (expert, kiosk)):
            assert in_order(peer.received.counters), peer.received.counters[:50]
            # Nearly every frame between the first and the last that arrived (a
            # share of what was sent, not of what a busy machine had time for).
            assert other.video is not None
            counters = peer.received.counters
            span = counters[-1] - counters[0] + 1
            assert len(counters) >= 0.8 * span, (len(counters), span)
        assert_mostly_at_once(pool)
        # Only the two clients decode: the relay's four receivers hold no thread.
        decoders = [t for t in threading.enumerate() if t.name.endswith("-decoder")]
        clients = len(kiosk.pc.getReceivers()) + len(expert.pc.getReceivers())
        assert len(decoders) == clients == 4, decoders
    finally:
        await kiosk.close()
        await expert.close()
    await pool.close_call("c1")
    assert await pool.peer_connections() == 0


async def test_legs_with_different_payload_types_extension_ids_and_mline_order(
    pool: LocalRelayPool,
) -> None:
    await pool.open_call("c2")
    kiosk, expert = CallPeer(), CallPeer(video_first=True)
    try:
        await kiosk.accept(await pool.connect("c2", "kiosk", await kiosk.offer(), LEGS))
        offer = await expert.offer_renumbered(
            pt_shift=10,
            extension_ids={
                "urn:ietf:params:rtp-hdrext:sdes:mid": 9,
                "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 12,
                "urn:ietf:params:rtp-hdrext:ssrc-audio-level": 13,
            },
        )
        assert "a=rtpmap:107 VP8/90000" in offer and "a=extmap:9 " in offer
        assert offer.index("m=video") < offer.index("m=audio")
        await expert.accept(await pool.connect("c2", "expert", offer, LEGS))
        assert await wait_until(
            lambda: (
                len(kiosk.received.counters) > 30
                and len(expert.received.counters) > 30
                and kiosk.received.loud_audio_frames > 20
                and expert.received.loud_audio_frames > 20
            )
        )
        assert in_order(kiosk.received.counters) and in_order(expert.received.counters)
        # Other ids and payload types on each leg: still rewritten where they arrive.
        assert_mostly_at_once(pool)
    finally:
        await kiosk.close()
        await expert.close()


@pytest.mark.slow
async def test_two_percent_loss_on_one_link_is_repaired_through_the_relay(
    pool: LocalRelayPool,
) -> None:
    await pool.open_call("c3")
    sender, receiver = CallPeer(), CallPeer()
    try:
        await sender.accept(await pool.connect("c3", "kiosk", await sender.offer(), LEGS))
        await receiver.accept(await pool.connect("c3", "expert", await receiver.offer(), LEGS))
        assert await wait_until(lambda: len(receiver.received.counters) > 5)
        sender.drop_outgoing_rtp(0.02)
        start = len(receiver.received.counters)
        # 90 frames, at least 5 dropped packets and a NACK answered (the drop is
        # random and hits audio too, which nobody NACKs: 90 frames alone once left
        # only 4 dropped, once none of video).
        assert await wait_until(
            lambda: (
                len(receiver.received.counters) > start + 90
                and sender.dropped >= 5
                and pool.counters.nacks > 0
            ),
            timeout=60,
        ), (sender.dropped, pool.counters)
        window = receiver.received.counters[start:]
        # Every frame, in order: the gaps were filled by retransmissions.
        assert window == list(range(window[0], window[0] + len(window))), window
        # The NACKs were answered from the history the fast path keeps, and the
        # source's retransmissions (RTX) took the general path.
        assert_mostly_at_once(pool)
        assert pool.counters.nacks > 0
    finally:
        await sender.close()
        await receiver.close()


async def test_an_offer_answered_while_the_call_ends_leaves_no_connection(
    pool: LocalRelayPool,
) -> None:
    import asyncio

    from media.errors import UnknownCall

    await pool.open_call("c4")
    peer = CallPeer()
    try:
        offer = await peer.offer()
        connecting = asyncio.create_task(pool.connect("c4", "kiosk", offer, LEGS))
        await asyncio.sleep(0)
        await pool.close_call("c4")
        with pytest.raises(UnknownCall):
            await connecting
        assert await pool.peer_connections() == 0
    finally:
        await peer.close()


async def test_a_relay_opens_only_the_legs_declared_and_closes_one_declared_away(
    pool: LocalRelayPool,
) -> None:
    from media.errors import NotAParticipant

    await pool.open_call("c6")
    kiosk, expert, third, again = CallPeer(), CallPeer(), CallPeer(), CallPeer()
    try:
        await kiosk.accept(await pool.connect("c6", "kiosk", await kiosk.offer(), LEGS))
        await expert.accept(await pool.connect("c6", "expert", await expert.offer(), LEGS))
        with pytest.raises(NotAParticipant):
            await pool.connect("c6", "eavesdropper", await third.offer(), LEGS)
        assert sorted(pool.relays["c6"].legs) == ["expert", "kiosk"]
        # Signaling declares the call's legs with each offer: someone no longer among
        # them (a participant who left a call of more) loses their leg.
        await again.accept(await pool.connect("c6", "kiosk", await again.offer(), ("kiosk",)))
        assert sorted(pool.relays["c6"].legs) == ["kiosk"]
    finally:
        for peer in (kiosk, expert, third, again):
            await peer.close()


async def test_each_sides_reports_are_taken_as_they_arrive_and_restated(
    pool: LocalRelayPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A steady call's RTCP (each endpoint reports a few times a second) is
    unprotected and handled where the datagram arrives, not through aiortc's
    queue and receive task; each side is still told the other's sender reports,
    restated for the stream it receives, over SRTCP it can read."""
    from aiortc.rtp import RtcpPacket, RtcpSrPacket

    from media.leg import Leg

    through_aiortc = 0
    original = Leg._rtcp

    async def counted(self: Leg, data: bytes) -> None:
        nonlocal through_aiortc
        through_aiortc += 1
        await original(self, data)

    monkeypatch.setattr(Leg, "_rtcp", counted)
    await pool.open_call("c9")
    kiosk, expert = CallPeer(), CallPeer()
    try:
        await kiosk.accept(await pool.connect("c9", "kiosk", await kiosk.offer(), LEGS))
        await expert.accept(await pool.connect("c9", "expert", await expert.offer(), LEGS))
        assert await wait_until(
            lambda: len(kiosk.received.counters) > 30 and len(expert.received.counters) > 30
        )
        relay = pool.relays["c9"]
        restated: dict[str, list[int]] = {name: [] for name in LEGS}
        for name, leg in relay.legs.items():

            def spy(data: bytes, name: str = name, send: Any = leg.send_soon) -> None:
                if data[1] == 200:
                    restated[name] += [
                        p.ssrc for p in RtcpPacket.parse(data) if isinstance(p, RtcpSrPacket)
                    ]
                send(data)

            leg.send_soon = spy  # type: ignore[method-assign]
        # (a report that came just as DTLS completed took aiortc's path: counted from here)
        through_aiortc = 0
        assert await wait_until(lambda: all(len(r) >= 2 for r in restated.values()), timeout=15)
        assert through_aiortc == 0
        for name, leg in relay.legs.items():
            ours = {stream.ssrc for stream in leg.outbound.values()}
            assert set(restated[name]) <= ours, (restated[name], ours)
        # The endpoints read them: aiortc's receivers note each sender report.
        for peer in (kiosk, expert):
            noted = [r._RTCRtpReceiver__lsr for r in peer.pc.getReceivers()]  # type: ignore[attr-defined]
            assert any(noted), noted
    finally:
        await kiosk.close()
        await expert.close()


async def test_forged_packets_at_the_relay_port_change_nothing(
    pool: LocalRelayPool, caplog: pytest.LogCaptureFixture
) -> None:
    """An attacker who learns the relay's port sends RTP-looking datagrams with the
    kiosk's real SSRC (SRTP authentication fails), truncated headers, bad
    extension blocks and RTCP-looking junk: the fast path drops them as aiortc
    would, logs nothing, forwards none, and the call's media goes on in order."""
    await pool.open_call("c5")
    kiosk, expert = CallPeer(), CallPeer()
    try:
        offer = await kiosk.offer()
        answer = await pool.connect("c5", "kiosk", offer, LEGS)
        await kiosk.accept(answer)
        await expert.accept(await pool.connect("c5", "expert", await expert.offer(), LEGS))
        assert await wait_until(lambda: len(expert.received.counters) > 10)
        port = next(
            int(line.split()[5]) for line in answer.splitlines() if line.startswith("a=candidate:")
        )
        ssrc = next(
            int(line.split()[0].split(":")[1])
            for line in offer.splitlines()
            if line.startswith("a=ssrc:")
        )
        forged = [pack("!BBHLL", 0x80, 96, n, n * 3000, ssrc) + os.urandom(900) for n in range(300)]
        # (a single octet that looks like RTP, an empty datagram and RTCP longer than
        # SRTP takes each raised in the fast path)
        forged += [b"\x80", b"\xa0", b"", b"\x81\xc9" + os.urandom(1598)]
        forged += [b"\x80\x60\x00", b"\x90\x60\x00\x01" + b"\0" * 8 + b"\xbe\xde\xff\xff"]
        # New SSRCs with the payload types the legs use: nothing may be learnt from
        # a packet before it is authenticated.
        forged += [
            pack("!BBHLL", 0x80, pt, n, n, 0x10000 + n) + os.urandom(200)
            for n in range(200)
            for pt in (96, 97)
        ]
        forged += [pack("!BBH", 0x81, 201, 7) + os.urandom(28) for _ in range(20)]
        received = len(expert.received.counters)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            for index, datagram in enumerate(forged):
                attacker.sendto(datagram, ("127.0.0.1", port))
                if index % 10 == 9:
                    # The relay shares this event loop: let it read, so that the
                    # socket's buffer does not drop what it should see.
                    await asyncio.sleep(0.002)
        assert await wait_until(lambda: len(expert.received.counters) > received + 30)
        assert in_order(expert.received.counters)
        # The relay took in none of the forged packets: no more than the kiosk
        # really sent (read first, so that the kiosk's count can only be ahead).
        taken_in = pool.relays["c5"].legs["kiosk"].packets_in
        sent = 0
        for sender in kiosk.pc.getSenders():
            for stat in (await sender.getStats()).values():
                if stat.type == "outbound-rtp":
                    sent += stat.packetsSent
        assert 0 < taken_in <= sent, (taken_in, sent)
        # None of the forged SSRCs was learnt (the kiosk's own retransmissions may add
        # its RTX SSRC meanwhile on a busy machine: that one is authenticated).
        leg = pool.relays["c5"].legs["kiosk"]
        assert [n for n in range(200) if leg.known(0x10000 + n) is not None] == []
        assert leg.known(7) is None
        relay = pool.relays["c5"]
        if relay.datapath == "native":
            # Those with the kiosk's SSRC reached the forwarder (or the pump, which
            # forwards the kiosk's steady stream), which refused them.
            stats = relay.stats()
            native, pump = stats["native"], stats["pump"]
            assert isinstance(native, dict) and isinstance(pump, dict)
            assert native["refused"] + pump.get("refused", 0) > 0, (native, pump)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await kiosk.close()
        await expert.close()
