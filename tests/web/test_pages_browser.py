"""The pages driven in headless Chromium (fake camera and microphone) against the
real server: the whole consultation, the clerk's window, administration, a
network drop, and both languages."""

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from harness.chromium import (
    FRAMES_DECODED,
    chat_from,
    choose_department,
    go_available,
    launch_chromium,
    open_logged_in,
    request_from_kiosk,
    wait_for_js,
    wait_media_both_ways,
)
from signaling.client import KioskClient
from signaling.messages import ConsultationView
from tests.conftest import ClientFactory, RunningServer, active_call, login_session, upload_file

pytestmark = pytest.mark.browser

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\n" + b"% body\n" * 300 + b"%%EOF\n"
DIGITS = re.compile(r"\d+")
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
LETTERS = re.compile(r"[A-Za-z\u3400-\u9fff]")

# Every visible string of the page: text outside translate="no" (names, chat,
# case numbers: what people typed), and placeholders. The language toggle is
# labelled in the other language on purpose.
VISIBLE_TEXTS = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (!text || el.closest('[translate=no], script, style, [data-testid=lang-toggle]')) continue;
    if (el.closest('svg') ? !el.closest('svg').checkVisibility() : !el.checkVisibility()) continue;
    out.push(text);
  }
  for (const el of document.querySelectorAll('[placeholder]')) {
    if (el.placeholder && el.checkVisibility()) out.push(el.placeholder);
  }
  return out;
}"""


async def call_in_browsers(browser: Any, server: RunningServer) -> tuple[Any, Any]:
    """A kiosk page and an expert page in a call with media flowing both ways."""
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01")
    await request_from_kiosk(kiosk, "market")
    await expert.get_by_test_id("accept-call").click()
    await wait_media_both_ways(kiosk, expert)
    return kiosk, expert


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


async def test_the_whole_consultation_and_the_wipe_after_it(
    browser: Any, sqlite_server: RunningServer, tmp_path: Path
) -> None:
    server = sqlite_server
    licence = tmp_path / "营业执照副本.pdf"
    licence.write_bytes(PDF)
    form = tmp_path / "变更申请表.pdf"
    form.write_bytes(PDF.replace(b"body", b"form"))
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await expert.wait_for_selector("[data-testid=availability]:not(:empty)")
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01")
    await kiosk.wait_for_selector("[data-testid=department-market]")

    # The case number typed on the on-screen keypad (it opens when the field is
    # touched), letters then digits.
    await kiosk.get_by_test_id("case-number").click()
    for key in ["switch", "S", "L", "switch", "-", "2", "4", "6", "8"]:
        await kiosk.get_by_test_id(f"key-{key}").click()
    assert await kiosk.get_by_test_id("case-number").input_value() == "SL-2468"
    await choose_department(kiosk, "market")
    # Device check: own picture and a moving microphone level.
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await wait_for_js(
        kiosk, "document.querySelector('[data-testid=device-preview]').videoWidth > 0"
    )
    await wait_for_js(kiosk, "document.querySelector('[data-testid=mic-level]').value > 0")
    await kiosk.get_by_test_id("device-check-continue").click()
    # Nobody of the department takes calls yet: the kiosk says so, no place or wait.
    await kiosk.wait_for_selector("[data-testid=queue-position]:has-text('现在没有专家在线')")
    await expert.wait_for_selector("[data-testid=queue-list] li:has-text('SL-2468')")

    await go_available(expert)
    await expert.wait_for_selector("[data-testid=offer-countdown]:has-text('秒')")
    await expert.get_by_test_id("accept-call").click()
    await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")
    await wait_media_both_ways(kiosk, expert)
    await kiosk.wait_for_selector("[data-testid=connection-quality]:not([data-level=unknown])")
    # Mute and camera off keep the connection and stop what is sent.
    local_track = "document.querySelector('[data-testid=local-video]').srcObject.get{}Tracks()[0]"
    await kiosk.get_by_test_id("toggle-mic").click()
    await kiosk.get_by_test_id("toggle-camera").click()
    assert await kiosk.evaluate(f"{local_track.format('Audio')}.enabled") is False
    assert await kiosk.evaluate(f"{local_track.format('Video')}.enabled") is False
    assert await kiosk.get_by_test_id("toggle-mic").get_attribute("aria-pressed") == "true"
    await kiosk.get_by_test_id("toggle-mic").click()
    await kiosk.get_by_test_id("toggle-camera").click()
    assert await kiosk.evaluate(f"{local_track.format('Audio')}.enabled") is True
    assert await kiosk.evaluate(f"{local_track.format('Video')}.enabled") is True

    # A still of the document in front of the camera, and a PDF.
    await kiosk.get_by_test_id("show-document").click()
    await wait_for_js(kiosk, "document.querySelector('#capture-video').videoWidth > 0")
    await kiosk.get_by_test_id("capture-take").click()
    await kiosk.wait_for_selector("[data-testid=capture-preview]:visible")
    await kiosk.get_by_test_id("capture-send").click()
    await kiosk.get_by_test_id("file-input").set_input_files(str(licence))
    await expert.wait_for_selector("[data-testid=file-list] img.preview[alt^=document-]")
    await expert.wait_for_selector("[data-testid=file-list] li:has-text('营业执照副本.pdf')")
    await expert.locator(
        "[data-testid=file-list] li:has-text('营业执照副本.pdf') [data-testid=file-preview]"
    ).click()
    await expert.wait_for_selector("#preview-dialog[open] iframe")
    await expert.get_by_test_id("preview-close").click()
    await expert.get_by_test_id("file-input").set_input_files(str(form))
    await kiosk.wait_for_selector("[data-testid=file-list] li:has-text('变更申请表.pdf')")

    await chat_from(kiosk, expert, "请问需要带原件吗")
    await chat_from(expert, kiosk, "需要带身份证原件")

    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await expert.get_by_test_id("outcome").select_option("follow_up")
    await expert.get_by_test_id("notes").fill("补充材料后再办")
    await expert.get_by_test_id("save-outcome").click()
    await expert.wait_for_selector("[data-testid=outcome-saved]:has-text('已保存')")
    await expert.wait_for_selector("[data-testid=history-row]:has-text('SL-2468')")

    await kiosk.evaluate("localStorage.setItem('wl_lang', 'zh-CN')")
    await kiosk.evaluate("window.beforeWipe = true")
    await kiosk.get_by_test_id("rating-satisfied").click()
    # The wipe loads the page anew on the start screen, still logged in.
    await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=15000)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    html = await kiosk.content()
    for trace in [
        "SL-2468",
        "营业执照副本",
        "变更申请表",
        "document-",
        "请问需要带原件吗",
        "需要带身份证原件",
    ]:
        assert trace not in html
    storage = await kiosk.evaluate("[localStorage.length, sessionStorage.length]")
    assert storage == [0, 0]
    assert await kiosk.get_by_test_id("case-number").input_value() == ""
    record = (await server.storage.consultations.find(case_number="SL-2468"))[0]
    assert record.rating == 4 and record.outcome is not None and record.notes == "补充材料后再办"
    files = await login_session(server, "clerk")
    async with files, files.get(f"{server.url}/api/v1/consultations/{record.id}/files") as response:
        names = sorted(f["name"] for f in (await response.json())["files"])
    assert names[1:] == ["变更申请表.pdf", "营业执照副本.pdf"] and names[0].startswith("document-")


async def test_clerk_attaches_and_downloads_what_the_kiosk_sent(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory, tmp_path: Path
) -> None:
    server = sqlite_server
    _kiosk, expert_client, call_id = await active_call(server, connect, case_number="SL-777")
    photo = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    kiosk_http = await login_session(server, "kiosk01")
    async with kiosk_http:
        status, _ = await upload_file(server, kiosk_http, call_id, "证件照.png", photo)
    assert status == 201
    await expert_client.end(call_id)

    clerk = await open_logged_in(browser, server, "clerk", "clerk")
    await clerk.get_by_test_id("case-search").fill("SL-777")
    await clerk.get_by_test_id("case-search").press("Enter")
    row = clerk.get_by_test_id("consultation-row").first
    await row.wait_for()
    assert "SL-777" in await row.inner_text() and "市场监管专家" in await row.inner_text()
    await row.click()
    await clerk.wait_for_selector("[data-testid=file-list] li:has-text('证件照.png') img.preview")
    await clerk.get_by_test_id("attach-category").first.select_option("supplementary")
    await clerk.get_by_test_id("attach-file").first.click()
    link = clerk.get_by_test_id("download-file").first
    await link.wait_for()
    assert "补充材料" in await clerk.get_by_test_id("case-attachments").inner_text()
    async with clerk.expect_download() as info:
        await link.click()
    download = await info.value
    saved = tmp_path / "downloaded"
    await download.save_as(str(saved))
    assert saved.read_bytes() == photo


async def test_clerk_links_a_consultation_without_case_number(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    _kiosk, expert, call_id = await active_call(sqlite_server, connect)
    await expert.end(call_id)
    clerk = await open_logged_in(browser, sqlite_server, "clerk", "clerk")
    await clerk.get_by_test_id("case-search").fill(call_id)
    await clerk.get_by_test_id("case-search").press("Enter")
    await clerk.get_by_test_id("consultation-row").first.click()
    await clerk.get_by_test_id("link-case-input").fill("bad case!")
    await clerk.get_by_test_id("link-case").click()
    await clerk.wait_for_selector("#link-message:has-text('单号只能包含')")
    await clerk.get_by_test_id("link-case-input").fill("LK-100")
    # Linking is once and audited: it takes a reason.
    await clerk.get_by_test_id("link-case").click()
    await clerk.wait_for_selector("#link-message:has-text('请填写关联原因')")
    await clerk.get_by_test_id("link-reason-input").fill("市民当面补交受理单号")
    await clerk.get_by_test_id("link-case").click()
    await clerk.wait_for_selector("[data-testid=consultation-row]:has-text('LK-100')")
    assert (await sqlite_server.storage.consultations.get(call_id)).case_number == "LK-100"


async def log_in_holding(browser: Any, server: RunningServer, page_name: str, username: str) -> Any:
    """A page logged in while its request for the halls is held: (page, release)
    once the page has asked for them."""
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold(route: Any) -> None:
        held.set()
        await release.wait()
        await route.continue_()

    async def route_halls(page: Any) -> None:
        await page.route("**/api/v1/halls", hold)

    page = await open_logged_in(
        browser, server, page_name, username, prepare=route_halls, wait_for_app=False
    )
    await asyncio.wait_for(held.wait(), 15)
    return page, release


async def test_what_the_clerk_types_while_the_page_loads_its_names_is_not_lost(
    browser: Any, sqlite_server: RunningServer
) -> None:
    """The clerk's page is on screen while it loads departments and halls; a search
    typed then (Enter) was lost, its listener not there yet."""
    page, release = await log_in_holding(browser, sqlite_server, "clerk", "clerk")
    await page.get_by_test_id("case-search").fill("？？")
    await page.get_by_test_id("case-search").press("Enter")
    release.set()
    await expect(page.locator("#search-message")).not_to_be_empty()
    await page.context.close()


async def test_a_tab_the_admin_picks_while_the_lists_load_stays_chosen(
    browser: Any, sqlite_server: RunningServer
) -> None:
    """Once in CI the admin's departments tab, chosen while the page still loaded
    its lists after login, was taken back to the board when the loading ended.
    The halls' list is held here until the admin has chosen a tab."""
    page, release = await log_in_holding(browser, sqlite_server, "admin", "admin")
    await page.get_by_test_id("tab-departments").click()
    release.set()
    await page.wait_for_selector("[data-testid^=hall-row-]", state="attached")
    await expect(page.locator("#panel-departments")).to_be_visible()
    await (
        page.get_by_test_id("department-row-market").get_by_test_id("department-transfers").click()
    )
    await expect(page.get_by_test_id("transfer-target-social")).to_be_visible()
    await page.context.close()


