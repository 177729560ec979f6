"""Server-side login sessions: the client holds a random token, we keep its hash."""

import hashlib
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update

from storage.accounts import PUBLIC_COLUMNS, account_from_row
from storage.audit import append_audit_if
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
    # Kiosks stand in a hall logged in for weeks: their sessions end only after
    # this long (None: as everyone's).
    kiosk_max_age: float | None = None

    def expired(self, role: str, created_at: float, last_seen: float, now: float) -> bool:
        if role == Role.KIOSK.value and self.kiosk_max_age is not None:
            return now - created_at > self.kiosk_max_age
        return now - last_seen > self.idle_timeout or now - created_at > self.max_age


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
        expired = self.policy.expired(row.role, row.session_created_at, row.last_seen, now)
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

    async def live(self, tokens: Collection[str]) -> set[str]:
        """Which of these tokens still open a session (without refreshing any): sockets
        opened with the others are closed, as at logout."""
        by_hash = {_token_hash(t): t for t in tokens if t and len(t) <= 128}
        if not by_hash:
            return set()
        now = time.time()
        query = (
            select(
                sessions.c.token_hash,
                sessions.c.created_at,
                sessions.c.last_seen,
                accounts.c.role,
                accounts.c.disabled,
            )
            .join(accounts, accounts.c.id == sessions.c.account_id)
            .where(sessions.c.token_hash.in_(list(by_hash)))
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return {
            by_hash[row.token_hash]
            for row in rows
            if not row.disabled
            and not self.policy.expired(row.role, row.created_at, row.last_seen, now)
        }

    async def delete(self, token: str, *, audit: AuditEvent | None = None) -> None:
        def unit(conn: Connection) -> None:
            conn.execute(delete(sessions).where(sessions.c.token_hash == _token_hash(token)))
            append_audit_if(conn, audit)

        await self._db.write(unit)

    async def purge_expired(self) -> int:
        now = time.time()

        policy = self.policy
        kiosks = select(accounts.c.id).where(accounts.c.role == Role.KIOSK.value)
        staff_expired = (sessions.c.last_seen < now - policy.idle_timeout) | (
            sessions.c.created_at < now - policy.max_age
        )
        if policy.kiosk_max_age is None:
            condition = staff_expired
        else:
            condition = (sessions.c.account_id.not_in(kiosks) & staff_expired) | (
                sessions.c.account_id.in_(kiosks)
                & (sessions.c.created_at < now - policy.kiosk_max_age)
            )

        def unit(conn: Connection) -> int:
            return int(conn.execute(delete(sessions).where(condition)).rowcount)

        return await self._db.write(unit)
