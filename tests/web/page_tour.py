"""Drives the pages through their main states once, calling back at each, so that
the layout and accessibility tests look at the same states without driving the
journey twice: kiosk (start with digits and with letters on the keypad, staff
called, a booking code on its keys, the question before queuing with nobody
online, device check, waiting, a call-back's phone number on its keys, the free
slots of a booking, an expert rung, call, a PDF previewed, the phone's QR code,
rating with the reference), the phone's page, expert (a ringing offer, the call with a document
just arrived, after the call), a staff call on the clerk's page, clerk (today's
list with a consultation opened; a search result opened, one file attached),
admin (each tab) and the login form; and where the journey goes wrong: the
question before declining, a call without picture or sound on both sides, a
large document on its way on both sides, the expert's wrap-up and records to
complete, a ring-out on both sides, a locked login; and calls of more than two
(issue 21): an invitation's chooser and ringing offer, the kiosk with three remote
tiles and a shared screen (and one tile made large), the other expert's, the
interpreter's and the sharing expert's desks, a participant reconnecting on the
kiosk's and an expert's list, a transfer's chooser, the kiosk
while the transfer waits, the ringing transfer."""

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness.chromium import (
    Served,
    chat_from,
    go_available,
    open_logged_in,
    request_from_kiosk,
    wait_for_js,
    wait_media_both_ways,
)
from tests.conftest import ClientFactory, RunningServer, active_call, login_session, upload_file
from tests.web.documents import pdf_with_pages, png

# Before a page's own scripts: its WebSockets kept in window.__sockets, and while
# window.__cutOff is set every new one refused (a desk off the network for a while).
CUT_OFF = """(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.__cutOff = false;
  window.WebSocket = class extends Native {
    constructor(url, ...rest) {
      super(window.__cutOff ? "ws://127.0.0.1:9/" : url, ...rest);
      window.__sockets.push(this);
    }
  };
})();"""

# (state, page): the page shows that state, nothing scrolled or resized yet.
Visit = Callable[[str, Any], Awaitable[None]]

KIOSK_VIEWPORT = {"width": 1080, "height": 1920}
PHONE_CONTEXT: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
}
DESK_VIEWPORT = {"width": 1366, "height": 768}
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\n" + b"% form\n" * 200 + b"%%EOF\n"


async def login_form(browser: Any, server: Served, visit: Visit) -> None:
    context = await browser.new_context(viewport=DESK_VIEWPORT)
    page = await context.new_page()
    await page.goto(f"{server.url}/expert")
    await page.wait_for_selector("body[data-ready]")
    await page.wait_for_selector("#login-view:not([hidden])")
    await visit("login", page)
    await context.close()


