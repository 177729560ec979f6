"""What a failing statement tells: never its parameters (usernames, password hashes,
names), and a database that cannot be reached is ``StorageUnavailable`` saying
why in one line."""

import socket
import traceback
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from storage.database import Database, database_url
from storage.errors import StorageUnavailable

SECRET = "$argon2id$v=19$m=65536,t=3,p=4$leaked-hash-of-someone"
NAME = "泄露检查员"


def chain(exc: BaseException) -> str:
    """Everything a log line with ``exc_info`` would show: the whole chain."""
    return "".join(traceback.format_exception(exc))


def insert_twice(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE t_faults (secret TEXT UNIQUE, name TEXT)"))
    for _ in range(2):
        conn.execute(
            text("INSERT INTO t_faults (secret, name) VALUES (:secret, :name)"),
            {"secret": SECRET, "name": NAME},
        )


def select_missing(conn: Connection) -> None:
    conn.execute(text("SELECT * FROM t_missing WHERE secret = :secret"), {"secret": SECRET})


@pytest.mark.parametrize("unit", [insert_twice, select_missing])
async def test_a_failed_statement_never_quotes_its_parameters(
    tmp_path: Path, database_url: str | None, unit: object
) -> None:
    db = await Database.open(_url(tmp_path, database_url))
    try:
        with pytest.raises(Exception) as failed:
            await db.write(unit)  # type: ignore[arg-type]
        told = chain(failed.value)
        # What failed is still told (the statement, the constraint), the values not.
        assert "[SQL: " in told, told
        assert SECRET not in told and NAME not in told
        assert not getattr(failed.value, "params", None)
    finally:
        await db.close()


def _url(tmp_path: Path, configured: str | None) -> str:
    return database_url(configured, tmp_path)


async def test_an_unreachable_database_is_unavailable_saying_why() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(StorageUnavailable, match=r"cannot be reached: .*Error") as failed:
        await Database.open(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nowhere")
    assert "\n" not in str(failed.value)
