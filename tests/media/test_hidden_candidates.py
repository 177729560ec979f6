"""A client whose only ICE candidates are mDNS names (``<uuid>.local``: a browser
without camera permission, Firefox with fake devices) still gets media: the relay
waits for its connectivity checks instead of failing at once."""

import re
import uuid

from harness.peers import CallPeer, wait_until
from tests.conftest import ClientFactory, RunningServer, active_call
from tests.media.test_media_api import media_of, post_offer


def hide_addresses(sdp: str) -> str:
    """Every candidate's address replaced by an mDNS name nobody can resolve."""
    sdp = re.sub(
        r"(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)",
        lambda m: f"{m.group(1)}{uuid.uuid4()}.local{m.group(3)}",
        sdp,
    )
    return re.sub(r"c=IN IP4 \S+", "c=IN IP4 0.0.0.0", sdp)


async def test_a_client_with_only_mdns_candidates_gets_media_both_ways(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, _call_id = await active_call(sqlite_server, connect)
    hidden, plain = CallPeer(), CallPeer()
    try:
        url, token = await media_of(kiosk)
        offer = hide_addresses(await hidden.offer())
        assert ".local" in offer and "127.0.0.1" not in offer
        status, answer, _ = await post_offer(sqlite_server, url, token, offer)
        assert status == 201, answer
        await hidden.accept(answer)
        url, token = await media_of(expert)
        status, answer, _ = await post_offer(sqlite_server, url, token, await plain.offer())
        assert status == 201
        await plain.accept(answer)
        assert await wait_until(
            lambda: len(hidden.received.counters) > 15 and len(plain.received.counters) > 15,
            timeout=30,
        )
    finally:
        await hidden.close()
        await plain.close()
