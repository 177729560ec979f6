"""What interrupted runs leave behind: temporary files of uploads a stop or crash
cut off, and blobs put a moment before a commit that never came.

A node removes only blobs that its own database says are this deployment's
(storage.intents) and that no record needs: a blob with an intent older than
``GRACE`` and no record, or the content of a document whose key retention has
destroyed. Every other blob is kept: one nobody recorded may be another
deployment's, or of a newer state of this database than the one this node runs
on (a restored older dump); those are counted as "unknown" and logged once per
run, never named (their names are ids, but nothing of them is this node's to
judge). Which blob goes is decided by ``decide``, a pure function of what the
store and the database say; ``tidy`` is the one place that acts on it.
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path

from sqlalchemy import Connection, select

from storage.blobs import BlobInfo, BlobStore
from storage.database import Database
from storage.intents import BlobKind, Intent, intents, settle
from storage.schema import files, uploads

log = logging.getLogger(__name__)

GRACE = 24 * 3600.0
"""Seconds an intent is left alone before its blob is taken for the leftover of a
crash: far longer than any put-then-commit (a part's put and commit take seconds,
a paced part minutes; a finish less than one), and than any clock difference
between the nodes that write intents and the node that tidies, or a node paused
in the middle of a commit. A day of a crashed upload's bytes costs nothing."""


class Why(StrEnum):
    """Why a blob is removed (a label of the removal metric)."""

    UNRECORDED = "unrecorded"
    """Its intent is older than GRACE and no record needs it (a crash between put
    and commit, or a deletion cut off)."""
    SHREDDED = "shredded"
    """Its document's key was destroyed by retention: the content is noise."""


class Verdict(StrEnum):
    KEEP = "keep"
    """A record needs it."""
    PENDING = "pending"
    """Its intent is younger than the grace period: kept."""
    REMOVE = "remove"
    UNKNOWN = "unknown"
    """Nobody here recorded it: kept, counted."""


@dataclass(frozen=True)
class Seen:
    """What the store and the database say of one listed blob."""

    name: str
    kind: BlobKind
    modified_at: float
    recorded: bool
    """A record needs it: a readable document, a part an upload lists."""
    shredded: bool = False
    """A document record whose key retention destroyed."""
    intended_at: float | None = None
    """When this deployment noted it would put (or no longer needs) it."""


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: Why | None = None
    age: float = 0.0
    """Seconds since the intent (or, for a shredded document, since the blob was written)."""


def decide(seen: Seen, now: float, grace: float = GRACE) -> Decision:
    """Whether tidying removes a listed blob."""
    if seen.recorded:
        return Decision(Verdict.KEEP)
    if seen.shredded:
        return Decision(Verdict.REMOVE, Why.SHREDDED, now - seen.modified_at)
    if seen.intended_at is None:
        return Decision(Verdict.UNKNOWN)
    age = now - seen.intended_at
    if age > grace:
        return Decision(Verdict.REMOVE, Why.UNRECORDED, age)
    return Decision(Verdict.PENDING, age=age)


@dataclass(frozen=True)
class Removal:
    """A blob tidying removed (or, in a dry run, would remove)."""

    name: str
    kind: BlobKind
    age: float
    why: Why


@dataclass
class TidyReport:
    removed: list[Removal] = field(default_factory=list)
    """Removed, or in a dry run, to be removed."""
    pending: int = 0
    """Blobs with a recent intent: a put not yet committed, or a crash younger than GRACE."""
    unknown: int = 0
    """Blobs this deployment's database never recorded (kept)."""
    stale_intents: int = 0
    """Intents older than GRACE whose blob is gone (forgotten)."""
    dry_run: bool = False


@dataclass(frozen=True)
class _Records:
    intents: dict[tuple[str, BlobKind], Intent]
    readable: set[str]
    shredded: set[str]
    referenced_parts: set[str]


