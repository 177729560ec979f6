"""Keys of retention periods: what makes crypto-shredding real.

A document's data key is wrapped under the key of its period (the UTC day its
upload began), and each period key under a key-encryption key (KEK) of the key
ring. Shredding a document (storage.retention) clears its wrapped data key from
its row; but a database keeps what a row used to hold for a while (SQLite's free
pages and WAL, PostgreSQL's dead tuples, WAL and base backups), and with an old
copy of the ciphertext (bucket versioning) that wrapped data key would open it
again. So once a period is over and every document of it is shredded (or none
refers to it), its key is destroyed: the row keeps only a tombstone, the deletion
is made real in the database's files (``Database.erase_freed``: SQLite with
secure_delete, its WAL checkpointed and truncated; PostgreSQL's table rewritten),
and every data key wrapped under it, wherever a copy survives, is noise.

The table stays tiny (one row a day) so that rewriting it costs nothing, and
``keys rotate`` re-wraps period keys only, never one row per document.

Whether a period's key may be destroyed is ``is_destroyable``, a pure function;
``PeriodKeys.destroy_finished`` is the one place that acts on it.
"""

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from storage.audit import append_audit
from storage.database import Database
from storage.errors import FileShredded, KeyringError
from storage.filecrypt import DecryptionError, Suite, open_sealed, seal
from storage.ids import new_id
from storage.keyring import Keyring, WrappedKey
from storage.records import AuditEvent
from storage.schema import files, period_keys, uploads

PERIOD_PREFIX = "pk-"
"""Ids of period keys; a data key whose ``kek_id`` does not start so is wrapped
directly by a KEK (documents stored before period keys)."""
DESTROY_GRACE = 3600.0
"""Seconds after its period's end before a key may be destroyed: longer than any
clock difference between nodes, so that no node still wraps under it."""
_NONCE = 12


def period_of(at: float) -> str:
    """The retention period of a moment: its UTC day, YYYY-MM-DD."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def period_end(period: str) -> float:
    """When a period is over (the next UTC midnight)."""
    start = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=UTC)
    return (start + timedelta(days=1)).timestamp()


def is_destroyable(period: str, referenced: bool, now: float, grace: float) -> bool:
    """Whether a period's key may be destroyed now: no unshredded document or
    unfinished upload refers to it, and its period ended more than ``grace`` ago."""
    return not referenced and now >= period_end(period) + grace


def is_period_key(key_id: str) -> bool:
    return key_id.startswith(PERIOD_PREFIX)


@dataclass(frozen=True)
class PeriodKey:
    id: str
    period: str
    suite: Suite
    key: bytes


def _kek_binding(period_key_id: str) -> bytes:
    # Bound into the KEK's wrapping: a period key can never pass for a data key.
    return b"period|" + period_key_id.encode()


def _data_aad(period_key_id: str, file_id: bytes) -> bytes:
    return b"wl-pwrap|" + period_key_id.encode() + b"|" + file_id


def wrap_data_key(period_key: PeriodKey, data_key: bytes, file_id: bytes) -> bytes:
    """A data key sealed under its period's key, bound to the period key and file."""
    nonce = os.urandom(_NONCE)
    aad = _data_aad(period_key.id, file_id)
    return nonce + seal(period_key.suite, period_key.key, nonce, data_key, aad)


def unwrap_data_key(period_key: PeriodKey, blob: bytes, file_id: bytes) -> bytes:
    try:
        return open_sealed(
            period_key.suite,
            period_key.key,
            blob[:_NONCE],
            blob[_NONCE:],
            _data_aad(period_key.id, file_id),
        )
    except DecryptionError:
        raise DecryptionError("cannot decrypt") from None


# Any unshredded document or unfinished upload whose data key the period key wraps.
def _referenced(key_id: Any) -> Any:
    return exists().where(files.c.kek_id == key_id, files.c.shredded_at.is_(None)) | exists().where(
        uploads.c.kek_id == key_id
    )


@dataclass(frozen=True)
class ErasureReport:
    erased: tuple[str, ...]
    waiting: tuple[str, ...]
    """Destroyed keys whose older row versions a transaction may still see
    (PostgreSQL) or whose WAL a reader held (SQLite): erased at a later call."""


