"""The append-only audit log: each entry carries the MAC of the one before.

An entry's ``hash`` is an HMAC (storage.audit_keys: HMAC-SHA-256, or HMAC-SM3
under the SM suite) over its content, its predecessor's ``hash`` and the id of the
audit key, which lives with the key-encryption keys and never in the database.
Entries made before keyed chains existed are plain SHA-256 (``key_id`` ''); they
may only begin the chain, and the first keyed entry chains over the last of them.
"""

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, func, select, update

from storage.audit_keys import (
    AuditKey,
    AuditKeys,
    ChainAnchor,
    read_anchor,
)
from storage.database import AUDIT_KEYS_OPTION, Database
from storage.errors import AuditChainBroken, KeyringError
from storage.records import AuditEntry, AuditEvent
from storage.schema import audit_head, audit_log

GENESIS_HASH = "0" * 64


def _canonical(fields: list[object]) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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
    """SHA-256 over the canonical JSON of an entry's fields and its predecessor's
    hash: the unkeyed form of the entries made before keyed chains."""
    return hashlib.sha256(
        _canonical([seq, at, actor, action, subject, detail, remote, prev_hash])
    ).hexdigest()


def entry_mac(
    key: AuditKey,
    seq: int,
    at: float,
    actor: str,
    action: str,
    subject: str,
    detail: str,
    remote: str,
    prev_hash: str,
) -> str:
    """The keyed form: HMAC over the same fields and the key's id."""
    return key.mac(_canonical([seq, at, actor, action, subject, detail, remote, prev_hash, key.id]))


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


def audit_keys_of(conn: Connection) -> AuditKeys:
    """The audit keys of the ``Database`` this connection belongs to."""
    keys = conn.get_execution_options().get(AUDIT_KEYS_OPTION)
    if not isinstance(keys, AuditKeys):
        raise KeyringError("this database was opened without the audit key: nothing is audited")
    return keys


def append_audit(conn: Connection, event: AuditEvent) -> AuditEntry:
    """Append within the caller's unit of work, so the entry lands with its record.

    The head row is locked (FOR UPDATE on PostgreSQL; SQLite has one writer),
    which serialises appends across processes.
    """
    key = audit_keys_of(conn).signing()
    head = conn.execute(_READ_HEAD).one()
    seq = int(head.seq) + 1
    prev_hash = str(head.hash) or GENESIS_HASH
    at = time.time()
    detail = json.dumps(event.detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = entry_mac(
        key, seq, at, event.actor, event.action, event.subject, detail, event.remote, prev_hash
    )
    entry = AuditEntry(
        seq,
        at,
        event.actor,
        event.action,
        event.subject,
        detail,
        event.remote,
        prev_hash,
        digest,
        key.id,
    )
    conn.execute(_INSERT_ENTRY, entry.__dict__)
    conn.execute(_WRITE_HEAD, {"new_seq": seq, "new_hash": digest})
    return entry


def chain_anchor(conn: Connection) -> ChainAnchor:
    """The chain's unkeyed beginning as it is now (the head is locked meanwhile, so
    that no entry is appended between the two reads)."""
    head = conn.execute(_READ_HEAD).one()
    first_keyed = conn.execute(
        select(func.min(audit_log.c.seq)).where(audit_log.c.key_id != "")
    ).scalar()
    if first_keyed is None:
        return ChainAnchor(int(head.seq), str(head.hash))
    legacy = int(first_keyed) - 1
    last = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == legacy)).scalar()
    return ChainAnchor(legacy, str(last or ""))


@dataclass(frozen=True)
class ChainReport:
    """What a verification found: an intact chain, and what vouches for it."""

    entries: int
    unkeyed: int
    """Entries at the start made before keyed chains (plain SHA-256)."""
    by_key: Mapping[str, int]
    """Entries per audit key id, in the order the keys were first used."""
    key_descriptions: Mapping[str, str]
    anchored: bool
    """Whether this node's record of the unkeyed beginning was checked."""
    head: str


