"""The kiosk's first screen and its waiting (issue 20): who is online said plainly
on the department tiles, with the next opening when nobody is; queuing for a
department nobody answers said honestly before it starts and while it lasts; the
call for the hall's staff reaching a clerk of that hall, who takes it."""

from typing import Any

import pytest

from harness.chromium import go_available, open_logged_in, wait_for_js
from tests.conftest import ClientFactory, RunningServer, ServerFactory
from tests.web.test_pages_browser import assert_switches_language

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 1080, "height": 1920}


async def test_an_offline_department_says_so_and_queuing_for_it_is_said_honestly(
    browser: Any, start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(no_expert_wait=180.0)
    # Housing has an expert online; market has nobody.
    housing = await connect(server, "expert_housing")
    await housing.set_presence("available")
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=PORTRAIT)
    market = kiosk.get_by_test_id("department-market")
    online = kiosk.get_by_test_id("department-housing")
    await kiosk.wait_for_selector("[data-testid=department-housing][data-online='1']")
    assert "1 位专家在线" in await online.inner_text()
    assert "tile-offline" not in (await online.get_attribute("class") or "")
    # The offline tile looks different and says when the department next opens.
    assert "tile-offline" in (await market.get_attribute("class") or "")
    assert "现在无人在线" in await market.inner_text()
    offline_look = await kiosk.evaluate(
        """() => ['market', 'housing'].map((code) => {
          const tile = document.querySelector(`[data-testid=department-${code}]`);
          const style = getComputedStyle(tile);
          return [style.backgroundColor, style.borderStyle];
        })"""
    )
    assert offline_look[0] != offline_look[1]
    assert offline_look[0][1] == "dashed"
    text = await market.inner_text()
    assert "下次开放" in text or "通常此时有专家值班" in text
    await assert_switches_language(kiosk)

    # Choosing it: asked first, honestly; "back" queues nothing.
    await market.click()
    question = kiosk.locator("#confirm-dialog[open] [data-role=message]")
    said = await question.inner_text()
    assert "市场监管局现在没有专家在线" in said
    assert "3 分钟内没有专家上线，排队会自动结束" in said
    assert "周一至周五 09:00–17:00" in said
    # The other answers are named: a call-back or a booking, once in the queue.
    assert "回电" in said and "预约" in said
    assert await kiosk.get_by_test_id("confirm-yes").inner_text() == "仍要排队等候"
    await kiosk.get_by_test_id("confirm-no").click()
    assert await kiosk.locator("#start-screen").is_visible()
    assert await server.storage.consultations.find() == []

    # Queuing anyway: the waiting screen never says "number 1, about 1 minute".
    await market.click()
    await kiosk.get_by_test_id("confirm-yes").click()
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await kiosk.get_by_test_id("device-check-continue").click()
    position = kiosk.get_by_test_id("queue-position")
    await kiosk.wait_for_selector("[data-testid=queue-position]:has-text('现在没有专家在线')")
    wait = await kiosk.get_by_test_id("wait-estimate").inner_text()
    assert "3 分钟内仍没有专家上线，排队会自动结束" in wait
    assert "第 1 位" not in await position.inner_text() and "预计等待" not in wait
    await assert_switches_language(kiosk)

    # An online department is queued for at once, and its waiting is told as before.
    await kiosk.get_by_test_id("cancel-request").click()
    await wait_for_js(kiosk, "document.querySelector('[data-testid=department-housing]') !== null")
    await kiosk.wait_for_selector("[data-testid=department-housing][data-online='1']")
    await housing.set_presence("away")
    expert = await open_logged_in(browser, server, "expert", "expert_housing")
    await go_available(expert)
    await kiosk.get_by_test_id("department-housing").click()
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    assert not await kiosk.locator("#confirm-dialog").evaluate("d => d.open")


async def test_the_big_and_the_small_line_agree_while_an_expert_is_rung(
    browser: Any, start_server: ServerFactory
) -> None:
    server = await start_server(ring_timeout=60.0)
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=PORTRAIT)
    await kiosk.wait_for_selector("[data-testid=department-market][data-online='1']")
    await kiosk.get_by_test_id("department-market").click()
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await kiosk.get_by_test_id("device-check-continue").click()
    await expert.wait_for_selector("[data-testid=accept-call]:visible")
    await kiosk.wait_for_selector("#waiting-state:has-text('正在为您接通专家')")
    await kiosk.wait_for_selector("[data-testid=queue-position]:has-text('专家的屏幕正在响铃')")
    assert await kiosk.get_by_test_id("wait-estimate").inner_text() == ""


async def test_the_call_for_staff_reaches_a_clerk_of_the_kiosks_hall_who_takes_it(
    browser: Any, sqlite_server: RunningServer
) -> None:
    server = sqlite_server
    clerk = await open_logged_in(browser, server, "clerk", "clerk")
    await wait_for_js(clerk, "document.querySelector('[data-testid=staff-calls]') !== null")
    # kiosk02 stands in another hall: its call does not reach this clerk.
    other = await open_logged_in(browser, server, "kiosk", "kiosk02", viewport=PORTRAIT)
    await other.get_by_test_id("call-staff").click()
    await other.wait_for_selector("[data-testid=staff-status]:not(:empty)")
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=PORTRAIT)
    await kiosk.get_by_test_id("call-staff").click()
    await kiosk.wait_for_selector("[data-testid=staff-status]:has-text('已通知大厅工作人员')")
    assert await kiosk.get_by_test_id("call-staff").is_disabled()

    alert = clerk.get_by_test_id("staff-alert")
    await alert.wait_for()
    assert await alert.count() == 1
    assert await alert.get_attribute("data-kiosk") == "kiosk01"
    assert "市民中心 1 号终端" in await alert.inner_text()
    assert "终端呼叫工作人员" in await alert.inner_text()
    await clerk.get_by_test_id("staff-ack").click()
    await alert.wait_for(state="detached")
    await kiosk.wait_for_selector("[data-testid=staff-status]:has-text('工作人员马上就来')")

    # Pressed again within the minute: nobody is rung twice.
    await kiosk.evaluate("document.querySelector('[data-testid=call-staff]').disabled = false")
    await kiosk.get_by_test_id("call-staff").click()
    await kiosk.wait_for_selector("[data-testid=staff-status]:has-text('刚刚已呼叫过')")
    entries = await server.storage.audit.search(action="staff_call")
    assert [(e.actor, e.action) for e in reversed(entries)] == [
        ("kiosk02", "staff_call.create"),
        ("kiosk01", "staff_call.create"),
        ("clerk", "staff_call.answer"),
    ]
