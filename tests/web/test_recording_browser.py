"""Recording with consent (issue 23) in the pages, driven in headless Chromium: where
the department records, the expert asks, the kiosk's citizen reads what, why, who
and how long and agrees with one tap, the indicator shows on both pages, the
citizen stops it; a second request declined shows nothing."""

import json
from typing import Any

import pytest
from playwright.async_api import expect

from harness.chromium import open_logged_in, wait_for_js, wait_remote_videos
from tests.conftest import ServerFactory
from tests.web.test_three_way_browser import call_of_two

pytestmark = pytest.mark.browser


async def test_the_citizen_agrees_both_pages_show_it_and_the_citizen_stops_it(
    browser: Any, start_server: ServerFactory
) -> None:
    server = await start_server(ring_timeout=30.0, grace_period=30.0)
    await server.storage.departments.change("market", {"recording": True})
    kiosk, expert = await call_of_two(browser, server)
    ask = expert.get_by_test_id("record-request")
    await expect(ask).to_be_visible()
    for page in (kiosk, expert):
        await expect(page.get_by_test_id("recording-indicator")).to_be_hidden()
    await ask.click()
    consent = kiosk.get_by_test_id("record-consent")
    await expect(consent).to_be_visible()
    for words in ("录制什么", "为什么", "谁能看", "保存多久"):
        await expect(consent).to_contain_text(words)
    await kiosk.get_by_test_id("record-consent-yes").click()
    for page in (kiosk, expert):
        await expect(page.get_by_test_id("recording-indicator")).to_be_visible()
    await expect(ask).to_be_hidden()
    await kiosk.get_by_test_id("record-stop").click()
    for page in (kiosk, expert):
        await expect(page.get_by_test_id("recording-indicator")).to_be_hidden()

    # Asked again, declined: nothing shows, the expert may ask another time.
    await ask.click()
    await kiosk.get_by_test_id("record-consent-no").click()
    await expect(consent).to_be_hidden()
    await expect(ask).to_be_enabled()
    await expect(kiosk.get_by_test_id("recording-indicator")).to_be_hidden()
    calls = await server.storage.consultations.find(department="market")
    consents = await server.storage.recording_consents.of(calls[0].id)
    assert [c.accepted for c in consents] == [True, False]
    assert {c.text_version for c in consents} == {"rec-2026-12"}


async def test_the_supervisor_plays_a_call_recorded_from_chromium(
    browser: Any, start_server: ServerFactory
) -> None:
    """Chromium's own VP8 and Opus, through the relay into a recording that the
    supervisor's page lists and plays."""
    server = await start_server(ring_timeout=30.0, grace_period=30.0)
    await server.storage.departments.change("market", {"recording": True})
    kiosk, expert = await call_of_two(browser, server)
    await expert.get_by_test_id("record-request").click()
    await kiosk.get_by_test_id("record-consent-yes").click()
    await expect(expert.get_by_test_id("recording-indicator")).to_be_visible()
    seen = await wait_remote_videos(expert, 1)
    # Some seconds of pictures recorded.
    await wait_remote_videos(expert, 1, more_than=seen[0]["frames"] + 60)
    await expert.get_by_test_id("record-stop").click()
    await expect(expert.get_by_test_id("recording-indicator")).to_be_hidden()

    supervisor = await open_logged_in(browser, server, "supervisor", "supervisor")
    rows = supervisor.get_by_test_id("recordings").get_by_test_id("recording")
    for _ in range(40):
        if await rows.count():
            break
        await supervisor.get_by_test_id("supervisor-refresh").click()
        await supervisor.wait_for_timeout(500)
    await expect(rows).to_have_count(1)
    await rows.first.get_by_test_id("play-recording").click()
    player = supervisor.get_by_test_id("recording-player")
    await expect(player).to_be_visible()
    await wait_for_js(
        supervisor,
        "(() => { const v = document.querySelector('[data-testid=recording-player]');"
        " return v.readyState >= 2 && v.videoWidth > 0 && v.currentTime > 0.5; })()",
        timeout=20000,
    )
    call = (await server.storage.consultations.find(department="market"))[0]
    recordings = await server.storage.recordings.of(call.id)
    tracks = json.loads(recordings[0].tracks)
    assert {(t["place"], t["codec"]) for t in tracks} >= {("video", "vp8"), ("audio", "opus")}
    assert all(t["frames"] > 0 for t in tracks)
    actions = [e.action for e in await server.storage.audit.entries()]
    assert "recording.play" in actions
