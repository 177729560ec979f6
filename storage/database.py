"""The SQL engine and how units of work reach it.

Repositories write their statements as plain functions of a synchronous
SQLAlchemy ``Connection`` (one code path, one schema for both databases) and
hand them to ``Database.write`` or ``Database.read``:

- Writes are grouped: whatever units are queued while a transaction runs go
  into the next one, each inside its own SAVEPOINT, so one failing unit rolls
  back alone and a burst of consultations costs one commit, not one each.
- SQLite runs them on one dedicated thread with the stdlib driver: a whole
  unit of work is one hop between threads. (aiosqlite hops once per cursor
  call, some fifty per consultation, which cost ~14 ms of CPU per
  consultation here; see docs/DECISIONS.md.)
- PostgreSQL runs them through asyncpg with ``AsyncConnection.run_sync``.
"""

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage.audit_keys import AuditKeys
from storage.errors import StorageUnavailable
from storage.migrations import migrate

T = TypeVar("T")
Unit = Callable[[Connection], T]

# Units per transaction at most; a burst larger than this takes several commits.
MAX_BATCH = 200

HIDE_PARAMETERS = True
"""SQLAlchemy's errors quote a failed statement's parameters, which are usernames,
password hashes, names and case numbers: with this, every engine's errors (and the
log lines and tracebacks that carry them) say "[SQL parameters hidden ...]"."""

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a PostgreSQL connection before the database counts as down."""

# Attempts to truncate SQLite's WAL while readers hold it (0.2 s apart).
_CHECKPOINT_TRIES = 25

_LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for a lock not obtained within lock_timeout."""

_DEADLOCK_DETECTED = "40P01"
"""PostgreSQL's SQLSTATE for the statement it failed to break a deadlock."""

AUDIT_KEYS_OPTION = "windowlink_audit_keys"
"""The execution option through which every connection of a ``Database`` carries its
audit keys to ``storage.audit.append_audit`` (which runs inside units of work)."""


def database_url(url: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL for a configured URL, or the embedded SQLite file."""
    if not url:
        return f"sqlite:///{(data_dir / 'windowlink.db').resolve()}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"):
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, open transactions, so SAVEPOINTs work.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers (``audit verify``) run beside the writer; NORMAL is durable
    # across a process crash, which is what a service needs.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    # What a statement deletes or overwrites is zeroed in the page, not left in the
    # file's free space: a destroyed key must not be readable from the file after
    # the WAL has been checkpointed (Database.erase_freed).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock up front, so a transaction never fails half-way on
    # upgrading a read lock while another process writes.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class DriverError(Exception):
    """What the driver said about a failed statement, without the values it quoted:
    stands in for the driver's own exception inside the SQLAlchemy error raised.
    ``sqlstate`` is the driver's (PostgreSQL's), kept so that callers can tell a
    deadlock or a lock timeout from other errors."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a failed statement (None: SQLite, or not said)."""
    driver = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    for candidate in (driver, driver.__cause__):
        state = getattr(candidate, "sqlstate", None)
        if state:
            return str(state)
    return None


def deadlocked(exc: BaseException) -> bool:
    """Whether PostgreSQL failed this statement to break a deadlock: nothing of the
    unit was written, and running it again may succeed."""
    return _sqlstate(exc) == _DEADLOCK_DETECTED


def _reason(exc: BaseException) -> str:
    """What the driver said (SQLite's "database is locked", a refused connection,
    a violated constraint's name) in one bounded line, without the values it may
    quote: PostgreSQL's DETAIL ("Key (username)=(...) already exists", "Failing
    row contains (...)") is a line of its own, and a data error ("invalid input
    ...: <value>") is named by its class only."""
    driver = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    # SQLAlchemy's asyncpg adapter raises its own error from asyncpg's.
    driver = driver.__cause__ or driver
    name = type(driver).__name__
    sqlstate = str(getattr(driver, "sqlstate", None) or "")
    if isinstance(exc, DataError) or sqlstate.startswith("22") or "DataError" in name:
        return name
    lines = str(driver).strip().splitlines()
    return f"{name}: {lines[0][:200]}" if lines else name


def _without_values(exc: DBAPIError) -> DBAPIError:
    """The same SQLAlchemy error (callers catch IntegrityError and the like) with its
    statement, its traceback and nothing else: parameters hidden, the driver's
    words reduced to ``_reason``, no chain to the driver's own exception."""
    quiet = type(exc)(
        exc.statement,
        None,
        DriverError(_reason(exc), _sqlstate(exc)),
        hide_parameters=True,
        connection_invalidated=exc.connection_invalidated,
        code=exc.code,
    )
    return quiet.with_traceback(exc.__traceback__)


@dataclass
class _Pending:
    unit: Unit[Any]
    future: asyncio.Future[Any]


