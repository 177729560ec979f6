"""The coturn sample (deploy/coturn/turnserver.conf) run by the real coturn on
loopback, driven by aioice's TURN client: it relays to the relay workers'
address (here 127.0.0.1) and to nothing else, allocates no TCP relays, caps the
allocations per credential, and checks a credential only when allocating (so that
credentials valid for minutes serve a call of hours)."""

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import TurnClientTcpProtocol, TurnClientUdpProtocol

from tests.coturn import credentials, running_coturn

pytestmark = pytest.mark.slow

SECRET = "turn-secret-for-tests-" + os.urandom(8).hex()
TCP_TRANSPORT = 0x06000000
"""REQUESTED-TRANSPORT for a TCP relay (RFC 6062), as aioice packs it."""


@pytest.fixture
async def turn_port(tmp_path: Path) -> AsyncIterator[int]:
    async with running_coturn(tmp_path / "coturn", SECRET, relay_peers="127.0.0.1") as port:
        yield port


async def allocated(port: int, username: str, password: str) -> TurnClientUdpProtocol:
    """A UDP TURN allocation on coturn at ``port`` (aioice's client; ``delete``
    gives it up and closes its socket)."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(("127.0.0.1", port), username, password, 600, 300),
        remote_addr=("127.0.0.1", port),
    )
    try:
        await client.connect()
    except BaseException:
        transport.close()
        raise
    return client


async def refusal(request: Callable[[], Any]) -> int | None:
    """The TURN error code a request is refused with (None: it succeeded)."""
    try:
        await request()
    except stun.TransactionFailed as exc:
        code: int = exc.response.attributes["ERROR-CODE"][0]
        return code
    return None


async def test_the_sample_relays_to_the_relay_workers_and_to_nothing_else(
    turn_port: int,
) -> None:
    client = await allocated(turn_port, *credentials(SECRET, time.time() + 60))
    worker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        worker.bind(("127.0.0.1", 0))
        worker.setblocking(False)
        allowed = worker.getsockname()
        # The relay worker's address: permitted, and what is sent arrives.
        await client.send_data(b"to the relay", allowed)
        loop = asyncio.get_running_loop()
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(worker, 100), 10)
        assert data == b"to the relay"
        # Anything else (seen: relayed to any public address) is refused: another
        # loopback address, the internal network, the internet.
        peers = ("127.0.0.2", "10.0.0.1", "192.168.1.1", "100.64.0.1", "8.8.8.8")
        for number, peer in enumerate(peers, start=0x4001):

            async def bind(number: int = number, peer: str = peer) -> None:
                await client.channel_bind(number, (peer, 3478))

            assert await refusal(bind) == 403, peer
    finally:
        worker.close()
        await client.delete()


async def test_the_sample_allocates_no_tcp_relay_and_caps_allocations_per_credential(
    turn_port: int,
) -> None:
    username, password = credentials(SECRET, time.time() + 60)
    loop = asyncio.get_running_loop()
    tcp, control = await loop.create_connection(
        lambda: TurnClientTcpProtocol(("127.0.0.1", turn_port), username, password, 600, 300),
        "127.0.0.1",
        turn_port,
    )
    try:
        request = stun.Message(
            message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST
        )
        request.attributes["LIFETIME"] = 600
        request.attributes["REQUESTED-TRANSPORT"] = TCP_TRANSPORT
        assert await refusal(lambda: control.request_with_retry(request)) == 442
    finally:
        tcp.close()
    clients: list[TurnClientUdpProtocol] = []
    try:
        for _ in range(10):
            clients.append(await allocated(turn_port, username, password))
        # The eleventh allocation of one credential: quota reached.
        assert await refusal(lambda: allocated(turn_port, username, password)) == 486
    finally:
        for client in clients:
            await client.delete()


async def test_a_credential_is_checked_when_allocating_only(turn_port: int) -> None:
    """A call outlives its credentials' minutes: the allocation made with them is
    refreshed after they expired; a new one with them is refused."""
    expiry = time.time() + 2
    username, password = credentials(SECRET, expiry)
    client = await allocated(turn_port, username, password)
    try:
        # coturn counts whole seconds: two later, the credential has surely expired.
        await asyncio.sleep(max(0.0, int(expiry) + 2 - time.time()))
        refresh = stun.Message(message_method=stun.Method.REFRESH, message_class=stun.Class.REQUEST)
        refresh.attributes["LIFETIME"] = 600
        response, _ = await client.request_with_retry(refresh)
        assert response.attributes["LIFETIME"] == 600
        assert await refusal(lambda: allocated(turn_port, username, password)) == 401
    finally:
        await client.delete()