def _invisible_to_all(conn: Connection) -> list[str]:
    """PostgreSQL: the destroyed keys whose destroying update is older than every
    snapshot that can still see this database's rows: the oldest running transaction
    (anywhere: it bounds every new snapshot, VACUUM's own included), every session's
    snapshot in this database, and replication slots (``age`` counts back from the
    newest transaction, across wraparound). The row version such an update replaced
    is dead to all, and VACUUM FULL leaves it behind."""
    rows = conn.execute(
        text(
            "SELECT id FROM period_keys WHERE destroyed_at IS NOT NULL AND erased_at IS NULL "
            "AND age(xmin) > age(pg_snapshot_xmin(pg_current_snapshot())::xid) "
            "AND age(xmin) > (SELECT coalesce(max(age(backend_xmin)), -1) FROM "
            "pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_xmin IS NOT NULL "
            "AND (datname = current_database() OR datid IS NULL)) "
            "AND age(xmin) > (SELECT coalesce(max(age(xmin)), -1) FROM pg_replication_slots)"
        )
    )
    return [str(r.id) for r in rows]


def lock_live(conn: Connection, key_id: str) -> bool:
    """Within a unit of work: whether the period key ``key_id`` is live, held so
    that it cannot be destroyed until the unit commits (wrap under it only then)."""
    return (
        conn.execute(
            select(period_keys.c.id)
            .where(period_keys.c.id == key_id, period_keys.c.destroyed_at.is_(None))
            .with_for_update(read=True)
        ).first()
        is not None
    )


