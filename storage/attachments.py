"""The clerk's case record: documents of consultations attached to a case number
with a category, each attach audited.

A document joins only the case its consultation carries: one citizen's papers
must never land among another's. A consultation that had no case number is
linked to one first (once, with a reason, audited: the consultation's
records); its documents can then be attached."""

import time
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from storage.audit import append_audit
from storage.database import Database
from storage.documents import StoredFile, stored_file
from storage.errors import FileShredded, RecordConflict, RecordNotFound
from storage.records import Account, AuditEvent
from storage.schema import case_attachments, consultations, files


class AttachRefused(RecordConflict):
    """The document may not join this case; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def attach_refusal(case_number: str, consultation_case: str | None) -> AttachRefused | None:
    """Why a document of a consultation carrying ``consultation_case`` may not be
    attached to ``case_number``, if it may not."""
    if consultation_case is None:
        return AttachRefused(
            "no_case_number",
            "this document's consultation has no case number: link the consultation "
            "to the case first (once, with a reason)",
        )
    if consultation_case != case_number:
        return AttachRefused(
            "other_case", "this document belongs to a consultation of another case"
        )
    return None


@dataclass(frozen=True)
class Attachment:
    case_number: str
    file: StoredFile
    category: str
    attached_by: str
    attached_at: float


class CaseRecord:
    """Attachments of documents to case numbers."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def attach(
        self, case_number: str, file_id: str, category: str, clerk: Account, remote: str
    ) -> None:
        def unit(conn: Connection) -> None:
            found = conn.execute(
                select(files.c.id, files.c.shredded_at, consultations.c.case_number)
                .join(consultations, consultations.c.id == files.c.consultation_id)
                .where(files.c.id == file_id)
            ).first()
            if found is None:
                raise RecordNotFound("no such file")
            if found.shredded_at is not None:
                raise FileShredded("this document was shredded; it cannot be attached")
            refused = attach_refusal(case_number, found.case_number)
            if refused is not None:
                raise refused
            existing = conn.execute(
                select(func.count())
                .select_from(case_attachments)
                .where(
                    case_attachments.c.case_number == case_number,
                    case_attachments.c.file_id == file_id,
                )
            ).scalar()
            if existing:
                raise AttachRefused("already_attached", "this file is already attached to the case")
            conn.execute(
                case_attachments.insert().values(
                    case_number=case_number,
                    file_id=file_id,
                    category=category,
                    attached_by=clerk.id,
                    attached_at=time.time(),
                )
            )
            append_audit(
                conn,
                AuditEvent(clerk.username, "file.attach", file_id, {"category": category}, remote),
            )

        await self._db.write(unit)

    async def attachments(self, case_number: str) -> list[Attachment]:
        query = (
            select(
                files,
                case_attachments.c.category,
                case_attachments.c.attached_by,
                case_attachments.c.attached_at,
            )
            .join(case_attachments, case_attachments.c.file_id == files.c.id)
            .where(case_attachments.c.case_number == case_number)
            .order_by(case_attachments.c.attached_at)
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [
            Attachment(case_number, stored_file(r), r.category, r.attached_by, r.attached_at)
            for r in rows
        ]
