"""Which deployment a blob store belongs to.

Every deployment has an id, made once in its database. The blob store carries
the id of the deployment it belongs to as an owner marker (``deployment.wlo``
beside the documents): a store without one gets this deployment's; a node whose
database names another deployment than the store's marker refuses the store,
so that a staging node, a second installation or a node given the wrong
--database-url or --blob-url never works on (or tidies) another deployment's
documents.
"""

import json
import secrets
import time
from pathlib import Path

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from storage.blobs import OWNER_SUFFIX, BlobMissing, BlobStore
from storage.database import Database
from storage.errors import ForeignBlobStore
from storage.schema import deployment

MARKER = "deployment"
"""The marker's name in the blob store (``deployment.wlo``)."""
_MARKER_LIMIT = 4096


def _made_once(conn: Connection) -> str:
    found = conn.execute(select(deployment.c.deployment_id).where(deployment.c.id == 1)).first()
    if found is not None:
        return str(found.deployment_id)
    made = secrets.token_hex(16)
    conn.execute(insert(deployment).values(id=1, deployment_id=made, created_at=time.time()))
    return made


def _recorded(conn: Connection) -> str:
    return str(
        conn.execute(select(deployment.c.deployment_id).where(deployment.c.id == 1)).one()[0]
    )


async def deployment_id(db: Database) -> str:
    """This deployment's id, made by the first node that asks."""
    try:
        return await db.write(_made_once)
    except IntegrityError:
        # Another node made it at the same moment: its id is the deployment's.
        return await db.read(_recorded)


def marker_content(deployment: str) -> bytes:
    return json.dumps({"windowlink_deployment": deployment}).encode() + b"\n"


def marker_owner(content: bytes) -> str | None:
    """The deployment a marker names; None when it names none this code can read."""
    try:
        owner = json.loads(content.decode())["windowlink_deployment"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None
    return owner if isinstance(owner, str) else None


async def _read_marker(blobs: BlobStore, spool: Path) -> bytes | None:
    try:
        handle = await blobs.fetch(MARKER, spool, suffix=OWNER_SUFFIX)
    except BlobMissing:
        return None
    with handle:
        return handle.read(_MARKER_LIMIT)


def refusal(store: str, ours: str, theirs: str | None) -> str:
    """What an operator reads when the store belongs to another deployment."""
    named = f"deployment {theirs}" if theirs else "a marker this version cannot read"
    return (
        f"the blob store {store} belongs to another deployment ({named}; its marker "
        f"{MARKER}{OWNER_SUFFIX}), while this node's database is deployment {ours}. "
        "A second installation, a staging node or a node given the wrong --database-url "
        "or --blob-url must not share a store: it could read, and would tidy, the other "
        "deployment's documents. Give each deployment its own bucket or prefix "
        "(--blob-url), or point this node at its deployment's database. Only if this "
        "store's documents really are this database's (a store copied from an "
        f"installation that no longer runs) remove {MARKER}{OWNER_SUFFIX} and start again."
    )


async def claim(db: Database, blobs: BlobStore, spool: Path) -> str:
    """This deployment's id, once the store is known to be its own: a store
    without a marker gets this deployment's; ``ForeignBlobStore`` when the marker
    names another (or cannot be read)."""
    ours = await deployment_id(db)
    content = await _read_marker(blobs, spool)
    if content is None:
        await blobs.create(MARKER, marker_content(ours), OWNER_SUFFIX)
        # Read back: of two deployments marking an empty store at once, the one
        # whose marker is not there refuses (a store that ignored the conditional
        # write kept the last one).
        content = await _read_marker(blobs, spool)
    theirs = marker_owner(content) if content is not None else None
    if theirs != ours:
        raise ForeignBlobStore(refusal(blobs.description, ours, theirs))
    return ours
