"""The kiosk's privacy wipe when the network is down at that moment: the citizen
who walked away must not be waiting on (or, answered, talking through) the next
citizen's screen."""

from typing import Any

import pytest

from harness.chromium import open_logged_in, request_from_kiosk
from tests.conftest import RunningServer, ServerFactory

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 1080, "height": 1920}


async def open_records(server: RunningServer) -> list[Any]:
    return [r for r in await server.storage.consultations.find() if r.state.value != "ended"]


async def test_a_wipe_whose_cancel_never_arrived_takes_the_queue_place_back_on_the_fresh_page(
    browser: Any, start_server: ServerFactory
) -> None:
    # A grace period long enough for the kiosk to be back before its place is dropped.
    server = await start_server(grace_period=120.0)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=PORTRAIT)
    await request_from_kiosk(kiosk, "market")
    await kiosk.wait_for_selector("#waiting-screen:not([hidden])")
    assert len(await open_records(server)) == 1

    # The citizen leaves while the kiosk is offline: "cancel" cannot reach the server,
    # and the wipe's fresh page does not load until the network is back.
    await kiosk.context.set_offline(True)
    await kiosk.wait_for_selector("[data-testid=connection-banner]:visible", timeout=15000)
    async with kiosk.expect_event("framenavigated", timeout=30000):
        await kiosk.get_by_test_id("cancel-request").click()
    await kiosk.context.set_offline(False)
    await kiosk.reload()  # as the kiosk's browser does once the network is back
    await kiosk.wait_for_selector("body[data-ready]")

    # The next citizen sees the first screen, and the first citizen's place is given up.
    for _ in range(100):
        if not await open_records(server):
            break
        await kiosk.wait_for_timeout(100)
    assert await open_records(server) == []
    await kiosk.wait_for_timeout(500)
    assert await kiosk.locator("#start-screen").is_visible()
    assert not await kiosk.locator("#waiting-screen").is_visible()
