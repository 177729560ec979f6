"""Documents an expert of a call shared with its interpreters.

An interpreter takes part in a call to translate, not to read the citizen's papers:
they read a document only once an expert of the call has shared that one with them
(least privilege, checked on the server: ``signaling.access``). A share is recorded
with who made it, audited, and holds for the call's interpreters.
"""

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from storage.audit import append_audit
from storage.database import Database
from storage.documents import StoredFile, stored_file
from storage.errors import RecordNotFound
from storage.records import AuditEvent
from storage.schema import document_shares, files


class DocumentShares:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def share(
        self, consultation_id: str, file_id: str, account_id: str, at: float, *, audit: AuditEvent
    ) -> tuple[StoredFile, bool]:
        """Share a document of ``consultation_id`` with its interpreters; the document,
        and whether it was not shared before (a second share changes nothing and is
        not audited again). RecordNotFound if the file is not one of that
        consultation's."""

        def unit(conn: Connection) -> tuple[StoredFile, bool]:
            row = conn.execute(
                select(files).where(
                    files.c.id == file_id, files.c.consultation_id == consultation_id
                )
            ).first()
            if row is None:
                raise RecordNotFound("no such document in this consultation")
            done = conn.execute(
                select(document_shares.c.file_id).where(document_shares.c.file_id == file_id)
            ).first()
            if done is not None:
                return stored_file(row), False
            conn.execute(
                document_shares.insert().values(
                    file_id=file_id,
                    consultation_id=consultation_id,
                    shared_by=account_id,
                    shared_at=at,
                )
            )
            append_audit(conn, audit)
            return stored_file(row), True

        try:
            return await self._db.write(unit)
        except IntegrityError:
            # Shared by another expert at the same moment (PostgreSQL): shared all the same.
            return await self._db.read(lambda conn: self._file(conn, file_id)), False

    @staticmethod
    def _file(conn: Connection, file_id: str) -> StoredFile:
        return stored_file(conn.execute(select(files).where(files.c.id == file_id)).one())

    async def shared(self, consultation_id: str) -> frozenset[str]:
        """The ids of the consultation's documents shared with its interpreters."""
        query = select(document_shares.c.file_id).where(
            document_shares.c.consultation_id == consultation_id
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return frozenset(row.file_id for row in rows)

    async def is_shared(self, file_id: str) -> bool:
        query = select(document_shares.c.file_id).where(document_shares.c.file_id == file_id)
        return await self._db.read(lambda conn: conn.execute(query).first()) is not None
