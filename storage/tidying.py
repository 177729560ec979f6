"""What interrupted runs leave behind: temporary files of uploads a stop or crash
cut off, and blobs stored a moment before a commit that never came."""

import logging
import os
import time
from pathlib import Path

from sqlalchemy import select

from storage.blobs import PART_SUFFIX, BlobError, BlobStore
from storage.database import Database
from storage.schema import files, uploads

log = logging.getLogger(__name__)

ORPHAN_AGE = 60.0
"""Seconds a stored file without a record is left alone (it may be committing)."""


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


async def remove_orphans(db: Database, blobs: BlobStore) -> None:
    """Blobs of documents without a readable record, and upload parts no upload
    lists."""
    # Files of shredded records are removed too: a crash between destroying the
    # key and deleting the file leaves one behind (storage.retention).
    readable = select(files.c.id).where(files.c.shredded_at.is_(None))
    known = set(await db.read(lambda conn: [r.id for r in conn.execute(readable)]))
    # A file another process or node has just finished is stored a moment
    # before its record is committed: only orphans older than that are removed.
    # The known ids were read first, so a blob listed now and recorded since is
    # older than ORPHAN_AGE only if its commit failed.
    try:
        listed = await blobs.listing()
    except BlobError as exc:
        log.warning("orphaned documents not tidied: %s", exc)
        return
    now = time.time()
    for blob in listed:
        if blob.name not in known and now - blob.modified_at > ORPHAN_AGE:
            await blobs.delete(blob.name)
    # Parts put just before their commit failed (or a crash came between).
    rows = await db.read(lambda conn: conn.execute(select(uploads.c.segments)).all())
    referenced = {name for row in rows for name in str(row.segments).split()}
    try:
        parts = await blobs.listing(suffix=PART_SUFFIX)
    except BlobError as exc:
        log.warning("orphaned upload parts not tidied: %s", exc)
        return
    for part in parts:
        if part.name not in referenced and now - part.modified_at > ORPHAN_AGE:
            await blobs.delete(part.name, suffix=PART_SUFFIX)
