"""Calls of up to four through the relay, with real aiortc peers on loopback: each
offers issue 21's seven m-lines once (media/slots.py) and gets every other
participant in its slot, the shared screen on its seventh m-line, with no gap for
the others while someone joins or leaves."""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness.peers import SCREEN_FIRST, CallPeer, Received, in_order, in_order_wrapping, wait_until
from media.aiortc_private import restrict_host_addresses
from media.config import MediaConfig
from media.errors import NotAParticipant
from media.pool import LocalRelayPool, RelayPool
from media.slots import sender_in
from media.worker_pool import WorkerRelayPool

FRAMES = 10_000
"""A camera's frames are numbered from its position x FRAMES: a receiver knows whose
picture it decodes."""
MAX_GAP = 0.2
"""Seconds of media (RTP time) between two frames a receiver decodes one after the other."""


@pytest.fixture
async def pool() -> AsyncIterator[LocalRelayPool]:
    pool = LocalRelayPool(MediaConfig(addresses=("127.0.0.1",), workers=0))
    yield pool
    await pool.close()


def page(position: int) -> CallPeer:
    """A participant offering the seven m-lines, as the pages do."""
    return CallPeer(slots=3, screen=True, first_frame=position * FRAMES)


async def join(pool: RelayPool, call_id: str, position: int, peer: CallPeer, legs: int) -> None:
    declared = [f"p{n}" for n in range(legs)]
    answer = await pool.connect(call_id, f"p{position}", await peer.offer(), declared)
    await peer.accept(answer)


def flowing(received: Received, frames: int = 30) -> bool:
    return len(received.counters) > frames and received.loud_audio_frames > 20