async def consultation(browser: Any, server: Served, tmp_path: Path, visit: Visit) -> Any:
    """A kiosk and an expert through one consultation up to the rating screen;
    the kiosk's page (on its rating screen) is returned. The server's ring
    timeout must outlast the visit to the ringing offer."""
    expert = await open_logged_in(
        browser, server, "expert", "expert_market", viewport=DESK_VIEWPORT
    )
    await expert.wait_for_selector("[data-testid=availability]:not(:empty)")
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=KIOSK_VIEWPORT)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    await kiosk.get_by_test_id("case-number").fill("SL-2026-0042")
    await visit("kiosk-start", kiosk)
    await kiosk.get_by_test_id("key-switch").click()
    await kiosk.wait_for_selector("[data-testid=key-A]")
    await visit("kiosk-start-letters", kiosk)
    await kiosk.get_by_test_id("key-switch").click()
    await kiosk.get_by_test_id("call-staff").click()
    await kiosk.wait_for_selector("[data-testid=staff-status]:not(:empty)")
    await visit("kiosk-staff-called", kiosk)
    # A booking code: its own keys, in place of the case number's.
    await kiosk.get_by_test_id("key-done").click()
    await kiosk.get_by_test_id("booking-code-input").click()
    await kiosk.get_by_test_id("code-key-A").click()
    await visit("kiosk-start-code", kiosk)
    await kiosk.get_by_test_id("code-key-clear").click()
    await kiosk.get_by_test_id("code-key-done").click()

    # Nobody of the department is taking calls yet: the kiosk says so and asks.
    await kiosk.get_by_test_id("department-market").click()
    await kiosk.wait_for_selector("#confirm-dialog[open]")
    await visit("kiosk-offline-confirm", kiosk)
    await kiosk.get_by_test_id("confirm-yes").click()
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await visit("kiosk-device-check", kiosk)

    await kiosk.get_by_test_id("device-check-continue").click()
    await kiosk.wait_for_selector("[data-testid=queue-position]:not(:empty)")
    await visit("kiosk-waiting", kiosk)
    # Nobody online: the offers; a call-back's phone number on the kiosk's keys.
    await kiosk.get_by_test_id("callback-request").click()
    await kiosk.get_by_test_id("phone-key-1").click()
    await visit("kiosk-callback", kiosk)
    await kiosk.get_by_test_id("booking-back").click()
    # The free slots: many, scrolling in their own box under the question.
    await kiosk.get_by_test_id("book-appointment").click()
    await kiosk.get_by_test_id("slot").first.wait_for()
    await visit("kiosk-slots", kiosk)
    await kiosk.get_by_test_id("booking-back").click()

    await go_available(expert)
    await expert.wait_for_selector("[data-testid=accept-call]:visible")
    await visit("expert-offer", expert)
    await kiosk.wait_for_selector("[data-testid=queue-position]:has-text('响铃')")
    await visit("kiosk-ringing", kiosk)

    await expert.get_by_test_id("accept-call").click()
    await wait_media_both_ways(kiosk, expert)
    scan = tmp_path / "营业执照副本.png"
    scan.write_bytes(png(800, 560, (235, 228, 210)))
    await kiosk.get_by_test_id("file-input").set_input_files(str(scan))
    form = tmp_path / "变更登记申请表.pdf"
    form.write_bytes(pdf_with_pages(["Application for change of registration", "Page two"]))
    await expert.get_by_test_id("file-input").set_input_files(str(form))
    await chat_from(kiosk, expert, "您好，我想咨询营业执照变更需要哪些材料。")
    await chat_from(expert, kiosk, "请出示身份证和原营业执照，我发一份申请表给您。")
    await kiosk.wait_for_selector("[data-testid=file-list] li:has-text('变更登记申请表.pdf')")
    await expert.wait_for_selector("[data-testid=file-list] li:has-text('营业执照副本.png')")
    # The newest document from the other side is shown large on the expert's desk.
    await expert.wait_for_selector("[data-testid=latest-document] img")
    await visit("kiosk-call", kiosk)
    await visit("expert-call", expert)
    # The kiosk's own previews and the phone's QR code, and the phone's page.
    await kiosk.locator("[data-testid=file-list] .file-name", has_text="变更登记申请表.pdf").click()
    await kiosk.wait_for_selector("#preview-dialog[open] .preview-body[data-rendered=true]")
    await visit("kiosk-preview", kiosk)
    await kiosk.get_by_test_id("preview-close").click()
    await kiosk.get_by_test_id("phone-upload").click()
    await kiosk.wait_for_selector("[data-testid=phone-qr][data-url]")
    await visit("kiosk-phone", kiosk)
    phone_context = await browser.new_context(**PHONE_CONTEXT)
    phone = await phone_context.new_page()
    await phone.goto(str(await kiosk.get_by_test_id("phone-qr").get_attribute("data-url")))
    await phone.wait_for_selector("[data-testid=phone-state][data-state=ready]")
    await visit("phone-ready", phone)
    await phone_context.close()
    await kiosk.get_by_test_id("phone-close").click()

    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await kiosk.wait_for_selector("[data-testid=rating-very-satisfied]:visible")
    await expert.wait_for_selector("[data-testid=save-outcome]:visible")
    await visit("kiosk-rating", kiosk)
    await visit("expert-after-call", expert)
    await expert.context.close()
    return kiosk


