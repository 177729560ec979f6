"""The append-only audit log: each entry carries the hash of the one before."""

import hashlib
import json
import time
from collections.abc import AsyncIterator

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.database import Database
from storage.errors import AuditChainBroken
from storage.records import AuditEntry, AuditEvent
from storage.schema import audit_head, audit_log

GENESIS_HASH = "0" * 64


def entry_hash(
    seq: int,
    at: float,
    actor: str,
    action: str,
    subject: str,
    detail: str,
    remote: str,
    prev_hash: str,
) -> str:
    """SHA-256 over the canonical JSON of an entry's fields and its predecessor's hash."""
    canonical = json.dumps(
        [seq, at, actor, action, subject, detail, remote, prev_hash],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AuditLog:
    """Appends entries inside the caller's transaction and verifies the chain."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append_in(self, conn: AsyncConnection, event: AuditEvent) -> AuditEntry:
        """Append within an open write transaction, so the entry lands with its record."""
        head = (
            await conn.execute(
                select(audit_head.c.seq, audit_head.c.hash)
                .where(audit_head.c.id == 1)
                .with_for_update()
            )
        ).one()
        seq = int(head.seq) + 1
        prev_hash = str(head.hash) or GENESIS_HASH
        at = time.time()
        detail = json.dumps(event.detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        digest = entry_hash(
            seq, at, event.actor, event.action, event.subject, detail, event.remote, prev_hash
        )
        await conn.execute(
            audit_log.insert().values(
                seq=seq,
                at=at,
                actor=event.actor,
                action=event.action,
                subject=event.subject,
                detail=detail,
                remote=event.remote,
                prev_hash=prev_hash,
                hash=digest,
            )
        )
        await conn.execute(
            update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest)
        )
        return AuditEntry(
            seq,
            at,
            event.actor,
            event.action,
            event.subject,
            detail,
            event.remote,
            prev_hash,
            digest,
        )

    async def append(self, event: AuditEvent) -> AuditEntry:
        """Append in a transaction of its own."""
        async with self._db.transaction() as conn:
            return await self.append_in(conn, event)

    async def entries(
        self, *, after_seq: int = 0, limit: int = 1000, action: str | None = None
    ) -> list[AuditEntry]:
        query = select(audit_log).where(audit_log.c.seq > after_seq)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        query = query.order_by(audit_log.c.seq).limit(limit)
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [AuditEntry(**row._asdict()) for row in rows]

    async def _all_entries(self, batch: int = 5000) -> AsyncIterator[AuditEntry]:
        after = 0
        while True:
            page = await self.entries(after_seq=after, limit=batch)
            if not page:
                return
            for entry in page:
                yield entry
            after = page[-1].seq

    async def verify(self) -> int:
        """Check the whole chain; return the number of entries, or raise
        ``AuditChainBroken`` naming the first entry that does not fit."""
        expected_seq = 1
        prev_hash = GENESIS_HASH
        async for entry in self._all_entries():
            if entry.seq != expected_seq:
                raise AuditChainBroken(expected_seq, "entry missing")
            if entry.prev_hash != prev_hash:
                raise AuditChainBroken(entry.seq, "does not link to the previous entry")
            digest = entry_hash(
                entry.seq,
                entry.at,
                entry.actor,
                entry.action,
                entry.subject,
                entry.detail,
                entry.remote,
                entry.prev_hash,
            )
            if digest != entry.hash:
                raise AuditChainBroken(entry.seq, "content does not match its hash")
            prev_hash = entry.hash
            expected_seq += 1
        async with self._db.reading() as conn:
            head = (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).one()
        count = expected_seq - 1
        if int(head.seq) != count or (count and head.hash != prev_hash):
            raise AuditChainBroken(count + 1, f"entries after {count} are missing")
        return count
