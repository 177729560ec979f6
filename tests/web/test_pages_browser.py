"""The minimal pages driven in headless Chromium against the real server."""

from typing import Any

import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.browser


async def open_logged_in(browser: Any, server: RunningServer, page_name: str, username: str) -> Any:
    context = await browser.new_context()
    context.set_default_timeout(10000)
    page = await context.new_page()
    await page.goto(f"{server.url}/{page_name}")
    await page.wait_for_selector("body[data-ready]")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill("demo1234")
    await page.get_by_test_id("login-submit").click()
    return page


async def test_wrong_password_shows_an_error_in_chinese(
    browser: Any, sqlite_server: RunningServer
) -> None:
    page = await browser.new_page()
    await page.goto(f"{sqlite_server.url}/clerk")
    await page.wait_for_selector("body[data-ready]")
    await page.get_by_test_id("login-username").fill("clerk")
    await page.get_by_test_id("login-password").fill("wrong-password")
    await page.get_by_test_id("login-submit").click()
    await page.wait_for_selector("#login-message:has-text('用户名或密码错误')")


async def test_kiosk_request_shows_in_the_expert_queue_and_the_call_starts(
    browser: Any, sqlite_server: RunningServer
) -> None:
    expert = await open_logged_in(browser, sqlite_server, "expert", "expert_market")
    availability = expert.get_by_test_id("availability")
    await availability.wait_for()
    await expert.wait_for_function(
        "document.querySelector('[data-testid=availability]').textContent.length > 0"
    )
    kiosk = await open_logged_in(browser, sqlite_server, "kiosk", "kiosk01")
    await kiosk.get_by_test_id("case-number").fill("SL-555")
    await kiosk.get_by_test_id("department-market").click()
    await kiosk.get_by_test_id("queue-position").wait_for()
    await kiosk.wait_for_selector("[data-testid=queue-position]:has-text('第 1 位')")
    await expert.wait_for_selector("[data-testid=queue-list] li:has-text('SL-555')")

    await availability.click()
    await expert.wait_for_selector("[data-testid=availability][aria-pressed=true]")
    await expert.get_by_test_id("accept-call").click()
    await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")
    # Both see and hear each other through the relay (fake camera and microphone).
    for page in (kiosk, expert):
        await page.wait_for_function(
            "Number(document.querySelector('[data-testid=remote-video]')"
            ".dataset.framesDecoded || 0) > 0 && Number(document.querySelector("
            "'[data-testid=remote-video]').dataset.audioPackets || 0) > 0",
            timeout=20000,
        )
    await kiosk.get_by_test_id("chat-input").fill("你好，我想咨询")
    await kiosk.get_by_test_id("chat-send").click()
    await expert.wait_for_selector("#chat-list:has-text('你好，我想咨询')")
    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await kiosk.get_by_test_id("rating-5").click()
    await expert.get_by_test_id("outcome").select_option("answered")
    await expert.get_by_test_id("save-outcome").click()
    await expert.wait_for_selector("#outcome-saved:has-text('已保存')")
    # After the rating the kiosk wipes itself and returns to the start screen.
    await kiosk.wait_for_selector("[data-testid=department-market]", timeout=15000)
    assert await kiosk.get_by_test_id("case-number").input_value() == ""
    assert "你好，我想咨询" not in await kiosk.content()
    records = await sqlite_server.storage.consultations.find(case_number="SL-555")
    assert records[0].rating == 5 and records[0].outcome is not None


async def test_language_switch_changes_the_login_form(
    browser: Any, sqlite_server: RunningServer
) -> None:
    page = await browser.new_page()
    await page.goto(f"{sqlite_server.url}/admin")
    await page.wait_for_selector("body[data-ready]")
    assert await page.get_by_test_id("login-submit").inner_text() == "登录"
    await page.get_by_test_id("lang-toggle").click()
    assert await page.get_by_test_id("login-submit").inner_text() == "Log in"


async def test_documents_pass_both_ways_and_the_clerk_attaches_and_downloads(
    browser: Any, sqlite_server: RunningServer, tmp_path: Any
) -> None:
    photo = tmp_path / "证件照.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    form = tmp_path / "reply-form.pdf"
    form.write_bytes(b"%PDF-1.4\n" + b"form " * 5000 + b"\n%%EOF\n")
    expert = await open_logged_in(browser, sqlite_server, "expert", "expert_market")
    await expert.wait_for_selector("[data-testid=availability]:not(:empty)")
    await expert.get_by_test_id("availability").click()
    await expert.wait_for_selector("[data-testid=availability][aria-pressed=true]")
    kiosk = await open_logged_in(browser, sqlite_server, "kiosk", "kiosk01")
    await kiosk.get_by_test_id("case-number").fill("SL-777")
    await kiosk.get_by_test_id("department-market").click()
    await expert.get_by_test_id("accept-call").click()
    await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")

    await kiosk.get_by_test_id("file-input").set_input_files(str(photo))
    await expert.wait_for_selector("[data-testid=file-list] >> text=证件照.png")
    await expert.wait_for_selector("[data-testid=file-list] img.preview")
    await expert.get_by_test_id("file-input").set_input_files(str(form))
    await kiosk.wait_for_selector("[data-testid=file-list] >> text=reply-form.pdf")

    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await kiosk.get_by_test_id("rating-4").click()

    clerk = await open_logged_in(browser, sqlite_server, "clerk", "clerk")
    await clerk.get_by_test_id("case-search").fill("SL-777")
    await clerk.get_by_test_id("case-search").press("Enter")
    await clerk.get_by_test_id("consultation-row").first.click()
    await clerk.wait_for_selector("[data-testid=file-list] >> text=证件照.png")
    await clerk.get_by_test_id("attach-file").first.click()
    link = clerk.get_by_test_id("download-file").first
    await link.wait_for()
    async with clerk.expect_download() as info:
        await link.click()
    download = await info.value
    saved = tmp_path / "downloaded"
    await download.save_as(str(saved))
    assert saved.read_bytes() == photo.read_bytes()