async def clerk_window(
    browser: Any, server: RunningServer, connect: ClientFactory, visit: Visit
) -> None:
    """A consultation with two documents, found at the window, one attached."""
    _kiosk, expert, call_id = await active_call(server, connect, case_number="SL-2026-0042")
    kiosk_http = await login_session(server, "kiosk01")
    async with kiosk_http:
        for name, content in [
            ("营业执照副本.png", png(400, 280, (235, 228, 210))),
            ("身份证复印件.pdf", PDF),
        ]:
            status, _ = await upload_file(server, kiosk_http, call_id, name, content)
            assert status == 201
    await expert.end(call_id)
    clerk = await open_logged_in(browser, server, "clerk", "clerk", viewport=DESK_VIEWPORT)
    await clerk.get_by_test_id("today-list").get_by_test_id("consultation-row").first.click()
    await clerk.wait_for_selector("#consultation-panel[data-loaded]")
    await visit("clerk-today", clerk)
    await clerk.get_by_test_id("case-search").fill("SL-2026-0042")
    await clerk.get_by_test_id("case-search").press("Enter")
    await clerk.get_by_test_id("consultation-row").first.click()
    await clerk.wait_for_selector("#consultation-panel[data-loaded]")
    await clerk.get_by_test_id("attach-file").first.click()
    await clerk.wait_for_selector("[data-testid=download-file]")
    await visit("clerk", clerk)
    await clerk.context.close()


async def admin_tabs(browser: Any, server: Served, visit: Visit) -> None:
    admin = await open_logged_in(browser, server, "admin", "admin", viewport=DESK_VIEWPORT)
    await admin.wait_for_selector("[data-testid=board-chart] svg")
    await visit("admin-board", admin)
    await admin.get_by_test_id("tab-departments").click()
    await admin.wait_for_selector("[data-testid=department-row-market]")
    await visit("admin-departments", admin)
    await admin.get_by_test_id("tab-halls").click()
    await admin.wait_for_selector("[data-testid=hall-row-city] [data-testid=hall-clerks]")
    await visit("admin-halls", admin)
    await admin.get_by_test_id("tab-accounts").click()
    await admin.wait_for_selector("[data-testid=account-row-clerk]")
    await visit("admin-accounts", admin)
    await admin.get_by_test_id("tab-audit").click()
    await admin.wait_for_selector("[data-testid=audit-status][data-state=intact]")
    await visit("admin-audit", admin)
    await admin.context.close()


async def wait_for_wipe(kiosk: Any) -> None:
    """After the rating: the kiosk's page is loaded anew on its start screen."""
    await kiosk.evaluate("window.beforeWipe = true")
    await kiosk.get_by_test_id("rating-very-satisfied").click()
    await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=15000)
    await kiosk.wait_for_selector("[data-testid=department-market]")


async def staff_call(browser: Any, server: Served, visit: Visit) -> None:
    """A kiosk of the clerk's hall calls for staff: the alert on the clerk's page."""
    clerk = await open_logged_in(browser, server, "clerk", "clerk", viewport=DESK_VIEWPORT)
    await clerk.wait_for_selector("[data-testid=staff-calls]", state="attached")
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=KIOSK_VIEWPORT)
    await kiosk.get_by_test_id("call-staff").click()
    await clerk.wait_for_selector("[data-testid=staff-alert]")
    await visit("clerk-staff-alert", clerk)
    await kiosk.context.close()
    await clerk.context.close()


# ---- the expert's desk beyond the happy path (issue 20) ------------------------------

UPLOAD_BYTES = 8 * 1024 * 1024
"""A document large enough to take several parts (the first part is 1 MiB)."""


@dataclasses.dataclass
class HeldUpload:
    """An upload whose parts after the first the browser holds back."""

    page: Any
    release_parts: Any  # asyncio.Event
    url: str = ""
    """The upload's path (/api/v1/uploads/<id>), once its first part went."""

    async def release(self) -> None:
        """Let the held parts fail (after a cancel) and stop holding."""
        self.release_parts.set()
        await self.page.unroute("**/api/v1/uploads/**")


