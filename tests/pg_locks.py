"""A PostgreSQL table held locked by another connection (as a slow migration or an
administrator's open transaction holds it), and whether statements wait for it."""

import contextlib
from collections.abc import AsyncIterator

import asyncpg


@contextlib.asynccontextmanager
async def table_locked(database_url: str, table: str) -> AsyncIterator[asyncpg.Connection]:
    """``table`` locked exclusively by a connection of its own until the block ends
    (its transaction, which changes nothing, then ends); the connection, to ask
    ``waiting_on_locks``."""
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
            yield connection
    finally:
        await connection.close()


async def waiting_on_locks(connection: asyncpg.Connection) -> int:
    """Statements of other connections to the same database waiting for a lock now."""
    count: int = await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return count
