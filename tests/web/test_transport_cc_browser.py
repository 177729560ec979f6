"""Chromium through the relay negotiates transport-wide congestion control on
both legs, stamps its packets, and the relay answers with feedback, so that
each browser measures its own link; the relay stamps its own numbers on what
it sends, and each browser's feedback on them reaches the relay's estimate of
its downlink (the ramp-up and the settling behind a narrow link are measured
by bench/rampup.py and bench/congestion.py: timings stay out of tests)."""

import asyncio
from typing import Any

import pytest

from media.pool import LocalRelayPool
from tests.conftest import RunningServer
from tests.web.test_pages_browser import call_in_browsers
from web.keys import MEDIA

pytestmark = pytest.mark.browser


async def test_chromium_gets_transport_feedback_from_the_relay_on_both_legs(
    browser: Any, sqlite_server: RunningServer
) -> None:
    await call_in_browsers(browser, sqlite_server)
    pool = sqlite_server.app[MEDIA]
    assert isinstance(pool, LocalRelayPool)
    (relay,) = pool.relays.values()
    assert {p: leg.transport_cc_id is not None for p, leg in relay.legs.items()} == {
        "p0": True,  # the kiosk's leg (legs are named by position in the call)
        "p1": True,  # the expert's
    }
    for _ in range(100):
        if pool.counters.transport_feedback > 10:
            break
        await asyncio.sleep(0.1)
    assert pool.counters.transport_feedback > 10
    # Chromium stamped its packets: the relay recorded arrivals on both legs.
    for leg in relay.legs.values():
        assert leg.arrivals is not None and leg.arrivals.reported > 0
    # Each browser reports on the relay's packets: the relay measures both downlinks.
    for _ in range(100):
        if all(leg.feedback_packets > 10 for leg in relay.legs.values()):
            break
        await asyncio.sleep(0.1)
    assert {p: leg.feedback_packets > 10 for p, leg in relay.legs.items()} == {
        "p0": True,  # the kiosk's leg (legs are named by position in the call)
        "p1": True,  # the expert's
    }
    for leg in relay.legs.values():
        assert leg.downlink.acknowledged() is not None