async def held_upload(page: Any, path: Path) -> HeldUpload:
    """Choose ``path`` in the page's file-input with every part after the first held
    back, so that its row shows a share sent and stays so."""
    import asyncio
    import contextlib
    from urllib.parse import urlsplit

    from playwright.async_api import Error as PlaywrightError

    held = HeldUpload(page, asyncio.Event())
    parts = 0

    async def hold(route: Any) -> None:
        nonlocal parts
        if route.request.method == "PATCH":
            parts += 1
            held.url = urlsplit(route.request.url).path
            if parts > 1:
                await held.release_parts.wait()
                # The page may have given the request up already (its cancel).
                with contextlib.suppress(PlaywrightError):
                    await route.abort()
                return
        await route.continue_()

    await page.route("**/api/v1/uploads/**", hold)
    await page.get_by_test_id("file-input").set_input_files(str(path))
    await page.wait_for_selector("[data-testid=upload-percent]:not(:has-text('已发送 0%'))")
    return held


async def expert_desk(browser: Any, server: Served, tmp_path: Path, visit: Visit) -> None:
    """A call whose media never comes: the offer declined once (asked first), then
    accepted; both sides told what to do when no picture or sound comes; a large
    document on its way on each side, with its share sent and a cancel; after the
    call, the wrap-up form and the record put off into "records to complete". The
    server's ring timeout must outlast the visit to the question before declining."""
    expert = await open_logged_in(
        browser, server, "expert", "expert_market", viewport=DESK_VIEWPORT
    )
    await go_available(expert)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=KIOSK_VIEWPORT)
    # The kiosk's media never reaches the relay (as on a network that blocks it).
    await kiosk.route("**/api/v1/media/**", lambda route: route.abort())
    await kiosk.wait_for_selector("[data-testid=department-market]")
    await request_from_kiosk(kiosk, "market")

    await expert.wait_for_selector("[data-testid=accept-call]:visible")
    await expert.get_by_test_id("decline-call").click()
    await expert.wait_for_selector("#confirm-dialog[open]")
    await visit("expert-decline-confirm", expert)
    await expert.get_by_test_id("confirm-no").click()
    await expert.get_by_test_id("accept-call").click()

    await expert.wait_for_selector("[data-testid=media-trouble]:visible", timeout=45000)
    await kiosk.wait_for_selector("[data-testid=media-trouble]:visible", timeout=45000)
    await visit("expert-media-failed", expert)
    await visit("kiosk-media-failed", kiosk)
    await expert.get_by_test_id("media-use-chat").click()
    await kiosk.get_by_test_id("media-use-chat").click()

    scan = tmp_path / "档案扫描件.pdf"
    scan.write_bytes(b"%PDF-1.4\n" + bytes(UPLOAD_BYTES))
    for state, page in (("expert-upload", expert), ("kiosk-upload", kiosk)):
        held = await held_upload(page, scan)
        await visit(state, page)
        await page.get_by_test_id("upload-cancel").click()
        await page.wait_for_selector("[data-testid=upload-percent]:has-text('已取消')")
        await held.release()

    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await expert.wait_for_selector("[data-testid=wrap-up-note]:not(:empty)")
    await expert.get_by_test_id("notes").fill("未能视频，已用文字说明所需材料。")
    await visit("expert-wrap-up", expert)
    await expert.get_by_test_id("save-later").click()
    await expert.wait_for_selector("[data-testid=unfinished-row]")
    await visit("expert-unfinished", expert)
    await kiosk.context.close()
    await expert.context.close()


