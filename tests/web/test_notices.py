"""Notices: the log sender masks the number and withholds the code; the HTTP sender
POSTs the filled-in template to the gateway and logs (never raises) a failure;
templates and the sender are checked at start; the day-before reminder goes once."""

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from storage.appointments import Citizen
from storage.booking_settings import BookingSettings
from storage.sensitive import Kind
from tests.conftest import RunningServer
from web.booking_upkeep import REMINDER_HOUR, send_reminders
from web.keys import NOTICES, SENSITIVE
from web.notices import (
    HttpSender,
    LogSender,
    Notice,
    NoticeType,
    create_sender,
    parse_templates,
)
from web.settings import SettingsError, parse_settings

PHONE = "13812345678"
CONFIRMED = Notice(
    NoticeType.BOOKING_CONFIRMED,
    PHONE,
    "a1",
    "market",
    {"department": "市场监管", "date": "2026-12-07", "time": "09:15", "code": "ACDEFHJK"},
)


async def test_the_log_sender_masks_the_number_and_withholds_the_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert await LogSender().send(CONFIRMED)
    assert "notice booking_confirmed to 138****5678" in caplog.text
    assert "市场监管" in caplog.text and "09:15" in caplog.text
    assert PHONE not in caplog.text and "ACDEFHJK" not in caplog.text


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[str, list[Any]]]:
    received: list[Any] = []

    async def sms(request: web.Request) -> web.Response:
        received.append(await request.json())
        status = 503 if request.query.get("fail") else 200
        return web.json_response({}, status=status)

    app = web.Application()
    app.router.add_post("/sms", sms)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/sms", received
    await runner.cleanup()


async def test_the_http_sender_posts_the_filled_in_template(
    gateway: tuple[str, list[Any]],
) -> None:
    url, received = gateway
    templates = parse_templates(["booking_confirmed=预约{department} {date} {time} 码{code}"])
    sender = HttpSender(url, templates)
    try:
        assert await sender.send(CONFIRMED)
    finally:
        await sender.close()
    (body,) = received
    assert body["phone"] == PHONE and body["type"] == "booking_confirmed"
    assert body["text"] == "预约市场监管 2026-12-07 09:15 码ACDEFHJK"


async def test_a_gateway_that_fails_is_logged_not_raised(
    gateway: tuple[str, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = gateway
    for target in (url + "?fail=1", "http://127.0.0.1:9/sms"):
        sender = HttpSender(target, timeout=2.0)
        try:
            assert not await sender.send(CONFIRMED)
        finally:
            await sender.close()
    assert caplog.text.count("138****5678") == 2 and PHONE not in caplog.text


@pytest.mark.parametrize(
    "values",
    [["nope=x"], ["reminder"], ["reminder={phone}"], ["cancelled={department"]],
)
def test_a_bad_template_is_refused(values: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_templates(values)
    argv = [flag for value in values for flag in ("--notice-template", value)]
    with pytest.raises(SettingsError):
        parse_settings(argv, {})


def test_the_sender_is_chosen_by_the_settings() -> None:
    argv = ["--notice-sender", "http", "--notice-http-url", "https://sms.example/send"]
    settings = parse_settings(argv, {}).settings
    assert isinstance(create_sender(settings.notice_sender, settings.notice_http_url), HttpSender)
    assert isinstance(create_sender("log", None), LogSender)
    with pytest.raises(SettingsError):
        parse_settings(["--notice-sender", "http"], {})
    with pytest.raises(SettingsError):
        parse_settings(["--notice-sender", "pigeon"], {})


async def test_the_day_before_reminder_goes_once(
    sqlite_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = sqlite_server
    storage = server.storage
    await storage.booking_settings.put(
        "market", BookingSettings(availability=("1-7 00:00-24:00",), slot_minutes=60)
    )
    sealed = await server.app[SENSITIVE].seal(Kind.PHONE, PHONE)
    kiosk = await storage.accounts.get_by_username("kiosk01")
    # Booked yesterday for tomorrow at noon; reminded today from REMINDER_HOUR.
    today = datetime.now().astimezone().replace(minute=0, second=0, microsecond=0)
    noon_tomorrow = (today + timedelta(days=1)).replace(hour=12)
    booked_at = (today - timedelta(days=1)).timestamp()
    _, booking = await storage.appointments.book(
        "market",
        noon_tomorrow.timestamp(),
        Citizen(sealed.lookup, sealed.sealed),
        kiosk_id=kiosk.id,
        hall=kiosk.hall,
        now=booked_at,
    )
    notices = server.app[NOTICES]
    early = today.replace(hour=REMINDER_HOUR - 1).timestamp()
    assert await send_reminders(storage, server.app[SENSITIVE], notices, early) == 0
    later = today.replace(hour=REMINDER_HOUR).timestamp()
    assert await send_reminders(storage, server.app[SENSITIVE], notices, later) == 1
    assert await send_reminders(storage, server.app[SENSITIVE], notices, later + 60) == 0
    assert caplog.text.count("notice reminder to 138****5678") == 1
    sent = await storage.audit.entries(action="notice.send", limit=10)
    assert [e.subject for e in sent] == [booking.id]
    assert PHONE not in caplog.text
