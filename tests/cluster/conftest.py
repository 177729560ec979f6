"""The cluster tests' shared fixture: a deployment of real server processes."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.processes import Deployment, open_deployment


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with open_deployment(tmp_path / "deployment") as opened:
        yield opened
