"""The relay with real aiortc peers on loopback: media flows both ways as RTP."""

import itertools
from collections.abc import AsyncIterator

import pytest

from media.config import MediaConfig
from media.pool import LocalRelayPool
from tests.media.peers import CallPeer, wait_until


@pytest.fixture
async def pool() -> AsyncIterator[LocalRelayPool]:
    pool = LocalRelayPool(MediaConfig(addresses=("127.0.0.1",), workers=0))
    yield pool
    await pool.close()


def in_order(counters: list[int]) -> bool:
    return all(b > a for a, b in itertools.pairwise(counters))


async def test_both_sides_decode_each_others_frames_in_order(pool: LocalRelayPool) -> None:
    await pool.open_call("c1")
    kiosk, expert = CallPeer(), CallPeer()
    try:
        await kiosk.accept(await pool.connect("c1", "kiosk", await kiosk.offer()))
        await expert.accept(await pool.connect("c1", "expert", await expert.offer()))
        assert await wait_until(
            lambda: len(kiosk.received.counters) > 30 and len(expert.received.counters) > 30
        )
        assert await wait_until(
            lambda: kiosk.received.loud_audio_frames > 20 and expert.received.loud_audio_frames > 20
        )
        for peer in (kiosk, expert):
            assert in_order(peer.received.counters), peer.received.counters[:50]
    finally:
        await kiosk.close()
        await expert.close()
    await pool.close_call("c1")
    assert await pool.peer_connections() == 0
