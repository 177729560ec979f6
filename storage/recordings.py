"""What the citizen was asked about recording their call, and what they answered:
one row per request (who asked, when, the version of the text the kiosk showed,
the answer and when), kept with the consultation's record; the audit log has the
same, in its chain."""

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from storage.audit import append_audit
from storage.database import Database
from storage.records import AuditEvent
from storage.schema import recording_consents, recording_dumps, recordings


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


@dataclass(frozen=True)
class OpenDump:
    path: str
    consultation_id: str
    kek_id: str
    wrapped_key: str
    started_at: float
    finished_at: float | None


@dataclass(frozen=True)
class Recording:
    file_id: str
    consultation_id: str
    started_at: float
    tracks: str
    created_at: float


class RecordingFiles:
    """The dumps being written and the recordings made of them."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def dump_started(
        self, path: str, consultation_id: str, kek_id: str, wrapped_key: str, at: float
    ) -> None:
        row = {
            "path": path,
            "consultation_id": consultation_id,
            "kek_id": kek_id,
            "wrapped_key": wrapped_key,
            "started_at": at,
        }

        def unit(conn: Connection) -> None:
            conn.execute(insert(recording_dumps).values(row))

        await self._db.write(unit)

    async def unfinished_dumps(self, consultation_id: str | None = None) -> list[OpenDump]:
        query = select(recording_dumps).where(recording_dumps.c.finished_at.is_(None))
        if consultation_id is not None:
            query = query.where(recording_dumps.c.consultation_id == consultation_id)
        rows = await self._db.read(
            lambda conn: conn.execute(query.order_by(recording_dumps.c.started_at)).all()
        )
        return [OpenDump(**row._mapping) for row in rows]

    async def dump_finished(self, path: str, recording: Recording | None, at: float) -> bool:
        """The dump made into ``recording`` (None: nothing in it to keep); False when
        another process finished it first."""

        def unit(conn: Connection) -> bool:
            done = conn.execute(
                update(recording_dumps)
                .where(recording_dumps.c.path == path, recording_dumps.c.finished_at.is_(None))
                .values(finished_at=at)
            ).rowcount
            if done and recording is not None:
                conn.execute(insert(recordings).values(**recording.__dict__))
            return bool(done)

        return await self._db.write(unit)

    async def of(self, consultation_id: str) -> list[Recording]:
        query = (
            select(recordings)
            .where(recordings.c.consultation_id == consultation_id)
            .order_by(recordings.c.started_at)
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [Recording(**row._mapping) for row in rows]

    async def all(self, limit: int = 200) -> list[Recording]:
        query = select(recordings).order_by(recordings.c.created_at.desc()).limit(limit)
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [Recording(**row._mapping) for row in rows]

    async def is_recording(self, file_id: str) -> bool:
        query = select(recordings.c.file_id).where(recordings.c.file_id == file_id)
        return await self._db.read(lambda conn: conn.execute(query).first() is not None)

    async def file_ids(self, consultation_id: str) -> set[str]:
        query = select(recordings.c.file_id).where(recordings.c.consultation_id == consultation_id)
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return {row.file_id for row in rows}
