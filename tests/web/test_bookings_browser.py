"""Call-backs and appointments in Chromium (issue 22): a citizen waiting with nobody
online books a time and leaves with a booking code, which at the other hall's kiosk
puts them at the head of the queue; another leaves a number for a call-back, which
the department's expert takes from the desk, sees in full and closes."""

import time
from typing import Any

import pytest

from harness.chromium import (
    choose_department,
    go_available,
    open_logged_in,
    request_from_kiosk,
    wait_for_js,
)
from signaling.messages import OfferView
from storage.booking_settings import BookingSettings
from tests.conftest import (
    ClientFactory,
    RunningServer,
    ServerFactory,
    call_route,
    login_session,
)

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 1080, "height": 1920}
DESK = {"width": 1366, "height": 768}
ALWAYS = BookingSettings(availability=("1-7 00:00-24:00",), slot_minutes=5, slot_capacity=1)


@pytest.fixture
async def server(start_server: ServerFactory) -> RunningServer:
    server = await start_server(no_expert_wait=600.0)
    await server.storage.booking_settings.put("market", ALWAYS)
    return server


async def test_a_citizen_books_a_time_and_uses_the_code_at_the_other_hall(
    browser: Any, server: RunningServer, connect: ClientFactory
) -> None:
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=PORTRAIT)
    await request_from_kiosk(kiosk, "market")
    # Nobody online: the offers come with the waiting.
    await kiosk.get_by_test_id("book-appointment").click()
    slots = kiosk.get_by_test_id("slot")
    await slots.first.wait_for()
    await slots.first.click()
    phone = kiosk.get_by_test_id("booking-phone")
    await phone.fill("12345")
    await kiosk.get_by_test_id("booking-submit").click()
    assert await kiosk.get_by_test_id("phone-error").is_visible()
    # A kiosk has no keyboard: the number is typed on the kiosk's own keys.
    await kiosk.get_by_test_id("phone-key-clear").click()
    for digit in "13812345678":
        await kiosk.get_by_test_id(f"phone-key-{digit}").click()
    assert await phone.input_value() == "13812345678"
    assert not await kiosk.get_by_test_id("phone-error").is_visible()
    await kiosk.get_by_test_id("booking-submit").click()
    shown = kiosk.get_by_test_id("booking-code")
    await shown.wait_for()
    code = (await shown.inner_text()).strip()
    assert len(code) == 8
    # On paper too: the slip is printed, the screen stays as it is.
    await kiosk.get_by_test_id("arrangement-print").click()
    slip = kiosk.get_by_test_id("arrangement-slip")
    await slip.wait_for(state="attached")
    printed = await slip.text_content() or ""
    assert code in printed and "市场监管局" in printed and "138****5678" in printed
    assert await slip.is_hidden()
    await kiosk.emulate_media(media="print")
    assert await slip.is_visible() and await shown.is_hidden()
    await kiosk.emulate_media(media="screen")
    await kiosk.get_by_test_id("booking-done").click()
    # Leaving wipes the page: the code is gone from it, and the waiting ended.
    await kiosk.wait_for_url("**/kiosk?fresh=1")
    await wait_for_js(kiosk, "document.querySelector('[data-testid=booking-code-input]') !== null")
    assert await kiosk.get_by_test_id("booking-code").count() == 0

    walk_in = await connect(server, "kiosk01")
    waiting = await walk_in.request("market")
    other = await open_logged_in(browser, server, "kiosk", "kiosk02", viewport=PORTRAIT)
    # The code on the kiosk's keys, which take the case number's place.
    await other.get_by_test_id("case-number").click()
    await other.get_by_test_id("key-done").click()
    await other.get_by_test_id("booking-code-input").click()
    assert await other.get_by_test_id("keypad").is_hidden()
    assert await other.get_by_test_id("case-number").is_hidden()
    for character in code:
        await other.get_by_test_id(f"code-key-{character}").click()
    assert await other.get_by_test_id("booking-code-input").input_value() == code
    # A wrong code first: refused, and the whole start screen is back.
    await other.get_by_test_id("code-key-back").click()
    await other.get_by_test_id("code-key-2" if code[-1] != "2" else "code-key-3").click()
    await other.get_by_test_id("booking-code-submit").click()
    await other.get_by_test_id("booking-code-status").filter(has_text="没有这个预约码").wait_for()
    assert await other.get_by_test_id("booking-keypad").is_hidden()
    assert await other.get_by_test_id("case-number").is_visible()
    await other.get_by_test_id("booking-code-input").click()
    await other.get_by_test_id("code-key-clear").click()
    for character in code:
        await other.get_by_test_id(f"code-key-{character}").click()
    await other.get_by_test_id("booking-code-submit").click()
    await other.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await other.get_by_test_id("device-check-continue").click()
    await other.wait_for_selector("#waiting-screen:not([hidden])")
    expert = await connect(server, "expert_market")
    await expert.set_presence("available")
    offer = await expert.next_event("offer", OfferView)
    assert offer.consultation_id != waiting.consultation_id
    assert offer.hall == "district"


