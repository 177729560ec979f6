"""What one socket or account may ask of the server: reserved names, event floods,
undecodable packets, sockets per account, chat rate, sockets outliving sessions."""

import asyncio
import time

import aiohttp
import pytest
import socketio
from sqlalchemy import text

from signaling.client import ClientError, ExpertClient, KioskClient
from signaling.limits import EventRateLimit, TokenBucket, Verdict
from signaling.socketio_private import check_private_names
from tests.conftest import ClientFactory, RunningServer, ServerFactory, active_call


def test_python_socketio_private_names_are_there() -> None:
    assert check_private_names() == []


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2, burst=3, tokens=3, at=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_a_flooding_connection_is_refused_then_closed() -> None:
    now = [0.0]
    limits = EventRateLimit(rate=1, burst=2, clock=lambda: now[0])
    verdicts = [limits.admit("a") for _ in range(6)]
    assert verdicts == [
        Verdict.ALLOW,
        Verdict.ALLOW,
        Verdict.REFUSE,
        Verdict.REFUSE,
        Verdict.CLOSE,
        Verdict.CLOSE,
    ]
    assert limits.admit("b") is Verdict.ALLOW
    now[0] = 10.0
    assert limits.admit("a") is Verdict.ALLOW
    limits.forget("a")
    limits.forget("b")
    assert limits.tracked == 0


async def test_client_events_named_connect_or_disconnect_are_ignored(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """They ran the server's connection handlers: the kiosk was logged out of the
    state while its socket stayed, and ``connect`` logged a KeyError traceback."""
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    for name in ("disconnect", "connect", "connect_error", "message"):
        await kiosk.sio.emit(name, {"x": 1})
    await asyncio.sleep(0.2)
    assert kiosk.sio.connected
    view = await kiosk.request("market")
    account = await sqlite_server.storage.accounts.get_by_username("kiosk01")
    assert (await sqlite_server.hub.executor.open_call_of(account.id)).id == view.consultation_id
    assert sqlite_server.hub.gateway.connection_count == 1


@pytest.mark.slow
async def test_an_event_flood_gets_rate_limited_acks_then_the_socket_is_closed(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(events_per_second=5.0)
    flood: KioskClient = await connect(server, "kiosk01")
    other: KioskClient = await connect(server, "kiosk02")
    # A burst of twice the rate gets through; the rest of 20 at once is refused.
    results = await asyncio.gather(
        *(flood.emit("get_state") for _ in range(20)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, ClientError)]
    assert len(refused) >= 9 and all(r.code == "rate_limited" for r in refused)
    # Keeping on after being told closes the connection; others are not affected.
    for _ in range(40):
        if not flood.sio.connected:
            break
        await flood.sio.emit("get_state", {})
        await asyncio.sleep(0.01)
    for _ in range(100):
        if not flood.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not flood.sio.connected
    assert (await other.state()).username == "kiosk02"


async def test_undecodable_packets_close_only_that_connection(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """100,000-deep JSON and a 5,000-digit number in a socket.io packet."""
    other: KioskClient = await connect(sqlite_server, "kiosk02")
    for payload in (
        '42["get_state",' + "[" * 20000 + "]" * 20000 + "]",
        '42["x",' + "9" * 5000 + "]",
    ):
        kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
        await kiosk.sio.eio.send(payload)
        for _ in range(100):
            if not kiosk.sio.connected:
                break
            await asyncio.sleep(0.05)
        assert not kiosk.sio.connected
        await kiosk.close()
    assert (await other.state()).username == "kiosk02"


async def test_sockets_per_account_are_capped_with_a_clear_error(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(max_sockets_per_account=3)
    first: ExpertClient = await connect(server, "expert_market")
    extra = []
    for _ in range(2):
        client = ExpertClient(server.url)
        client.session_cookie = first.session_cookie
        await client.connect()
        extra.append(client)
    refused = ExpertClient(server.url)
    refused.session_cookie = first.session_cookie
    errors: list[object] = []
    refused.sio.on("connect_error", handler=errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect()
    assert errors == [
        {
            "message": "too many connections for this account; close another tab first",
            "data": {"code": "too_many_connections"},
        }
    ]
    # Closing one makes room again.
    await extra[0].close()
    await asyncio.sleep(0.2)
    await refused.connect()
    for client in [*extra[1:], refused]:
        await client.close()


async def test_chat_lines_are_rate_limited_per_account(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(chat_per_minute=5)
    kiosk, expert, call_id = await active_call(server, connect)
    for i in range(5):
        await kiosk.chat(call_id, f"line {i}")
    with pytest.raises(ClientError) as info:
        await kiosk.chat(call_id, "one too many")
    assert info.value.code == "rate_limited"
    # The other side has its own allowance.
    await expert.chat(call_id, "still fine")
    rows = await server.storage.consultations.chat(call_id)
    assert [r.text for r in rows][-1] == "still fine" and len(rows) == 6


async def test_a_socket_is_closed_when_its_session_expires(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    """The socket used to keep working after its session had expired."""
    server = await start_server(session_idle=60.0)
    expert: ExpertClient = await connect(server, "expert_market")
    kiosk: KioskClient = await connect(server, "kiosk01")
    # The expert's session has been idle for longer than allowed.
    stale = time.time() - 3600
    await server.storage.db.write(
        lambda conn: conn.execute(
            text(
                "UPDATE sessions SET last_seen = :t WHERE account_id = "
                "(SELECT id FROM accounts WHERE username = 'expert_market')"
            ),
            {"t": stale},
        )
    )
    assert await server.hub.gateway.close_expired() == 1
    for _ in range(100):
        if not expert.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not expert.sio.connected and kiosk.sio.connected
    # Its cookie opens nothing any more.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/api/v1/me", headers={"Cookie": f"wl_session={expert.session_cookie}"}
        ) as response,
    ):
        assert response.status == 401
