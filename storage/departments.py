"""Departments that experts belong to and kiosks call."""

import time

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from storage.audit import AuditLog
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.records import AuditEvent, Department
from storage.schema import departments


class Departments:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    async def create(
        self, code: str, name_zh: str, name_en: str, *, audit: AuditEvent | None = None
    ) -> Department:
        record = Department(code, name_zh, name_en, False, time.time())
        try:
            async with self._db.transaction() as conn:
                await conn.execute(departments.insert().values(**record.__dict__))
                if audit is not None:
                    await self._audit.append_in(conn, audit)
        except IntegrityError as exc:
            raise RecordConflict(f"department {code!r} already exists") from exc
        return record

    async def get(self, code: str) -> Department:
        async with self._db.reading() as conn:
            row = (
                await conn.execute(select(departments).where(departments.c.code == code))
            ).first()
        if row is None:
            raise RecordNotFound(f"no department {code!r}")
        return Department(**row._asdict())

    async def list(self, *, include_disabled: bool = True) -> list[Department]:
        query = select(departments).order_by(departments.c.code)
        if not include_disabled:
            query = query.where(departments.c.disabled.is_(False))
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [Department(**row._asdict()) for row in rows]

    async def set_disabled(
        self, code: str, disabled: bool, *, audit: AuditEvent | None = None
    ) -> Department:
        async with self._db.transaction() as conn:
            result = await conn.execute(
                update(departments).where(departments.c.code == code).values(disabled=disabled)
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"no department {code!r}")
            if audit is not None:
                await self._audit.append_in(conn, audit)
        return await self.get(code)
