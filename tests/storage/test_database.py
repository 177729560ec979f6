"""Group commit: a failing unit writes nothing and fails alone, whether it shares
its transaction with others or has one to itself; the engine stays usable."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from storage.database import Database, database_url


class Refused(Exception):
    pass


async def open_db(tmp_path: Path, url: str | None) -> Database:
    db = await Database.open(database_url(url, tmp_path))
    await db.write(lambda conn: conn.execute(text("DROP TABLE IF EXISTS t_group")))
    await db.write(lambda conn: conn.execute(text("CREATE TABLE t_group (n INTEGER)")))
    return db


def insert_then(n: int, fail: bool) -> Callable[[Connection], int]:
    def unit(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t_group (n) VALUES (:n)"), {"n": n})
        if fail:
            raise Refused(n)
        return n

    return unit


async def stored(db: Database) -> list[int]:
    rows = await db.read(lambda conn: conn.execute(text("SELECT n FROM t_group")).all())
    return sorted(int(r.n) for r in rows)


async def test_a_unit_alone_that_fails_writes_nothing(
    tmp_path: Path, database_url: str | None
) -> None:
    db = await open_db(tmp_path, database_url)
    try:
        with pytest.raises(Refused):
            await db.write(insert_then(1, fail=True))
        assert await db.write(insert_then(2, fail=False)) == 2
        assert await stored(db) == [2]
    finally:
        await db.write(lambda conn: conn.execute(text("DROP TABLE t_group")))
        await db.close()


async def test_in_a_batch_the_failing_units_roll_back_alone(
    tmp_path: Path, database_url: str | None
) -> None:
    db = await open_db(tmp_path, database_url)
    try:
        # Queued together, so that all but the first share one transaction.
        results = await asyncio.gather(
            *(db.write(insert_then(n, fail=n % 3 == 0)) for n in range(12)),
            return_exceptions=True,
        )
        for n, result in enumerate(results):
            if n % 3 == 0:
                assert isinstance(result, Refused)
            else:
                assert result == n
        assert await stored(db) == [n for n in range(12) if n % 3]
    finally:
        await db.write(lambda conn: conn.execute(text("DROP TABLE t_group")))
        await db.close()
