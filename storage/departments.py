"""Departments that experts belong to and kiosks call."""

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from storage.audit import append_audit_if
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.records import DEFAULT_HOURS, AuditEvent, Department, DepartmentKind
from storage.schema import departments

LISTS = ("languages", "transfers_to", "materials")
"""Columns holding a JSON list of strings."""


def department_of(row: Any) -> Department:
    data = dict(row._asdict())
    data["kind"] = DepartmentKind(data["kind"])
    for name in LISTS:
        data[name] = tuple(str(v) for v in json.loads(data[name] or "[]"))
    return Department(**data)


def _columns(department: Department) -> dict[str, object]:
    values: dict[str, object] = dict(department.__dict__)
    values["kind"] = department.kind.value
    values["languages"] = json.dumps(list(department.languages), ensure_ascii=False)
    values["transfers_to"] = json.dumps(list(department.transfers_to), ensure_ascii=False)
    values["materials"] = json.dumps(list(department.materials), ensure_ascii=False)
    return values


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
        kind: DepartmentKind = DepartmentKind.SERVICE,
        languages: Sequence[str] = (),
        transfers_to: Sequence[str] = (),
        audit: AuditEvent | None = None,
    ) -> Department:
        record = Department(
            code,
            name_zh,
            name_en,
            False,
            time.time(),
            hours,
            kind,
            tuple(languages),
            tuple(transfers_to),
        )

        def unit(conn: Connection) -> None:
            if transfers_to:
                _check_targets(conn, code, transfers_to)
            conn.execute(departments.insert().values(**_columns(record)))
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
        return department_of(row)

    async def list(self, *, include_disabled: bool = True) -> list[Department]:
        query = select(departments).order_by(departments.c.code)
        if not include_disabled:
            query = query.where(departments.c.disabled.is_(False))
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [department_of(row) for row in rows]

    async def set_disabled(
        self, code: str, disabled: bool, *, audit: AuditEvent | None = None
    ) -> Department:
        return await self.change(code, {"disabled": disabled}, audit=audit)

    async def change(
        self,
        code: str,
        values: Mapping[str, str | bool | Sequence[str]],
        *,
        audit: AuditEvent | None = None,
    ) -> Department:
        """Set some of a department's columns (disabled, hours, kind, languages,
        transfers_to). Transfers go only to other service departments that exist
        (RecordConflict otherwise); a department that others may transfer to stays a
        service department."""
        columns: dict[str, object] = {}
        for name, value in values.items():
            if name in LISTS:
                assert not isinstance(value, str | bool)
                columns[name] = json.dumps(list(value), ensure_ascii=False)
            else:
                columns[name] = value

        def unit(conn: Connection) -> Department:
            if values.get("transfers_to"):
                targets = values["transfers_to"]
                assert not isinstance(targets, str | bool)
                _check_targets(conn, code, targets)
            if values.get("kind") == DepartmentKind.INTERPRETER.value:
                _check_not_a_target(conn, code)
            result = conn.execute(
                update(departments).where(departments.c.code == code).values(**columns)
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"no department {code!r}")
            append_audit_if(conn, audit)
            row = conn.execute(select(departments).where(departments.c.code == code)).one()
            return department_of(row)

        return await self._db.write(unit)


def _check_targets(conn: Connection, code: str, targets: Sequence[str]) -> None:
    if code in targets:
        raise RecordConflict("a department does not transfer to itself")
    found = {
        row.code: row.kind
        for row in conn.execute(
            select(departments.c.code, departments.c.kind).where(
                departments.c.code.in_(list(targets))
            )
        )
    }
    missing = sorted(set(targets) - set(found))
    if missing:
        raise RecordNotFound(f"no department {missing[0]!r}")
    pools = sorted(c for c, kind in found.items() if kind != DepartmentKind.SERVICE.value)
    if pools:
        raise RecordConflict(
            f"{pools[0]!r} is an interpreting pool: invite it into the call, do not transfer to it"
        )


def _check_not_a_target(conn: Connection, code: str) -> None:
    for row in conn.execute(select(departments.c.code, departments.c.transfers_to)):
        if code in json.loads(row.transfers_to or "[]"):
            raise RecordConflict(
                f"{row.code!r} may transfer to {code!r}: remove that first, then make "
                "it an interpreting pool"
            )
