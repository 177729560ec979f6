"""Who may send which event: the role decides, and nobody acts on another's consultation."""

import pytest
import socketio

from signaling.client import ClientError, ExpertClient, KioskClient, WindowlinkClient
from signaling.messages import OfferView
from storage.records import Role
from tests.conftest import ClientFactory, RunningServer

CONSULTATION = {"consultation_id": "0123456789abcdef"}

KIOSK_ONLY = {
    "request_consultation": {"department": "market"},
    "cancel_request": CONSULTATION,
    "rate_consultation": {**CONSULTATION, "rating": 5},
}
EXPERT_ONLY = {
    "set_presence": {"status": "available"},
    "accept_offer": CONSULTATION,
    "decline_offer": CONSULTATION,
    "save_outcome": {**CONSULTATION, "outcome": "answered"},
    "get_queue": {},
}
PARTICIPANTS_ONLY = {
    "end_consultation": CONSULTATION,
    "send_chat": {**CONSULTATION, "text": "hello"},
}


async def expect_error(client: WindowlinkClient, event: str, payload: object, code: str) -> None:
    with pytest.raises(ClientError) as info:
        await client.emit(event, payload)
    assert info.value.code == code, info.value


async def test_connection_without_a_session_is_refused(sqlite_server: RunningServer) -> None:
    client = socketio.AsyncClient(reconnection=False)
    reasons: list[object] = []
    client.on("connect_error", handler=reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(sqlite_server.url, transports=["websocket"], wait_timeout=5)
    assert reasons == [{"message": "log in first", "data": {"code": "unauthorized"}}]
    forged = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await forged.connect(
            sqlite_server.url,
            headers={"Cookie": "wl_session=not-a-real-token"},
            transports=["websocket"],
            wait_timeout=5,
        )


async def test_a_logged_out_session_cannot_connect(sqlite_server: RunningServer) -> None:
    client = KioskClient(sqlite_server.url)
    await client.login("kiosk01", "demo1234")
    await client.connect()
    assert client._http is not None
    async with client._http.post(f"{sqlite_server.url}/api/v1/logout") as response:
        assert response.status == 204
    again = KioskClient(sqlite_server.url)
    again.session_cookie = client.session_cookie
    with pytest.raises(socketio.exceptions.ConnectionError):
        await again.connect()
    await client.close()
    await again.close()


async def test_kiosk_may_not_send_expert_events(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    for event, payload in EXPERT_ONLY.items():
        await expect_error(kiosk, event, payload, "forbidden")


async def test_expert_may_not_send_kiosk_events(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    expert: ExpertClient = await connect(sqlite_server, "expert_market")
    for event, payload in KIOSK_ONLY.items():
        await expect_error(expert, event, payload, "forbidden")


@pytest.mark.parametrize("username", ["clerk", "admin"])
async def test_clerk_and_admin_may_not_take_part_in_calls(
    sqlite_server: RunningServer, connect: ClientFactory, username: str
) -> None:
    staff = await connect(sqlite_server, username, kind=KioskClient)
    for event, payload in {**KIOSK_ONLY, **EXPERT_ONLY, **PARTICIPANTS_ONLY}.items():
        await expect_error(staff, event, payload, "forbidden")
    assert (await staff.state()).role == username


async def test_expert_of_another_department_cannot_take_or_see_a_consultation(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    market: ExpertClient = await connect(sqlite_server, "expert_market")
    await market.set_presence("available")
    housing: ExpertClient = await connect(sqlite_server, "expert_housing")
    await housing.set_presence("available")
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    view = await kiosk.request("market", case_number="C-77")
    await market.next_event("offer", OfferView)
    ref = {"consultation_id": view.consultation_id}
    await expect_error(housing, "accept_offer", ref, "not_found")
    await expect_error(housing, "decline_offer", ref, "not_found")
    await expect_error(housing, "send_chat", {**ref, "text": "hi"}, "not_found")
    await expect_error(housing, "end_consultation", ref, "not_found")
    assert (await housing.queue()).entries == []
    assert housing.drain("offer") == []
    queue = await market.queue()
    assert [e.case_number for e in queue.entries] == ["C-77"]


async def test_expert_cannot_accept_an_offer_made_to_a_colleague(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    await sqlite_server.storage.accounts.create(
        "expert_market2", "password123", Role.EXPERT, department="market"
    )
    ringing: ExpertClient = await connect(sqlite_server, "expert_market")
    await ringing.set_presence("available")
    colleague = await connect(sqlite_server, "expert_market2", "password123", kind=ExpertClient)
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    view = await kiosk.request("market")
    await ringing.next_event("offer", OfferView)
    await expect_error(
        colleague, "accept_offer", {"consultation_id": view.consultation_id}, "invalid_state"
    )


async def test_kiosk_cannot_touch_another_kiosks_consultation(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    owner: KioskClient = await connect(sqlite_server, "kiosk01")
    other: KioskClient = await connect(sqlite_server, "kiosk02")
    view = await owner.request("social")
    ref = {"consultation_id": view.consultation_id}
    await expect_error(other, "cancel_request", ref, "not_found")
    await expect_error(other, "end_consultation", ref, "not_found")
    await expect_error(other, "send_chat", {**ref, "text": "x"}, "not_found")
    await expect_error(other, "rate_consultation", {**ref, "rating": 1}, "not_found")
    assert (await owner.state()).consultation is not None


async def test_rating_only_once_and_only_after_the_end(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    view = await kiosk.request("social")
    ref = {"consultation_id": view.consultation_id}
    await expect_error(kiosk, "rate_consultation", {**ref, "rating": 4}, "invalid_state")
    await kiosk.cancel(view.consultation_id)
    await kiosk.rate(view.consultation_id, 4)
    await expect_error(kiosk, "rate_consultation", {**ref, "rating": 2}, "invalid_state")
    assert (await sqlite_server.storage.consultations.get(view.consultation_id)).rating == 4
