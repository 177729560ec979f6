"""Halls as records the admin manages; what kiosks, clerks, the board and the expert's
offer learn of them; the clerk's list of their halls' consultations and the short
reference that finds one without a case number."""

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from signaling.client import ExpertClient, KioskClient
from signaling.messages import ConsultationView, OfferView
from storage.records import Role
from storage.references import reference_of
from tests.conftest import ClientFactory, RunningServer, active_call, login_session
from web.halls_api import Window, day_window

CITY = {
    "code": "city",
    "name_zh": "市民中心",
    "name_en": "Citizen Service Centre",
    "level": "city",
    "district": "",
    "allow_file_chooser": True,
}


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as response:
        return response.status, await response.json(content_type=None)


async def test_the_admin_creates_renames_and_opens_a_hall_and_every_change_is_audited(
    server: RunningServer,
) -> None:
    url = server.url
    admin = await login_session(server, "admin")
    async with admin:
        status, made = await call(
            admin,
            "POST",
            f"{url}/api/v1/halls",
            {
                "code": "east-street",
                "name_zh": "东街道办",
                "name_en": "East Street",
                "level": "street",
            },
        )
        assert status == 201
        # A new hall's kiosks do not offer the file chooser until the admin allows it.
        assert made == {
            "code": "east-street",
            "name_zh": "东街道办",
            "name_en": "East Street",
            "level": "street",
            "district": "",
            "allow_file_chooser": False,
        }
        status, _again = await call(
            admin,
            "POST",
            f"{url}/api/v1/halls",
            {"code": "east-street", "name_zh": "重复", "name_en": "Again", "level": "street"},
        )
        assert status == 409
        status, changed = await call(
            admin,
            "PATCH",
            f"{url}/api/v1/halls/east-street",
            {"name_en": "East Street Office", "district": "东城区", "allow_file_chooser": True},
        )
        assert status == 200
        assert changed["name_en"] == "East Street Office" and changed["district"] == "东城区"
        assert changed["allow_file_chooser"] is True
        for body, expected in (
            ({}, 400),
            ({"level": "province"}, 400),
            ({"name_zh": ""}, 400),
            ({"code": "other"}, 400),
        ):
            status, _ = await call(admin, "PATCH", f"{url}/api/v1/halls/east-street", body)
            assert status == expected, body
        status, _ = await call(admin, "PATCH", f"{url}/api/v1/halls/nowhere", {"district": "x"})
        assert status == 404
        status, listed = await call(admin, "GET", f"{url}/api/v1/halls")
    assert status == 200
    # The city's hall first, then the district's, then streets'.
    assert [h["code"] for h in listed["halls"]] == ["city", "district", "east-street"]
    assert listed["halls"][0] == CITY
    entries = await server.storage.audit.search(subject="east-street")
    assert [e.action for e in reversed(entries)] == ["hall.create", "hall.change"]
    assert all(e.actor == "admin" for e in entries)


async def test_me_names_a_kiosks_hall_and_a_clerks_halls(sqlite_server: RunningServer) -> None:
    url = sqlite_server.url
    for username, hall, halls in (
        ("kiosk01", CITY, []),
        ("clerk", None, [CITY]),
        ("expert_market", None, []),
        ("admin", None, []),
    ):
        session = await login_session(sqlite_server, username)
        async with session:
            status, me = await call(session, "GET", f"{url}/api/v1/me")
        assert status == 200
        assert (me["hall"], me["halls"]) == (hall, halls), username
    kiosk02 = await login_session(sqlite_server, "kiosk02")
    async with kiosk02:
        _, me = await call(kiosk02, "GET", f"{url}/api/v1/me")
    assert me["hall"]["code"] == "district" and me["hall"]["allow_file_chooser"] is True


