"""Fails loudly when aiortc or aioice moves a private name the relay relies on."""

import aioice.ice
import aiortc
import pytest

from media import aiortc_private
from media.aiortc_private import check_private_names, restrict_host_addresses


def test_pinned_versions() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert aioice.__version__ == "0.13.0"


def test_every_private_name_the_relay_uses_is_there() -> None:
    assert check_private_names() == []


def test_host_addresses_can_be_restricted_and_restored() -> None:
    original = aiortc_private._original_host_addresses
    restrict_host_addresses(["127.0.0.1", "::1"])
    try:
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == [
            "127.0.0.1",
            "::1",
        ]
    finally:
        restrict_host_addresses([])
    assert aioice.ice.get_host_addresses is original


def test_a_loopback_relay_ignores_checks_from_other_addresses() -> None:
    original = aioice.ice.Connection.request_received
    restrict_host_addresses(["127.0.0.1"])
    try:
        guard = aioice.ice.Connection.request_received
        assert guard is not original
        # Dropped before aioice looks at anything (these arguments would break it).
        guard(None, None, ("192.0.2.2", 5000), None)  # type: ignore[arg-type]
        with pytest.raises(AttributeError):
            guard(None, None, ("127.0.0.1", 5000), None)  # type: ignore[arg-type]
        restrict_host_addresses(["127.0.0.1", "192.0.2.2"])
        assert aioice.ice.Connection.request_received is original
    finally:
        restrict_host_addresses([])
    assert aioice.ice.Connection.request_received is original


async def test_a_turn_allocation_is_not_a_host_socket() -> None:
    """A relayed candidate's protocol is aioice's StunProtocol too, over a
    TurnTransport with no socket of its own: the fast path and the pump must never
    take it for a host socket (the native path asked it for its socket's number
    and failed inside aiortc's connection task when the relay's own TURN
    allocation was the nominated pair)."""
    import asyncio

    import aioice.turn

    connection = aioice.ice.Connection(ice_controlling=False)
    relayed = aioice.ice.StunProtocol(connection)
    relayed.connection_made(aioice.turn.TurnTransport(None))  # type: ignore[arg-type]
    host = aioice.ice.StunProtocol(connection)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: host, local_addr=("127.0.0.1", 0)
    )
    try:
        assert not aiortc_private.on_host_socket(relayed)
        assert aiortc_private.on_host_socket(host)
        connection._protocols = [relayed, host]
        assert aiortc_private.host_protocols(connection) == [host]
    finally:
        transport.close()
