"""Service halls as records: kiosks stand in one, clerks work at one or more."""

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from storage.audit import append_audit_if
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.records import AuditEvent, Hall, HallLevel, Role
from storage.schema import accounts, clerk_halls, consultations, halls

LEVEL_ORDER = {HallLevel.CITY: 0, HallLevel.DISTRICT: 1, HallLevel.STREET: 2}


def _order(hall: Hall) -> tuple[int, str]:
    """The city's hall first, then districts', then streets', each by code."""
    return LEVEL_ORDER[hall.level], hall.code


def hall_from_row(row: Any) -> Hall:
    data = dict(row._asdict())
    data["level"] = HallLevel(data["level"])
    data["allow_file_chooser"] = bool(data["allow_file_chooser"])
    return Hall(**data)


def missing_halls(conn: Connection, codes: Iterable[str]) -> list[str]:
    """Which of these codes name no hall (inside the caller's unit of work)."""
    wanted = sorted(set(codes))
    if not wanted:
        return []
    found = {row.code for row in conn.execute(select(halls.c.code).where(halls.c.code.in_(wanted)))}
    return [code for code in wanted if code not in found]


def require_halls(conn: Connection, codes: Iterable[str]) -> None:
    missing = missing_halls(conn, codes)
    if missing:
        raise RecordNotFound(f"no hall {missing[0]!r}")


class Halls:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        code: str,
        name_zh: str,
        name_en: str,
        *,
        level: HallLevel = HallLevel.STREET,
        district: str = "",
        allow_file_chooser: bool = False,
        audit: AuditEvent | None = None,
    ) -> Hall:
        record = Hall(code, name_zh, name_en, level, district, allow_file_chooser, time.time())

        def unit(conn: Connection) -> None:
            conn.execute(halls.insert().values(**{**record.__dict__, "level": level.value}))
            append_audit_if(conn, audit)

        try:
            await self._db.write(unit)
        except IntegrityError as exc:
            raise RecordConflict(f"hall {code!r} already exists") from exc
        return record

    async def get(self, code: str) -> Hall:
        row = await self._db.read(
            lambda conn: conn.execute(select(halls).where(halls.c.code == code)).first()
        )
        if row is None:
            raise RecordNotFound(f"no hall {code!r}")
        return hall_from_row(row)

    async def change(
        self, code: str, values: Mapping[str, str | bool], *, audit: AuditEvent | None = None
    ) -> Hall:
        """Set some of a hall's columns (names, level, district, allow_file_chooser)."""

        def unit(conn: Connection) -> Hall:
            result = conn.execute(update(halls).where(halls.c.code == code).values(**values))
            if result.rowcount == 0:
                raise RecordNotFound(f"no hall {code!r}")
            append_audit_if(conn, audit)
            return hall_from_row(conn.execute(select(halls).where(halls.c.code == code)).one())

        return await self._db.write(unit)

    async def of_clerk(self, account_id: str) -> list[Hall]:
        """The halls a clerk works at."""
        query = (
            select(halls)
            .select_from(halls.join(clerk_halls, clerk_halls.c.hall == halls.c.code))
            .where(clerk_halls.c.account_id == account_id)
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return sorted((hall_from_row(r) for r in rows), key=_order)

    async def clerks(self) -> dict[str, list[str]]:
        """Each clerk account's hall codes (account id -> codes)."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(clerk_halls.c.account_id, clerk_halls.c.hall).order_by(clerk_halls.c.hall)
            ).all()
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(str(row.account_id), []).append(str(row.hall))
        return found

    async def set_clerk_halls(
        self, username: str, codes: Sequence[str], *, audit: AuditEvent | None = None
    ) -> list[str]:
        """A clerk now works at exactly these halls."""

        def unit(conn: Connection) -> list[str]:
            row = conn.execute(
                select(accounts.c.id, accounts.c.role).where(accounts.c.username == username)
            ).first()
            if row is None:
                raise RecordNotFound(f"no account {username!r}")
            if row.role != Role.CLERK.value:
                raise RecordConflict("only clerks work at several halls")
            require_halls(conn, codes)
            conn.execute(delete(clerk_halls).where(clerk_halls.c.account_id == row.id))
            for code in sorted(set(codes)):
                conn.execute(clerk_halls.insert().values(account_id=row.id, hall=code))
            append_audit_if(conn, audit)
            return sorted(set(codes))

        return await self._db.write(unit)

    async def counts_since(self, since: float) -> dict[str, tuple[int, int]]:
        """Per hall, consultations that joined the queue since ``since`` and how many
        of them an expert answered."""
        query = (
            select(
                consultations.c.hall,
                func.count().label("total"),
                func.count(consultations.c.active_at).label("answered"),
            )
            .where(consultations.c.waiting_at >= since, consultations.c.hall.is_not(None))
            .group_by(consultations.c.hall)
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return {str(r.hall): (int(r.total), int(r.answered)) for r in rows}

    async def list(self) -> list[Hall]:
        """Every hall: the city's first, then districts', then streets', each by code."""
        rows = await self._db.read(lambda conn: conn.execute(select(halls)).all())
        found = [hall_from_row(row) for row in rows]
        return sorted(found, key=_order)
