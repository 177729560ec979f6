"""Data keys of documents and uploads: each document has a key of its own, kept
only wrapped by a key-encryption key of the key ring (storage.keyring), beside
its record (``files``) or its unfinished upload (``uploads``).

This is the one module that wraps, unwraps and re-wraps data keys; a data key
never leaves ``storage``: the web layer gets plaintext (storage.documents), never
a key.
"""

import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Update, func, select, update

from storage.database import Database
from storage.errors import FileShredded
from storage.filecrypt import FILE_ID_SIZE, Suite
from storage.keyring import Keyring, WrappedKey
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
    """Wraps new data keys and unwraps those of records, with the key ring's KEKs."""

    def __init__(self, keyring: Keyring, db: Database) -> None:
        self.keyring = keyring
        self._db = db

    async def new(self) -> NewDataKey:
        """A random data key for the key ring's suite, wrapped by the active KEK."""
        suite = self.keyring.suite
        data_key = os.urandom(suite.key_size)
        file_id = os.urandom(FILE_ID_SIZE)
        await self.keyring.refresh()
        wrapped = self.keyring.wrap(data_key, file_id)
        return NewDataKey(
            suite, data_key, file_id, wrapped.kek_id, file_id.hex() + ":" + wrapped.blob.hex()
        )

    async def of_upload(self, row: Any) -> tuple[bytes, bytes]:
        """An unfinished upload's data key and file id (``row``: its ``uploads`` row)."""
        if row.kek_id not in self.keyring.ids:
            await self.keyring.refresh()
        inner_id, blob = str(row.wrapped_key).split(":", 1)
        file_id = bytes.fromhex(inner_id)
        return self.keyring.unwrap(WrappedKey(row.kek_id, bytes.fromhex(blob)), file_id), file_id

    async def of_file(self, file_id: str) -> bytes:
        """A recorded document's data key; ``FileShredded`` once retention destroyed it."""
        row = await self._db.read(
            lambda conn: conn.execute(
                select(files.c.kek_id, files.c.wrapped_key, files.c.shredded_at).where(
                    files.c.id == file_id
                )
            ).one()
        )
        if row.shredded_at is not None:
            raise FileShredded("this document was shredded at the end of its retention period")
        inner_id, blob = str(row.wrapped_key).split(":", 1)
        if row.kek_id not in self.keyring.ids:
            await self.keyring.refresh()
        return self.keyring.unwrap(
            WrappedKey(row.kek_id, bytes.fromhex(blob)), bytes.fromhex(inner_id)
        )

    async def rewrap_all(self) -> int:
        """Re-wrap every data key not wrapped by the active KEK (content untouched)."""
        await self.keyring.refresh()
        active = self.keyring.active_id
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(files.c.id, files.c.kek_id, files.c.wrapped_key).where(
                    files.c.kek_id != active, files.c.shredded_at.is_(None)
                )
            ).all()
        )
        for row in rows:
            inner_id, blob = str(row.wrapped_key).split(":", 1)
            fresh = self.keyring.rewrap(
                WrappedKey(row.kek_id, bytes.fromhex(blob)), bytes.fromhex(inner_id)
            )
            statement = (
                update(files)
                .where(files.c.id == row.id)
                .values(kek_id=fresh.kek_id, wrapped_key=inner_id + ":" + fresh.blob.hex())
            )

            def unit(conn: Connection, statement: Update = statement) -> None:
                conn.execute(statement)

            await self._db.write(unit)
        return len(rows)

    async def references(self, kek_id: str) -> int:
        """Data keys wrapped by ``kek_id``: documents', and unfinished uploads'."""
        stored = select(func.count()).select_from(files).where(files.c.kek_id == kek_id)
        pending = select(func.count()).select_from(uploads).where(uploads.c.kek_id == kek_id)

        def count(conn: Connection) -> int:
            return int(conn.execute(stored).scalar() or 0) + int(
                conn.execute(pending).scalar() or 0
            )

        return await self._db.read(count)
