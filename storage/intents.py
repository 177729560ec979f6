"""The database's account of blobs that no record explains: those this deployment
is about to put, and those it no longer needs and is about to delete.

A blob store may be shared with, or reached by, nodes of other deployments (a
staging node, a wrong --database-url, a restored older dump). A node may
therefore delete only a blob that its own database says it made: an intent row
is written *before* the blob is put and removed in the same unit of work that
records what the blob holds (the document's ``files`` row, the part in its
upload's ``segments``). A crash between the put and that commit leaves the row,
and tidying (storage.tidying) removes the blob once the row is older than a
grace period. Blobs that lose their record (a discarded upload's parts, a
finished upload's parts) get a row in the unit of work that drops the record, so
that a crash before their deletion is tidied the same way.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, delete, insert, select

from storage.blobs import PART_SUFFIX, SUFFIX
from storage.schema import blob_intents


class BlobKind(StrEnum):
    DOCUMENT = "document"
    """A sealed document, named by its file id."""
    PART = "part"
    """A verified part of an upload in progress, named ``<upload id>-<token>``."""

    @property
    def suffix(self) -> str:
        return SUFFIX if self is BlobKind.DOCUMENT else PART_SUFFIX


@dataclass(frozen=True)
class Intent:
    name: str
    kind: BlobKind
    created_at: float


def intend(conn: Connection, kind: BlobKind, names: Iterable[str], now: float) -> None:
    """Note, in the caller's unit of work, that these blobs are this deployment's
    although no record explains them (yet, or any more)."""
    rows = [{"name": name, "kind": kind.value, "created_at": now} for name in names]
    if rows:
        conn.execute(insert(blob_intents), rows)


def settle(conn: Connection, kind: BlobKind, names: Iterable[str]) -> None:
    """Forget the intents of these blobs: a record now explains each, or it is gone."""
    wanted = list(names)
    if wanted:
        conn.execute(
            delete(blob_intents).where(
                blob_intents.c.kind == kind.value, blob_intents.c.name.in_(wanted)
            )
        )


def intents(conn: Connection) -> list[Intent]:
    """Every intent of this deployment."""
    rows = conn.execute(
        select(blob_intents.c.name, blob_intents.c.kind, blob_intents.c.created_at)
    ).all()
    return [Intent(r.name, BlobKind(r.kind), float(r.created_at)) for r in rows]