async def ring_out(browser: Any, server: Served, visit: Visit) -> None:
    """The only expert lets the offer ring out twice (the server's ring timeout must
    be short): the kiosk says so, the expert is set away and told why."""
    expert = await open_logged_in(
        browser, server, "expert", "expert_market", viewport=DESK_VIEWPORT
    )
    await go_available(expert)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=KIOSK_VIEWPORT)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    await request_from_kiosk(kiosk, "market")
    await expert.wait_for_selector("[data-testid=presence-notice]:visible", timeout=30000)
    await kiosk.wait_for_selector("#waiting-state[data-i18n='kiosk.rang_out']")
    await visit("kiosk-rang-out", kiosk)
    await visit("expert-away-notice", expert)
    await kiosk.context.close()
    await expert.context.close()


async def login_locked(browser: Any, server: Served, visit: Visit) -> None:
    """Wrong passwords until the login is refused for a while: it says how long."""
    context = await browser.new_context(viewport=DESK_VIEWPORT)
    page = await context.new_page()
    await page.goto(f"{server.url}/expert")
    await page.wait_for_selector("body[data-ready]")
    for _ in range(20):
        await page.get_by_test_id("login-username").fill("expert_housing")
        await page.get_by_test_id("login-password").fill("not-the-password")
        await page.get_by_test_id("login-submit").click()
        await page.wait_for_selector("#login-message:not(:empty)")
        if await page.locator("#login-message[data-i18n='login.throttled_for']").count():
            break
        await page.evaluate("document.getElementById('login-message').textContent = ''")
    await page.wait_for_selector("#login-message[data-i18n='login.throttled_for']")
    await visit("login-locked", page)
    await context.close()


# ---- more than two in a call (issue 21) -----------------------------------------------


async def wait_remote_tiles(page: Any, count: int) -> None:
    """Until ``page`` shows ``count`` remote videos, each with a picture. Bounded at
    60 s (a hang, not a timing claim: four Chromium pages encode and decode on two
    cores beside the rest of the suite); a timeout says what each tile had."""
    try:
        await wait_for_js(
            page,
            "(() => { const v = [...document.querySelectorAll('[data-testid=remote-video]')];"
            f" return v.length === {count} && v.every((x) => x.checkVisibility()"
            " && Number(x.dataset.framesDecoded || 0) > 0); })()",
            timeout=60000,
        )
    except TimeoutError as error:
        tiles = await page.evaluate(
            "[...document.querySelectorAll('[data-testid=remote-video]')].map((x) => ({"
            "participant: x.dataset.participant, department: x.dataset.department,"
            " frames: x.dataset.framesDecoded, visible: x.checkVisibility(),"
            " ready: x.readyState}))"
        )
        raise AssertionError(f"{page.url}: {count} remote tiles with a picture? {tiles}") from error


