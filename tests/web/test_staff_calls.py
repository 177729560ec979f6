"""Calls for the hall's staff as clerks meet them at once: one clerk takes a call and
the kiosk hears of one clerk coming (of two at once, one takes it; the other is told
it is taken), and only a call a kiosk made can be answered."""

import asyncio
from typing import Any

import aiohttp

from signaling.messages import StaffCallAnswered, StaffCallView
from storage.records import Role
from tests.conftest import ClientFactory, RunningServer, login_session

CLERK2 = ("clerk2", "Clerk-Pass-2026x")


async def answer(http: aiohttp.ClientSession, server: RunningServer, call_id: str) -> Any:
    async with http.post(
        f"{server.url}/api/v1/staff-calls/answer", json={"id": call_id, "kiosk": "kiosk01"}
    ) as response:
        return response.status, await response.json()


async def test_of_two_clerks_taking_one_call_at_once_one_goes_and_the_other_is_told(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    await server.storage.accounts.create(*CLERK2, Role.CLERK, halls=["city"])
    kiosk = await connect(server, "kiosk01")
    kiosk_http = await login_session(server, "kiosk01")
    a = await login_session(server, "clerk")
    b = await login_session(server, *CLERK2)
    async with kiosk_http, a, b:
        async with kiosk_http.post(f"{server.url}/api/v1/staff-calls") as response:
            assert response.status == 202
            call = StaffCallView.model_validate(await response.json())
        answers = await asyncio.gather(answer(a, server, call.id), answer(b, server, call.id))
        assert sorted(status for status, _ in answers) == [200, 409]
        taken = next(body for status, body in answers if status == 409)
        assert taken["error"]["code"] == "staff_call_closed"
        # The kiosk hears of one clerk coming, once.
        coming = await kiosk.next_event("staff_call_answered", StaffCallAnswered)
        assert coming.id == call.id
        await asyncio.sleep(0.3)
        assert kiosk.drain("staff_call_answered") == []
        # Taken already: a third answer is told so too.
        status, body = await answer(a, server, call.id)
        assert (status, body["error"]["code"]) == (409, "staff_call_closed")


async def test_only_a_call_a_kiosk_made_can_be_answered(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk = await connect(server, "kiosk01")
    clerk = await login_session(server, "clerk")
    async with clerk:
        status, body = await answer(clerk, server, "0123456789abcdef")
        assert (status, body["error"]["code"]) == (409, "staff_call_closed")
    await asyncio.sleep(0.3)
    assert kiosk.drain("staff_call_answered") == []
