"""A key a node cannot find is a clear 503, never a 500: two nodes sharing records
and documents but each with a key directory of its own (the set-up that
``check_serving`` now refuses without a master key; built here directly)."""

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from signaling.client import part_headers
from tests.conftest import ClientFactory, ServerFactory, active_call, login_session

REDIS = "redis://127.0.0.1:6379/0"

PDF = b"%PDF-1.7\n" + os.urandom(40_000) + b"\n%%EOF\n"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the machine's Redis, emptied afterwards."""
    prefix = f"wl-test:{secrets.token_hex(8)}:"
    yield prefix
    redis = Redis.from_url(REDIS)
    try:
        doomed = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if doomed:
            await redis.delete(*doomed)
    finally:
        await redis.aclose()


async def test_a_node_without_the_other_nodes_keys_answers_503_keys_unavailable(
    redis_prefix: str, start_server: ServerFactory, connect: ClientFactory, tmp_path: Path
) -> None:
    shared = {
        "database_url": f"sqlite:///{tmp_path / 'shared.db'}",
        "blob_url": f"file://{tmp_path / 'blobs'}",
        "redis_url": REDIS,
        "redis_prefix": redis_prefix,
    }
    first = await start_server(data_dir=tmp_path / "first", **shared)
    second = await start_server(data_dir=tmp_path / "second", **shared)
    _, _, call_id = await active_call(first, connect)
    kiosk = await login_session(first, "kiosk01")
    async with kiosk:
        async with kiosk.post(
            f"{first.url}/api/v1/consultations/{call_id}/uploads",
            json={"name": "a.pdf", "size": len(PDF)},
        ) as response:
            assert response.status == 201
            path = (await response.json())["url"]
        half = len(PDF) // 2
        # The part goes through the other node (a load balancer's choice).
        async with kiosk.patch(
            second.url + path, data=PDF[:half], headers=part_headers(0, PDF[:half])
        ) as response:
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "keys_unavailable"
            assert response.headers["Retry-After"] == "60"
        # Nothing was lost: the node with the keys takes the same part and the rest.
        for offset, part in ((0, PDF[:half]), (half, PDF[half:])):
            async with kiosk.patch(
                first.url + path, data=part, headers=part_headers(offset, part)
            ) as response:
                assert response.status == 204, await response.text()
        async with kiosk.post(f"{first.url}{path}/finish") as response:
            assert response.status == 201
            file_url = (await response.json())["url"]
        async with kiosk.get(second.url + file_url) as response:
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "keys_unavailable"
        async with kiosk.get(first.url + file_url) as response:
            assert response.status == 200 and await response.read() == PDF