def assert_from(received: Received, sender: int) -> None:
    """Frames of ``sender``'s camera only, and frames and audio in order."""
    assert {c // FRAMES for c in received.counters} == {sender}, received.counters[:20]
    assert in_order(received.counters), received.counters[:50]
    assert in_order_wrapping(received.video_pts)
    assert in_order_wrapping(received.audio_pts)


async def test_a_third_joins_and_leaves_without_a_gap_for_the_first_two(
    pool: LocalRelayPool,
) -> None:
    await pool.open_call("m1")
    kiosk, expert, second = page(0), page(1), page(2)
    try:
        await join(pool, "m1", 0, kiosk, 2)
        await join(pool, "m1", 1, expert, 2)
        assert await wait_until(lambda: flowing(kiosk.slots[0]) and flowing(expert.slots[0]))
        before = [len(p.slots[0].video_pts) for p in (kiosk, expert)]

        await join(pool, "m1", 2, second, 3)
        # Each gets the two others: the kiosk (0) and the expert (1) get the second
        # expert in slot 1; the second gets them in slots 0 and 1.
        joined = [(kiosk, 1, 2), (expert, 1, 2), (second, 0, 0), (second, 1, 1)]
        assert await wait_until(lambda: all(flowing(p.slots[s]) for p, s, _ in joined))
        for peer, slot, sender in [*joined, (kiosk, 0, 1), (expert, 0, 0)]:
            assert_from(peer.slots[slot], sender)
        # The first two never missed more than two frames of each other while the
        # third joined (measured on the media's own clock, not the machine's).
        for peer, start in zip((kiosk, expert), before, strict=True):
            assert peer.slots[0].largest_gap(start) <= MAX_GAP, peer.slots[0].video_pts[start:]
        assert not second.screen.counters  # nobody shares a screen

        # The second expert leaves: signaling closes its leg.
        during = [len(p.slots[0].video_pts) for p in (kiosk, expert)]
        assert await pool.disconnect("m1", "p2")
        await second.close()
        left = [len(p.slots[1].counters) for p in (kiosk, expert)]
        assert await wait_until(
            lambda: all(
                len(p.slots[0].video_pts) > n + 45
                for p, n in zip((kiosk, expert), during, strict=True)
            )
        )
        for peer, start, was in zip((kiosk, expert), during, left, strict=True):
            assert peer.slots[0].largest_gap(start) <= MAX_GAP, peer.slots[0].video_pts[start:]
            assert_from(peer.slots[0], 1 - (peer is expert))
            # Slot 1 got nothing more than what was on its way.
            assert len(peer.slots[1].counters) <= was + 3
    finally:
        for peer in (kiosk, expert, second):
            await peer.close()
    await pool.close_call("m1")
    assert await pool.peer_connections() == 0


async def test_four_participants_each_get_the_three_others_and_a_fifth_is_refused(
    pool: LocalRelayPool,
) -> None:
    await pool.open_call("m2")
    peers = [page(n) for n in range(4)]
    fifth = page(4)
    try:
        for position, peer in enumerate(peers):
            await join(pool, "m2", position, peer, 4)
        assert await wait_until(
            lambda: all(flowing(p.slots[s]) for p in peers for s in range(3)), timeout=40
        )
        for receiver, peer in enumerate(peers):
            for slot in range(3):
                assert_from(peer.slots[slot], sender_in(receiver, slot))
        # Each source's packets rewritten where they arrive, for all three receivers.
        counters = pool.counters
        assert counters.packets_forwarded_at_once > counters.packets_forwarded / 2, counters
        with pytest.raises(NotAParticipant):
            await pool.connect("m2", "p4", await fifth.offer(), [f"p{n}" for n in range(5)])
        assert sorted(pool.relays["m2"].legs) == ["p0", "p1", "p2", "p3"]
    finally:
        for peer in (*peers, fifth):
            await peer.close()


async def test_a_shared_screen_reaches_every_other_leg_s_seventh_m_line(
    pool: LocalRelayPool,
) -> None:
    await pool.open_call("m3")
    peers = [page(n) for n in range(3)]
    kiosk, expert, second = peers
    try:
        for position, peer in enumerate(peers):
            await join(pool, "m3", position, peer, 3)
        assert await wait_until(lambda: all(flowing(p.slots[0]) for p in peers))
        expert.share_screen(True)
        assert await wait_until(
            lambda: len(kiosk.screen.counters) > 20 and len(second.screen.counters) > 20
        )
        for peer in (kiosk, second):
            assert all(c >= SCREEN_FIRST for c in peer.screen.counters)
            assert in_order(peer.screen.counters)
        assert not expert.screen.counters  # one's own screen never comes back
        counters = pool.counters
        assert counters.packets_forwarded_at_once > counters.packets_forwarded / 2, counters
        # The cameras go on in their slots beside it.
        assert_from(kiosk.slots[0], 1)
        assert_from(second.slots[1], 1)

        # The second expert shares: it takes over at once (signaling tells the first
        # to stop), on the same m-line.
        second.share_screen(True, first=SCREEN_FIRST + FRAMES)
        assert await wait_until(
            lambda: (
                kiosk.screen.counters[-1] >= SCREEN_FIRST + FRAMES + 20
                and expert.screen.counters[-1:] >= [SCREEN_FIRST + FRAMES + 20]
            )
        )
        expert.share_screen(False)
        taken_over = kiosk.screen.counters.index(
            next(c for c in kiosk.screen.counters if c >= SCREEN_FIRST + FRAMES)
        )
        assert all(c >= SCREEN_FIRST + FRAMES for c in kiosk.screen.counters[taken_over:])
        assert in_order(kiosk.screen.counters[taken_over:])
    finally:
        for peer in peers:
            await peer.close()


async def test_a_two_m_line_peer_gets_slot_0_in_a_call_of_three(pool: LocalRelayPool) -> None:
    await pool.open_call("m4")
    older = CallPeer(first_frame=0)  # an older kiosk: audio and video only
    expert, second = page(1), page(2)
    try:
        for position, peer in enumerate((older, expert, second)):
            await join(pool, "m4", position, peer, 3)
        assert await wait_until(
            lambda: (
                flowing(older.received)
                and all(flowing(p.slots[0]) and flowing(p.slots[1]) for p in (expert, second))
            )
        )
        assert_from(older.received, 1)  # the expert in its one slot
        assert_from(expert.slots[0], 0)  # the older kiosk's media reaches both
        assert_from(second.slots[0], 0)
        assert_from(expert.slots[1], 2)
        assert_from(second.slots[1], 1)
    finally:
        for peer in (older, expert, second):
            await peer.close()


async def test_whoever_takes_a_freed_position_appears_in_the_same_slot(
    pool: LocalRelayPool,
) -> None:
    """A transfer: the expert at position 1 leaves and another takes it; the kiosk's
    slot 0 goes on from the newcomer, its numbers continuing without a jump back."""
    await pool.open_call("m5")
    kiosk, expert, successor = (
        page(0),
        page(1),
        CallPeer(slots=3, screen=True, first_frame=3 * FRAMES),
    )
    try:
        await join(pool, "m5", 0, kiosk, 2)
        await join(pool, "m5", 1, expert, 2)
        assert await wait_until(lambda: flowing(kiosk.slots[0]))
        assert await pool.disconnect("m5", "p1")
        await expert.close()
        await join(pool, "m5", 1, successor, 2)
        assert await wait_until(
            lambda: len([c for c in kiosk.slots[0].counters if c >= 3 * FRAMES]) > 30
        )
        assert await wait_until(lambda: flowing(successor.slots[0]))
        assert in_order(kiosk.slots[0].counters)
        assert in_order_wrapping(kiosk.slots[0].video_pts)
        assert_from(successor.slots[0], 0)
    finally:
        for peer in (kiosk, expert, successor):
            await peer.close()


async def test_a_call_of_three_through_a_relay_worker_process() -> None:
    """The same through a worker (--media-workers N): legs by position over the
    internal API, a fifth refused, a leaver's leg closed there."""
    pool = WorkerRelayPool(MediaConfig(addresses=("127.0.0.1",), workers=1))
    await pool.start()
    restrict_host_addresses(["127.0.0.1"])  # the peers here, as the worker does there
    peers = [page(n) for n in range(3)]
    fifth = page(4)
    try:
        await pool.place("w1")
        for position, peer in enumerate(peers):
            await join(pool, "w1", position, peer, 3)
        assert await wait_until(lambda: all(flowing(p.slots[s]) for p in peers for s in range(2)))
        for receiver, peer in enumerate(peers):
            for slot in range(2):
                assert_from(peer.slots[slot], sender_in(receiver, slot))
        with pytest.raises(NotAParticipant):
            await pool.connect("w1", "p4", await fifth.offer(), [f"p{n}" for n in range(5)])
        assert await pool.disconnect("w1", "p2")
        assert not await pool.disconnect("w1", "p2")
        assert await pool.peer_connections() == 2
    finally:
        for peer in (*peers, fifth):
            await peer.close()
        await pool.close()
        restrict_host_addresses([])


async def test_a_leg_still_connecting_gets_nothing_and_slows_nobody(
    pool: LocalRelayPool,
) -> None:
    """A joiner whose connection is not up yet (its answer not even taken): the
    others' packets go on being rewritten where they arrive, and none is spent on
    the joiner (sent then, a keyframe would be lost and its picture wait)."""
    await pool.open_call("m6")
    kiosk, expert, joiner = page(0), page(1), page(2)
    try:
        await join(pool, "m6", 0, kiosk, 2)
        await join(pool, "m6", 1, expert, 2)
        assert await wait_until(lambda: flowing(kiosk.slots[0]) and flowing(expert.slots[0]))
        await pool.connect("m6", "p2", await joiner.offer(), ["p0", "p1", "p2"])
        counters = pool.counters
        at_once, forwarded = counters.packets_forwarded_at_once, counters.packets_forwarded
        seen = len(expert.slots[0].counters)
        assert await wait_until(lambda: len(expert.slots[0].counters) > seen + 30)
        waiting = pool.relays["m6"].legs["p2"]
        assert all(stream.forwarded == 0 for stream in waiting.outbound.values())
        assert all(stream.source is None for stream in waiting.outbound.values())
        # All but a retransmission now and then (which takes the general path).
        after = pool.counters  # (a snapshot: the pump counts what it forwards itself)
        quick = after.packets_forwarded_at_once - at_once
        assert quick > 0.9 * (after.packets_forwarded - forwarded), after
    finally:
        for peer in (kiosk, expert, joiner):
            await peer.close()


async def test_feedback_on_a_slot_reaches_that_slot_s_sender_only(pool: LocalRelayPool) -> None:
    """The kiosk's keyframe request, NACK and receiver report on what it gets in
    slot 1 (the second expert) reach the second expert, restated for its own stream,
    and nothing of it reaches the first."""
    from aiortc.rtp import (
        RTCP_PSFB_PLI,
        RTCP_RTPFB_NACK,
        RtcpPacket,
        RtcpPsfbPacket,
        RtcpReceiverInfo,
        RtcpRrPacket,
        RtcpRtpfbPacket,
    )

    from media.slots import CAMERA, Place

    await pool.open_call("m7")
    peers = [page(n) for n in range(3)]
    try:
        for position, peer in enumerate(peers):
            await join(pool, "m7", position, peer, 3)
        assert await wait_until(lambda: all(flowing(p.slots[s]) for p in peers for s in range(2)))
        relay = pool.relays["m7"]
        sent: dict[str, list[object]] = {"p1": [], "p2": []}
        for name in sent:
            leg = relay.legs[name]

            def spy(data: bytes, name: str = name, original: Any = leg.send_soon) -> None:
                if data[1] in range(192, 224):
                    sent[name] += RtcpPacket.parse(data)
                original(data)

            leg.send_soon = spy  # type: ignore[method-assign]
        kiosk = relay.legs["p0"]
        slot1 = kiosk.outbound[Place(1, "video")]
        assert slot1.last_seq is not None
        camera = relay.legs["p2"].primary_ssrc[CAMERA]
        missing = (slot1.last_seq + 1000) % 65536  # long gone from the relay's history
        feedback = b"".join(
            [
                bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=slot1.ssrc)),
                bytes(
                    RtcpRtpfbPacket(
                        fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=slot1.ssrc, lost=[missing]
                    )
                ),
                bytes(
                    RtcpRrPacket(
                        ssrc=1,
                        reports=[
                            RtcpReceiverInfo(
                                ssrc=slot1.ssrc,
                                fraction_lost=3,
                                packets_lost=7,
                                highest_sequence=slot1.last_seq,
                                jitter=0,
                                lsr=0,
                                dlsr=0,
                            )
                        ],
                    )
                ),
            ]
        )
        relay._on_rtcp(kiosk, feedback)

        # The calls' own feedback goes on meanwhile: look for what was injected.
        def nacks(name: str) -> list[tuple[int, list[int]]]:
            return [(p.media_ssrc, p.lost) for p in sent[name] if isinstance(p, RtcpRtpfbPacket)]

        def reports(name: str) -> list[tuple[int, int]]:
            return [
                (r.ssrc, r.packets_lost)
                for p in sent[name]
                if isinstance(p, RtcpRrPacket)
                for r in p.reports
            ]

        got = sent["p2"]
        assert any(isinstance(p, RtcpPsfbPacket) and p.media_ssrc == camera for p in got), got
        assert (camera, [slot1.to_source_seq(missing)]) in nacks("p2")
        assert (camera, 7) in reports("p2")
        # The first expert (slot 0 at the kiosk) hears none of it.
        assert [r for r in reports("p1") if r[1] == 7] == []
        assert [n for n in nacks("p1") if n[1] == [slot1.to_source_seq(missing)]] == []
    finally:
        for peer in peers:
            await peer.close()