async def test_kiosks_and_clerks_are_placed_only_in_halls_that_exist(
    sqlite_server: RunningServer,
) -> None:
    url = sqlite_server.url
    admin = await login_session(sqlite_server, "admin")
    password = "Window-Seat-2026"
    async with admin:
        for body, expected in (
            ({"username": "kiosk30", "role": "kiosk"}, 400),  # a kiosk stands in a hall
            ({"username": "kiosk30", "role": "kiosk", "hall": "nowhere"}, 404),
            ({"username": "clerk30", "role": "clerk", "halls": ["city", "nowhere"]}, 404),
            ({"username": "expert30", "role": "admin", "halls": ["city"]}, 400),
        ):
            status, _ = await call(
                admin, "POST", f"{url}/api/v1/accounts", {**body, "password": password}
            )
            assert status == expected, body
        status, made = await call(
            admin,
            "POST",
            f"{url}/api/v1/accounts",
            {"username": "clerk30", "role": "clerk", "halls": ["district"], "password": password},
        )
        assert status == 201 and made["halls"] == ["district"]
        status, moved = await call(
            admin, "PATCH", f"{url}/api/v1/accounts/clerk30", {"halls": ["city", "district"]}
        )
        assert status == 200 and moved["halls"] == ["city", "district"]
        status, moved = await call(
            admin, "PATCH", f"{url}/api/v1/accounts/kiosk02", {"hall": "city"}
        )
        assert status == 200 and moved["hall"] == "city"
        refusals: list[tuple[str, dict[str, Any], int]] = [
            ("kiosk02", {"hall": "nowhere"}, 404),
            ("clerk30", {"hall": "city"}, 400),
            ("kiosk02", {"halls": ["city"]}, 400),
        ]
        for username, body, expected in refusals:
            status, _ = await call(admin, "PATCH", f"{url}/api/v1/accounts/{username}", body)
            assert status == expected, (username, body)
        _, listed = await call(admin, "GET", f"{url}/api/v1/accounts")
    by_name = {a["username"]: a for a in listed["accounts"]}
    assert by_name["clerk30"]["halls"] == ["city", "district"]
    assert by_name["clerk"]["halls"] == ["city"]
    assert by_name["kiosk02"]["hall"] == "city"
    moves = await sqlite_server.storage.audit.search(action="account.hall")
    assert [(e.subject, e.detail) for e in reversed(moves)] == [
        ("clerk30", '{"halls":"city,district"}'),
        ("kiosk02", '{"halls":"city"}'),
    ]


async def rows(session: aiohttp.ClientSession, url: str, query: str = "") -> list[dict[str, Any]]:
    status, body = await call(session, "GET", f"{url}/api/v1/hall-consultations{query}")
    assert status == 200, body
    return list(body["consultations"])


async def test_the_clerk_finds_todays_consultations_of_their_halls_without_a_case_number(
    server: RunningServer, connect: ClientFactory
) -> None:
    """The issue's case: a consultation without a case number could not be found at
    the window. Now it is in the clerk's list of today, and its reference finds it."""
    url = server.url
    _kiosk, expert, city_call = await active_call(server, connect)  # kiosk01, hall city
    await expert.end(city_call)
    other: KioskClient = await connect(server, "kiosk02")  # hall district
    district_view = await other.request("housing")
    clerk = await login_session(server, "clerk")  # works at city
    admin = await login_session(server, "admin")
    async with clerk, admin:
        found = await rows(clerk, url)
        assert [r["id"] for r in found] == [city_call]
        assert found[0]["case_number"] is None and found[0]["hall"] == "city"
        assert found[0]["reference"] == reference_of(city_call)
        # Filters: department, hall, time of day.
        assert await rows(clerk, url, "?department=housing") == []
        assert [r["id"] for r in await rows(clerk, url, "?department=market")] == [city_call]
        assert await rows(clerk, url, "?hall=district") == []  # not one of the clerk's
        assert await rows(clerk, url, "?since=00:00&until=00:00") == []
        assert [r["id"] for r in await rows(clerk, url, "?since=00:00&until=24:00")] == [city_call]
        # The reference as the citizen reads it out, in any case, with a space.
        spoken = reference_of(city_call).lower()
        spoken = f"{spoken[:3]} {spoken[3:]}"
        by_reference = await rows(clerk, url, f"?reference={spoken}")
        assert [r["id"] for r in by_reference] == [city_call]
        # Another hall's reference finds nothing for this clerk; the admin sees every hall.
        assert await rows(clerk, url, f"?reference={district_view.reference}") == []
        everything = await rows(admin, url)
        assert {r["id"] for r in everything} == {city_call, district_view.consultation_id}
        assert [r["id"] for r in await rows(admin, url, "?hall=district")] == [
            district_view.consultation_id
        ]
        for query in ("?reference=K7M4X0", "?since=25:00", "?hall=CITY", "?sort=desc"):
            status, body = await call(clerk, "GET", f"{url}/api/v1/hall-consultations{query}")
            assert status == 400 and body["error"]["code"] == "invalid_query", query


