"""Accounts of kiosks, experts, clerks and admins, with their password hashes."""

import asyncio
import time

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from storage.audit import AuditLog
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.ids import new_id
from storage.passwords import dummy_hash, hash_password, verify_password
from storage.records import Account, AuditEvent, Role
from storage.schema import accounts, departments, sessions

_PUBLIC_COLUMNS = [c for c in accounts.c if c.name != "password_hash"]


def _account(row: object) -> Account:
    data = dict(row._asdict())  # type: ignore[attr-defined]
    data.pop("password_hash", None)
    data["role"] = Role(data["role"])
    return Account(**data)


class Accounts:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    async def create(
        self,
        username: str,
        password: str,
        role: Role,
        *,
        department: str | None = None,
        hall: str | None = None,
        display_name: str = "",
        password_hash: str | None = None,
        audit: AuditEvent | None = None,
    ) -> Account:
        """Create an account; ``password_hash`` lets a bulk seeder hash once for many."""
        if role is Role.EXPERT and department is None:
            raise RecordConflict("an expert account needs a department")
        if role is not Role.EXPERT and department is not None:
            raise RecordConflict("only expert accounts belong to a department")
        if role is not Role.KIOSK and hall is not None:
            raise RecordConflict("only kiosk accounts belong to a hall")
        encoded = password_hash or await asyncio.to_thread(hash_password, password)
        account = Account(
            new_id(), username, role, department, hall, display_name or username, False, time.time()
        )
        try:
            async with self._db.transaction() as conn:
                if department is not None:
                    found = (
                        await conn.execute(
                            select(departments.c.code).where(departments.c.code == department)
                        )
                    ).first()
                    if found is None:
                        raise RecordNotFound(f"no department {department!r}")
                await conn.execute(
                    accounts.insert().values(password_hash=encoded, **account.__dict__)
                )
                if audit is not None:
                    await self._audit.append_in(conn, audit)
        except IntegrityError as exc:
            raise RecordConflict(f"account {username!r} already exists") from exc
        return account

    async def get(self, account_id: str) -> Account:
        async with self._db.reading() as conn:
            row = (
                await conn.execute(select(*_PUBLIC_COLUMNS).where(accounts.c.id == account_id))
            ).first()
        if row is None:
            raise RecordNotFound("no such account")
        return _account(row)

    async def get_by_username(self, username: str) -> Account:
        async with self._db.reading() as conn:
            row = (
                await conn.execute(select(*_PUBLIC_COLUMNS).where(accounts.c.username == username))
            ).first()
        if row is None:
            raise RecordNotFound(f"no account {username!r}")
        return _account(row)

    async def list(self, *, role: Role | None = None) -> list[Account]:
        query = select(*_PUBLIC_COLUMNS).order_by(accounts.c.username)
        if role is not None:
            query = query.where(accounts.c.role == role.value)
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [_account(row) for row in rows]

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The enabled account these credentials open, else None (same cost either way)."""
        async with self._db.reading() as conn:
            row = (
                await conn.execute(select(accounts).where(accounts.c.username == username))
            ).first()
        encoded = str(row.password_hash) if row is not None else dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, encoded)
        if row is None or not ok or row.disabled:
            return None
        return _account(row)

    async def set_disabled(
        self, username: str, disabled: bool, *, audit: AuditEvent | None = None
    ) -> Account:
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(select(accounts.c.id).where(accounts.c.username == username))
            ).first()
            if row is None:
                raise RecordNotFound(f"no account {username!r}")
            await conn.execute(
                update(accounts).where(accounts.c.id == row.id).values(disabled=disabled)
            )
            if disabled:
                await conn.execute(delete(sessions).where(sessions.c.account_id == row.id))
            if audit is not None:
                await self._audit.append_in(conn, audit)
        return await self.get_by_username(username)

    async def set_password(
        self, username: str, password: str, *, audit: AuditEvent | None = None
    ) -> None:
        encoded = await asyncio.to_thread(hash_password, password)
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(select(accounts.c.id).where(accounts.c.username == username))
            ).first()
            if row is None:
                raise RecordNotFound(f"no account {username!r}")
            await conn.execute(
                update(accounts).where(accounts.c.id == row.id).values(password_hash=encoded)
            )
            await conn.execute(delete(sessions).where(sessions.c.account_id == row.id))
            if audit is not None:
                await self._audit.append_in(conn, audit)
