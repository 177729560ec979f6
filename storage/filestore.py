"""Documents of consultations, encrypted at rest the moment they arrive: the one
object the web layer and the commands hold, put together from modules with one
job each.

- storage.uploads: uploads part by part, shared by every process and node, each
  part written where its document will live (storage.blobs' assemblies) until
  the finish seals it into the document without a copy;
- storage.documents: the records of documents and their content as
  authenticated plaintext for a byte range (each download audited there);
- storage.attachments: the clerk's case record;
- storage.datakeys: the documents' and uploads' data keys (the only place that
  wraps or unwraps one: no key leaves ``storage``);
- storage.tidying: what interrupted runs left behind, of this deployment only
  (storage.intents: which blobs it means to create; storage.ownership: the
  store's owner marker).

Plaintext never touches the disk, the database or the object store.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from storage.attachments import Attachment, AttachRefused, CaseRecord
from storage.blobs import BlobError, BlobStore, LocalBlobStore
from storage.database import Database
from storage.datakeys import DataKeys
from storage.documents import Documents, Download, Plaintext, StoredFile
from storage.errors import DocumentDamaged, FileShredded
from storage.filetypes import ALLOWED, FileType
from storage.keyring import Keyring
from storage.ownership import claim
from storage.records import Account
from storage.tidying import Removal, TidyReport, remove_leftovers, tidy
from storage.uploads import Upload, UploadError, UploadLimits, Uploads

__all__ = [
    "AttachRefused",
    "Attachment",
    "DocumentDamaged",
    "Download",
    "FileShredded",
    "FileStore",
    "Plaintext",
    "Removal",
    "StoredFile",
    "Upload",
    "UploadError",
    "UploadLimits",
]


log = logging.getLogger(__name__)


def _ignore(_removal: Removal) -> None:
    pass


class FileStore:
    """Uploads, documents and the case record over one blob store and database."""

    def __init__(
        self,
        directory: Path,
        keyring: Keyring,
        db: Database,
        *,
        blobs: BlobStore | None = None,
        max_size: int,
        limits: UploadLimits | None = None,
    ) -> None:
        self.directory = directory
        self.keyring = keyring
        self._tmp = directory / "tmp"
        self.blobs = blobs or LocalBlobStore(directory / "files")
        self.keys = DataKeys(keyring, db)
        self.uploads = Uploads(
            db, self.blobs, self.keys, self._tmp, max_size=max_size, limits=limits or UploadLimits()
        )
        self.documents = Documents(db, self.blobs, self.keys, self._tmp)
        self.case_record = CaseRecord(db)
        self._db = db
        self.deployment = ""
        """This deployment's id, which the blob store's owner marker names (set by ``open``)."""

    @classmethod
    async def open(
        cls,
        directory: Path,
        keyring: Keyring,
        db: Database,
        *,
        max_size: int,
        limits: UploadLimits | None = None,
        tidy: bool = False,
        blobs: BlobStore | None = None,
        on_removed: Callable[[Removal], None] = _ignore,
    ) -> "FileStore":
        """The store (it owns ``blobs`` from here on, default ``<directory>/files``).
        ``tidy`` (the serving process; the ``keys`` commands never touch a blob)
        first makes sure the blob store is this deployment's (``ForeignBlobStore``
        otherwise, ``BlobError`` when it cannot be asked), then removes what an
        interrupted run left behind, each blob removed passed to ``on_removed``."""
        store = cls(directory, keyring, db, max_size=max_size, limits=limits, blobs=blobs)
        await asyncio.to_thread(store._prepare)
        await store.blobs.start()
        try:
            if tidy:
                try:
                    store.deployment = await claim(db, store.blobs, store._tmp)
                except BlobError as exc:
                    raise BlobError(
                        f"the blob store {store.blobs.description} cannot be asked which "
                        f"deployment it belongs to ({exc}); a node serves only its own store"
                    ) from exc
                await asyncio.to_thread(remove_leftovers, store._tmp, store.limits.idle_timeout)
                try:
                    await store.tidy(on_removed=on_removed)
                except BlobError as exc:
                    log.warning("blobs not tidied: %s", exc)
        except BaseException:
            await store.blobs.close()
            raise
        return store

    def _prepare(self) -> None:
        for folder in (self.directory, self._tmp):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def max_size(self) -> int:
        return self.uploads.max_size

    @property
    def limits(self) -> UploadLimits:
        return self.uploads.limits

    # ---- uploads -------------------------------------------------------------------

    async def begin(
        self,
        consultation_id: str,
        uploader: Account,
        name: str,
        size: int,
        max_size: int | None = None,
    ) -> Upload:
        return await self.uploads.begin(consultation_id, uploader, name, size, max_size)

    async def upload(self, upload_id: str) -> Upload:
        """An unfinished upload, whichever process or node began it."""
        return await self.uploads.get(upload_id)

    async def append(
        self,
        upload: Upload,
        offset: int,
        body: AsyncIterator[bytes],
        sha256: bytes,
        length: int | None = None,
    ) -> int:
        return await self.uploads.append(upload, offset, body, sha256, length)

    async def finish(
        self,
        upload: Upload,
        uploader: Account,
        remote: str,
        allowed: tuple[FileType, ...] = ALLOWED,
    ) -> StoredFile:
        """``allowed``: the types this file may be (a participant's documents; the
        recorder's recordings)."""
        return await self.uploads.finish(upload, uploader, remote, allowed)

    async def discard(self, upload: Upload) -> None:
        await self.uploads.discard(upload)

    async def discard_consultation(self, consultation_id: str) -> int:
        return await self.uploads.discard_consultation(consultation_id)

    async def discard_idle(self, now: float | None = None) -> int:
        return await self.uploads.discard_idle(now)

    def start_sweeping(self, interval: float) -> None:
        self.uploads.start_sweeping(interval)

    async def unfinished(self) -> tuple[int, int]:
        return await self.uploads.unfinished()

    # ---- documents -----------------------------------------------------------------

    async def get(self, file_id: str) -> StoredFile:
        return await self.documents.get(file_id)

    async def of_consultation(self, consultation_id: str) -> list[StoredFile]:
        return await self.documents.of_consultation(consultation_id)

    async def plaintext(
        self, record: StoredFile, start: int, end: int, download: Download
    ) -> Plaintext:
        return await self.documents.plaintext(record, start, end, download)

    async def remove_content(self, file_id: str) -> None:
        await self.documents.remove_content(file_id)

    # ---- case record ---------------------------------------------------------------

    async def attach(
        self, case_number: str, file_id: str, category: str, clerk: Account, remote: str
    ) -> None:
        await self.case_record.attach(case_number, file_id, category, clerk, remote)

    async def attachments(self, case_number: str) -> list[Attachment]:
        return await self.case_record.attachments(case_number)

    # ---- tidying ------------------------------------------------------------------

    async def tidy(
        self,
        *,
        dry_run: bool = False,
        now: float | None = None,
        on_removed: Callable[[Removal], None] = _ignore,
    ) -> TidyReport:
        """Remove this deployment's blobs that a crash or a cut-off deletion left
        without a record (storage.tidying); safe beside running nodes."""
        return await tidy(self._db, self.blobs, dry_run=dry_run, now=now, on_removed=on_removed)

    # ---- keys ----------------------------------------------------------------------

    async def rewrap_all(self) -> int:
        return await self.keys.rewrap_all()

    async def references(self, kek_id: str) -> int:
        return await self.keys.references(kek_id)

    async def close(self) -> None:
        await self.uploads.close()
        await self.blobs.close()
