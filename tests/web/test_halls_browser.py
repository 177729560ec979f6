"""The clerk's list of today and the admin's halls, driven in Chromium as their
users do: a consultation without a case number found at the window, by the list
and by the reference the kiosk showed; halls created, opened to the file chooser
and staffed on the admin page, and named on the board."""

from typing import Any

import pytest
from playwright.async_api import expect

from harness.chromium import open_logged_in
from storage.references import reference_of
from tests.conftest import ClientFactory, RunningServer, active_call, login_session
from tests.web.page_tour import DESK_VIEWPORT

pytestmark = pytest.mark.browser


async def api_json(server: RunningServer, username: str, path: str) -> Any:
    session = await login_session(server, username)
    async with session, session.get(f"{server.url}{path}") as response:
        assert response.status == 200
        return await response.json()


async def test_today_list_finds_a_consultation_without_a_case_number(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """The issue's case: without a case number the clerk could not find the
    consultation at all. Today's list of the clerk's hall shows it, and the
    reference the citizen reads out finds it too."""
    server = sqlite_server
    _kiosk, expert, call_id = await active_call(server, connect)  # kiosk01, hall city
    await expert.end(call_id)
    elsewhere = await connect(server, "kiosk02")  # hall district: not the clerk's
    await elsewhere.request("housing")
    reference = reference_of(call_id)
    spoken = f"{reference[:3]} {reference[3:]}"

    clerk = await open_logged_in(browser, server, "clerk", "clerk", viewport=DESK_VIEWPORT)
    today = clerk.get_by_test_id("today-list")
    row = today.get_by_test_id("consultation-row")
    await row.first.wait_for()
    assert await row.count() == 1
    text = await row.inner_text()
    assert spoken in text and "（无单号）" in text and "市民中心" in text and "市场监管局" in text
    await row.click()
    await clerk.wait_for_selector("#consultation-panel[data-loaded]")
    await clerk.wait_for_selector("#link-case:visible")

    # Filters: another department shows nothing, and says so.
    await clerk.get_by_test_id("today-department").select_option("housing")
    await clerk.wait_for_selector("#today-message:has-text('今天没有符合条件的咨询')")
    assert await row.count() == 0
    await clerk.get_by_test_id("today-department").select_option("")
    await row.first.wait_for()

    # The reference as a clerk types what the citizen reads out: lower case, a space.
    await clerk.get_by_test_id("case-search").fill(spoken.lower())
    await clerk.get_by_test_id("case-search").press("Enter")
    found = clerk.get_by_test_id("consultation-list").get_by_test_id("consultation-row")
    await found.first.wait_for()
    assert await found.count() == 1
    assert spoken in await found.inner_text()
    # One list at a time: today's is out of sight (and emptied) while searching.
    assert not await clerk.locator("#today-section").is_visible()
    assert await row.count() == 0
    await found.click()
    await clerk.wait_for_selector("#consultation-panel[data-loaded]")
    # Back to today's list.
    await clerk.get_by_test_id("today-show").click()
    await row.first.wait_for()
    await clerk.context.close()


async def test_admin_creates_a_hall_opens_it_to_the_file_chooser_and_staffs_it(
    browser: Any, sqlite_server: RunningServer
) -> None:
    server = sqlite_server
    admin = await open_logged_in(browser, server, "admin", "admin", viewport=DESK_VIEWPORT)
    # The board names each hall.
    await admin.wait_for_selector("[data-testid=board-hall-city]:has-text('市民中心')")
    await admin.wait_for_selector("[data-testid=board-hall-district]:has-text('区政务服务分中心')")

    await admin.get_by_test_id("tab-halls").click()
    await admin.get_by_test_id("hall-code").fill("east")
    await admin.get_by_test_id("hall-name-zh").fill("东街道便民服务中心")
    await admin.get_by_test_id("hall-name-en").fill("East Street Service Centre")
    await admin.get_by_test_id("hall-district").fill("东城区")
    await admin.get_by_test_id("hall-save").click()
    east = admin.get_by_test_id("hall-row-east")
    await east.wait_for()
    # A new hall's kiosks do not offer the file chooser until the admin allows it.
    state = east.get_by_test_id("hall-file-chooser-state")
    assert await state.inner_text() == "不可选择本机文件"
    await east.get_by_test_id("hall-file-chooser-toggle").click()
    await expect(state).to_have_text("可选择本机文件")
    # The demo's clerk also works here; kiosk02 moves here.
    await east.get_by_test_id("hall-clerk-select").select_option("clerk")
    await east.get_by_test_id("hall-clerk-add").click()
    # The name in the hall's list of clerks (not an option of the chooser beside it).
    await expect(east.get_by_test_id("hall-clerk")).to_contain_text("clerk")
    await east.get_by_test_id("hall-kiosk-select").select_option("kiosk02")
    await east.get_by_test_id("hall-kiosk-add").click()
    await expect(east.get_by_test_id("hall-kiosk")).to_have_text("kiosk02")
    # Renamed through the form; the code stays.
    await east.get_by_test_id("hall-edit").click()
    assert await admin.get_by_test_id("hall-code").is_disabled()
    await admin.get_by_test_id("hall-name-en").fill("East Street Centre")
    await admin.get_by_test_id("hall-level").select_option("street")
    await admin.get_by_test_id("hall-save").click()
    await admin.wait_for_selector("#hall-message:has-text('已保存')")
    await admin.context.close()

    halls = {h["code"]: h for h in (await api_json(server, "admin", "/api/v1/halls"))["halls"]}
    assert halls["east"] == {
        "code": "east",
        "name_zh": "东街道便民服务中心",
        "name_en": "East Street Centre",
        "level": "street",
        "district": "东城区",
        "allow_file_chooser": True,
    }
    accounts = {
        a["username"]: a for a in (await api_json(server, "admin", "/api/v1/accounts"))["accounts"]
    }
    assert accounts["clerk"]["halls"] == ["city", "east"]
    assert accounts["kiosk02"]["hall"] == "east"
    me = await api_json(server, "kiosk02", "/api/v1/me")
    assert me["hall"]["code"] == "east" and me["hall"]["allow_file_chooser"] is True