@dataclass
class ChainVerifier:
    """Checks entries in order (no I/O): ``feed`` each, then ``finish`` with the
    head row; the first entry that does not fit raises ``AuditChainBroken``."""

    keys: Mapping[str, AuditKey]
    anchor: ChainAnchor | None
    source: str = "this node's key store"
    expected_seq: int = 1
    prev_hash: str = GENESIS_HASH
    unkeyed: int = 0
    by_key: dict[str, int] = field(default_factory=dict)

    def feed(self, entry: AuditEntry) -> None:
        seq = entry.seq
        if seq != self.expected_seq:
            raise AuditChainBroken(self.expected_seq, "entry missing")
        if entry.prev_hash != self.prev_hash:
            raise AuditChainBroken(seq, "does not link to the previous entry")
        fields = (
            entry.seq,
            entry.at,
            entry.actor,
            entry.action,
            entry.subject,
            entry.detail,
            entry.remote,
            entry.prev_hash,
        )
        legacy_end = self.anchor.legacy_entries if self.anchor is not None else None
        if not entry.key_id:
            if self.by_key:
                raise AuditChainBroken(
                    seq, "unkeyed (plain SHA-256) after keyed entries: forged or rewritten"
                )
            if legacy_end is not None and seq > legacy_end:
                raise AuditChainBroken(
                    seq,
                    f"unkeyed, but this node recorded that keyed entries begin after "
                    f"entry {legacy_end}: forged or rewritten",
                )
            if entry_hash(*fields) != entry.hash:
                raise AuditChainBroken(seq, "content does not match its hash")
            anchor = self.anchor
            if anchor is not None and seq == legacy_end and entry.hash != anchor.legacy_head:
                raise AuditChainBroken(
                    seq, "the unkeyed entries differ from those this node recorded"
                )
            self.unkeyed += 1
        else:
            if legacy_end is not None and seq <= legacy_end:
                raise AuditChainBroken(
                    seq, f"keyed, but this node recorded {legacy_end} unkeyed entries first"
                )
            key = self.keys.get(entry.key_id)
            if key is None:
                raise AuditChainBroken(
                    seq,
                    f"made with the audit key {entry.key_id}, which is not in {self.source} "
                    "(give the key directory or --master-key-file it came from)",
                )
            if not key.matches(_canonical([*fields, key.id]), entry.hash):
                raise AuditChainBroken(
                    seq, f"content does not match its MAC (audit key {entry.key_id})"
                )
            self.by_key[key.id] = self.by_key.get(key.id, 0) + 1
        self.prev_hash = entry.hash
        self.expected_seq += 1

    def finish(self, head_seq: int, head_hash: str) -> ChainReport:
        count = self.expected_seq - 1
        if head_seq != count or (count and head_hash != self.prev_hash):
            raise AuditChainBroken(count + 1, f"entries after {count} are missing")
        if self.anchor is not None and count < self.anchor.legacy_entries:
            raise AuditChainBroken(count + 1, f"entries after {count} are missing")
        return ChainReport(
            count,
            self.unkeyed,
            dict(self.by_key),
            {k: self.keys[k].description for k in self.by_key},
            self.anchor is not None,
            self.prev_hash if count else "",
        )


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

    async def check(self) -> ChainReport:
        """Check the whole chain with the audit keys (and this node's anchor); raise
        ``AuditChainBroken`` naming the first entry that does not fit."""
        keys = self._db.audit_keys
        known: Mapping[str, AuditKey] = keys.known if keys is not None else {}
        anchor = await asyncio.to_thread(read_anchor, keys.directory) if keys else None
        verifier = ChainVerifier(known, anchor, keys.source if keys else "this process")
        async for entry in self._all_entries():
            verifier.feed(entry)
        head = await self._db.read(
            lambda conn: conn.execute(select(audit_head).where(audit_head.c.id == 1)).one()
        )
        return verifier.finish(int(head.seq), str(head.hash))

    async def verify(self) -> int:
        """Check the whole chain; return the number of entries, or raise
        ``AuditChainBroken`` naming the first entry that does not fit."""
        return (await self.check()).entries
