"""Supervisors' scopes: the departments and halls each supervisor oversees.

No department and no hall means every department and every hall (the service
centre's own supervisors); departments only, halls only, or both narrow it
(``Scope.covers``). Written in the same unit of work as the account it belongs
to, so that a supervisor never exists for a moment with the empty scope that
would let it see everything.
"""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, select

from storage.audit import append_audit_if
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.halls import require_halls
from storage.records import AuditEvent, Role, Scope
from storage.schema import accounts, departments, supervisor_departments, supervisor_halls


def require_departments(conn: Connection, codes: Iterable[str]) -> None:
    """RecordNotFound naming the first of ``codes`` that is no department."""
    wanted = sorted(set(codes))
    if not wanted:
        return
    found = {
        row.code
        for row in conn.execute(select(departments.c.code).where(departments.c.code.in_(wanted)))
    }
    missing = [code for code in wanted if code not in found]
    if missing:
        raise RecordNotFound(f"no department {missing[0]!r}")


def write_scope(conn: Connection, account_id: str, scope: Scope) -> Scope:
    """Replace an account's scope inside the caller's unit of work; the scope as kept
    (sorted, without repeats)."""
    kept = Scope(tuple(sorted(set(scope.departments))), tuple(sorted(set(scope.halls))))
    require_departments(conn, kept.departments)
    require_halls(conn, kept.halls)
    conn.execute(
        delete(supervisor_departments).where(supervisor_departments.c.account_id == account_id)
    )
    conn.execute(delete(supervisor_halls).where(supervisor_halls.c.account_id == account_id))
    for code in kept.departments:
        conn.execute(supervisor_departments.insert().values(account_id=account_id, department=code))
    for code in kept.halls:
        conn.execute(supervisor_halls.insert().values(account_id=account_id, hall=code))
    return kept


def _scopes(rows_departments: Iterable[Any], rows_halls: Iterable[Any]) -> dict[str, Scope]:
    found: dict[str, tuple[list[str], list[str]]] = {}
    for row in rows_departments:
        found.setdefault(str(row.account_id), ([], []))[0].append(str(row.department))
    for row in rows_halls:
        found.setdefault(str(row.account_id), ([], []))[1].append(str(row.hall))
    return {account: Scope(tuple(sorted(d)), tuple(sorted(h))) for account, (d, h) in found.items()}


class SupervisorScopes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of(self, account_id: str) -> Scope:
        """The scope of one supervisor (the empty scope: everything)."""

        def unit(conn: Connection) -> Scope:
            d = conn.execute(
                select(supervisor_departments).where(
                    supervisor_departments.c.account_id == account_id
                )
            ).all()
            h = conn.execute(
                select(supervisor_halls).where(supervisor_halls.c.account_id == account_id)
            ).all()
            return _scopes(d, h).get(account_id, Scope())

        return await self._db.read(unit)

    async def all(self) -> dict[str, Scope]:
        """Every scoped supervisor's scope (account id -> scope); absent: everything."""

        def unit(conn: Connection) -> dict[str, Scope]:
            return _scopes(
                conn.execute(select(supervisor_departments)).all(),
                conn.execute(select(supervisor_halls)).all(),
            )

        return await self._db.read(unit)

    async def set(self, username: str, scope: Scope, *, audit: AuditEvent | None = None) -> Scope:
        """A supervisor now oversees exactly this scope."""

        def unit(conn: Connection) -> Scope:
            row = conn.execute(
                select(accounts.c.id, accounts.c.role).where(accounts.c.username == username)
            ).first()
            if row is None:
                raise RecordNotFound(f"no account {username!r}")
            if row.role != Role.SUPERVISOR.value:
                raise RecordConflict("only supervisors oversee departments and halls")
            kept = write_scope(conn, str(row.id), scope)
            append_audit_if(conn, audit)
            return kept

        return await self._db.write(unit)