def bundle_only(offer: str) -> str:
    """``offer`` as Firefox writes it: every m-line after the first of its kind with
    port 0 and ``a=bundle-only`` (carried by the BUNDLE group's transport)."""
    lines, seen = [], set()
    for line in offer.split("\r\n"):
        if line.startswith("m="):
            kind, _port, rest = line[2:].split(" ", 2)
            if kind in seen:
                lines += [f"m={kind} 0 {rest}", "a=bundle-only"]
                continue
            seen.add(kind)
        lines.append(line)
    return "\r\n".join(lines)


async def test_a_firefox_offer_s_bundle_only_m_lines_get_the_others(
    pool: LocalRelayPool,
) -> None:
    """Firefox marks every m-line but the first audio and video bundle-only (port 0):
    they are live, and the others' cameras come in them (a port-0 line was taken
    for a rejected one: a Firefox kiosk saw only the first expert)."""
    await pool.open_call("m6")
    kiosk, expert, second = page(0), page(1), page(2)
    try:
        offer = bundle_only(await kiosk.offer())
        assert offer.count("a=bundle-only") == 5
        await kiosk.accept(await pool.connect("m6", "p0", offer, ["p0", "p1", "p2"]))
        await join(pool, "m6", 1, expert, 3)
        await join(pool, "m6", 2, second, 3)
        assert await wait_until(lambda: flowing(kiosk.slots[0]) and flowing(kiosk.slots[1]))
        assert_from(kiosk.slots[0], 1)
        assert_from(kiosk.slots[1], 2)
        assert await wait_until(lambda: flowing(expert.slots[0]) and flowing(second.slots[0]))
        assert_from(expert.slots[0], 0)
    finally:
        for peer in (kiosk, expert, second):
            await peer.close()
