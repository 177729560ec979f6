"""The cluster tests' shared fixtures: a deployment of real server processes, and
aiortc peers on loopback."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from media.aiortc_private import restrict_host_addresses
from tests.cluster.processes import Deployment, open_deployment


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with open_deployment(tmp_path / "deployment") as opened:
        yield opened


@pytest.fixture
def loopback_peers() -> Iterator[None]:
    """This process's aiortc peers gather on loopback, where the servers' relay
    workers (``--media-address 127.0.0.1``) are."""
    restrict_host_addresses(["127.0.0.1"])
    try:
        yield
    finally:
        restrict_host_addresses([])