async def three_way(browser: Any, server: Served, visit: Visit) -> None:
    """A call of four: the market expert invites housing (the chooser, the ringing
    invitation) and the interpreting pool, whose interpreter answers at /expert; the
    market expert shares a screen. The kiosk with three remote tiles and the screen,
    then the interpreter's tile made large; the other expert's desk, the
    interpreter's, the sharing expert's. The server's ring timeout must outlast the
    visits to the ringing invitation, its grace period the interpreter's time cut off."""
    market = await open_logged_in(
        browser, server, "expert", "expert_market", viewport=DESK_VIEWPORT
    )
    await go_available(market)
    housing = await open_logged_in(
        browser, server, "expert", "expert_housing", viewport=DESK_VIEWPORT
    )
    await go_available(housing)
    interpreter = await open_logged_in(
        browser, server, "expert", "interpreter01", viewport=DESK_VIEWPORT, init_script=CUT_OFF
    )
    await go_available(interpreter)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=KIOSK_VIEWPORT)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    await request_from_kiosk(kiosk, "market")
    await market.get_by_test_id("accept-call").click()
    await wait_media_both_ways(kiosk, market)
    await chat_from(kiosk, market, "我想开一家餐馆，需要办哪些证？")

    await market.get_by_test_id("invite-department").click()
    await market.wait_for_selector("[data-testid=invite-interpret]")
    await market.get_by_test_id("invite-note").fill("餐馆选址涉及住房，请协助")
    await visit("expert-invite-chooser", market)
    await market.get_by_test_id("invite-housing").click()
    await housing.wait_for_selector("[data-testid=offer-panel][data-kind=invite]")
    await visit("expert-invite-offer", housing)
    await housing.get_by_test_id("accept-call").click()
    await market.get_by_test_id("invite-department").click()
    await market.get_by_test_id("invite-note").fill("市民使用手语")
    await market.get_by_test_id("invite-interpret").click()
    await interpreter.wait_for_selector("[data-testid=offer-panel][data-kind=invite]")
    await interpreter.get_by_test_id("accept-call").click()
    for page in (kiosk, market, housing, interpreter):
        await wait_remote_tiles(page, 3)

    await market.get_by_test_id("share-screen").click()
    # Bounded at 60 s as the tiles above (a hang bound: once in CI, four pages on
    # two cores beside the suite, the kiosk's screen took over 30 s).
    await wait_for_js(
        kiosk,
        "Number(document.querySelector('[data-testid=shared-screen]')"
        "?.dataset.framesDecoded || 0) > 0",
        timeout=60000,
    )
    await wait_for_js(
        housing,
        "Number(document.querySelector('[data-testid=shared-screen]')"
        "?.dataset.framesDecoded || 0) > 0",
        timeout=60000,
    )
    await visit("kiosk-three-way", kiosk)
    await kiosk.locator(
        ".tile:has(> [data-testid=remote-video][data-participant=interpreter])"
    ).click()
    await kiosk.wait_for_selector(".tile.featured > [data-participant=interpreter]")
    await visit("kiosk-tile-large", kiosk)
    # The interpreter's connection drops and stays away a while: the others' lists
    # say so (once in CI, starved, it read yellow on light blue).
    await interpreter.evaluate("window.__cutOff = true; window.__sockets.at(-1).close()")
    reconnecting = "[data-testid=participant-list] [data-position='3'] .who-state"
    await kiosk.wait_for_selector(reconnecting)
    await housing.wait_for_selector(reconnecting)
    await visit("kiosk-peer-reconnecting", kiosk)
    await visit("expert-peer-reconnecting", housing)
    await interpreter.evaluate("window.__cutOff = false")
    await kiosk.wait_for_selector(reconnecting, state="detached", timeout=30000)
    await interpreter.wait_for_selector("[data-testid=connection-banner]", state="hidden")
    await visit("expert-three-way", housing)
    await visit("interpreter-call", interpreter)
    await visit("expert-sharing", market)
    for page in (interpreter, housing, market, kiosk):
        await page.context.close()


async def transfer(browser: Any, server: Served, visit: Visit) -> None:
    """The market expert hands the citizen to housing: the chooser with its reason,
    the kiosk while the transfer waits, the housing expert's ringing transfer."""
    market = await open_logged_in(
        browser, server, "expert", "expert_market", viewport=DESK_VIEWPORT
    )
    await go_available(market)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=KIOSK_VIEWPORT)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    await request_from_kiosk(kiosk, "market")
    await market.get_by_test_id("accept-call").click()
    await wait_media_both_ways(kiosk, market)
    await market.get_by_test_id("transfer-department").click()
    await market.get_by_test_id("transfer-reason").fill("住房补贴由住房保障局办理")
    await market.wait_for_selector("[data-testid=transfer-housing]")
    await visit("expert-transfer-chooser", market)
    await market.get_by_test_id("transfer-housing").click()
    await kiosk.wait_for_selector("[data-testid=transfer-note]:visible")
    await visit("kiosk-transferring", kiosk)
    housing = await open_logged_in(
        browser, server, "expert", "expert_housing", viewport=DESK_VIEWPORT
    )
    await go_available(housing)
    await housing.wait_for_selector("[data-testid=offer-panel][data-kind=transfer]")
    await visit("expert-transfer-offer", housing)
    for page in (housing, kiosk, market):
        await page.context.close()