async def test_a_citizen_asks_for_a_call_back_and_an_expert_takes_it(
    browser: Any, server: RunningServer
) -> None:
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=PORTRAIT)
    await request_from_kiosk(kiosk, "market")
    await kiosk.get_by_test_id("callback-request").click()
    await kiosk.get_by_test_id("callback-phone").fill("13912345678")
    await kiosk.get_by_test_id("callback-note").fill("营业执照变更")
    await kiosk.get_by_test_id("callback-submit").click()
    done = kiosk.get_by_test_id("callback-done")
    await done.wait_for()
    assert "139****5678" in await done.inner_text()
    await kiosk.get_by_test_id("arrangement-print").click()
    slip = kiosk.get_by_test_id("arrangement-slip")
    await slip.wait_for(state="attached")
    assert "139****5678" in (await slip.text_content() or "")
    await kiosk.get_by_test_id("booking-done").click()
    await kiosk.wait_for_url("**/kiosk?fresh=1")

    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    row = expert.get_by_test_id("callback-list").get_by_test_id("callback")
    await row.wait_for()
    text = await row.inner_text()
    assert "139****5678" in text and "营业执照变更" in text and "13912345678" not in text
    await row.get_by_test_id("callback-take").click()
    full = expert.get_by_test_id("callback-phone-full")
    await full.wait_for()
    assert await full.inner_text() == "13912345678"
    await expert.get_by_test_id("callback-result-reached").click()
    await expert.wait_for_selector(
        "[data-testid=callback-list] [data-testid=callback]", state="detached"
    )
    await expert.get_by_test_id("appointments").wait_for()


async def booked_at_kiosk01(server: RunningServer, after: float = 0.0) -> tuple[float, str]:
    """A booking of market's first free slot after ``after``, made through the API
    as kiosk01 (13812345678): the slot's time and the booking code."""
    kiosk = await login_session(server, "kiosk01")
    async with kiosk:
        _, free = await call_route(kiosk, server, "GET", "/api/v1/departments/market/slots")
        slot_at = next(s["at"] for s in free["slots"] if s["at"] > after)
        status, made = await call_route(
            kiosk,
            server,
            "POST",
            "/api/v1/appointments",
            {"department": "market", "slot_at": slot_at, "phone": "13812345678"},
        )
        assert status == 201
    return slot_at, made["booking_code"]


async def test_an_admin_sets_a_departments_bookings_and_cancels_a_day(
    browser: Any, server: RunningServer
) -> None:
    """Until now only the API could: the admin page's department row opens both."""
    slot_at, _ = await booked_at_kiosk01(server)
    day = server.storage.appointments.local(slot_at).date().isoformat()

    admin = await open_logged_in(browser, server, "admin", "admin", viewport=DESK)
    await admin.get_by_test_id("tab-departments").click()
    row = admin.get_by_test_id("department-row-market")
    await row.get_by_test_id("department-booking").click()
    await row.get_by_test_id("booking-slot-minutes").wait_for()
    assert await row.get_by_test_id("booking-slot-minutes").input_value() == "5"
    await row.get_by_test_id("booking-availability").fill("1-5 09:00-11:00\n6-6 10:00-12:00")
    await row.get_by_test_id("booking-slot-minutes").fill("3")
    await row.get_by_test_id("department-save").click()
    # Not a slot length the department may have: said, and nothing saved.
    await row.get_by_role("alert").filter(has_text="不符合要求").wait_for()
    for testid, value in (
        ("booking-slot-minutes", "20"),
        ("booking-slot-capacity", "2"),
        ("booking-wait-limit", "5"),
        ("booking-callback-attempts", "4"),
        ("booking-callback-expiry", "48"),
    ):
        await row.get_by_test_id(testid).fill(value)
    await row.get_by_test_id("department-save").click()
    await row.get_by_test_id("department-booking-result").filter(has_text="已保存").wait_for()
    saved = await server.storage.booking_settings.get("market")
    assert saved == BookingSettings(
        availability=("1-5 09:00-11:00", "6-6 10:00-12:00"),
        slot_minutes=20,
        slot_capacity=2,
        wait_limit=300.0,
        callback_attempts=4,
        callback_expiry=48 * 3600.0,
    )

    await row.get_by_test_id("department-closure").click()
    await row.get_by_test_id("closure-day").fill(day)
    await row.get_by_test_id("closure-reason").fill("系统维护")
    await row.get_by_test_id("department-save").click()
    await admin.get_by_test_id("confirm-yes").click()
    result = row.get_by_test_id("department-booking-result")
    await result.filter(has_text="1 个预约").wait_for()
    assert "已通知 1 位市民" in await result.inner_text()


