"""Server-side login sessions: the client holds a random token, we keep its hash."""

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update

from storage.accounts import PUBLIC_COLUMNS, account_from_row
from storage.audit import append_audit_if
from storage.database import Database
from storage.records import Account, AuditEvent
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
    def __init__(self, db: Database, policy: SessionPolicy) -> None:
        self._db = db
        self.policy = policy

    async def create(self, account: Account, remote: str, *, audit: AuditEvent | None) -> str:
        """A new random token for ``account``; only its hash is stored."""
        token = secrets.token_urlsafe(32)
        now = time.time()

        def unit(conn: Connection) -> None:
            conn.execute(
                sessions.insert().values(
                    token_hash=_token_hash(token),
                    account_id=account.id,
                    created_at=now,
                    last_seen=now,
                    remote=remote,
                )
            )
            append_audit_if(conn, audit)

        await self._db.write(unit)
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
                *PUBLIC_COLUMNS,
            )
            .join(accounts, accounts.c.id == sessions.c.account_id)
            .where(sessions.c.token_hash == digest)
        )
        row = await self._db.read(lambda conn: conn.execute(query).first())
        if row is None:
            return None
        expired = (
            now - row.last_seen > self.policy.idle_timeout
            or now - row.session_created_at > self.policy.max_age
        )
        if expired or row.disabled:
            await self._db.write(
                lambda conn: conn.execute(delete(sessions).where(sessions.c.token_hash == digest))
            )
            return None
        if now - row.last_seen > _TOUCH_INTERVAL:
            await self._db.write(
                lambda conn: conn.execute(
                    update(sessions).where(sessions.c.token_hash == digest).values(last_seen=now)
                )
            )
        return account_from_row(row)

    async def delete(self, token: str, *, audit: AuditEvent | None = None) -> None:
        def unit(conn: Connection) -> None:
            conn.execute(delete(sessions).where(sessions.c.token_hash == _token_hash(token)))
            append_audit_if(conn, audit)

        await self._db.write(unit)

    async def purge_expired(self) -> int:
        now = time.time()

        def unit(conn: Connection) -> int:
            result = conn.execute(
                delete(sessions).where(
                    (sessions.c.last_seen < now - self.policy.idle_timeout)
                    | (sessions.c.created_at < now - self.policy.max_age)
                )
            )
            return int(result.rowcount)

        return await self._db.write(unit)