async def test_admin_creates_a_department_and_an_expert_who_takes_a_call(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    admin = await open_logged_in(browser, server, "admin", "admin")
    await admin.get_by_test_id("tab-departments").click()
    await admin.get_by_test_id("department-code").fill("tax")
    await admin.get_by_test_id("department-name-zh").fill("税务局")
    await admin.get_by_test_id("department-name-en").fill("Tax Bureau")
    await admin.get_by_test_id("department-hours").fill("1-6 08:30-12:00")
    await admin.get_by_test_id("department-create").click()
    await admin.wait_for_selector(
        "[data-testid=department-row-tax]:has-text('周一至周六 08:30–12:00')"
    )
    await admin.get_by_test_id("department-code").fill("tax")
    await admin.get_by_test_id("department-name-zh").fill("重复")
    await admin.get_by_test_id("department-name-en").fill("Again")
    await admin.get_by_test_id("department-create").click()
    await admin.wait_for_selector("#department-message:has-text('已存在')")

    await admin.get_by_test_id("tab-accounts").click()
    await admin.get_by_test_id("account-username").fill("expert_tax")
    await admin.get_by_test_id("account-display-name").fill("税务专家")
    await admin.get_by_test_id("account-password").fill("tax-pass-2026")
    await admin.get_by_test_id("account-role").select_option("expert")
    await admin.get_by_test_id("account-department").select_option("tax")
    await admin.get_by_test_id("account-create").click()
    await admin.wait_for_selector("[data-testid=account-row-expert_tax]")

    expert = await open_logged_in(browser, server, "expert", "expert_tax", "tax-pass-2026")
    await go_available(expert)
    await admin.get_by_test_id("tab-board").click()
    await admin.wait_for_selector(
        "[data-testid=board-row-tax] [data-testid=experts-online]:has-text('1')"
    )
    kiosk: KioskClient = await connect(server, "kiosk02")
    view = await kiosk.request("tax", case_number="TX-1")
    await expert.get_by_test_id("accept-call").click()
    await expert.wait_for_selector("[data-testid=call-status]:has-text('TX-1')")
    active = await kiosk.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "active"
    )
    assert active.consultation_id == view.consultation_id
    await admin.get_by_test_id("tab-board").click()
    await admin.wait_for_selector(
        "[data-testid=board-row-tax] [data-testid=active-calls]:has-text('1')"
    )
    # The audit viewer shows what the admin did, and the chain is intact.
    await admin.get_by_test_id("tab-audit").click()
    await admin.wait_for_selector("[data-testid=audit-status][data-state=intact]")
    await admin.get_by_test_id("audit-action").fill("account")
    await admin.get_by_test_id("audit-search").click()
    await admin.wait_for_selector("[data-testid=audit-row]:has-text('expert_tax')")

    # Reset a password (the dialog refuses a short one) and disable an account.
    await admin.get_by_test_id("tab-accounts").click()
    await admin.locator("[data-testid=account-row-clerk] [data-testid=account-reset]").click()
    await admin.get_by_test_id("confirm-input").fill("short")
    await admin.get_by_test_id("confirm-yes").click()
    await admin.wait_for_selector("#confirm-dialog:has-text('至少 8 位')")
    await admin.get_by_test_id("confirm-input").fill("admin123")
    await admin.get_by_test_id("confirm-yes").click()
    await admin.wait_for_selector("#account-message:has-text('太容易被猜到')")
    await admin.locator("[data-testid=account-row-clerk] [data-testid=account-reset]").click()
    await admin.get_by_test_id("confirm-input").fill("new-window-pass")
    await admin.get_by_test_id("confirm-yes").click()
    await admin.wait_for_selector("#account-message:has-text('密码已重置')")
    clerk = await login_session(server, "clerk", "new-window-pass")
    await clerk.close()
    row = "[data-testid=account-row-expert_housing]"
    await admin.locator(f"{row} [data-testid=account-toggle]").click()
    await admin.wait_for_selector(f"{row}:has-text('已停用')")
    assert (await server.storage.accounts.get_by_username("expert_housing")).disabled


