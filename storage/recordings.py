"""What the citizen was asked about recording their call, and what they answered:
one row per request (who asked, when, the version of the text the kiosk showed,
the answer and when), kept with the consultation's record; the audit log has the
same, in its chain."""

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from storage.audit import append_audit
from storage.database import Database
from storage.records import AuditEvent
from storage.schema import recording_consents


@dataclass(frozen=True)
class RecordingConsent:
    consultation_id: str
    seq: int
    asked_by: str
    asked_at: float
    text_version: str | None
    accepted: bool | None
    """None: not answered (yet, or the call ended first)."""
    answered_at: float | None
    stopped_by: str | None
    stopped_at: float | None


class RecordingConsents:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def asked(self, consultation_id: str, by: str, at: float, audit: AuditEvent) -> None:
        def unit(conn: Connection) -> None:
            seq = len(_rows(conn, consultation_id)) + 1
            conn.execute(
                insert(recording_consents).values(
                    consultation_id=consultation_id, seq=seq, asked_by=by, asked_at=at
                )
            )
            append_audit(conn, audit)

        await self._db.write(unit)

    async def answered(
        self,
        consultation_id: str,
        accepted: bool,
        text_version: str,
        at: float,
        audit: AuditEvent,
    ) -> None:
        def unit(conn: Connection) -> None:
            open_ = [r for r in _rows(conn, consultation_id) if r.accepted is None]
            if open_:
                conn.execute(
                    update(recording_consents)
                    .where(
                        recording_consents.c.consultation_id == consultation_id,
                        recording_consents.c.seq == open_[-1].seq,
                    )
                    .values(accepted=accepted, text_version=text_version, answered_at=at)
                )
            append_audit(conn, audit)

        await self._db.write(unit)

    async def stopped(self, consultation_id: str, by: str, at: float, audit: AuditEvent) -> None:
        def unit(conn: Connection) -> None:
            rows = _rows(conn, consultation_id)
            if rows:
                conn.execute(
                    update(recording_consents)
                    .where(
                        recording_consents.c.consultation_id == consultation_id,
                        recording_consents.c.seq == rows[-1].seq,
                    )
                    .values(stopped_by=by, stopped_at=at)
                )
            append_audit(conn, audit)

        await self._db.write(unit)

    async def of(self, consultation_id: str) -> list[RecordingConsent]:
        return await self._db.read(lambda conn: _rows(conn, consultation_id))


def _rows(conn: Connection, consultation_id: str) -> list[RecordingConsent]:
    rows = conn.execute(
        select(recording_consents)
        .where(recording_consents.c.consultation_id == consultation_id)
        .order_by(recording_consents.c.seq)
    ).all()
    return [RecordingConsent(**row._mapping) for row in rows]