async def test_a_code_answered_at_the_kiosk_leaves_the_field_empty(
    browser: Any, server: RunningServer
) -> None:
    """A right code typed too early is refused and the citizen walks away: the code
    stayed in the start screen's field (and nothing of the start screen's booking
    code arms the idle wipe), for the next citizen to read and use in its window."""
    _, code = await booked_at_kiosk01(server, after=time.time() + 3600)
    other = await open_logged_in(browser, server, "kiosk", "kiosk02", viewport=DESK)
    field = other.get_by_test_id("booking-code-input")
    for typed, answer in ((code, "还没到时间"), ("ACDEFHJK", "没有这个预约码")):
        await field.click()
        await other.get_by_test_id("code-key-clear").click()
        for character in typed:
            await other.get_by_test_id(f"code-key-{character}").click()
        await other.get_by_test_id("booking-code-submit").click()
        await other.get_by_test_id("booking-code-status").filter(has_text=answer).wait_for()
        assert await field.input_value() == ""


async def test_choosing_a_department_closes_the_booking_codes_keys(
    browser: Any, server: RunningServer
) -> None:
    """The keys close when a department is chosen (kiosk.js hideKeypad), but only
    the case number's did: back on the start screen, the code's keys were still
    open and the case number's field hidden under them."""
    kiosk = await open_logged_in(browser, server, "kiosk", "kiosk02", viewport=DESK)
    await kiosk.get_by_test_id("booking-code-input").click()
    await kiosk.get_by_test_id("code-key-A").click()
    await choose_department(kiosk, "market")
    await kiosk.wait_for_selector("#device-screen:not([hidden])")
    await kiosk.get_by_test_id("device-check-back").click()
    await kiosk.wait_for_selector("#start-screen:not([hidden])")
    assert await kiosk.get_by_test_id("booking-keypad").is_hidden()
    assert await kiosk.get_by_test_id("case-number").is_visible()


async def test_the_booking_editor_sends_what_it_shows(browser: Any, server: RunningServer) -> None:
    """Minutes and hours on the page, seconds in the API. A wait limit of 90 s
    (set through the API) was shown as 2 minutes and saved as 120 s when the admin
    changed only the seats; an emptied field was saved as 0 (call-backs offered
    to every citizen who waits at all)."""
    await server.storage.booking_settings.put(
        "market",
        BookingSettings(
            availability=("1-7 00:00-24:00",),
            slot_minutes=5,
            slot_capacity=1,
            wait_limit=90.0,
            callback_expiry=5400.0,
        ),
    )
    admin = await open_logged_in(browser, server, "admin", "admin", viewport=DESK)
    await admin.get_by_test_id("tab-departments").click()
    row = admin.get_by_test_id("department-row-market")
    await row.get_by_test_id("department-booking").click()
    seats = row.get_by_test_id("booking-slot-capacity")
    await seats.wait_for()
    wait = row.get_by_test_id("booking-wait-limit")
    shown = await wait.input_value()
    assert (shown, await row.get_by_test_id("booking-callback-expiry").input_value()) == (
        "1.5",
        "1.5",
    )
    await wait.fill("")
    await seats.fill("3")
    await row.get_by_test_id("department-save").click()
    await row.get_by_role("alert").filter(has_text="不符合要求").wait_for()
    assert (await server.storage.booking_settings.get("market")).wait_limit == 90.0
    # What was typed stays for the admin to correct.
    assert await seats.input_value() == "3"
    await wait.fill(shown)
    await row.get_by_test_id("department-save").click()
    await row.get_by_test_id("department-booking-result").filter(has_text="已保存").wait_for()
    saved = await server.storage.booking_settings.get("market")
    assert (saved.slot_capacity, saved.wait_limit, saved.callback_expiry) == (3, 90.0, 5400.0)


async def test_a_booking_code_typed_and_left_is_wiped(browser: Any, server: RunningServer) -> None:
    """A code typed but never sent is the citizen's too: it arms the idle wipe as
    a typed case number does (nothing did before, so it stayed for the next)."""
    kiosk = await open_logged_in(browser, server, "kiosk?idle=10", "kiosk01", viewport=DESK)
    await kiosk.get_by_test_id("booking-code-input").click()
    for character in "ACDE":
        await kiosk.get_by_test_id(f"code-key-{character}").click()
    await kiosk.evaluate("window.beforeWipe = true")
    await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=30000)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    assert await kiosk.get_by_test_id("booking-code-input").input_value() == ""