def _records(conn: Connection) -> _Records:
    # Intents first: a blob whose intent is settled after this read has its record
    # by the next one (settling and recording are one unit of work), so a blob is
    # never seen with neither when it has one of them.
    noted = {(i.name, i.kind): i for i in intents(conn)}
    readable: set[str] = set()
    shredded: set[str] = set()
    for row in conn.execute(select(files.c.id, files.c.shredded_at)):
        (readable if row.shredded_at is None else shredded).add(row.id)
    referenced = {
        name
        for row in conn.execute(select(uploads.c.segments))
        for name in str(row.segments).split()
    }
    return _Records(noted, readable, shredded, referenced)


def _seen(blob: BlobInfo, kind: BlobKind, records: _Records) -> Seen:
    intent = records.intents.get((blob.name, kind))
    intended_at = intent.created_at if intent is not None else None
    if kind is BlobKind.DOCUMENT:
        return Seen(
            blob.name,
            kind,
            blob.modified_at,
            recorded=blob.name in records.readable,
            shredded=blob.name in records.shredded,
            intended_at=intended_at,
        )
    return Seen(
        blob.name,
        kind,
        blob.modified_at,
        recorded=blob.name in records.referenced_parts,
        intended_at=intended_at,
    )


def _ignore(_removal: Removal) -> None:
    pass


async def tidy(
    db: Database,
    blobs: BlobStore,
    *,
    now: float | None = None,
    grace: float = GRACE,
    dry_run: bool = False,
    on_removed: Callable[[Removal], None] = _ignore,
) -> TidyReport:
    """Remove what ``decide`` says to remove (nothing in a ``dry_run``): each removal
    logged and passed to ``on_removed``. ``BlobError`` when the store cannot be
    listed (nothing removed then)."""
    # The store is listed before the database is read: a blob put after the
    # listing is not looked at, and one listed has its intent (written before
    # the put) or its record in what is read next.
    listed = [(blob, kind) for kind in BlobKind for blob in await blobs.listing(suffix=kind.suffix)]
    records = await db.read(_records)
    now = time.time() if now is None else now
    report = TidyReport(dry_run=dry_run)
    present: set[tuple[str, BlobKind]] = set()
    for blob, kind in listed:
        present.add((blob.name, kind))
        decision = decide(_seen(blob, kind, records), now, grace)
        if decision.verdict is Verdict.UNKNOWN:
            report.unknown += 1
            continue
        if decision.verdict is Verdict.PENDING:
            report.pending += 1
        if decision.verdict is not Verdict.REMOVE:
            continue
        assert decision.why is not None
        removal = Removal(blob.name, kind, decision.age, decision.why)
        report.removed.append(removal)
        if dry_run:
            continue
        await blobs.delete(blob.name, suffix=kind.suffix)
        await db.write(partial(settle, kind=kind, names=[blob.name]))
        log.warning(
            "removed %s blob %s (%.0f s old, %s)", kind.value, blob.name, removal.age, removal.why
        )
        on_removed(removal)
    stale = [
        i for key, i in records.intents.items() if key not in present and now - i.created_at > grace
    ]
    report.stale_intents = len(stale)
    if stale and not dry_run:
        for kind in BlobKind:
            names = [i.name for i in stale if i.kind is kind]
            await db.write(partial(settle, kind=kind, names=names))
    if report.unknown:
        log.warning(
            "%d blobs in %s were never recorded by this deployment's database: left alone "
            "(another deployment's, or of a newer state of this database; see "
            "docs/OPERATIONS.md, 'Tidying')",
            report.unknown,
            blobs.description,
        )
    return report


def _process_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def remove_leftovers(scratch: Path, idle_timeout: float) -> None:
    """Leftovers of uploads a stop or crash interrupted: never listed, now gone.
    Other processes sharing the data directory (--processes; a child restarted
    beside the others) may be in the middle of uploads: a part file names the
    process writing it, and only those of processes that are gone (or parts
    untouched for longer than an upload may idle) are removed."""
    for leftover in scratch.iterdir():
        owner = leftover.name.split("-", 1)[0]
        if not _process_alive(owner) or _older_than(leftover, idle_timeout):
            leftover.unlink(missing_ok=True)
