"""Call-backs through the real server: a waiting citizen leaves a number and a note and
keeps their place; the department's experts see it masked, one of two taking it at
once wins and sees the number in full (audited); attempts are recorded; expired
requests leave the list; no number in clear in the logs or the audit."""

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from tests.conftest import ClientFactory, RunningServer, call_route, login_session

PHONE = "13912345678"


@pytest.fixture
async def sessions(server: RunningServer) -> Any:
    made = {
        name: await login_session(server, name)
        for name in ("admin", "kiosk01", "expert_market", "expert_housing")
    }
    colleague = {
        "username": "expert_market2",
        "password": "Wide-Open-Callback-26",
        "role": "expert",
        "department": "market",
    }
    status, _ = await call_route(made["admin"], server, "POST", "/api/v1/accounts", colleague)
    assert status == 201
    made["expert_market2"] = await login_session(server, "expert_market2", "Wide-Open-Callback-26")
    yield made
    for session in made.values():
        await session.close()


async def test_a_waiting_citizen_is_called_back_by_one_expert(
    server: RunningServer,
    sessions: Any,
    connect: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    kiosk = await connect(server, "kiosk01")
    waiting = await kiosk.request("market", case_number="SC-2026-001")
    body = {
        "department": "market",
        "phone": "139-1234-5678",
        "note": "营业执照变更，需要咨询材料",
        "consultation_id": waiting.consultation_id,
    }
    status, made = await call_route(sessions["kiosk01"], server, "POST", "/api/v1/callbacks", body)
    assert status == 201, made
    assert made["phone_masked"] == "139****5678" and made["case_number"] == "SC-2026-001"
    record = await server.storage.consultations.get(waiting.consultation_id)
    assert made["queued_at"] == record.waiting_at
    assert "notice callback_scheduled to 139****5678" in caplog.text

    # Another department's expert neither lists nor takes it.
    status, listed = await call_route(
        sessions["expert_housing"], server, "GET", "/api/v1/callbacks"
    )
    assert (status, listed["callbacks"]) == (200, [])
    path = f"/api/v1/callbacks/{made['id']}"
    assert (await call_route(sessions["expert_housing"], server, "POST", f"{path}/take"))[0] == 404

    status, listed = await call_route(sessions["expert_market"], server, "GET", "/api/v1/callbacks")
    assert status == 200
    (row,) = listed["callbacks"]
    assert row["phone_masked"] == "139****5678" and row["note"] == body["note"]
    assert PHONE not in json.dumps(listed)

    results = await asyncio.gather(
        call_route(sessions["expert_market"], server, "POST", f"{path}/take"),
        call_route(sessions["expert_market2"], server, "POST", f"{path}/take"),
    )
    assert sorted(status for status, _ in results) == [200, 409]
    winner = "expert_market" if results[0][0] == 200 else "expert_market2"
    taken = next(answer for status, answer in results if status == 200)
    assert taken["phone"] == PHONE and taken["callback"]["taken_by_me"]

    # Only the expert holding it records a call.
    loser = "expert_market2" if winner == "expert_market" else "expert_market"
    attempt = {"result": "no_answer", "note": "无人接听"}
    assert (await call_route(sessions[loser], server, "POST", f"{path}/attempts", attempt))[
        0
    ] == 409
    status, after = await call_route(sessions[winner], server, "POST", f"{path}/attempts", attempt)
    assert (status, after["state"], after["attempts"]) == (200, "open", 1)
    assert (await call_route(sessions[loser], server, "POST", f"{path}/take"))[0] == 200
    reached = {"result": "reached", "note": "已告知所需材料"}
    status, after = await call_route(sessions[loser], server, "POST", f"{path}/attempts", reached)
    assert (status, after["state"]) == (200, "done")
    status, listed = await call_route(sessions["expert_market"], server, "GET", "/api/v1/callbacks")
    assert listed["callbacks"] == []

    entries = await server.storage.audit.entries(limit=100_000)
    actions = [e.action for e in entries]
    assert actions.count("callback.take") == 2 and actions.count("callback.attempt") == 2
    assert PHONE not in json.dumps([(e.subject, e.detail) for e in entries])
    assert PHONE not in caplog.text


async def test_a_request_without_a_valid_mobile_number_is_refused(
    server: RunningServer, sessions: Any
) -> None:
    for phone in ("12912345678", "1391234567", "0139123456789", "+1 3912345678"):
        body = {"department": "market", "phone": phone}
        status, answer = await call_route(
            sessions["kiosk01"], server, "POST", "/api/v1/callbacks", body
        )
        assert status == 400, phone
        assert "mainland mobile number" in answer["error"]["message"]


async def test_expired_requests_leave_the_list(server: RunningServer, sessions: Any) -> None:
    body = {"department": "market", "phone": PHONE, "note": ""}
    status, made = await call_route(sessions["kiosk01"], server, "POST", "/api/v1/callbacks", body)
    assert status == 201 and made["expires_at"] - made["created_at"] == pytest.approx(86400)
    # The upkeep task's round, a day and a bit later.
    assert await server.storage.callbacks.expire(time.time() + 86400 + 60) == 1
    status, listed = await call_route(sessions["expert_market"], server, "GET", "/api/v1/callbacks")
    assert listed["callbacks"] == []
    path = f"/api/v1/callbacks/{made['id']}/take"
    assert (await call_route(sessions["expert_market"], server, "POST", path))[0] == 409
