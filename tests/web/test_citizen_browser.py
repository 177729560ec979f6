"""The citizen as one person across halls and visits (issue 22), driven as people do
in headless Chromium against the real server: an identity number typed on the
kiosk (as an ID-card reader types it), wrong first and said which part, the
consent asked, the call, the expert's materials still required, the printed slip
(outcome, materials, the number masked) gone after the wipe; the second visit at
the other hall shows the first to the expert; the clerk finds both by number."""

from typing import Any

import pytest
from playwright.async_api import expect

from harness.chromium import go_available, open_logged_in, wait_for_js
from tests.conftest import RunningServer, ServerFactory

pytestmark = pytest.mark.browser

DESK = {"width": 1366, "height": 768}
KIOSK = {"width": 1080, "height": 1920}
NUMBER = "11010519491231002X"
MASKED = "110***********002X"


async def visit(browser: Any, server: RunningServer, kiosk_name: str, expert: Any) -> Any:
    """``kiosk_name``'s citizen types the number, agrees to its use and is answered
    by ``expert``; the kiosk's page, in the call."""
    kiosk = await open_logged_in(browser, server, "kiosk", kiosk_name, viewport=KIOSK)
    field = kiosk.get_by_test_id("id-number")
    # A reader (or a hand) with one digit wrong: the check character does not match.
    await field.click()
    await kiosk.keyboard.type("110105194912310021")
    error = kiosk.get_by_test_id("id-number-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("校验码")
    # A wrong number is not used: choosing a department points at it instead.
    await kiosk.get_by_test_id("department-market").click()
    await expect(kiosk.locator("#id-consent[open]")).to_have_count(0)
    await field.fill("")
    await field.click()
    await kiosk.keyboard.type(NUMBER.lower())
    await expect(error).to_be_hidden()
    await kiosk.get_by_test_id("department-market").click()
    consent = kiosk.get_by_test_id("id-consent")
    await expect(consent).to_be_visible()
    await expect(consent).to_contain_text("谁能看到")
    await expect(consent).to_contain_text("保存多久")
    await kiosk.get_by_test_id("id-consent-yes").click()
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await kiosk.get_by_test_id("device-check-continue").click()
    await expect(expert.get_by_test_id("offer-panel")).to_be_visible()
    await expert.get_by_test_id("accept-call").click()
    await expect(kiosk.locator("#call-screen")).to_be_visible()
    return kiosk


async def test_a_citizen_s_second_visit_at_the_other_hall_starts_from_the_first(
    browser: Any, start_server: ServerFactory
) -> None:
    server = await start_server(ring_timeout=30.0, grace_period=30.0)
    expert = await open_logged_in(browser, server, "expert", "expert_market", viewport=DESK)
    await go_available(expert)
    kiosk = await visit(browser, server, "kiosk01", expert)
    # The first visit: nothing earlier to show.
    await expect(expert.get_by_test_id("history")).to_contain_text(MASKED)
    await expect(expert.get_by_test_id("history")).to_contain_text("没有这位市民以往的咨询")

    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    # The after-call form: the department's checklist, and anything else written.
    materials = expert.get_by_test_id("materials-required")
    await materials.get_by_label("营业执照正本", exact=False).check()
    await expert.get_by_test_id("materials-other").fill("房屋租赁合同复印件")
    await expert.get_by_test_id("outcome").select_option("follow_up")
    await expert.get_by_test_id("notes").fill("缺营业执照正本，补齐后再来")
    await expert.get_by_test_id("save-outcome").click()
    await expert.wait_for_selector("[data-testid=outcome-saved]:has-text('已保存')")

    # The citizen prints the slip: outcome, materials, the number masked, a QR code.
    await kiosk.get_by_test_id("print-slip").click()
    slip = kiosk.get_by_test_id("slip")
    await expect(slip).to_be_visible()
    await expect(slip.get_by_test_id("slip-outcome")).to_contain_text("需后续跟进")
    await expect(slip.get_by_test_id("slip-materials")).to_contain_text("营业执照正本")
    await expect(slip.get_by_test_id("slip-materials")).to_contain_text("房屋租赁合同复印件")
    await expect(slip.get_by_test_id("slip-id-number")).to_have_text(f"身份证号：{MASKED}")
    assert await slip.locator("canvas.slip-qr").count() == 1
    assert NUMBER not in await kiosk.content()
    # Then the rating, and the wipe takes the slip and the number with the page.
    await kiosk.evaluate("window.beforeWipe = true")
    await kiosk.get_by_test_id("rating-very-satisfied").click()
    await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=15000)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    await expect(kiosk.get_by_test_id("slip")).to_be_hidden()
    assert await kiosk.get_by_test_id("id-number").input_value() == ""
    html = await kiosk.content()
    for trace in (MASKED, "营业执照正本", "房屋租赁合同复印件", "需后续跟进"):
        assert trace not in html
    await kiosk.context.close()

    # The second visit, at the district hall: the expert sees the first.
    await expect(expert.get_by_test_id("availability")).to_have_attribute("aria-pressed", "true")
    second = await visit(browser, server, "kiosk02", expert)
    earlier = expert.get_by_test_id("history")
    await expect(earlier.get_by_test_id("history-entry")).to_have_count(1)
    await expect(earlier).to_contain_text("缺营业执照正本，补齐后再来")
    await expect(earlier).to_contain_text("市民中心")
    await expect(earlier).to_contain_text("需后续跟进")
    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await expect(expert.get_by_test_id("history")).to_be_hidden()
    await second.context.close()

    # The clerk finds both visits by the number, at both halls.
    clerk = await open_logged_in(browser, server, "clerk", "clerk", viewport=DESK)
    await clerk.get_by_test_id("id-search").fill(NUMBER)
    await clerk.get_by_test_id("id-search").press("Enter")
    await expect(clerk.get_by_test_id("consultation-list").locator("tr")).to_have_count(2)
    await expect(clerk.locator("#search-message")).to_contain_text(MASKED)
    assert await clerk.get_by_test_id("id-search").input_value() == ""
    # The number masked in the record; in full only with a reason, which is audited.
    await clerk.get_by_test_id("consultation-list").locator("tr").first.click()
    shown = clerk.get_by_test_id("id-number-masked")
    await expect(shown).to_have_text(f"身份证号：{MASKED}")
    await clerk.get_by_test_id("id-reveal").click()
    await clerk.get_by_test_id("confirm-input").fill("核对申请人身份")
    await clerk.get_by_test_id("confirm-yes").click()
    await expect(shown).to_have_text(f"身份证号：{NUMBER}")
    reveals = [e for e in await server.storage.audit.entries() if e.action == "identity.reveal"]
    assert len(reveals) == 1 and "核对申请人身份" in reveals[0].detail


async def test_a_citizen_who_declines_is_served_with_the_case_number_only(
    browser: Any, start_server: ServerFactory
) -> None:
    server = await start_server(ring_timeout=30.0, grace_period=30.0)
    expert = await open_logged_in(browser, server, "expert", "expert_market", viewport=DESK)
    await go_available(expert)
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=KIOSK)
    await kiosk.get_by_test_id("id-number").click()
    await kiosk.keyboard.type(NUMBER)
    await kiosk.get_by_test_id("department-market").click()
    await kiosk.get_by_test_id("id-consent-no").click()
    # Not used, and not left on the screen.
    assert await kiosk.get_by_test_id("id-number").input_value() == ""
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await kiosk.get_by_test_id("device-check-continue").click()
    await expert.get_by_test_id("accept-call").click()
    await expect(kiosk.locator("#call-screen")).to_be_visible()
    await expect(expert.get_by_test_id("call-status")).to_contain_text("通话中")
    # The server keeps no number for it.
    found = await server.storage.consultations.find(department="market")
    assert all([await server.storage.identities.of(r.id) is None for r in found])