class Database:
    """Runs units of work against SQLite or PostgreSQL; writes are group-committed."""

    def __init__(self, url: str, audit_keys: AuditKeys | None = None) -> None:
        self.url = url
        self.audit_keys = audit_keys
        """The keys audit entries are made and verified with; None: no audit entries."""
        options = {AUDIT_KEYS_OPTION: audit_keys}
        self.dialect = make_url(url).get_backend_name()
        self._sync_engine: Engine | None = None
        self._async_engine: AsyncEngine | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._sqlite_conn: Connection | None = None
        if self.dialect == "sqlite":
            self._sync_engine = create_engine(
                url,
                pool_size=1,
                max_overflow=0,
                execution_options=options,
                hide_parameters=HIDE_PARAMETERS,
            )
            event.listen(self._sync_engine, "connect", _sqlite_connect)
            event.listen(self._sync_engine, "begin", _sqlite_begin)
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "windowlink-sqlite")
        else:
            self._async_engine = create_async_engine(
                url,
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
                execution_options=options,
                hide_parameters=HIDE_PARAMETERS,
                # asyncpg waits 60 s for an unanswered connect: a request would too.
                connect_args={"timeout": CONNECT_TIMEOUT},
            )
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, audit_keys: AuditKeys | None = None) -> "Database":
        """Connect and bring the schema up to date."""
        db = cls(url, audit_keys)
        await db.read(migrate)
        return db

    async def erase_freed(self, *tables: str) -> bool:
        """Make deletions so far real in the database's own files: SQLite (whose
        connections zero what they free, secure_delete) checkpoints its WAL into
        the database file and truncates it, so that no older page image of a
        deleted row is left there; PostgreSQL rewrites ``tables`` (VACUUM FULL: a
        new file without the dead rows, the old one removed). Use it for small
        tables only: VACUUM FULL locks the table while it copies it. False when
        SQLite's readers kept the WAL from being truncated (it is, at a later call)."""
        if self._sync_engine is not None:

            def checkpoint() -> bool:
                if self._sqlite_conn is None or self._sqlite_conn.invalidated:
                    assert self._sync_engine is not None
                    self._sqlite_conn = self._sync_engine.connect()
                # On the driver's connection, outside any transaction (a checkpoint
                # cannot run inside one); between units of work none is open.
                raw = self._sqlite_conn.connection.driver_connection
                assert raw is not None
                busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                return not busy

            loop = asyncio.get_running_loop()
            for _ in range(_CHECKPOINT_TRIES):
                if await loop.run_in_executor(self._thread, checkpoint):
                    return True
                # A reader (``audit verify``, a backup) holds an older snapshot.
                await asyncio.sleep(0.2)
            return False
        assert self._async_engine is not None
        async with self._async_engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            # VACUUM FULL waits for its exclusive lock in the queue, and every
            # query of the table would wait behind it: a table another session
            # holds is left for a later call instead.
            await autocommit.exec_driver_sql("SET lock_timeout = '2s'")
            try:
                for table in tables:
                    # Names come from our own schema, never from a request.
                    await autocommit.exec_driver_sql(f"VACUUM FULL {table}")
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                return False
        return True

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._sync_engine is not None and self._thread is not None:
            engine = self._sync_engine

            def close_in_thread() -> None:
                if self._sqlite_conn is not None:
                    self._sqlite_conn.close()
                    self._sqlite_conn = None
                engine.dispose()

            await asyncio.get_running_loop().run_in_executor(self._thread, close_in_thread)
            self._thread.shutdown(wait=True)
        if self._async_engine is not None:
            await self._async_engine.dispose()

    async def _run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` inside one transaction, committed if it returns; a database
        that cannot be reached is ``StorageUnavailable`` (nothing was written)."""
        try:
            return await self._run_unguarded(fn)
        except (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError) as exc:
            cause = _without_values(exc) if isinstance(exc, DBAPIError) else exc
            raise StorageUnavailable(f"the database cannot be reached: {_reason(exc)}") from cause
        except DBAPIError as exc:
            if exc.connection_invalidated:
                lost = f"the database connection was lost: {_reason(exc)}"
                raise StorageUnavailable(lost) from _without_values(exc)
            raise _without_values(exc) from None

    async def _run_unguarded(self, fn: Callable[[Connection], T]) -> T:
        if self._sync_engine is not None:

            def in_thread() -> T:
                # The thread keeps its one connection checked out: a pool checkout
                # and check-in per transaction cost as much as the statements.
                if self._sqlite_conn is None or self._sqlite_conn.invalidated:
                    assert self._sync_engine is not None
                    self._sqlite_conn = self._sync_engine.connect()
                with self._sqlite_conn.begin():
                    return fn(self._sqlite_conn)

            return await asyncio.get_running_loop().run_in_executor(self._thread, in_thread)
        assert self._async_engine is not None
        async with self._async_engine.begin() as conn:
            return await conn.run_sync(fn)

    async def reachable(self, timeout: float = 2.0) -> bool:
        """Whether a trivial query answers within ``timeout`` seconds (for /healthz)."""
        try:
            async with asyncio.timeout(timeout):
                await self._run(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
        except (StorageUnavailable, TimeoutError):
            return False
        return True

    async def read(self, unit: Unit[T]) -> T:
        """Run a unit of work in a transaction of its own (reads, and migrations)."""
        return await self._run(unit)

    async def write(self, unit: Unit[T]) -> T:
        """Queue a unit of work for the next group commit; return its result once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(unit, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]

            def apply(conn: Connection, batch: list[_Pending] = batch) -> list[tuple[bool, Any]]:
                if len(batch) == 1:
                    # Alone in its transaction, a unit needs no SAVEPOINT of its own:
                    # if it fails, the whole transaction rolls back, which is the same
                    # thing and saves two statements (most batches are single).
                    return [(True, batch[0].unit(conn))]
                outcomes: list[tuple[bool, Any]] = []
                for item in batch:
                    savepoint = conn.begin_nested()
                    try:
                        result = item.unit(conn)
                    except Exception as exc:
                        savepoint.rollback()
                        outcomes.append((False, exc))
                    else:
                        savepoint.commit()
                        outcomes.append((True, result))
                return outcomes

            try:
                outcomes = await self._run(apply)
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, (ok, value) in zip(batch, outcomes, strict=True):
                if item.future.done():
                    continue
                if ok:
                    item.future.set_result(value)
                else:
                    item.future.set_exception(value)
