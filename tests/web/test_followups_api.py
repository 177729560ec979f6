"""好差评 through the kiosk's socket and the supervisor's REST routes: the five grades
and the old 1-5 rating mapped onto them, a bad grade's follow-up taken to closed,
overdue by the app's injected clock, a supervisor's scope (another department's or
hall's supervisor sees and touches none of it), the live calls in scope, the admin
board's counts, and the admin's supervisor accounts."""

import time
from typing import Any

import aiohttp
import pytest

from signaling.client import ClientError
from tests.conftest import (
    ClientFactory,
    RunningServer,
    ServerFactory,
    active_call,
    call_json,
    login_session,
)

PASSWORD = "Supervise-2026-ok"
DAY = 86400.0


async def ended_call(server: RunningServer, connect: ClientFactory) -> tuple[Any, str]:
    """kiosk01's market consultation, answered and ended by the expert: the kiosk
    client and the consultation's id."""
    kiosk, expert, call_id = await active_call(server, connect)
    await expert.end(call_id)
    return kiosk, call_id


async def follow_ups(server: RunningServer, session: aiohttp.ClientSession, state: str = "") -> Any:
    query = f"?state={state}" if state else ""
    status, body = await call_json(session, "GET", f"{server.url}/api/v1/follow-ups{query}")
    assert status == 200, body
    return body


async def make_supervisor(
    server: RunningServer, username: str, departments: list[str], halls: list[str]
) -> aiohttp.ClientSession:
    admin = await login_session(server, "admin")
    async with admin:
        status, body = await call_json(
            admin,
            "POST",
            f"{server.url}/api/v1/accounts",
            {
                "username": username,
                "password": PASSWORD,
                "role": "supervisor",
                "departments": departments,
                "halls": halls,
            },
        )
    assert status == 201, body
    assert (body["departments"], body["halls"]) == (sorted(departments), sorted(halls))
    return await login_session(server, username, PASSWORD)


