"""Department status for the kiosk, the admin board, the expert's history,
and departments' usual hours."""

import time

import aiohttp
import pytest

from signaling.client import ExpertClient
from storage.ids import new_id
from storage.schema import consultations
from tests.conftest import ClientFactory, RunningServer, active_call, login_session


async def get_json(session: aiohttp.ClientSession, url: str) -> dict:  # type: ignore[type-arg]
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]


async def test_kiosk_tiles_show_experts_online_and_queue(
    server: RunningServer, connect: ClientFactory
) -> None:
    kiosk = await login_session(server, "kiosk01")
    async with kiosk:
        before = await get_json(kiosk, f"{server.url}/api/v1/departments/status")
        by_code = {d["code"]: d for d in before["departments"]}
        assert by_code["market"]["experts_online"] == 0
        assert by_code["market"]["hours"] == "1-5 09:00-17:00"
        expert: ExpertClient = await connect(server, "expert_market")
        await expert.set_presence("available")
        waiting = await connect(server, "kiosk02")
        await waiting.request("housing")
        after = await get_json(kiosk, f"{server.url}/api/v1/departments/status")
        by_code = {d["code"]: d for d in after["departments"]}
        assert by_code["market"]["experts_online"] == 1
        assert by_code["housing"]["queue_length"] == 1
        assert by_code["housing"]["experts_online"] == 0


async def test_board_live_figures_and_today(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, expert, call_id = await active_call(server, connect)
    waiting = await connect(server, "kiosk02")
    await waiting.request("housing")
    admin = await login_session(server, "admin")
    async with admin:
        board = await get_json(admin, f"{server.url}/api/v1/board")
        live = {d["code"]: d for d in board["departments"]}
        assert live["market"]["active_calls"] == 1 and live["market"]["experts_busy"] == 1
        assert live["market"]["experts_online"] == 1 and live["market"]["queue_length"] == 0
        assert live["housing"]["queue_length"] == 1
        assert live["housing"]["longest_wait_s"] >= 0
        assert live["social"]["longest_wait_s"] is None
        await expert.end(call_id)
        await kiosk.rate(call_id, 4)
        await waiting.cancel((await waiting.state()).consultation.consultation_id)
        board = await get_json(admin, f"{server.url}/api/v1/board")
    today = board["today"]
    assert today["consultations"] == 2 and today["answered"] == 1
    assert today["average_rating"] == 4.0
    assert today["abandonment_rate"] == 0.5
    assert today["median_wait_s"] >= 0 and today["median_handle_s"] >= 0
    assert len(board["hourly"]) == 7 * 24
    assert sum(h["consultations"] for h in board["hourly"]) == 2
    assert board["hourly"][-1]["consultations"] == 2


@pytest.mark.parametrize("username", ["kiosk01", "expert_market", "clerk"])
async def test_board_is_for_admins_only(sqlite_server: RunningServer, username: str) -> None:
    session = await login_session(sqlite_server, username)
    async with session, session.get(f"{sqlite_server.url}/api/v1/board") as response:
        assert response.status == 403


async def test_expert_history_holds_own_consultations_only(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, expert, call_id = await active_call(server, connect)
    await expert.end(call_id)
    mine = await login_session(server, "expert_market")
    other = await login_session(server, "expert_housing")
    async with mine, other:
        history = await get_json(mine, f"{server.url}/api/v1/me/consultations")
        assert [c["id"] for c in history["consultations"]] == [call_id]
        assert history["consultations"][0]["expert_name"] == "市场监管专家"
        assert (await get_json(other, f"{server.url}/api/v1/me/consultations")) == {
            "consultations": []
        }
    clerk = await login_session(server, "clerk")
    async with clerk, clerk.get(f"{server.url}/api/v1/me/consultations") as response:
        assert response.status == 403


async def test_department_hours_are_set_and_checked(sqlite_server: RunningServer) -> None:
    url = sqlite_server.url
    admin = await login_session(sqlite_server, "admin")
    async with admin:
        async with admin.post(
            f"{url}/api/v1/departments",
            json={"code": "tax", "name_zh": "税务局", "name_en": "Tax", "hours": "1-6 08:30-12:00"},
        ) as response:
            assert response.status == 201
            assert (await response.json())["hours"] == "1-6 08:30-12:00"
        async with admin.patch(
            f"{url}/api/v1/departments/tax", json={"hours": "1-5 13:00-17:30"}
        ) as response:
            assert (await response.json())["hours"] == "1-5 13:00-17:30"
        for bad in ["9-5 09:00-17:00", "1-5 9:00-17:00", "weekdays", "1-5 25:00-26:00"]:
            async with admin.patch(
                f"{url}/api/v1/departments/tax", json={"hours": bad}
            ) as response:
                assert response.status == 400, bad
        async with admin.patch(f"{url}/api/v1/departments/tax", json={}) as response:
            assert response.status == 400
    department = await sqlite_server.storage.departments.get("tax")
    assert department.hours == "1-5 13:00-17:30"
    entries = await sqlite_server.storage.audit.search(action="department.hours")
    assert [e.subject for e in entries] == ["tax"]


async def test_board_counts_earlier_days_in_the_chart_not_in_today(
    sqlite_server: RunningServer,
) -> None:
    server = sqlite_server
    kiosk = await server.storage.accounts.get_by_username("kiosk01")

    async def add_ended(days_ago: float) -> None:
        waiting = time.time() - days_ago * 86400
        row = {
            "id": new_id(),
            "kiosk_id": kiosk.id,
            "hall": None,
            "department": "market",
            "expert_id": None,
            "case_number": None,
            "state": "ended",
            "waiting_at": waiting,
            "offered_at": None,
            "active_at": waiting + 30,
            "ended_at": waiting + 330,
            "end_reason": "completed",
            "ended_by": "system",
            "outcome": None,
            "notes": None,
            "rating": None,
        }
        await server.storage.db.write(lambda conn: conn.execute(consultations.insert(), [row]))

    await add_ended(2)
    await add_ended(8)  # older than the chart
    admin = await login_session(server, "admin")
    async with admin:
        board = await get_json(admin, f"{server.url}/api/v1/board")
        assert board["today"]["consultations"] == 0
        assert sum(h["consultations"] for h in board["hourly"]) == 1
        assert [h["median_wait_s"] for h in board["hourly"] if h["consultations"]] == [30]
        # Earlier days are kept between calls (recomputed every 10 minutes or at midnight).
        await add_ended(3)
        board = await get_json(admin, f"{server.url}/api/v1/board")
        assert sum(h["consultations"] for h in board["hourly"]) == 1
    starts = [h["start"] for h in board["hourly"]]
    assert starts == sorted(starts) and len(set(starts)) == 7 * 24
