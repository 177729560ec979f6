"""Accounts of kiosks, experts, interpreters, clerks and admins, with their password hashes."""

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError

from storage.audit import append_audit_if
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.halls import require_halls
from storage.ids import new_id
from storage.passwords import dummy_hash, hash_password, verify_password
from storage.records import DESK_ROLES, Account, AuditEvent, DepartmentKind, Role, Scope
from storage.schema import accounts, clerk_halls, departments, sessions
from storage.scopes import write_scope

PUBLIC_COLUMNS = [c for c in accounts.c if c.name != "password_hash"]


def account_from_row(row: Any) -> Account:
    data = {c.name: getattr(row, c.name) for c in PUBLIC_COLUMNS}
    data["role"] = Role(data["role"])
    return Account(**data)


def _account_id(conn: Connection, username: str) -> str:
    row = conn.execute(select(accounts.c.id).where(accounts.c.username == username)).first()
    if row is None:
        raise RecordNotFound(f"no account {username!r}")
    return str(row.id)


def _keep_an_admin(conn: Connection, leaving_id: str) -> None:
    """Refuse to leave the system without an enabled admin. The enabled admins' rows
    are locked (PostgreSQL), so two admins disabling each other at once from two
    nodes cannot both succeed; SQLite writes one transaction at a time anyway."""
    admins = [
        str(row.id)
        for row in conn.execute(
            select(accounts.c.id)
            .where(accounts.c.role == Role.ADMIN.value, accounts.c.disabled.is_(False))
            .with_for_update()
        )
    ]
    if admins == [leaving_id]:
        raise RecordConflict("this is the last enabled admin account; enable another admin first")


class Accounts:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        username: str,
        password: str,
        role: Role,
        *,
        department: str | None = None,
        hall: str | None = None,
        halls: Sequence[str] = (),
        display_name: str = "",
        password_hash: str | None = None,
        audit: AuditEvent | None = None,
        scope: Scope | None = None,
    ) -> Account:
        """Create an account; ``password_hash`` lets a bulk seeder hash once for many.
        A kiosk stands in ``hall``, a clerk works at ``halls``; both must exist."""
        if role in DESK_ROLES and department is None:
            raise RecordConflict(f"an {role.value} account needs a department")
        if role not in DESK_ROLES and department is not None:
            raise RecordConflict("only expert and interpreter accounts belong to a department")
        if role is not Role.KIOSK and hall is not None:
            raise RecordConflict("only kiosk accounts stand in a hall")
        if role is not Role.CLERK and halls:
            raise RecordConflict("only clerk accounts work at halls")
        if role is not Role.SUPERVISOR and scope is not None:
            raise RecordConflict("only supervisors oversee departments and halls")
        encoded = password_hash or await asyncio.to_thread(hash_password, password)
        account = Account(
            new_id(), username, role, department, hall, display_name or username, False, time.time()
        )

        def unit(conn: Connection) -> None:
            if department is not None:
                found = conn.execute(
                    select(departments.c.kind).where(departments.c.code == department)
                ).first()
                if found is None:
                    raise RecordNotFound(f"no department {department!r}")
                # Interpreters belong to interpreting pools, experts to the others.
                pool = found.kind == DepartmentKind.INTERPRETER.value
                if pool != (role is Role.INTERPRETER):
                    raise RecordConflict(
                        "interpreters belong to interpreting pools, experts to service departments"
                    )
            require_halls(conn, [*halls, *([hall] if hall is not None else [])])
            conn.execute(accounts.insert().values(password_hash=encoded, **account.__dict__))
            for code in sorted(set(halls)):
                conn.execute(clerk_halls.insert().values(account_id=account.id, hall=code))
            if scope is not None:
                # With the account: a supervisor never exists unscoped (= everything).
                write_scope(conn, account.id, scope)
            append_audit_if(conn, audit)

        try:
            await self._db.write(unit)
        except IntegrityError as exc:
            raise RecordConflict(f"account {username!r} already exists") from exc
        return account

    async def _one(self, condition: Any, missing: str) -> Account:
        row = await self._db.read(
            lambda conn: conn.execute(select(*PUBLIC_COLUMNS).where(condition)).first()
        )
        if row is None:
            raise RecordNotFound(missing)
        return account_from_row(row)

    async def get(self, account_id: str) -> Account:
        return await self._one(accounts.c.id == account_id, "no such account")

    async def get_by_username(self, username: str) -> Account:
        return await self._one(accounts.c.username == username, f"no account {username!r}")

    async def list(self, *, role: Role | None = None) -> list[Account]:
        query = select(*PUBLIC_COLUMNS).order_by(accounts.c.username)
        if role is not None:
            query = query.where(accounts.c.role == role.value)
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [account_from_row(row) for row in rows]

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The enabled account these credentials open, else None (same cost either way)."""
        row = await self._db.read(
            lambda conn: conn.execute(
                select(accounts).where(accounts.c.username == username)
            ).first()
        )
        encoded = str(row.password_hash) if row is not None else dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, encoded)
        if row is None or not ok or row.disabled:
            return None
        return account_from_row(row)

    async def set_disabled(
        self, username: str, disabled: bool, *, audit: AuditEvent | None = None
    ) -> Account:
        def unit(conn: Connection) -> None:
            account_id = _account_id(conn, username)
            if disabled:
                _keep_an_admin(conn, account_id)
            conn.execute(
                update(accounts).where(accounts.c.id == account_id).values(disabled=disabled)
            )
            if disabled:
                conn.execute(delete(sessions).where(sessions.c.account_id == account_id))
            append_audit_if(conn, audit)

        await self._db.write(unit)
        return await self.get_by_username(username)

    async def set_hall(
        self, username: str, hall: str, *, audit: AuditEvent | None = None
    ) -> Account:
        """Move a kiosk to another hall."""

        def unit(conn: Connection) -> None:
            account_id = _account_id(conn, username)
            role = conn.execute(select(accounts.c.role).where(accounts.c.id == account_id)).scalar()
            if role != Role.KIOSK.value:
                raise RecordConflict("only kiosk accounts stand in a hall")
            require_halls(conn, [hall])
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(hall=hall))
            append_audit_if(conn, audit)

        await self._db.write(unit)
        return await self.get_by_username(username)

    async def set_password(
        self, username: str, password: str, *, audit: AuditEvent | None = None
    ) -> None:
        encoded = await asyncio.to_thread(hash_password, password)

        def unit(conn: Connection) -> None:
            account_id = _account_id(conn, username)
            conn.execute(
                update(accounts).where(accounts.c.id == account_id).values(password_hash=encoded)
            )
            conn.execute(delete(sessions).where(sessions.c.account_id == account_id))
            append_audit_if(conn, audit)

        await self._db.write(unit)
