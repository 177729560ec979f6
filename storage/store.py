"""Everything storage offers, opened and closed as one object."""

import asyncio
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from storage.accounts import Accounts
from storage.appointments import Appointments
from storage.audit import AuditLog, chain_anchor
from storage.audit_keys import AuditKeys, directory_audit_keys, read_anchor, record_anchor
from storage.booking_settings import BookingSettingsStore
from storage.callbacks import Callbacks
from storage.consultations import ConsultationRecords
from storage.database import Database, database_url
from storage.departments import Departments
from storage.filecrypt import Suite
from storage.followups import FollowUps
from storage.halls import Halls
from storage.identities import ConsultationIdentities
from storage.legs import ConsultationLegs
from storage.recordings import RecordingConsents, RecordingFiles
from storage.scopes import SupervisorScopes
from storage.sessions import SessionPolicy, Sessions
from storage.shares import DocumentShares
from storage.statistics import ConsultationStatistics


def prepare_data_dir(data_dir: Path, url: str) -> None:
    """The data directory and the SQLite database, owner-only: the database holds
    case numbers, password hashes and wrapped keys. SQLite creates its -wal and -shm
    files with the database file's permissions, so creating that file 0600 first
    covers them too."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(data_dir.stat().st_mode) & 0o077:
        os.chmod(data_dir, 0o700)
    if make_url(url).get_backend_name() == "sqlite" and make_url(url).database:
        path = Path(str(make_url(url).database))
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        for sibling in (
            path,
            path.with_name(path.name + "-wal"),
            path.with_name(path.name + "-shm"),
        ):
            if sibling.exists() and stat.S_IMODE(sibling.stat().st_mode) & 0o077:
                os.chmod(sibling, 0o600)


async def open_database(url: str, audit_keys: AuditKeys) -> Database:
    """The database, brought up to date, its audit entries made with ``audit_keys``;
    a process that can sign records its anchor of the chain's unkeyed beginning the
    first time (storage.audit_keys)."""
    db = await Database.open(url, audit_keys)
    if audit_keys.active is not None:
        try:
            if await asyncio.to_thread(read_anchor, audit_keys.directory) is None:
                anchor = await db.read(chain_anchor)
                await asyncio.to_thread(record_anchor, audit_keys.directory, anchor)
        except BaseException:
            await db.close()
            raise
    return db


@dataclass(frozen=True)
class Storage:
    db: Database
    audit: AuditLog
    departments: Departments
    halls: Halls
    accounts: Accounts
    sessions: Sessions
    consultations: ConsultationRecords
    statistics: ConsultationStatistics
    legs: ConsultationLegs
    shares: DocumentShares
    booking_settings: BookingSettingsStore
    appointments: Appointments
    callbacks: Callbacks
    identities: ConsultationIdentities
    recording_consents: RecordingConsents
    recordings: RecordingFiles
    followups: FollowUps
    scopes: SupervisorScopes

    @classmethod
    async def open(
        cls,
        url: str | None,
        data_dir: Path,
        session_policy: SessionPolicy,
        audit_keys: AuditKeys | None = None,
    ) -> "Storage":
        """The records; audit entries are made with ``audit_keys`` (default: those of
        ``<data_dir>/keys``, made there if missing, as the server's default key
        directory)."""
        url = database_url(url, data_dir)
        await asyncio.to_thread(prepare_data_dir, data_dir, url)
        if audit_keys is None:
            audit_keys = await asyncio.to_thread(
                directory_audit_keys, data_dir / "keys", Suite.AES_256_GCM, create=True
            )
        db = await open_database(url, audit_keys)
        return cls(
            db=db,
            audit=AuditLog(db),
            departments=Departments(db),
            halls=Halls(db),
            accounts=Accounts(db),
            sessions=Sessions(db, session_policy),
            consultations=ConsultationRecords(db),
            statistics=ConsultationStatistics(db),
            legs=ConsultationLegs(db),
            shares=DocumentShares(db),
            booking_settings=BookingSettingsStore(db),
            appointments=Appointments(db),
            callbacks=Callbacks(db),
            identities=ConsultationIdentities(db),
            recording_consents=RecordingConsents(db),
            recordings=RecordingFiles(db),
            followups=FollowUps(db),
            scopes=SupervisorScopes(db),
        )

    async def close(self) -> None:
        await self.db.close()
