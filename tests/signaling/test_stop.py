"""Signaling's stop, in this process: an event blocked in the records when the stop
comes is cancelled before the live state closes, and nothing touches the closed
live state afterwards, even when the blocked statement completes later. (Before,
the event went on once the lock was released, after the store had closed:
"RedisStore used before start() or after close()", with its record committed.)
``tests/cluster/test_stop.py`` stops real server processes."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from signaling.client import KioskClient
from tests.cluster.processes import eventually
from tests.conftest import ClientFactory, ServerFactory, create_database, drop_database
from tests.pg_locks import table_locked, waiting_on_locks

pytestmark = pytest.mark.postgres


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


async def consultations_of(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM consultations")
        return count
    finally:
        await connection.close()


async def test_an_event_blocked_at_the_stop_never_reaches_the_closed_live_state(
    postgres_url: str,
    start_server: ServerFactory,
    connect: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(database_url=postgres_url)
    kiosk: KioskClient = await connect(server, "kiosk01")
    caplog.set_level(logging.WARNING)
    async with table_locked(postgres_url, "consultations") as holder:
        pending = asyncio.create_task(
            kiosk.emit("request_consultation", {"department": "market"}, timeout=30)
        )

        async def blocked() -> bool:
            return await waiting_on_locks(holder) > 0

        await eventually(blocked, 20, "the request waits for the table lock")
        await server.hub.stop(within=1.0)
        assert "socket handlers cancelled: event request_consultation" in caplog.text
    # The statement completes now (the records are still open in this process): the
    # request's row is committed, but nothing of the request goes on to the live state.
    # A write queued behind it returns once its unit of work has been answered; a task
    # still waiting on that answer would have run on by the next turns of the loop.
    await server.storage.db.write(lambda _conn: None)
    for _ in range(10):
        await asyncio.sleep(0)
    assert await consultations_of(postgres_url) == 1
    assert "used while closed" not in caplog.text
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await pending
