"""Server-side login sessions: the client holds a random token, we keep its hash."""

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from storage.audit import AuditLog
from storage.database import Database
from storage.records import Account, AuditEvent, Role
from storage.schema import accounts, sessions

# last_seen is only rewritten when older than this, so that busy pages do not
# turn every request into a write.
_TOUCH_INTERVAL = 60.0


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class SessionPolicy:
    idle_timeout: float
    max_age: float


class Sessions:
    def __init__(self, db: Database, audit: AuditLog, policy: SessionPolicy) -> None:
        self._db = db
        self._audit = audit
        self.policy = policy

    async def create(self, account: Account, remote: str, *, audit: AuditEvent | None) -> str:
        """A new random token for ``account``; only its hash is stored."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        async with self._db.transaction() as conn:
            await conn.execute(
                sessions.insert().values(
                    token_hash=_token_hash(token),
                    account_id=account.id,
                    created_at=now,
                    last_seen=now,
                    remote=remote,
                )
            )
            if audit is not None:
                await self._audit.append_in(conn, audit)
        return token

    async def resolve(self, token: str) -> Account | None:
        """The enabled account behind a live token, refreshing its idle timer."""
        if not token or len(token) > 128:
            return None
        digest = _token_hash(token)
        now = time.time()
        query = (
            select(
                sessions.c.created_at.label("session_created_at"),
                sessions.c.last_seen,
                *[c for c in accounts.c if c.name != "password_hash"],
            )
            .join(accounts, accounts.c.id == sessions.c.account_id)
            .where(sessions.c.token_hash == digest)
        )
        async with self._db.reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        expired = (
            now - row.last_seen > self.policy.idle_timeout
            or now - row.session_created_at > self.policy.max_age
        )
        if expired or row.disabled:
            async with self._db.transaction() as conn:
                await conn.execute(delete(sessions).where(sessions.c.token_hash == digest))
            return None
        if now - row.last_seen > _TOUCH_INTERVAL:
            async with self._db.transaction() as conn:
                await conn.execute(
                    update(sessions).where(sessions.c.token_hash == digest).values(last_seen=now)
                )
        return Account(
            id=row.id,
            username=row.username,
            role=Role(row.role),
            department=row.department,
            hall=row.hall,
            display_name=row.display_name,
            disabled=row.disabled,
            created_at=row.created_at,
        )

    async def delete(self, token: str, *, audit: AuditEvent | None = None) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(delete(sessions).where(sessions.c.token_hash == _token_hash(token)))
            if audit is not None:
                await self._audit.append_in(conn, audit)

    async def purge_expired(self) -> int:
        now = time.time()
        async with self._db.transaction() as conn:
            result = await conn.execute(
                delete(sessions).where(
                    (sessions.c.last_seen < now - self.policy.idle_timeout)
                    | (sessions.c.created_at < now - self.policy.max_age)
                )
            )
        return int(result.rowcount)
