"""A store that is down answers 503 ``unavailable`` with Retry-After, and loses
nothing: real faults (a Redis of the test's own stopped, a SQLite database whose
write lock another connection holds), then the same request once it is back."""

import sqlite3

import aiohttp
import pytest

from harness.redis import PrivateRedis
from tests.conftest import DEMO_PASSWORD, ServerFactory, login_session


async def post(url: str, body: dict[str, str]) -> tuple[int, dict[str, object], str | None]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        return response.status, await response.json(), response.headers.get("Retry-After")


async def test_login_while_redis_is_down_answers_503_with_retry_after(
    start_server: ServerFactory, private_redis: PrivateRedis
) -> None:
    server = await start_server(redis_url=private_redis.url)
    login = {"username": "clerk", "password": DEMO_PASSWORD}
    assert (await post(f"{server.url}/api/v1/login", login))[0] == 200
    await private_redis.stop()
    status, body, retry_after = await post(f"{server.url}/api/v1/login", login)
    # Was 400: the throttle's Redis being down is not the client's fault.
    assert (status, body["error"]["code"]) == (503, "unavailable")  # type: ignore[index]
    assert retry_after is not None and 1 <= int(retry_after) <= 30
    await private_redis.start()
    assert (await post(f"{server.url}/api/v1/login", login))[0] == 200


@pytest.mark.slow
async def test_a_write_while_sqlite_is_locked_answers_503_and_is_not_lost(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    department = {"code": "locked", "name_zh": "锁定测试", "name_en": "Lock test"}
    admin = await login_session(server, "admin")
    holder = sqlite3.connect(server.settings.data_dir / "windowlink.db", isolation_level=None)
    try:
        # Another process's write transaction (an administrator's sqlite3 shell, a
        # stuck backup) holds the write lock past the server's busy timeout.
        holder.execute("BEGIN IMMEDIATE")
        async with admin.post(f"{server.url}/api/v1/departments", json=department) as response:
            body = await response.json()
            # Was 500 internal, with the statement's parameters in the log.
            assert (response.status, body["error"]["code"]) == (503, "unavailable")
            assert int(response.headers["Retry-After"]) >= 1
        holder.execute("ROLLBACK")
        async with admin.post(f"{server.url}/api/v1/departments", json=department) as response:
            assert response.status == 201
        codes = [d.code for d in await server.storage.departments.list()]
        assert codes.count("locked") == 1
    finally:
        holder.close()
        await admin.close()