class PeriodKeys:
    """Period keys in the shared database, each wrapped by a KEK of ``keyring``."""

    def __init__(self, keyring: Keyring, db: Database) -> None:
        self.keyring = keyring
        self._db = db

    async def _open(self, row: Any) -> PeriodKey:
        if row.kek_id not in self.keyring.ids:
            await self.keyring.refresh()
        blob = bytes.fromhex(row.wrapped)
        try:
            key = self.keyring.unwrap(WrappedKey(row.kek_id, blob), _kek_binding(row.id))
        except DecryptionError:
            raise KeyringError(f"the key of period {row.period} ({row.id}) is damaged") from None
        return PeriodKey(row.id, row.period, Suite(row.suite), key)

    async def for_period(self, period: str) -> PeriodKey:
        """The live key of ``period`` for the key ring's suite, made if there is none
        (nodes making it at once agree on one: a unique index)."""
        suite = self.keyring.suite
        query = select(period_keys).where(
            period_keys.c.period == period,
            period_keys.c.suite == int(suite),
            period_keys.c.destroyed_at.is_(None),
        )
        for _ in range(3):
            row = await self._db.read(lambda conn: conn.execute(query).first())
            if row is not None:
                return await self._open(row)
            await self.keyring.refresh()
            key = os.urandom(suite.key_size)
            key_id = f"{PERIOD_PREFIX}{period}-{new_id()}"
            wrapped = self.keyring.wrap(key, _kek_binding(key_id))
            values = {
                "id": key_id,
                "period": period,
                "suite": int(suite),
                "kek_id": wrapped.kek_id,
                "wrapped": wrapped.blob.hex(),
                "created_at": time.time(),
            }

            def unit(conn: Connection, values: dict[str, Any] = values) -> None:
                conn.execute(insert(period_keys).values(**values))

            try:
                await self._db.write(unit)
            except IntegrityError:
                continue  # another process or node made it first: use theirs
            return PeriodKey(key_id, period, suite, key)
        raise KeyringError(f"the key of period {period} could not be made")

    async def current(self, now: float | None = None) -> PeriodKey:
        """The key new data keys are wrapped under now."""
        return await self.for_period(period_of(time.time() if now is None else now))

    async def key(self, key_id: str) -> PeriodKey:
        """A period key by id, read afresh (another node may have destroyed it):
        ``FileShredded`` once destroyed, ``KeyringError`` when unknown."""
        row = await self._db.read(
            lambda conn: conn.execute(select(period_keys).where(period_keys.c.id == key_id)).first()
        )
        if row is None:
            raise KeyringError(f"no period key {key_id!r} in the database")
        if row.destroyed_at is not None:
            raise FileShredded(
                f"this document's key was destroyed with the key of its period {row.period}"
            )
        return await self._open(row)

    async def rewrap_all(self) -> int:
        """Re-wrap every live period key not wrapped by the active KEK."""
        await self.keyring.refresh()
        active = self.keyring.active_id
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(period_keys).where(
                    period_keys.c.kek_id != active, period_keys.c.destroyed_at.is_(None)
                )
            ).all()
        )
        done = 0
        for row in rows:
            fresh = self.keyring.rewrap(
                WrappedKey(row.kek_id, bytes.fromhex(row.wrapped)), _kek_binding(row.id)
            )
            statement = (
                update(period_keys)
                .where(
                    period_keys.c.id == row.id,
                    period_keys.c.kek_id == row.kek_id,
                    period_keys.c.destroyed_at.is_(None),
                )
                .values(kek_id=fresh.kek_id, wrapped=fresh.blob.hex())
            )

            def unit(conn: Connection, statement: Any = statement) -> int:
                return int(conn.execute(statement).rowcount)

            done += await self._db.write(unit)
        if done:
            # The old wrappings are useless once their KEK is retired; until then
            # they are not left in the database's files either.
            await self._db.erase_freed(period_keys.name)
        return done

    async def references(self, kek_id: str) -> int:
        """Live period keys wrapped by ``kek_id``."""
        query = (
            select(func.count())
            .select_from(period_keys)
            .where(period_keys.c.kek_id == kek_id, period_keys.c.destroyed_at.is_(None))
        )

        def count(conn: Connection) -> int:
            return int(conn.execute(query).scalar() or 0)

        return await self._db.read(count)

    async def destroy_finished(self, now: float, grace: float = DESTROY_GRACE) -> list[str]:
        """Destroy the keys of every period that ``is_destroyable`` at ``now`` and
        erase them from the database's files (``erase_destroyed``); the periods
        destroyed."""
        candidates = await self._db.read(
            lambda conn: conn.execute(
                select(period_keys.c.id, period_keys.c.period).where(
                    period_keys.c.destroyed_at.is_(None)
                )
            ).all()
        )
        due = [r for r in candidates if is_destroyable(r.period, False, now, grace)]
        destroyed: list[str] = []
        for row in due:

            def unit(conn: Connection, key_id: str = row.id, period: str = row.period) -> bool:
                # The row locked first, then the references read by a statement of
                # their own: a unit wrapping under this key (``lock_live``) either
                # committed before (and is seen) or waits and then finds it gone.
                locked = conn.execute(
                    select(period_keys.c.id)
                    .where(period_keys.c.id == key_id, period_keys.c.destroyed_at.is_(None))
                    .with_for_update()
                ).first()
                if locked is None:
                    return False
                referenced = bool(conn.execute(select(_referenced(key_id))).scalar())
                if not is_destroyable(period, referenced, now, grace):
                    return False
                conn.execute(
                    update(period_keys)
                    .where(and_(period_keys.c.id == key_id, period_keys.c.destroyed_at.is_(None)))
                    .values(kek_id="", wrapped="", destroyed_at=now)
                )
                append_audit(conn, AuditEvent("system", "keys.destroy", key_id, {"period": period}))
                return True

            if await self._db.write(unit):
                destroyed.append(row.period)
        await self.erase_destroyed()
        return destroyed

    async def erase_destroyed(self) -> ErasureReport:
        """Make destroyed keys gone from the database's own files, not only from its
        rows: SQLite zeroed them as it freed them (secure_delete) and its WAL is
        checkpointed and truncated; PostgreSQL keeps an updated row's older version
        until no transaction could still see it, so its table is rewritten (VACUUM
        FULL) once every destroyed key's older version has become invisible to all,
        and those still visible to an open transaction wait for the next call."""
        pending = await self._db.read(
            lambda conn: [
                str(r.id)
                for r in conn.execute(
                    select(period_keys.c.id).where(
                        period_keys.c.destroyed_at.is_not(None), period_keys.c.erased_at.is_(None)
                    )
                )
            ]
        )
        if not pending:
            return ErasureReport((), ())
        if self._db.dialect == "postgresql":
            erasable = set(await self._db.read(_invisible_to_all))
        else:
            erasable = set(pending)
        erased = tuple(k for k in pending if k in erasable)
        if erased and await self._db.erase_freed(period_keys.name):
            statement = (
                update(period_keys)
                .where(period_keys.c.id.in_(erased))
                .values(erased_at=time.time())
            )
            await self._db.write(lambda conn: conn.execute(statement))
        else:
            erased = ()
        return ErasureReport(erased, tuple(k for k in pending if k not in erased))
