"""Retention: the documents of consultations that ended more than N days ago are
crypto-shredded (``--retention-days``; 0 keeps them forever).

Per document, first its data key is destroyed: the wrapped key and the key id
in its ``files`` row become '' and ``shredded_at`` is set, with a ``file.shred``
audit entry, in one unit of work. Then the ciphertext file is deleted. The row
stays: the record that the document existed (name, size, digest, uploader). A
crash between the two steps leaves an unreadable file, which the file store
removes at its next start (it keeps only files whose key still exists).

A database keeps what a row held for a while (free pages, WAL, dead tuples): the
wrapped data key is really gone only with the key of its period, destroyed once
every document of that period is shredded and the period is over
(storage.periodkeys). From then on no copy of the data key anywhere (the
database's leftovers, an old copy of the ciphertext from bucket versioning, a
backup) opens the document.

Which consultations are due is decided by ``is_due``, a pure function of the
record, the time and the period; ``shred_expired`` is the one place that acts
on it, and ``run_retention`` runs that at start and hourly.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Connection, select, update

from storage.audit import append_audit
from storage.database import Database
from storage.filestore import FileStore
from storage.records import AuditEvent, ConsultationState
from storage.schema import consultations, files, recordings

log = logging.getLogger(__name__)

DAY = 86400.0
SWEEP_INTERVAL = 3600.0
# Documents shredded per unit of work (one transaction, one audit entry each).
BATCH = 200


def retention_cutoff(now: float, days: float) -> float | None:
    """Consultations that ended before this time are due; None when retention is off."""
    if days <= 0:
        return None
    return now - days * DAY


def is_due(state: str, ended_at: float | None, now: float, days: float) -> bool:
    """Whether a consultation's documents must be shredded now: it has ended, and
    more than ``days`` days ago. Open consultations never are; 0 days = never."""
    cutoff = retention_cutoff(now, days)
    return (
        cutoff is not None
        and state == ConsultationState.ENDED
        and ended_at is not None
        and ended_at < cutoff
    )


@dataclass(frozen=True)
class Candidate:
    file_id: str
    consultation_id: str
    state: str
    ended_at: float | None


def shred_record(conn: Connection, file_id: str, now: float, event: AuditEvent) -> bool:
    """Destroy one document's data key and audit it, in the caller's unit of work.
    False when it was already shredded (another node, or an earlier sweep)."""
    result = conn.execute(
        update(files)
        .where(files.c.id == file_id, files.c.shredded_at.is_(None))
        .values(wrapped_key="", kek_id="", shredded_at=now)
    )
    if result.rowcount != 1:
        return False
    append_audit(conn, event)
    return True


def _candidates(
    conn: Connection, cutoff: float, after: str, recordings_only: bool = False
) -> list[Candidate]:
    query = (
        select(files.c.id, files.c.consultation_id, consultations.c.state, consultations.c.ended_at)
        .join(consultations, consultations.c.id == files.c.consultation_id)
        .where(
            files.c.shredded_at.is_(None),
            files.c.id > after,
            consultations.c.state == ConsultationState.ENDED.value,
            consultations.c.ended_at < cutoff,
        )
        .order_by(files.c.id)
        .limit(BATCH)
    )
    if recordings_only:
        query = query.where(files.c.id.in_(select(recordings.c.file_id)))
    return [Candidate(r.id, r.consultation_id, r.state, r.ended_at) for r in conn.execute(query)]


async def shred_expired(db: Database, store: FileStore, *, days: float, now: float) -> list[str]:
    """Shred every document that ``is_due`` at ``now``, then destroy the keys of the
    periods left with no readable document (storage.periodkeys); return the ids of
    the documents shredded."""
    cutoff = retention_cutoff(now, days)
    if cutoff is None:
        return []
    shredded = await _shred_due(db, store, cutoff, days, now)
    if shredded:
        # The wrapped keys just cleared leave no copy in SQLite's WAL (the pages
        # themselves were zeroed as they were written: secure_delete).
        await db.erase_freed()
    destroyed = await store.keys.periods.destroy_finished(now)
    if destroyed:
        log.info("retention: the keys of %d periods destroyed", len(destroyed))
    return shredded


def recording_days(documents: float, recordings_: float) -> float:
    """The recordings' retention: their own, never longer than the documents' (0: as
    the documents)."""
    if recordings_ <= 0:
        return documents
    return recordings_ if documents <= 0 else min(recordings_, documents)


async def shred_expired_recordings(
    db: Database, store: FileStore, *, days: float, now: float
) -> list[str]:
    """Shred every recording whose call ended more than ``days`` days ago (audited as
    ``recording.shred``); the ids shredded."""
    cutoff = retention_cutoff(now, days)
    if cutoff is None:
        return []
    shredded = await _shred_due(db, store, cutoff, days, now, action="recording.shred")
    if shredded:
        await db.erase_freed()
    return shredded


async def _shred_due(
    db: Database,
    store: FileStore,
    cutoff: float,
    days: float,
    now: float,
    action: str = "file.shred",
) -> list[str]:
    shredded: list[str] = []
    after = ""
    recordings_only = action == "recording.shred"
    while True:
        batch = await db.read(
            partial(_candidates, cutoff=cutoff, after=after, recordings_only=recordings_only)
        )
        if not batch:
            return shredded
        after = batch[-1].file_id
        due = [c for c in batch if is_due(c.state, c.ended_at, now, days)]

        def unit(conn: Connection, due: list[Candidate] = due) -> list[str]:
            return [
                c.file_id
                for c in due
                if shred_record(
                    conn,
                    c.file_id,
                    now,
                    AuditEvent(
                        "system",
                        action,
                        c.file_id,
                        {
                            "consultation": c.consultation_id,
                            "ended_at": c.ended_at,
                            "retention_days": days,
                        },
                    ),
                )
            ]

        done = await db.write(unit)
        for file_id in done:
            # The key is gone (committed above); the ciphertext is noise now.
            await store.remove_content(file_id)
        shredded += done


async def run_retention(
    db: Database,
    store: FileStore,
    days: float,
    *,
    interval: float = SWEEP_INTERVAL,
    clock: Callable[[], float] = time.time,
    recording_retention: float = 0.0,
) -> None:
    """Sweep at once and then every ``interval`` seconds until cancelled (recordings
    first, by ``recording_retention``, then every document by ``days``)."""
    while True:
        try:
            if recording_retention > 0:
                gone = await shred_expired_recordings(
                    db, store, days=recording_retention, now=clock()
                )
                if gone:
                    log.info("retention: %d recordings shredded", len(gone))
            done = await shred_expired(db, store, days=days, now=clock())
        except Exception:
            log.exception("retention sweep failed; trying again in %.0f s", interval)
        else:
            if done:
                log.info("retention: %d documents shredded", len(done))
        await asyncio.sleep(interval)
