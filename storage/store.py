"""Everything storage offers, opened and closed as one object."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

from storage.accounts import Accounts
from storage.audit import AuditLog
from storage.consultations import ConsultationRecords
from storage.database import Database, database_url
from storage.departments import Departments
from storage.sessions import SessionPolicy, Sessions
from storage.statistics import ConsultationStatistics


@dataclass(frozen=True)
class Storage:
    db: Database
    audit: AuditLog
    departments: Departments
    accounts: Accounts
    sessions: Sessions
    consultations: ConsultationRecords
    statistics: ConsultationStatistics

    @classmethod
    async def open(
        cls, url: str | None, data_dir: Path, session_policy: SessionPolicy
    ) -> "Storage":
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
        db = await Database.open(database_url(url, data_dir))
        return cls(
            db=db,
            audit=AuditLog(db),
            departments=Departments(db),
            accounts=Accounts(db),
            sessions=Sessions(db, session_policy),
            consultations=ConsultationRecords(db),
            statistics=ConsultationStatistics(db),
        )

    async def close(self) -> None:
        await self.db.close()
