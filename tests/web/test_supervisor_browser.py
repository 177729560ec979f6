"""好差评 in headless Chromium (issue 23): the citizen grades a consultation 非常不满意
with a reason and their own words on the kiosk, which opens a follow-up; the
supervisor sees the live call in scope while it goes on (listening in says politely
that it is not there yet), then the follow-up, and closes it on /supervisor; the
admin board counts the grade. Both pages switch language with nothing left in the
other."""

from typing import Any

import pytest

from harness.chromium import open_logged_in, request_from_kiosk, wait_for_js
from signaling.messages import OfferView
from tests.conftest import ClientFactory, RunningServer, login_session
from tests.web.test_pages_browser import assert_switches_language

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 1080, "height": 1920}


async def test_a_very_dissatisfied_rating_opens_a_follow_up_the_supervisor_closes(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    expert = await connect(server, "expert_market")
    await expert.set_presence("available")
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=PORTRAIT)
    await request_from_kiosk(kiosk, "market")
    offer = await expert.next_event("offer", OfferView)
    await expert.accept(offer.consultation_id)
    call_id = offer.consultation_id
    await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")

    # The supervisor (every department and hall) sees the call going on.
    supervisor = await open_logged_in(browser, server, "supervisor", "supervisor")
    live = supervisor.locator(f"[data-testid=live-call][data-consultation='{call_id}']")
    await live.wait_for()
    assert "市场监管" in await live.inner_text()
    assert "市民中心" in await live.inner_text()
    # Listening in opens the listening panel (tests/web/test_supervision_browser.py
    # follows it through); stopped here.
    await live.get_by_test_id("listen-call").click()
    await supervisor.wait_for_selector("[data-testid=listen-panel]:visible")
    await supervisor.get_by_test_id("listen-stop").click()
    await supervisor.wait_for_selector("[data-testid=listen-status]:has-text('已停止旁听')")
    # No recordings yet: an empty list, no error.
    await supervisor.wait_for_selector("#recordings-empty:visible")
    assert await supervisor.get_by_test_id("recording").count() == 0

    # The citizen: 非常不满意, why, and their own words; then thanks and the wipe.
    await expert.end(call_id)
    await kiosk.wait_for_selector("[data-testid=rating-very-dissatisfied]:visible")
    assert await kiosk.get_by_test_id("rating-very-dissatisfied").inner_text() == "非常不满意"
    await kiosk.evaluate("window.beforeWipe = true")
    await kiosk.get_by_test_id("rating-very-dissatisfied").click()
    await kiosk.wait_for_selector("[data-testid=grade-reason]:visible")
    await assert_switches_language(kiosk)
    await kiosk.get_by_test_id("grade-reason-not-solved").click()
    assert (
        await kiosk.get_by_test_id("grade-reason-not-solved").get_attribute("aria-pressed")
        == "true"
    )
    await kiosk.get_by_test_id("grade-comment").fill("材料要求说得不清楚")
    await kiosk.get_by_test_id("grade-send").click()
    await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=15000)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    assert "材料要求说得不清楚" not in await kiosk.content()
    record = await server.storage.consultations.get(call_id)
    assert (record.grade.value, record.grade_reason) == ("very_dissatisfied", "not_solved")
    assert record.grade_comment == "材料要求说得不清楚"

    # The supervisor: the follow-up with the citizen's words, noted and closed.
    await supervisor.get_by_test_id("supervisor-refresh").click()
    await supervisor.wait_for_selector("#live-empty:visible")
    row = supervisor.locator(f"[data-testid=follow-up][data-consultation='{call_id}']")
    await row.wait_for()
    text = await row.inner_text()
    assert "非常不满意" in text and "没解决问题" in text and "材料要求说得不清楚" in text
    assert record.reference is not None and record.reference in text
    assert await row.get_attribute("data-state") == "open"
    await row.get_by_test_id("follow-up-kind").select_option("contact")
    await row.get_by_test_id("follow-up-note").fill("已电话联系市民，致歉并说明所需材料")
    await row.get_by_test_id("follow-up-add").click()
    contacted = supervisor.locator(
        f"[data-testid=follow-up][data-consultation='{call_id}'][data-state=contacted]"
    )
    await contacted.wait_for()
    await assert_switches_language(supervisor)
    await contacted.get_by_test_id("follow-up-close").click()
    await supervisor.wait_for_selector("[data-testid=supervisor-message]:has-text('请先写明')")
    await contacted.get_by_test_id("follow-up-note").fill("专家已补充告知单，窗口统一口径")
    await contacted.get_by_test_id("follow-up-close").click()
    await supervisor.wait_for_selector("[data-testid=supervisor-message]:has-text('已办结')")
    await supervisor.wait_for_selector("#follow-ups-empty:visible")
    assert await supervisor.get_by_test_id("follow-up").count() == 0

    closed = await server.storage.followups.get(call_id)
    assert closed.state.value == "closed" and closed.closed_by == "supervisor"
    assert [n.kind.value for n in closed.notes] == ["contact", "close"]
    entries = await server.storage.audit.search(action="follow_up", subject=call_id)
    assert [e.action for e in reversed(entries)] == [
        "follow_up.open",
        "follow_up.contact",
        "follow_up.close",
    ]
    admin = await login_session(server, "admin")
    async with admin, admin.get(f"{server.url}/api/v1/board") as response:
        board = await response.json()
    market = next(d for d in board["departments"] if d["code"] == "market")
    assert market["grades"] == {"very_dissatisfied": 1} and market["follow_ups_open"] == 0