async def test_a_very_dissatisfied_grade_opens_a_follow_up_the_supervisor_closes(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, call_id = await ended_call(server, connect)
    await kiosk.grade(call_id, "very_dissatisfied", reason="not_solved", comment="问题没解决")
    record = await server.storage.consultations.get(call_id)
    assert (record.grade.value, record.rating) == ("very_dissatisfied", 1)
    with pytest.raises(ClientError) as again:
        await kiosk.grade(call_id, "satisfied")
    assert again.value.code == "invalid_state"
    supervisor = await login_session(server, "supervisor")
    async with supervisor:
        (item,) = (await follow_ups(server, supervisor))["follow_ups"]
        assert item["consultation_id"] == call_id and item["state"] == "open"
        assert (item["department"], item["hall"]) == ("market", "city")
        assert (item["reason"], item["comment"]) == ("not_solved", "问题没解决")
        assert item["reference"] == record.reference and not item["overdue"]
        assert item["due_at"] == pytest.approx(item["opened_at"] + 7 * DAY)
        base = f"{server.url}/api/v1/follow-ups/{call_id}"
        status, body = await call_json(
            supervisor, "POST", f"{base}/notes", {"kind": "contact", "text": "已电话联系"}
        )
        assert status == 200 and body["state"] == "contacted", body
        status, body = await call_json(supervisor, "POST", f"{base}/close", {"text": ""})
        assert status == 400, body
        status, body = await call_json(
            supervisor, "POST", f"{base}/close", {"text": "补发告知单，专家已培训"}
        )
        assert status == 200 and body["state"] == "closed" and body["closed_by"] == "supervisor"
        assert [n["kind"] for n in body["notes"]] == ["contact", "close"]
        status, body = await call_json(supervisor, "POST", f"{base}/close", {"text": "again"})
        assert status == 409, body
        assert (await follow_ups(server, supervisor))["follow_ups"] == []
        assert [
            f["state"] for f in (await follow_ups(server, supervisor, "all"))["follow_ups"]
        ] == ["closed"]
    actions = [
        e.action for e in await server.storage.audit.search(action="follow_up", subject=call_id)
    ]
    assert actions == ["follow_up.close", "follow_up.contact", "follow_up.open"]


@pytest.mark.parametrize(
    ("rating", "grade", "opens"),
    [
        (5, "very_satisfied", False),
        (3, "basically_satisfied", False),
        (1, "very_dissatisfied", True),
    ],
)
async def test_an_old_page_s_rating_is_mapped_onto_the_grades(
    sqlite_server: RunningServer, connect: ClientFactory, rating: int, grade: str, opens: bool
) -> None:
    kiosk, call_id = await ended_call(sqlite_server, connect)
    await kiosk.rate(call_id, rating)
    record = await sqlite_server.storage.consultations.get(call_id)
    assert (record.grade.value, record.rating) == (grade, rating)
    found = await sqlite_server.storage.followups.list(None)
    assert [f.consultation_id for f in found] == ([call_id] if opens else [])


@pytest.mark.parametrize(
    "payload",
    [
        {"grade": "satisfied", "reason": "attitude"},
        {"grade": "very_satisfied", "comment": "很好"},
        {"grade": "satisfied", "rating": 4},
        {},
        {"grade": "excellent"},
        {"grade": "dissatisfied", "reason": "rude"},
        {"grade": "dissatisfied", "comment": "x" * 501},
    ],
)
async def test_a_grade_that_does_not_fit_is_refused(
    sqlite_server: RunningServer, connect: ClientFactory, payload: dict[str, Any]
) -> None:
    kiosk, call_id = await ended_call(sqlite_server, connect)
    with pytest.raises(ClientError) as refused:
        await kiosk.emit("rate_consultation", {"consultation_id": call_id, **payload})
    assert refused.value.code == "invalid_payload"
    assert (await sqlite_server.storage.consultations.get(call_id)).grade is None


async def test_a_follow_up_shows_overdue_after_its_deadline_by_the_app_s_clock(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    offset = [0.0]
    server = await start_server(clock=lambda: time.time() + offset[0], complaint_days=3)
    kiosk, call_id = await ended_call(server, connect)
    await kiosk.grade(call_id, "dissatisfied")
    supervisor = await login_session(server, "supervisor")
    admin = await login_session(server, "admin")
    async with supervisor, admin:
        (item,) = (await follow_ups(server, supervisor))["follow_ups"]
        assert item["due_at"] == pytest.approx(item["opened_at"] + 3 * DAY)
        assert not item["overdue"]
        offset[0] = 3 * DAY + 60
        (item,) = (await follow_ups(server, supervisor))["follow_ups"]
        assert item["overdue"]
        status, board = await call_json(admin, "GET", f"{server.url}/api/v1/board")
        assert status == 200
        market = next(d for d in board["departments"] if d["code"] == "market")
        assert (market["follow_ups_open"], market["follow_ups_overdue"]) == (1, 1)
        assert market["grades"] == {"dissatisfied": 1}
        city = next(h for h in board["halls"] if h["code"] == "city")
        assert (city["follow_ups_open"], city["follow_ups_overdue"], city["grades"]) == (
            1,
            1,
            {"dissatisfied": 1},
        )
        status, _ = await call_json(
            supervisor,
            "POST",
            f"{server.url}/api/v1/follow-ups/{call_id}/close",
            {"text": "已整改"},
        )
        assert status == 200
        (item,) = (await follow_ups(server, supervisor, "all"))["follow_ups"]
        assert not item["overdue"]


@pytest.mark.parametrize(
    ("departments", "halls"), [(["housing"], []), ([], ["district"]), (["market"], ["district"])]
)
async def test_a_supervisor_of_another_scope_sees_and_touches_none_of_it(
    sqlite_server: RunningServer,
    connect: ClientFactory,
    departments: list[str],
    halls: list[str],
) -> None:
    server = sqlite_server
    kiosk, expert, call_id = await active_call(server, connect)
    other = await make_supervisor(server, "sup_other", departments, halls)
    market = await make_supervisor(server, "sup_market", ["market"], ["city"])
    async with other, market:
        status, body = await call_json(other, "GET", f"{server.url}/api/v1/live-calls")
        assert status == 200 and body["calls"] == []
        status, body = await call_json(market, "GET", f"{server.url}/api/v1/live-calls")
        (live,) = body["calls"]
        assert (live["consultation_id"], live["department"], live["hall"]) == (
            call_id,
            "market",
            "city",
        )
        assert live["grade"] is None and live["duration_s"] >= 0
        await expert.end(call_id)
        await kiosk.grade(call_id, "dissatisfied", reason="waited_too_long")
        assert (await follow_ups(server, other))["follow_ups"] == []
        assert (await follow_ups(server, other, "all"))["follow_ups"] == []
        for action, body in (
            ("notes", {"kind": "note", "text": "看一看"}),
            ("close", {"text": "关掉"}),
        ):
            status, answer = await call_json(
                other, "POST", f"{server.url}/api/v1/follow-ups/{call_id}/{action}", body
            )
            assert status == 404, answer
        assert [f["consultation_id"] for f in (await follow_ups(server, market))["follow_ups"]] == [
            call_id
        ]
    assert (await server.storage.followups.get(call_id)).notes == ()


async def test_the_admin_keeps_a_supervisor_s_scope(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    sup = await make_supervisor(server, "sup_scope", ["market"], [])
    await sup.close()
    admin = await login_session(server, "admin")
    accounts = f"{server.url}/api/v1/accounts"
    async with admin:
        status, body = await call_json(admin, "PATCH", f"{accounts}/sup_scope", {"halls": ["city"]})
        assert status == 200 and (body["departments"], body["halls"]) == (["market"], ["city"])
        status, body = await call_json(admin, "PATCH", f"{accounts}/sup_scope", {"departments": []})
        assert status == 200 and (body["departments"], body["halls"]) == ([], ["city"])
        status, body = await call_json(
            admin, "PATCH", f"{accounts}/sup_scope", {"departments": ["nope"]}
        )
        assert status == 404, body
        status, body = await call_json(
            admin, "PATCH", f"{accounts}/clerk", {"departments": ["market"]}
        )
        assert status == 400, body
        status, body = await call_json(
            admin,
            "POST",
            accounts,
            {"username": "exp_x", "password": PASSWORD, "role": "expert", "department": "market",
             "departments": ["market"]},
        )  # fmt: skip
        assert status == 400, body
        status, body = await call_json(admin, "GET", accounts)
        listed = {a["username"]: a for a in body["accounts"]}
        assert (listed["sup_scope"]["departments"], listed["sup_scope"]["halls"]) == ([], ["city"])
        assert (listed["supervisor"]["departments"], listed["supervisor"]["halls"]) == ([], [])
    scopes = [e.action for e in await server.storage.audit.search(subject="sup_scope")]
    assert scopes.count("account.scope") == 2


@pytest.mark.parametrize("username", ["kiosk01", "expert_market", "clerk", "interpreter01"])
async def test_follow_ups_and_live_calls_are_for_supervisors_and_the_admin(
    sqlite_server: RunningServer, username: str
) -> None:
    session = await login_session(sqlite_server, username)
    async with session:
        for path in ("/api/v1/follow-ups", "/api/v1/live-calls"):
            async with session.get(f"{sqlite_server.url}{path}") as response:
                assert response.status == 403
