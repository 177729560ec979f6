"""Departments that experts belong to and kiosks call."""

import time

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from storage.audit import append_audit_if
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.records import DEFAULT_HOURS, AuditEvent, Department
from storage.schema import departments


class Departments:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        code: str,
        name_zh: str,
        name_en: str,
        *,
        hours: str = DEFAULT_HOURS,
        audit: AuditEvent | None = None,
    ) -> Department:
        record = Department(code, name_zh, name_en, False, time.time(), hours)

        def unit(conn: Connection) -> None:
            conn.execute(departments.insert().values(**record.__dict__))
            append_audit_if(conn, audit)

        try:
            await self._db.write(unit)
        except IntegrityError as exc:
            raise RecordConflict(f"department {code!r} already exists") from exc
        return record

    async def get(self, code: str) -> Department:
        row = await self._db.read(
            lambda conn: conn.execute(select(departments).where(departments.c.code == code)).first()
        )
        if row is None:
            raise RecordNotFound(f"no department {code!r}")
        return Department(**row._asdict())

    async def list(self, *, include_disabled: bool = True) -> list[Department]:
        query = select(departments).order_by(departments.c.code)
        if not include_disabled:
            query = query.where(departments.c.disabled.is_(False))
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [Department(**row._asdict()) for row in rows]

    async def set_disabled(
        self, code: str, disabled: bool, *, audit: AuditEvent | None = None
    ) -> Department:
        return await self.change(code, {"disabled": disabled}, audit=audit)

    async def change(
        self, code: str, values: dict[str, str | bool], *, audit: AuditEvent | None = None
    ) -> Department:
        """Set some of a department's columns (disabled, hours)."""

        def unit(conn: Connection) -> Department:
            result = conn.execute(
                update(departments).where(departments.c.code == code).values(**values)
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"no department {code!r}")
            append_audit_if(conn, audit)
            row = conn.execute(select(departments).where(departments.c.code == code)).one()
            return Department(**row._asdict())

        return await self._db.write(unit)
