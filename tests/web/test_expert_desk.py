"""The expert's desk and the kiosk in headless Chromium where the journey does not go
as planned (issue 20): the after-call form saves to its own consultation whatever
the expert does next, a citizen's offer says where from and how long they waited
and declining asks first, a ring-out is told on both sides, a call without picture
or sound says what to do, the chat survives a reload, a large upload shows its
share sent and can be cancelled, and a locked login says for how long. Each new
state's strings change language with the page."""

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from harness.chromium import go_available, open_logged_in, request_from_kiosk
from signaling.client import KioskClient
from signaling.messages import ConsultationView
from tests.conftest import ClientFactory, RunningServer, ServerFactory, login_session
from tests.web import page_tour
from tests.web.test_pages_browser import assert_switches_language

pytestmark = pytest.mark.browser

NOTES_A = "A 的备注：还需补交股东会决议"
NOTES_B = "B 的备注：已当场答复"


async def record(server: RunningServer, consultation_id: str) -> dict[str, Any]:
    """The consultation as the expert reads it through the REST API."""
    async with (
        await login_session(server, "expert_market") as http,
        http.get(f"{server.url}/api/v1/consultations/{consultation_id}") as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def ring_and_accept(expert: Any, kiosk: KioskClient, case_number: str) -> str:
    """``kiosk`` asks; the expert's page answers the offer; the consultation's id."""
    view = await kiosk.request("market", case_number=case_number)
    await expert.wait_for_selector(f"#offer-case:has-text('{case_number}')")
    await expert.get_by_test_id("accept-call").click()
    await expert.wait_for_selector("#call-view:not([hidden])")
    return view.consultation_id


async def ended_on_the_kiosk(expert: Any, kiosk: KioskClient, consultation_id: str) -> None:
    await kiosk.end(consultation_id)
    await expert.wait_for_selector("[data-testid=outcome-view]:visible")


async def test_the_notes_of_call_a_stay_on_a_when_call_b_is_accepted_before_saving(
    browser: Any, start_server: ServerFactory, connect: ClientFactory
) -> None:
    """The issue's case as it was seen (no wrap-up: the next call rings at once): A's
    notes typed, B accepted before saving A, B's notes saved; then A completed from
    the list of records to complete. Checked through the API."""
    server = await start_server(wrap_up_limit=0.0, ring_timeout=60.0)
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    first: KioskClient = await connect(server, "kiosk01")
    second: KioskClient = await connect(server, "kiosk02")

    call_a = await ring_and_accept(expert, first, "CASE-A")
    await ended_on_the_kiosk(expert, first, call_a)
    await expert.wait_for_selector("[data-testid=outcome-for]:has-text('CASE-A')")
    await expert.get_by_test_id("notes").fill(NOTES_A)

    call_b = await ring_and_accept(expert, second, "CASE-B")
    await ended_on_the_kiosk(expert, second, call_b)
    # The form is B's now, and empty: A's notes did not move with it.
    await expert.wait_for_selector("[data-testid=outcome-for]:has-text('CASE-B')")
    assert await expert.get_by_test_id("notes").input_value() == ""
    await expert.get_by_test_id("outcome").select_option("follow_up")
    await expert.get_by_test_id("notes").fill(NOTES_B)
    await expert.get_by_test_id("save-outcome").click()
    await expert.wait_for_selector("[data-testid=outcome-saved]:has-text('已保存')")

    a, b = await record(server, call_a), await record(server, call_b)
    assert (a["outcome"], a["notes"]) == (None, NOTES_A)
    assert (b["outcome"], b["notes"]) == ("follow_up", NOTES_B)

    # A waits among the records to complete, with its notes; completed from there.
    row = expert.locator(f"[data-testid=unfinished-row][data-consultation='{call_a}']")
    await row.get_by_test_id("complete-record").click()
    await expert.wait_for_selector("[data-testid=outcome-for]:has-text('CASE-A')")
    assert await expert.get_by_test_id("notes").input_value() == NOTES_A
    await expert.get_by_test_id("outcome").select_option("answered")
    await expert.get_by_test_id("save-outcome").click()
    await expert.wait_for_selector("[data-testid=outcome-saved]:has-text('已保存')")
    await expert.wait_for_selector("[data-testid=unfinished-list] :text('没有待完成的记录')")
    a, b = await record(server, call_a), await record(server, call_b)
    assert (a["outcome"], a["notes"]) == ("answered", NOTES_A)
    assert (b["outcome"], b["notes"]) == ("follow_up", NOTES_B)
    await expert.context.close()


async def test_after_a_call_the_next_citizen_comes_only_once_the_record_is_saved_or_put_off(
    browser: Any, start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(ring_timeout=60.0)
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    first: KioskClient = await connect(server, "kiosk01")
    second: KioskClient = await connect(server, "kiosk02")
    call_a = await ring_and_accept(expert, first, "CASE-A")
    await ended_on_the_kiosk(expert, first, call_a)
    await expert.wait_for_selector("[data-testid=availability]:has-text('整理记录')")
    await expert.wait_for_selector("[data-testid=wrap-up-note]:has-text('不会有新的呼叫')")
    await expert.get_by_test_id("notes").fill(NOTES_A)

    waiting = await second.request("market", case_number="CASE-B")
    # The desk sees the citizen waiting (the queue is published after routing) ...
    await expert.wait_for_selector("[data-testid=queue-list] :text('CASE-B')")
    # ... and is not rung for them while the record of A is open.
    assert not await expert.get_by_test_id("accept-call").is_visible()
    state = await second.state()
    assert state.consultation is not None and state.consultation.state == "waiting"

    await expert.get_by_test_id("save-later").click()
    await expert.wait_for_selector("#offer-case:has-text('CASE-B')")
    await expert.wait_for_selector(f"[data-testid=unfinished-row][data-consultation='{call_a}']")
    await expert.wait_for_selector("[data-testid=unfinished-row] :text('有草稿')")
    assert (await record(server, call_a))["notes"] == NOTES_A
    await expert.get_by_test_id("accept-call").click()
    await expert.wait_for_selector("#call-view:not([hidden])")
    await ended_on_the_kiosk(expert, second, waiting.consultation_id)
    await expert.wait_for_selector("[data-testid=outcome-for]:has-text('CASE-B')")
    assert await expert.get_by_test_id("notes").input_value() == ""
    await assert_switches_language(expert)
    await expert.get_by_test_id("notes").fill(NOTES_B)
    await expert.get_by_test_id("save-outcome").click()
    await expert.wait_for_selector("[data-testid=outcome-saved]:has-text('已保存')")
    a, b = await record(server, call_a), await record(server, waiting.consultation_id)
    assert (a["outcome"], a["notes"]) == (None, NOTES_A)
    assert (b["outcome"], b["notes"]) == ("answered", NOTES_B)
    await expert.context.close()


async def test_the_offer_says_where_from_and_how_long_and_declining_asks_first(
    browser: Any, start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(ring_timeout=60.0)
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    kiosk: KioskClient = await connect(server, "kiosk01")
    view = await kiosk.request("market", case_number="CASE-H")
    offer_from = expert.get_by_test_id("offer-from")
    await expert.wait_for_selector("[data-testid=offer-from]:has-text('市民中心')")
    assert "已等待" in await offer_from.inner_text()
    accept = await expert.get_by_test_id("accept-call").bounding_box()
    decline = await expert.get_by_test_id("decline-call").bounding_box()
    assert accept is not None and decline is not None
    # Far enough apart that a slip does not decline (they were 3 px apart).
    gap = decline["x"] - (accept["x"] + accept["width"])
    assert gap >= 24 or decline["y"] - (accept["y"] + accept["height"]) >= 24, (accept, decline)
    await assert_switches_language(expert)

    await expert.get_by_test_id("decline-call").click()
    await expert.wait_for_selector("#confirm-dialog[open]:has-text('不会再呼叫您')")
    await expert.get_by_test_id("confirm-no").click()
    # Not declined: still ringing, still waiting for this expert.
    assert await expert.get_by_test_id("accept-call").is_visible()
    state = await kiosk.state()
    assert state.consultation is not None and state.consultation.state == "offered"

    await expert.get_by_test_id("decline-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await expert.wait_for_selector("[data-testid=offer-panel]", state="hidden")
    back = await kiosk.next_event(
        "consultation",
        ConsultationView,
        where=lambda v: v.state == "waiting" and v.rung_unanswered == 1,
    )
    assert back.consultation_id == view.consultation_id
    await expert.context.close()


async def test_a_ring_out_is_said_on_the_kiosk_and_the_expert_set_away_is_told_why(
    browser: Any, sqlite_server: RunningServer
) -> None:
    """The only expert is rung twice and does not answer (1 s rings here)."""
    server = sqlite_server
    states: dict[str, Any] = {}

    async def visit(state: str, page: Any) -> None:
        states[state] = page
        await assert_switches_language(page)

    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01")
    await request_from_kiosk(kiosk, "market")
    notice = expert.get_by_test_id("presence-notice")
    await expert.wait_for_selector("[data-testid=presence-notice]:visible", timeout=30000)
    assert "连续 2 次没有接听" in await notice.inner_text()
    await kiosk.wait_for_selector("#waiting-state:has-text('没能接听')")
    await visit("kiosk", kiosk)
    await visit("expert", expert)
    # The way back is on the notice itself.
    await expert.get_by_test_id("resume-calls").click()
    await expert.wait_for_selector("[data-testid=accept-call]:visible")
    assert not await notice.is_visible()
    await kiosk.wait_for_selector("#waiting-state:has-text('再次呼叫')")
    await kiosk.context.close()
    await expert.context.close()


async def test_a_call_without_picture_or_sound_tells_both_sides_what_to_do(
    browser: Any, start_server: ServerFactory
) -> None:
    """The kiosk's media never reaches the relay (blocked in the browser): after a
    while both pages say so in words, offering chat and ending (the kiosk: with the
    hall's staff for a call back)."""
    server = await start_server(ring_timeout=60.0)
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01")
    await kiosk.route("**/api/v1/media/**", lambda route: route.abort())
    await request_from_kiosk(kiosk, "market")
    await expert.get_by_test_id("accept-call").click()
    for page in (expert, kiosk):
        await page.wait_for_selector("[data-testid=media-trouble]:visible", timeout=45000)
    assert "大厅工作人员" in await kiosk.get_by_test_id("media-trouble").inner_text()
    assert "文字消息" in await expert.get_by_test_id("media-trouble").inner_text()
    await assert_switches_language(kiosk)
    await assert_switches_language(expert)
    # Chat: the notice steps aside and the field is ready to type in.
    await kiosk.get_by_test_id("media-use-chat").click()
    assert await kiosk.evaluate("document.activeElement.dataset.testid") == "chat-input"
    assert not await kiosk.get_by_test_id("media-trouble").is_visible()
    # Ending asks first, as the end button does.
    await expert.get_by_test_id("media-end-call").click()
    await expert.wait_for_selector("#confirm-dialog[open]")
    await expert.get_by_test_id("confirm-yes").click()
    await kiosk.wait_for_selector("#after-screen:not([hidden])")
    await kiosk.context.close()
    await expert.context.close()


async def test_the_expert_has_the_calls_chat_after_a_reload(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    kiosk: KioskClient = await connect(server, "kiosk01")
    call_id = await ring_and_accept(expert, kiosk, "CASE-C")
    await kiosk.chat(call_id, "请问需要带什么材料？")
    await expert.get_by_test_id("chat-input").fill("身份证和营业执照原件。")
    await expert.get_by_test_id("chat-send").click()
    await kiosk.chat(call_id, "好的，谢谢")
    await expert.wait_for_selector("[data-testid=chat-list] li:has-text('好的，谢谢')")

    await expert.reload()
    await expert.wait_for_selector("#call-view:not([hidden])")
    chat = expert.get_by_test_id("chat-list")
    await expert.wait_for_selector("[data-testid=chat-list] li:has-text('好的，谢谢')")
    lines = await chat.locator(".chat-text").all_inner_texts()
    assert lines == ["请问需要带什么材料？", "身份证和营业执照原件。", "好的，谢谢"]
    # New lines still come, once each.
    await kiosk.chat(call_id, "还有一个问题")
    await expert.wait_for_selector("[data-testid=chat-list] li:has-text('还有一个问题')")
    await expect(chat.locator(".chat-text")).to_have_count(4)
    await expert.context.close()


async def test_a_large_upload_shows_its_share_sent_and_is_cancelled_without_a_trace(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory, tmp_path: Path
) -> None:
    server = sqlite_server
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    kiosk: KioskClient = await connect(server, "kiosk01")
    call_id = await ring_and_accept(expert, kiosk, "CASE-U")
    scan = tmp_path / "三十兆扫描件.pdf"
    scan.write_bytes(b"%PDF-1.4\n" + bytes(page_tour.UPLOAD_BYTES))
    held = await page_tour.held_upload(expert, scan)
    percent = await expert.get_by_test_id("upload-percent").inner_text()
    assert re.fullmatch(r"已发送 [1-9]\d?%", percent), percent
    await assert_switches_language(expert)
    await expert.get_by_test_id("upload-cancel").click()
    await expert.wait_for_selector("[data-testid=upload-percent]:has-text('已取消发送')")
    await held.release()
    # Nothing of it is left on the server: the upload is gone, and no document came.
    async with await login_session(server, "expert_market") as http:
        for _ in range(100):
            async with http.head(server.url + held.url) as response:
                if response.status == 404:
                    break
            await asyncio.sleep(0.1)
        assert response.status == 404
        async with http.get(f"{server.url}/api/v1/consultations/{call_id}/files") as response:
            assert (await response.json())["files"] == []
    await expert.context.close()


async def test_a_locked_login_says_for_how_long(browser: Any, sqlite_server: RunningServer) -> None:
    states: dict[str, Any] = {}

    async def visit(state: str, page: Any) -> None:
        message = await page.locator("#login-message").inner_text()
        # --login-window (300 s) is the longest the lock lasts.
        assert message == "尝试次数过多，请在 5 分钟后再试", message
        await assert_switches_language(page)
        states[state] = page

    await page_tour.login_locked(browser, sqlite_server, visit)
    assert list(states) == ["login-locked"]
