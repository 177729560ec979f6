"""Fails loudly when aiortc or aioice moves a private name the relay relies on."""

import aioice.ice
import aiortc

from media.aiortc_private import check_private_names, restrict_host_addresses


def test_pinned_versions() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert aioice.__version__ == "0.13.0"


def test_every_private_name_the_relay_uses_is_there() -> None:
    assert check_private_names() == []


def test_host_addresses_can_be_restricted_and_restored() -> None:
    original = aioice.ice.get_host_addresses
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
