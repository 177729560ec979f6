"""Recorded documents: their records, and their content handed out as
authenticated plaintext for a byte range, each download audited here.

The sealed file lives in the blob store (storage.blobs), its record and wrapped
data key in ``files``. Readers get plaintext batches, never a key or a handle on
the ciphertext: a batch is released only once every chunk in it has been
authenticated (storage.filecrypt), and the last chunk is checked first, which
proves the file whole.
"""

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from storage.audit import append_audit
from storage.blobs import BlobMissing, BlobStore
from storage.database import Database
from storage.datakeys import DataKeys
from storage.errors import DocumentDamaged, RecordNotFound
from storage.filecrypt import DecryptionError, decrypt_batches
from storage.records import Account, AuditEvent
from storage.schema import files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFile:
    id: str
    consultation_id: str
    uploader_id: str
    uploader_role: str
    name: str
    media_type: str
    size: int
    digest: str
    digest_alg: str
    created_at: float
    shredded_at: float | None = None
    """When retention destroyed the data key (the content is gone for good); None = readable."""


def stored_file(row: object) -> StoredFile:
    """The record of a ``files`` row (or of a join that includes its columns)."""
    return StoredFile(**{f: getattr(row, f) for f in StoredFile.__dataclass_fields__})


@dataclass(frozen=True)
class Download:
    """Who reads a document, for its audit entry."""

    reader: Account
    remote: str
    range_header: str
    """The Range header as sent ('' for the whole document)."""


class Plaintext:
    """The authenticated plaintext of a byte range, as batches of up to 1 MiB
    (read-only views, each of a buffer of its own); ``DocumentDamaged`` when a
    later chunk fails its authentication (nothing of its batch is handed out).
    ``close`` when done, read to the end or not."""

    def __init__(
        self, source: BinaryIO, batches: Iterator[memoryview], first: memoryview | None
    ) -> None:
        self._source = source
        self._batches = batches
        self._next = first

    def __aiter__(self) -> "Plaintext":
        return self

    async def __anext__(self) -> memoryview:
        batch, self._next = self._next, None
        if batch is None:
            try:
                # One thread hop per batch (filecrypt.BATCH_CHUNKS chunks, 1 MiB).
                batch = await asyncio.to_thread(next, self._batches, None)
            except DecryptionError:
                raise DocumentDamaged("the stored file is damaged") from None
        if batch is None:
            raise StopAsyncIteration
        return batch

    def close(self) -> None:
        self._source.close()


class Documents:
    """Records of the stored documents and their plaintext."""

    def __init__(self, db: Database, blobs: BlobStore, keys: DataKeys, spool: Path) -> None:
        self._db = db
        self._blobs = blobs
        self._keys = keys
        self._spool = spool

    async def get(self, file_id: str) -> StoredFile:
        row = await self._db.read(
            lambda conn: conn.execute(select(files).where(files.c.id == file_id)).first()
        )
        if row is None:
            raise RecordNotFound("no such file")
        return stored_file(row)

    async def of_consultation(self, consultation_id: str) -> list[StoredFile]:
        query = (
            select(files)
            .where(files.c.consultation_id == consultation_id)
            .order_by(files.c.created_at)
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [stored_file(r) for r in rows]

    async def plaintext(
        self, record: StoredFile, start: int, end: int, download: Download
    ) -> Plaintext:
        """The plaintext of bytes [start, end) of a recorded document, its download
        audited. One pass over the stored bytes: the first batch (and the last
        chunk, which proves the file whole) is authenticated before this returns,
        so damage there, or in any document smaller than a batch, is
        ``DocumentDamaged`` here and nothing is audited; damage further on
        surfaces while reading. ``FileShredded`` once retention destroyed the key."""
        key = await self._keys.of_file(record.id)
        try:
            source = await self._blobs.fetch(record.id, self._spool)
        except BlobMissing:
            raise DocumentDamaged("the stored file is missing") from None
        try:
            batches = decrypt_batches(source, key, start, end)
            first = await asyncio.to_thread(next, batches, None)
            await self._db.write(
                lambda conn: append_audit(
                    conn,
                    AuditEvent(
                        download.reader.username,
                        "file.download",
                        record.id,
                        {"range": download.range_header, "consultation": record.consultation_id},
                        download.remote,
                    ),
                )
            )
        except DecryptionError:
            source.close()
            raise DocumentDamaged("the stored file is damaged") from None
        except BaseException:
            source.close()
            raise
        return Plaintext(source, batches, first)

    async def remove_content(self, file_id: str) -> None:
        """Delete a document's stored bytes (after its key was destroyed)."""
        await self._blobs.delete(file_id)
