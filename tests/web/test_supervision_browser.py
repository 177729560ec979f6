"""Listening in and stepping in (issue 23) in the pages, driven in headless Chromium:
a kiosk and an expert in a call; the kiosk always shows that calls may be listened
to; the supervisor's page listens (both sides' pictures play there) and the
expert's page says so, the kiosk's does not; the supervisor steps in (the kiosk
then shows them like anyone else, and gets their picture), then leaves."""

from typing import Any

import pytest
from playwright.async_api import expect

from harness.chromium import open_logged_in, wait_for_js, wait_remote_videos
from tests.conftest import ServerFactory
from tests.web.test_three_way_browser import call_of_two

pytestmark = pytest.mark.browser

PLAYING = (
    "(() => {{ const v = [...document.querySelectorAll('[data-testid={testid}]')]"
    ".filter((e) => !e.closest('[hidden]'));"
    " return v.length >= {count} && v.every((e) => e.videoWidth > 0 && e.currentTime > 0.5); }})()"
)


async def test_a_supervisor_listens_then_steps_in_and_leaves(
    browser: Any, start_server: ServerFactory
) -> None:
    server = await start_server(ring_timeout=30.0, grace_period=30.0)
    kiosk, expert = await call_of_two(browser, server)
    await expect(kiosk.get_by_test_id("monitor-notice")).to_be_visible()
    await expect(kiosk.get_by_test_id("monitor-notice")).to_contain_text("旁听")
    await expect(expert.get_by_test_id("monitor-notice")).to_be_hidden()
    await expect(expert.get_by_test_id("being-listened")).to_be_hidden()

    call = (await server.storage.consultations.find(department="market"))[0]
    supervisor = await open_logged_in(browser, server, "supervisor", "supervisor")
    row = supervisor.get_by_test_id("live-calls").get_by_test_id("live-call")
    await expect(row).to_have_count(1)
    await row.get_by_test_id("listen-call").click()
    await expect(supervisor.get_by_test_id("listen-panel")).to_be_visible()
    # Both sides' pictures play on the supervisor's page.
    await wait_for_js(supervisor, PLAYING.format(testid="listen-video", count=2), timeout=30000)
    await expect(expert.get_by_test_id("being-listened")).to_be_visible()
    await expect(kiosk.get_by_test_id("being-listened")).to_be_hidden()
    # Nobody in the call counts the listener among them.
    listed = kiosk.get_by_test_id("participant-list").locator("li[data-participant=supervisor]")
    await expect(listed).to_have_count(0)

    # Stepping in ends the listening and makes the supervisor a participant.
    await row.get_by_test_id("join-call").click()
    await expect(supervisor.get_by_test_id("step-out")).to_be_visible()
    await expect(expert.get_by_test_id("being-listened")).to_be_hidden()
    try:
        await expect(listed).to_have_count(1, timeout=30_000)
    except AssertionError as exc:
        # What the kiosk shows instead, and what the server holds.
        shown = await kiosk.get_by_test_id("participant-list").inner_html()
        live = await server.hub.consultations.call(call.id)
        raise AssertionError(f"{exc}\nkiosk list: {shown}\nseats: {live}") from None
    await expect(listed).to_contain_text("服务中心督查")
    # The kiosk gets the supervisor's picture and sound (Chromium's fake devices) too.
    shown = await wait_remote_videos(kiosk, 2)
    assert sorted(v["participant"] for v in shown) == ["expert", "supervisor"], shown
    await supervisor.get_by_test_id("step-out").click()
    await expect(listed).to_have_count(0)
    await expect(supervisor.get_by_test_id("step-out")).to_be_hidden()

    actions = [e.action for e in await server.storage.audit.entries() if e.subject == call.id]
    for action in ("consultation.listen", "consultation.step_in", "consultation.leave"):
        assert action in actions, actions
    legs = await server.storage.legs.of(call.id)
    assert [(leg.role.value, leg.left_at is not None) for leg in legs][-1] == ("supervisor", True)
