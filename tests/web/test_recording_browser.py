"""Recording with consent (issue 23) in the pages, driven in headless Chromium: where
the department records, the expert asks, the kiosk's citizen reads what, why, who
and how long and agrees with one tap, the indicator shows on both pages, the
citizen stops it; a second request declined shows nothing."""

from typing import Any

import pytest
from playwright.async_api import expect

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
