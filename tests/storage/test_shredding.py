"""Crypto-shredding that holds against what a database keeps: the key of a period
whose documents are all shredded is destroyed, and no leftover (a free page, the
WAL, a dead tuple, an old copy of the ciphertext) opens a shredded document."""

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text, update

from storage.blobs import LocalBlobStore
from storage.datakeys import DataKeys, NewDataKey
from storage.errors import FileShredded
from storage.filestore import FileStore
from storage.keyring import DirectoryKeks, Keyring, WrappedKey
from storage.periodkeys import (
    DESTROY_GRACE,
    PeriodKeys,
    is_destroyable,
    period_end,
    period_of,
)
from storage.retention import DAY, shred_expired
from storage.schema import consultations, files, period_keys
from tests.conftest import (
    ClientFactory,
    RunningServer,
    ServerFactory,
    active_call,
    create_database,
    drop_database,
    login_session,
    upload_file,
)
from web.keys import FILES

N = 30.0


def pdf() -> bytes:
    return b"%PDF-1.7\n" + os.urandom(30_000) + b"\n%%EOF\n"


# ---- the decisions, as tables ---------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "period"),
    [
        (0.0, "1970-01-01"),
        (86399.999, "1970-01-01"),
        (86400.0, "1970-01-02"),
        (1_767_225_599.0, "2025-12-31"),  # 23:59:59 UTC, whatever the local zone
        (1_767_225_600.0, "2026-01-01"),
    ],
)
def test_a_period_is_a_utc_day(at: float, period: str) -> None:
    assert period_of(at) == period
    assert period_end(period) - DAY <= at < period_end(period)


END = period_end("2026-03-01")


@pytest.mark.parametrize(
    ("referenced", "now", "destroyable"),
    [
        (False, END + DESTROY_GRACE, True),
        (False, END + 10 * DAY, True),
        (True, END + 10 * DAY, False),  # a document of the period is still readable
        (False, END + DESTROY_GRACE - 1, False),  # a node's clock may still be in it
        (False, END - DAY / 2, False),  # the period is still running
    ],
)
def test_when_a_period_key_may_be_destroyed(
    referenced: bool, now: float, destroyable: bool
) -> None:
    assert is_destroyable("2026-03-01", referenced, now, DESTROY_GRACE) is destroyable


# ---- against a server ----------------------------------------------------------------


async def uploaded(
    server: RunningServer, connect: ClientFactory, content: bytes
) -> tuple[str, str]:
    """A consultation taken to active, a document uploaded, the call ended; the ids."""
    kiosk, expert, call_id = await active_call(server, connect)
    session = await login_session(server, "kiosk01")
    async with session:
        status, record = await upload_file(server, session, call_id, "a.pdf", content)
    assert status == 201, record
    await kiosk.end(call_id)
    # As the expert does after every call: the next citizen is offered after this.
    await expert.save_outcome(call_id, "answered")
    return call_id, str(record["id"])


async def row_of(server: RunningServer, file_id: str) -> Any:
    return await server.storage.db.read(
        lambda conn: conn.execute(select(files).where(files.c.id == file_id)).one()
    )


async def period_row(server: RunningServer, key_id: str) -> Any:
    return await server.storage.db.read(
        lambda conn: conn.execute(select(period_keys).where(period_keys.c.id == key_id)).one()
    )


async def expire(server: RunningServer, call_id: str, now: float) -> None:
    """Place the ended consultation beyond the retention period at ``now``."""
    statement = (
        update(consultations)
        .where(consultations.c.id == call_id)
        .values(ended_at=now - (N + 1) * DAY)
    )
    await server.storage.db.write(lambda conn: conn.execute(statement))


def later_than_the_period(key_id_period: str) -> float:
    return period_end(key_id_period) + DESTROY_GRACE + 1


async def test_a_shredded_document_stays_shut_with_its_old_row_and_ciphertext_put_back(
    server: RunningServer, connect: ClientFactory
) -> None:
    """What an attacker holds after shredding: the ciphertext from an old copy (bucket
    versioning, a backup) and the old wrapped data key (free pages, dead tuples)."""
    store: FileStore = server.app[FILES]
    content = pdf()
    call_id, file_id = await uploaded(server, connect, content)
    old = await row_of(server, file_id)
    assert old.kek_id.startswith("pk-")
    blob = store.blobs
    assert isinstance(blob, LocalBlobStore)
    ciphertext = blob.path_of(file_id).read_bytes()

    now = later_than_the_period((await period_row(server, old.kek_id)).period)
    await expire(server, call_id, now)
    assert await shred_expired(server.storage.db, store, days=N, now=now) == [file_id]
    destroyed = await period_row(server, old.kek_id)
    assert (destroyed.kek_id, destroyed.wrapped, destroyed.destroyed_at) == ("", "", now)
    entries = await server.storage.audit.search(action="keys.destroy")
    assert [(e.actor, e.subject) for e in entries] == [("system", old.kek_id)]

    # The attacker's restoration.
    blob.path_of(file_id).write_bytes(ciphertext)
    statement = (
        update(files)
        .where(files.c.id == file_id)
        .values(kek_id=old.kek_id, wrapped_key=old.wrapped_key, shredded_at=None)
    )
    await server.storage.db.write(lambda conn: conn.execute(statement))
    clerk = await login_session(server, "clerk")
    async with clerk, clerk.get(f"{server.url}/api/v1/files/{file_id}") as response:
        body = await response.read()
        # Gone, as every answer about a shredded document says (it was 409 conflict).
        assert response.status == 410, body
        assert b'"shredded"' in body and b"destroyed" in body and content not in body
    with pytest.raises(FileShredded):
        await store.keys.of_file(file_id)
    await server.storage.audit.verify()