async def test_kiosk_offline_for_five_seconds_comes_back_by_itself(
    browser: Any, start_server: Any
) -> None:
    server = await start_server(grace_period=30.0)
    kiosk, expert = await call_in_browsers(browser, server)

    await kiosk.context.set_offline(True)
    await kiosk.wait_for_selector("[data-testid=connection-banner]:visible", timeout=15000)
    await kiosk.wait_for_timeout(5000)
    await kiosk.context.set_offline(False)
    # No click: the socket reconnects, the media connection is rebuilt if needed.
    await kiosk.wait_for_selector("[data-testid=connection-banner]", state="hidden", timeout=30000)
    await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")
    after = [await page.evaluate(FRAMES_DECODED) for page in (kiosk, expert)]
    for page, seen in zip((kiosk, expert), after, strict=True):
        await wait_for_js(page, f"{FRAMES_DECODED} > {seen + 30}", timeout=30000)
    record = (await server.storage.consultations.find())[0]
    assert record.state.value == "active"


async def test_kiosk_idle_timeout_wipes_what_was_typed(
    browser: Any, sqlite_server: RunningServer
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{sqlite_server.url}/kiosk?idle=10")
    await page.wait_for_selector("body[data-ready]")
    await page.get_by_test_id("login-username").fill("kiosk01")
    await page.get_by_test_id("login-password").fill("demo1234")
    await page.get_by_test_id("login-submit").click()
    await page.get_by_test_id("case-number").fill("ID-4242")
    await page.get_by_test_id("lang-toggle").click()
    await page.evaluate("window.beforeWipe = true")
    await wait_for_js(page, "window.beforeWipe === undefined", timeout=30000)
    await page.wait_for_selector("[data-testid=department-market]")
    assert await page.get_by_test_id("case-number").input_value() == ""
    assert "ID-4242" not in await page.content()
    # The next citizen starts in Chinese.
    assert await page.get_by_test_id("lang-toggle").inner_text() == "English"
    # Waiting needs no touching: the kiosk asks before giving the place up.
    await request_from_kiosk(page, "market")
    await page.wait_for_selector("[data-testid=queue-position]:has-text('现在没有专家在线')")
    await page.wait_for_selector("[data-testid=idle-dialog][open]", timeout=30000)
    await page.get_by_test_id("idle-stay").click()
    await page.wait_for_selector("[data-testid=idle-dialog]", state="hidden")
    state = await sqlite_server.storage.consultations.find()
    assert [r.state.value for r in state] == ["waiting"]


async def assert_switches_language(page: Any) -> None:
    """Every visible string is Chinese, English after the toggle, and the same Chinese
    after toggling back. A call's live notices (the connection's quality, a wait that
    ends) may change between two readings: the round is read again then, a few times
    at most, and what is read must always be in the one language."""
    for attempt in range(5):
        chinese = await page.evaluate(VISIBLE_TEXTS)
        assert chinese, "nothing visible"
        for text in chinese:
            if LETTERS.search(text):
                assert CJK.search(text), f"not Chinese: {text!r}"
        await page.get_by_test_id("lang-toggle").click()
        english = await page.evaluate(VISIBLE_TEXTS)
        for text in english:
            assert not CJK.search(text), f"Chinese left after switching: {text!r}"
        await page.get_by_test_id("lang-toggle").click()
        # Counters tick between the readings ("已等待 4 秒" -> "5 秒"): compare without digits.
        again = await page.evaluate(VISIBLE_TEXTS)
        same = [DIGITS.sub("#", t) for t in again] == [DIGITS.sub("#", t) for t in chinese]
        if same and len(english) == len(chinese):
            return
        if attempt < 4:
            await page.wait_for_timeout(500)
    assert len(english) == len(chinese)
    assert [DIGITS.sub("#", t) for t in again] == [DIGITS.sub("#", t) for t in chinese]


async def test_every_visible_string_switches_language(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, expert_client, call_id = await active_call(server, connect)
    await expert_client.chat(call_id, "你好")
    await expert_client.end(call_id)
    await expert_client.save_outcome(call_id, "answered")
    # Away, so that Q-1 waits without ringing: a ring (1 s here) that ends between
    # the Chinese and the English reading changes what the page shows.
    await expert_client.set_presence("away")
    waiting = await connect(server, "kiosk02")
    await waiting.request("market", case_number="Q-1")

    login = await browser.new_page()
    await login.goto(f"{server.url}/clerk")
    await login.wait_for_selector("body[data-ready]")
    await assert_switches_language(login)
    await login.goto(f"{server.url}/")
    await login.wait_for_selector("body[data-ready]")
    await assert_switches_language(login)

    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01")
    await kiosk.wait_for_selector("[data-testid=department-market]")
    await assert_switches_language(kiosk)
    await choose_department(kiosk, "market")
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await assert_switches_language(kiosk)

    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await expert.wait_for_selector("[data-testid=queue-list] li:has-text('Q-1')")
    await expert.wait_for_selector("[data-testid=history-row]")
    await assert_switches_language(expert)

    clerk = await open_logged_in(browser, server, "clerk", "clerk")
    # Today's list of the clerk's hall, a consultation opened from it.
    await clerk.get_by_test_id("today-list").get_by_test_id("consultation-row").first.click()
    await clerk.wait_for_selector("#consultation-panel[data-loaded]")
    await assert_switches_language(clerk)
    await clerk.get_by_test_id("case-search").fill(call_id)
    await clerk.get_by_test_id("case-search").press("Enter")
    await clerk.get_by_test_id("consultation-row").first.click()
    await clerk.wait_for_selector("#link-case:visible")
    await clerk.wait_for_selector("#consultation-panel[data-loaded]")
    await assert_switches_language(clerk)

    admin = await open_logged_in(browser, server, "admin", "admin")
    for tab in ("board", "departments", "halls", "accounts", "audit"):
        await admin.get_by_test_id(f"tab-{tab}").click()
        await admin.wait_for_timeout(300)
        await admin.wait_for_load_state("networkidle")
        await assert_switches_language(admin)


async def test_kiosk_explains_a_blocked_camera_and_microphone_and_still_calls(
    sqlite_server: RunningServer,
) -> None:
    """Without the fake permission UI, Chromium refuses camera and microphone
    (nobody answers the prompt): the device check says so and the citizen can
    still join the queue, to see and hear the expert and write."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        denying = await launch_chromium(playwright, grant_devices=False)
        try:
            kiosk = await open_logged_in(denying, sqlite_server, "kiosk", "kiosk01")
            await choose_department(kiosk, "market")
            message = kiosk.get_by_test_id("device-message")
            await kiosk.wait_for_selector("[data-testid=device-message][data-state=problem]")
            assert await message.get_attribute("data-camera") == "denied"
            assert "工作人员" in await message.inner_text()
            await kiosk.get_by_test_id("device-check-continue").click()
            await kiosk.wait_for_selector("[data-testid=queue-position]:not(:empty)")
            await kiosk.evaluate("window.beforeWipe = true")
            await kiosk.get_by_test_id("cancel-request").click()
            await wait_for_js(kiosk, "window.beforeWipe === undefined")
            await kiosk.wait_for_selector("[data-testid=department-market]")
            records = await sqlite_server.storage.consultations.find()
            assert [r.end_reason.value for r in records if r.end_reason] == ["abandoned"]
        finally:
            await denying.close()


async def test_kiosk_media_is_rebuilt_when_the_relay_loses_it(
    browser: Any, start_server: Any
) -> None:
    """Chromium's offline emulation leaves WebRTC on loopback alone, so the relay
    drops the kiosk's connection instead: the page offers anew by itself."""
    server = await start_server(grace_period=30.0)
    kiosk, expert = await call_in_browsers(browser, server)
    call_id = (await server.storage.consultations.find())[0].id

    assert await server.media.disconnect(call_id, "p0")  # the kiosk: position 0
    await kiosk.wait_for_selector(
        "[data-testid=connection-quality][data-level=poor]", timeout=20000
    )
    seen = [await page.evaluate(FRAMES_DECODED) for page in (kiosk, expert)]
    # A new connection: the kiosk's decoder starts again from zero, the expert's goes on.
    await wait_for_js(
        kiosk,
        f"{FRAMES_DECODED} > 30 && {FRAMES_DECODED} < {seen[0]}"
        f" || {FRAMES_DECODED} > {seen[0] + 30}",
        timeout=30000,
    )
    await wait_for_js(expert, f"{FRAMES_DECODED} > {seen[1] + 30}", timeout=30000)
    assert (await server.storage.consultations.get(call_id)).state.value == "active"


async def test_an_upload_the_server_lost_is_sent_again_from_its_start(
    browser: Any, sqlite_server: RunningServer, tmp_path: Path
) -> None:
    """A process restarted or a node lost mid-upload: the server answers 404 for the
    upload; the page begins the file again instead of failing."""
    kiosk, expert = await call_in_browsers(browser, sqlite_server)
    lost: list[str] = []

    async def lose_the_first_part(route: Any) -> None:
        if route.request.method == "PATCH" and not lost:
            lost.append(route.request.url)
            await route.fulfill(status=404, json={"error": {"code": "not_found"}})
        else:
            await route.continue_()

    await kiosk.route("**/api/v1/uploads/*", lose_the_first_part)
    content = b"%PDF-1.4\n" + b"% lost and sent again\n" * 80_000 + b"%%EOF\n"
    document = tmp_path / "补正材料.pdf"
    document.write_bytes(content)
    await kiosk.get_by_test_id("file-input").set_input_files(str(document))
    await expert.wait_for_selector("[data-testid=file-list] li:has-text('补正材料.pdf')")
    assert len(lost) == 1
    clerk = await login_session(sqlite_server, "clerk")
    records = await sqlite_server.storage.consultations.find()
    async with clerk:
        url = f"{sqlite_server.url}/api/v1/consultations/{records[0].id}/files"
        async with clerk.get(url) as response:
            (view,) = (await response.json())["files"]
        async with clerk.get(sqlite_server.url + view["url"]) as response:
            assert await response.read() == content