async def test_a_clerk_of_no_hall_sees_no_consultations(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    url = sqlite_server.url
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    await kiosk.request("market")
    await sqlite_server.storage.accounts.create("clerk40", "Harbour-Lights-77", Role.CLERK)
    clerk = await login_session(sqlite_server, "clerk40", "Harbour-Lights-77")
    async with clerk:
        assert await rows(clerk, url) == []


async def test_the_kiosk_learns_the_reference_the_records_keep(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, call_id = await active_call(sqlite_server, connect)
    await expert.end(call_id)
    ended = await kiosk.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "ended"
    )
    record = await sqlite_server.storage.consultations.get(call_id)
    assert ended.reference == record.reference == reference_of(call_id)
    assert len(ended.reference) == 6


async def test_the_offer_names_the_citizens_hall_and_how_long_they_waited(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk: KioskClient = await connect(sqlite_server, "kiosk02")
    await kiosk.request("market")
    expert: ExpertClient = await connect(sqlite_server, "expert_market")
    await expert.set_presence("available")
    offer = await expert.next_event("offer", OfferView)
    assert offer.hall == "district"
    assert (offer.hall_name_zh, offer.hall_name_en) == (
        "区政务服务分中心",
        "District Service Branch",
    )
    assert offer.waited_s >= 0
    assert offer.waited_s == pytest.approx(
        (offer.expires_at - offer.ring_timeout_s) - offer.waiting_since
    )


async def test_the_board_shows_each_hall_by_name_with_its_figures(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    _kiosk, expert, call_id = await active_call(sqlite_server, connect)
    await expert.end(call_id)
    waiting: KioskClient = await connect(sqlite_server, "kiosk02")
    await waiting.request("housing")
    admin = await login_session(sqlite_server, "admin")
    async with admin:
        _, board = await call(admin, "GET", f"{sqlite_server.url}/api/v1/board")
    assert board["halls"] == [
        {
            "code": "city",
            "name_zh": "市民中心",
            "name_en": "Citizen Service Centre",
            "level": "city",
            "waiting": 0,
            "consultations_today": 1,
            "answered_today": 1,
            # Nobody rated: no grades, no follow-ups (issue 23).
            "grades": {},
            "follow_ups_open": 0,
            "follow_ups_overdue": 0,
        },
        {
            "code": "district",
            "name_zh": "区政务服务分中心",
            "name_en": "District Service Branch",
            "level": "district",
            "waiting": 1,
            "consultations_today": 1,
            "answered_today": 0,
            "grades": {},
            "follow_ups_open": 0,
            "follow_ups_overdue": 0,
        },
    ]


SHANGHAI = timezone(timedelta(hours=8))
NOON = datetime(2026, 3, 5, 12, 30, tzinfo=SHANGHAI)
MIDNIGHT = datetime(2026, 3, 5, tzinfo=SHANGHAI).timestamp()


@pytest.mark.parametrize(
    ("since", "until", "days", "expected"),
    [
        (None, None, 1, Window(MIDNIGHT, MIDNIGHT + 86400)),
        ("09:00", None, 1, Window(MIDNIGHT + 9 * 3600, MIDNIGHT + 86400)),
        (None, "12:00", 1, Window(MIDNIGHT, MIDNIGHT + 12 * 3600)),
        ("09:15", "10:45", 1, Window(MIDNIGHT + 9.25 * 3600, MIDNIGHT + 10.75 * 3600)),
        ("00:00", "24:00", 1, Window(MIDNIGHT, MIDNIGHT + 86400)),
        # Until before since: nothing, not a window running backwards.
        ("14:00", "09:00", 1, Window(MIDNIGHT + 14 * 3600, MIDNIGHT + 14 * 3600)),
        (None, None, 7, Window(MIDNIGHT - 6 * 86400, MIDNIGHT + 86400)),
    ],
)
def test_the_clerks_window_is_a_span_of_local_days(
    since: str | None, until: str | None, days: int, expected: Window
) -> None:
    assert day_window(NOON, since, until, days=days) == expected


def test_today_follows_the_servers_time_zone_not_utc() -> None:
    # 07:00 in Shanghai is still yesterday in UTC: "today" starts at local midnight.
    early = datetime(2026, 3, 5, 7, 0, tzinfo=SHANGHAI)
    assert day_window(early, None, None).since == MIDNIGHT
    assert time.gmtime(MIDNIGHT).tm_mday == 4