async def test_no_copy_of_a_destroyed_key_is_left_in_the_sqlite_file_or_its_wal(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    store: FileStore = server.app[FILES]
    call_id, file_id = await uploaded(server, connect, pdf())
    old = await row_of(server, file_id)
    period = await period_row(server, old.kek_id)
    secrets = {
        "the period key, wrapped": period.wrapped,
        "the data key, wrapped": str(old.wrapped_key).split(":", 1)[1],
    }
    database = server.settings.data_dir / "windowlink.db"
    wal = database.with_name(database.name + "-wal")

    def leftovers() -> list[str]:
        found = database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        return [what for what, value in secrets.items() if value.encode() in found]

    # Before: the keys are where they belong (and this search finds them).
    assert await server.storage.db.erase_freed()
    assert leftovers() == list(secrets)

    now = later_than_the_period(period.period)
    await expire(server, call_id, now)
    assert await shred_expired(server.storage.db, store, days=N, now=now) == [file_id]
    assert leftovers() == []
    assert (await period_row(server, old.kek_id)).erased_at is not None


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await create_database()
    yield url
    await drop_database(url)


@pytest.mark.postgres
async def test_no_copy_of_a_destroyed_key_is_left_in_the_postgresql_table(
    postgres_url: str, start_server: ServerFactory, connect: ClientFactory
) -> None:
    """PostgreSQL keeps the destroyed row's older version while any transaction could
    still see it: the erasure waits for that (here: a transaction of the test's, as a
    long report or pg_dump would be) and then rewrites the table."""
    server = await start_server(database_url=postgres_url)
    store: FileStore = server.app[FILES]
    periods: PeriodKeys = store.keys.periods
    call_id, file_id = await uploaded(server, connect, pdf())
    old = await row_of(server, file_id)
    period = await period_row(server, old.kek_id)
    secret = period.wrapped.encode()

    async def table_bytes() -> bytes:
        def read(conn: Any) -> bytes:
            conn.execute(text("CHECKPOINT"))
            path = conn.execute(text("SELECT pg_relation_filepath('period_keys')")).scalar()
            found = conn.execute(text("SELECT pg_read_binary_file(:p)"), {"p": path}).scalar()
            return bytes(found)

        found: bytes = await server.storage.db.read(read)
        return found

    assert secret in await table_bytes()
    reader = await asyncpg.connect(postgres_url)
    try:
        # A snapshot older than the destruction: it may still read the old row.
        transaction = reader.transaction(isolation="repeatable_read")
        await transaction.start()
        await reader.fetchval("SELECT count(*) FROM period_keys")
        now = later_than_the_period(period.period)
        await expire(server, call_id, now)
        assert await shred_expired(server.storage.db, store, days=N, now=now) == [file_id]
        row = await period_row(server, old.kek_id)
        assert row.destroyed_at == now and row.erased_at is None
        assert (await periods.erase_destroyed()).waiting == (old.kek_id,)
        assert secret in await table_bytes()
        await transaction.rollback()
    finally:
        await reader.close()
    # Other transactions of the machine's PostgreSQL hold the horizon back too (other
    # tests'): bounded, until none older than the destruction is left.
    for _ in range(300):
        if (await periods.erase_destroyed()).erased == (old.kek_id,):
            break
        await asyncio.sleep(0.5)
    assert (await period_row(server, old.kek_id)).erased_at is not None
    assert secret not in await table_bytes()


async def test_a_period_still_holding_a_readable_document_keeps_its_key(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    store: FileStore = server.app[FILES]
    call_id, file_id = await uploaded(server, connect, pdf())
    content = pdf()
    kiosk, _, other_call = await active_call(server, connect, kiosk="kiosk02")
    session = await login_session(server, "kiosk02")
    async with session:
        status, kept = await upload_file(server, session, other_call, "b.pdf", content)
    assert status == 201
    row = await row_of(server, file_id)
    assert (await row_of(server, kept["id"])).kek_id == row.kek_id  # the same period
    now = later_than_the_period((await period_row(server, row.kek_id)).period)
    await expire(server, call_id, now)
    assert await shred_expired(server.storage.db, store, days=N, now=now) == [file_id]
    assert (await period_row(server, row.kek_id)).destroyed_at is None
    clerk = await login_session(server, "clerk")
    async with clerk, clerk.get(f"{server.url}/api/v1/files/{kept['id']}") as response:
        assert response.status == 200 and await response.read() == content
    await kiosk.end(other_call)


async def test_a_destroyed_period_gets_a_new_key_if_anything_is_stored_in_it_again(
    sqlite_server: RunningServer,
) -> None:
    keys: DataKeys = sqlite_server.app[FILES].keys
    periods: PeriodKeys = keys.periods
    first = await periods.for_period("2020-01-01")
    assert await periods.destroy_finished(time.time()) == ["2020-01-01"]
    with pytest.raises(FileShredded):
        await periods.key(first.id)
    second = await periods.for_period("2020-01-01")
    assert second.id != first.id and second.key != first.key
    assert (await periods.key(second.id)).key == second.key


async def test_documents_stored_before_period_keys_stay_readable_and_move_under_them(
    server: RunningServer, connect: ClientFactory
) -> None:
    """An upgraded installation: a document whose data key a KEK wraps directly (as
    before period keys) is read as it is; ``keys rotate`` moves it under the key of
    its period, after which the old KEK can be retired and it still reads."""
    store: FileStore = server.app[FILES]
    keyring = store.keyring
    content = pdf()
    _, file_id = await uploaded(server, connect, content)
    row = await row_of(server, file_id)
    data_key = await store.keys.of_file(file_id)
    inner_id = str(row.wrapped_key).split(":", 1)[0]
    legacy = keyring.wrap(data_key, bytes.fromhex(inner_id))
    statement = (
        update(files)
        .where(files.c.id == file_id)
        .values(kek_id=legacy.kek_id, wrapped_key=inner_id + ":" + legacy.blob.hex())
    )
    await server.storage.db.write(lambda conn: conn.execute(statement))
    old_kek = keyring.active_id
    assert keyring.unwrap(WrappedKey(legacy.kek_id, legacy.blob), bytes.fromhex(inner_id))

    async def read_back() -> bytes:
        clerk = await login_session(server, "clerk")
        async with clerk, clerk.get(f"{server.url}/api/v1/files/{file_id}") as response:
            assert response.status == 200
            return await response.read()

    assert await read_back() == content
    assert await store.references(old_kek) == 2  # the document, and today's period key

    await keyring.rotate()
    assert await store.rewrap_all() == 2  # the period key re-wrapped, the document moved
    # Under the key of its period (it was uploaded today: today's, re-wrapped).
    assert (await row_of(server, file_id)).kek_id == row.kek_id
    assert await store.references(old_kek) == 0
    await keyring.retire(old_kek, 0)
    assert old_kek not in keyring.ids
    assert await read_back() == content
    assert await store.rewrap_all() == 0


async def test_a_retired_key_file_is_overwritten_before_it_is_unlinked(
    tmp_path: Path,
) -> None:
    """A second name for the same file (a hard link) shows what was left in its
    blocks once the key directory's name is gone: zeros, not the key."""
    keys = DirectoryKeks(tmp_path / "keys")
    ring = await Keyring.open(keys)
    old = ring.active_id
    await ring.rotate()
    path = tmp_path / "keys" / f"{old}.kek"
    secret = path.read_bytes()
    os.link(path, tmp_path / "second-name")
    await ring.retire(old, 0)
    assert not path.exists()
    left = (tmp_path / "second-name").read_bytes()
    assert len(left) == len(secret) and set(left) == {0}


async def test_an_upload_beginning_as_its_period_key_is_destroyed_takes_a_live_key(
    server: RunningServer, connect: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose clock runs more than the grace ahead destroys today's key (nothing
    refers to it yet) between another node's choice of that key for a new upload and
    the upload's row: the upload was then wrapped under a destroyed key, and its
    first part answered 410 shredded. The row is written only under a live key."""
    store: FileStore = server.app[FILES]
    keys: DataKeys = store.keys
    choose = keys.new
    raced: list[str] = []

    async def chosen_then_destroyed() -> NewDataKey:
        chosen = await choose()
        if not raced:
            period = (await period_row(server, chosen.kek_id)).period
            ahead = period_end(period) + DESTROY_GRACE + 1
            raced.extend(await keys.periods.destroy_finished(ahead))
        return chosen

    monkeypatch.setattr(keys, "new", chosen_then_destroyed)
    _, _, call_id = await active_call(server, connect)
    content = pdf()
    session = await login_session(server, "kiosk01")
    async with session:
        status, record = await upload_file(server, session, call_id, "a.pdf", content)
        assert raced, "the period's key was not destroyed under the upload"
        assert status == 201, record
        row = await row_of(server, str(record["id"]))
        assert (await period_row(server, row.kek_id)).destroyed_at is None
        async with session.get(server.url + str(record["url"])) as response:
            assert response.status == 200 and await response.read() == content
