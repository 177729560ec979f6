"""Data keys of documents and uploads: each document has a key of its own, kept
only wrapped, beside its record (``files``) or its unfinished upload
(``uploads``): under the key of its retention period (storage.periodkeys), itself
wrapped by a key-encryption key of the key ring (storage.keyring); documents
stored before period keys, directly by a KEK until ``keys rotate`` moves them.

This is the one module that wraps, unwraps and re-wraps data keys; a data key
never leaves ``storage``: the web layer gets plaintext (storage.documents), never
a key.
"""

import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Update, func, select, update

from storage.database import Database
from storage.errors import FileShredded, KeyringError
from storage.filecrypt import FILE_ID_SIZE, Suite
from storage.keyring import Keyring, WrappedKey
from storage.periodkeys import (
    PERIOD_PREFIX,
    PeriodKeys,
    is_period_key,
    lock_live,
    period_of,
    unwrap_data_key,
    wrap_data_key,
)
from storage.schema import files, uploads


@dataclass(frozen=True)
class NewDataKey:
    """A fresh data key for a new upload, and how its record keeps it."""

    suite: Suite
    key: bytes
    file_id: bytes
    """The encrypted format's file id, bound into the wrapping."""
    kek_id: str
    wrapped_key: str
    """``<file id hex>:<wrapped key hex>``, as the records keep it."""


class DataKeys:
    """Wraps new data keys under the key of their retention period (storage.periodkeys)
    and unwraps those of records: under a period key, or (documents stored before
    period keys) directly under a KEK of the key ring."""

    def __init__(self, keyring: Keyring, db: Database) -> None:
        self.keyring = keyring
        self.periods = PeriodKeys(keyring, db)
        self._db = db

    async def new(self) -> NewDataKey:
        """A random data key for the key ring's suite, wrapped under today's period key."""
        period_key = await self.periods.current()
        data_key = os.urandom(period_key.suite.key_size)
        file_id = os.urandom(FILE_ID_SIZE)
        blob = wrap_data_key(period_key, data_key, file_id)
        return NewDataKey(
            period_key.suite, data_key, file_id, period_key.id, file_id.hex() + ":" + blob.hex()
        )

    async def _unwrap(self, kek_id: str, wrapped_key: str) -> tuple[bytes, bytes]:
        """A data key and its file id, from what a record keeps."""
        inner_id, blob = str(wrapped_key).split(":", 1)
        file_id = bytes.fromhex(inner_id)
        if is_period_key(kek_id):
            period_key = await self.periods.key(kek_id)
            return unwrap_data_key(period_key, bytes.fromhex(blob), file_id), file_id
        if kek_id not in self.keyring.ids:
            await self.keyring.refresh()
        return self.keyring.unwrap(WrappedKey(kek_id, bytes.fromhex(blob)), file_id), file_id

    async def of_upload(self, row: Any) -> tuple[bytes, bytes]:
        """An unfinished upload's data key and file id (``row``: its ``uploads`` row)."""
        return await self._unwrap(row.kek_id, row.wrapped_key)

    async def of_file(self, file_id: str) -> bytes:
        """A recorded document's data key; ``FileShredded`` once retention destroyed it
        (its own wrapped key, or the key of its period)."""
        row = await self._db.read(
            lambda conn: conn.execute(
                select(files.c.kek_id, files.c.wrapped_key, files.c.shredded_at).where(
                    files.c.id == file_id
                )
            ).one()
        )
        if row.shredded_at is not None:
            raise FileShredded("this document was shredded at the end of its retention period")
        return (await self._unwrap(row.kek_id, row.wrapped_key))[0]

    async def rewrap_all(self) -> int:
        """After a KEK rotation: every period key not wrapped by the active KEK is
        re-wrapped (content and data keys untouched), and the documents stored
        before period keys (wrapped directly by a KEK) move under the key of their
        period, so that the old KEK can be retired. The keys re-wrapped or moved."""
        count = await self.periods.rewrap_all()
        legacy = await self._db.read(
            lambda conn: conn.execute(
                select(files.c.id, files.c.kek_id, files.c.wrapped_key, files.c.created_at).where(
                    files.c.shredded_at.is_(None),
                    ~files.c.kek_id.startswith(PERIOD_PREFIX, autoescape=True),
                )
            ).all()
        )
        for row in legacy:
            count += await self._move_under_period(row)
        return count

    async def _move_under_period(self, row: Any) -> int:
        data_key, file_id = await self._unwrap(row.kek_id, row.wrapped_key)
        for _ in range(3):
            period_key = await self.periods.for_period(period_of(float(row.created_at)))
            wrapped = file_id.hex() + ":" + wrap_data_key(period_key, data_key, file_id).hex()
            statement = (
                update(files)
                .where(
                    files.c.id == row.id,
                    files.c.kek_id == row.kek_id,
                    files.c.shredded_at.is_(None),
                )
                .values(kek_id=period_key.id, wrapped_key=wrapped)
            )

            def unit(
                conn: Connection, statement: Update = statement, key_id: str = period_key.id
            ) -> int | None:
                if not lock_live(conn, key_id):
                    return None  # destroyed meanwhile: take the period's next key
                return int(conn.execute(statement).rowcount)

            moved = await self._db.write(unit)
            if moved is not None:
                return moved
        raise KeyringError(f"document {row.id} could not be moved under a period key")

    async def references(self, kek_id: str) -> int:
        """Keys wrapped by ``kek_id``: period keys, and the data keys of documents and
        unfinished uploads from before period keys."""
        stored = select(func.count()).select_from(files).where(files.c.kek_id == kek_id)
        pending = select(func.count()).select_from(uploads).where(uploads.c.kek_id == kek_id)

        def count(conn: Connection) -> int:
            return int(conn.execute(stored).scalar() or 0) + int(
                conn.execute(pending).scalar() or 0
            )

        return await self._db.read(count) + await self.periods.references(kek_id)
