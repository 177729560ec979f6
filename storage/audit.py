"""The append-only audit log: each entry carries the hash of the one before."""

import hashlib
import json
import time
from collections.abc import AsyncIterator

from sqlalchemy import Connection, bindparam, select, update

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


# Built once: appends are the hottest statements in the service.
_READ_HEAD = (
    select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
)
_INSERT_ENTRY = audit_log.insert()
_WRITE_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def append_audit(conn: Connection, event: AuditEvent) -> AuditEntry:
    """Append within the caller's unit of work, so the entry lands with its record.

    The head row is locked (FOR UPDATE on PostgreSQL; SQLite has one writer),
    which serialises appends across processes.
    """
    head = conn.execute(_READ_HEAD).one()
    seq = int(head.seq) + 1
    prev_hash = str(head.hash) or GENESIS_HASH
    at = time.time()
    detail = json.dumps(event.detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = entry_hash(
        seq, at, event.actor, event.action, event.subject, detail, event.remote, prev_hash
    )
    entry = AuditEntry(
        seq, at, event.actor, event.action, event.subject, detail, event.remote, prev_hash, digest
    )
    conn.execute(_INSERT_ENTRY, entry.__dict__)
    conn.execute(_WRITE_HEAD, {"new_seq": seq, "new_hash": digest})
    return entry


def append_audit_if(conn: Connection, event: AuditEvent | None) -> None:
    """Append ``event`` if the caller asked for one."""
    if event is not None:
        append_audit(conn, event)


class AuditLog:
    """Appends entries and verifies the chain."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, event: AuditEvent) -> AuditEntry:
        """Append as a unit of work of its own."""
        return await self._db.write(lambda conn: append_audit(conn, event))

    async def entries(
        self, *, after_seq: int = 0, limit: int = 1000, action: str | None = None
    ) -> list[AuditEntry]:
        query = select(audit_log).where(audit_log.c.seq > after_seq)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        query = query.order_by(audit_log.c.seq).limit(limit)
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [AuditEntry(**row._asdict()) for row in rows]

    async def search(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        subject: str | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        """Newest first; ``action`` matches a whole action or its family
        ("account" finds "account.create" and "account.disable")."""
        query = select(audit_log)
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        if action is not None:
            query = query.where(
                (audit_log.c.action == action)
                | audit_log.c.action.startswith(f"{action}.", autoescape=True)
            )
        if subject is not None:
            query = query.where(audit_log.c.subject == subject)
        if before_seq is not None:
            query = query.where(audit_log.c.seq < before_seq)
        query = query.order_by(audit_log.c.seq.desc()).limit(limit)
        rows = await self._db.read(lambda conn: conn.execute(query).all())
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
        head = await self._db.read(
            lambda conn: conn.execute(select(audit_head).where(audit_head.c.id == 1)).one()
        )
        count = expected_seq - 1
        if int(head.seq) != count or (count and head.hash != prev_hash):
            raise AuditChainBroken(count + 1, f"entries after {count} are missing")
        return count
