"""Documents of consultations, encrypted at rest the moment they arrive.

An upload streams into a temporary file in the encrypted format as its parts
arrive (only whole, checksum-verified parts count); it becomes a file only
when complete: put whole into the blob store (storage.blobs: a local directory
or an S3-compatible object store), then recorded with its audit entry. A crash
leaves at most a temporary file or an unrecorded blob, both removed at a later
start. Plaintext never touches the disk, nor the object store.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Connection, Update, func, select, update

from storage.audit import append_audit
from storage.blobs import BlobError, BlobMissing, BlobStore, LocalBlobStore
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.filecrypt import FileEncryptor, decrypt_range, verify
from storage.filetypes import SNIFF_BYTES, FileRejected, check_name, check_type
from storage.ids import new_id
from storage.keyring import Keyring, WrappedKey
from storage.records import Account, AuditEvent
from storage.schema import case_attachments, files

log = logging.getLogger(__name__)

CATEGORIES = ("application", "supplementary", "reply")


class FileShredded(RecordConflict):
    """The document's data key was destroyed at the end of its retention period."""


class UploadError(Exception):
    """An upload request that cannot be applied; ``code`` says why."""

    def __init__(self, code: str, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.offset = offset


@dataclass(frozen=True)
class StoredFile:
    id: str
    consultation_id: str
    uploader_id: str
    uploader_role: str
    name: str
    media_type: str
    size: int
    digest: str
    digest_alg: str
    created_at: float
    shredded_at: float | None = None
    """When retention destroyed the data key (the content is gone for good); None = readable."""


@dataclass(frozen=True)
class Attachment:
    case_number: str
    file: StoredFile
    category: str
    attached_by: str
    attached_at: float


@dataclass(frozen=True)
class UploadLimits:
    """What unfinished uploads may hold: each is a temporary file and disk space
    until it finishes, so one account must not be able to pile them up."""

    per_account: int = 4
    """Unfinished uploads one account may hold."""
    pending_bytes: int = 1024 * 1024 * 1024
    """Declared bytes of all unfinished uploads together."""
    idle_timeout: float = 600.0
    """Seconds without a byte after which an unfinished upload is discarded."""


@dataclass
class Upload:
    id: str
    consultation_id: str
    uploader: Account
    name: str
    declared_size: int
    path: Path
    encryptor: FileEncryptor
    data_key: bytes
    file_id: bytes
    stored: int
    """Bytes of ciphertext in the temporary file (no file is held open between parts)."""
    last_activity: float
    head: bytearray = field(default_factory=bytearray)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    offset: int = 0
    """Bytes stored and verified: where the next part must start (never mid-part)."""
    discarded: bool = False


def _stored(row: object) -> StoredFile:
    return StoredFile(**{f: getattr(row, f) for f in StoredFile.__dataclass_fields__})


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


class FileStore:
    def __init__(
        self,
        directory: Path,
        keyring: Keyring,
        db: Database,
        *,
        blobs: BlobStore | None = None,
        max_size: int,
        limits: UploadLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.keyring = keyring
        self._db = db
        self.max_size = max_size
        self.limits = limits or UploadLimits()
        self._clock = clock
        self._pending_bytes = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._uploads: dict[str, Upload] = {}
        self._tmp = directory / "tmp"
        self.blobs = blobs or LocalBlobStore(directory / "files")

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
    ) -> "FileStore":
        """The store (it owns ``blobs`` from here on, default ``<directory>/files``);
        ``tidy`` (the serving process only, never a command run beside a running
        server) removes what an interrupted run left behind."""
        store = cls(directory, keyring, db, max_size=max_size, limits=limits, blobs=blobs)
        await asyncio.to_thread(store._prepare)
        await store.blobs.start()
        if tidy:
            await asyncio.to_thread(store._remove_leftovers)
            # Files of shredded records are removed too: a crash between destroying the
            # key and deleting the file leaves one behind (storage.retention).
            readable = select(files.c.id).where(files.c.shredded_at.is_(None))
            known = set(await db.read(lambda conn: [r.id for r in conn.execute(readable)]))
            await store._remove_orphans(known)
        return store

    def _prepare(self) -> None:
        for folder in (self.directory, self._tmp):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _remove_leftovers(self) -> None:
        """Leftovers of uploads a stop or crash interrupted: never listed, now gone.
        Other processes sharing the data directory (--processes; a child restarted
        beside the others) may be in the middle of uploads: a part file names the
        process writing it, and only those of processes that are gone (or parts
        untouched for longer than an upload may idle) are removed."""
        for leftover in self._tmp.iterdir():
            owner = leftover.name.split("-", 1)[0]
            if not _process_alive(owner) or _older_than(leftover, self.limits.idle_timeout):
                leftover.unlink(missing_ok=True)

    async def _remove_orphans(self, known: set[str]) -> None:
        # A file another process or node has just finished is stored a moment
        # before its record is committed: only orphans older than that are removed.
        # The known ids were read first, so a blob listed now and recorded since is
        # older than ORPHAN_AGE only if its commit failed.
        try:
            listed = await self.blobs.listing()
        except BlobError as exc:
            log.warning("orphaned documents not tidied: %s", exc)
            return
        now = time.time()
        for blob in listed:
            if blob.name not in known and now - blob.modified_at > ORPHAN_AGE:
                await self.blobs.delete(blob.name)

    async def remove_content(self, file_id: str) -> None:
        """Delete a document's stored bytes (after its key was destroyed)."""
        await self.blobs.delete(file_id)

    # ---- uploads ---------------------------------------------------------------

    async def begin(self, consultation_id: str, uploader: Account, name: str, size: int) -> Upload:
        try:
            clean = check_name(name)
        except FileRejected as exc:
            raise UploadError(exc.code, str(exc)) from None
        if size < 0 or size > self.max_size:
            raise UploadError("too_large", f"files may be at most {self.max_size} bytes")
        mine = sum(1 for u in self._uploads.values() if u.uploader.id == uploader.id)
        if mine >= self.limits.per_account:
            raise UploadError(
                "too_many_uploads",
                f"at most {self.limits.per_account} unfinished uploads at once; "
                "finish or abandon one first",
            )
        if self._pending_bytes + size > self.limits.pending_bytes:
            raise UploadError("uploads_busy", "the server is receiving too much; try again soon")
        upload_id = new_id()
        suite = self.keyring.suite
        data_key = os.urandom(suite.key_size)
        file_id = os.urandom(16)
        path = self._tmp / f"{os.getpid()}-{upload_id}.part"
        encryptor = FileEncryptor(suite, data_key, file_id)
        header = encryptor.header_bytes()
        upload = Upload(
            upload_id,
            consultation_id,
            uploader,
            clean,
            size,
            path,
            encryptor,
            data_key,
            file_id,
            stored=len(header),
            last_activity=self._clock(),
        )
        # Reserved before the first await, so that concurrent begins cannot all pass.
        self._uploads[upload_id] = upload
        self._pending_bytes += size
        try:
            await asyncio.to_thread(self._create, path, header)
        except BaseException:
            self._forget(upload)
            raise
        return upload

    @staticmethod
    def _create(path: Path, header: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(header)

    def upload(self, upload_id: str) -> Upload:
        upload = self._uploads.get(upload_id)
        if upload is None:
            raise RecordNotFound("no such upload")
        return upload

    def _forget(self, upload: Upload) -> bool:
        if self._uploads.pop(upload.id, None) is None:
            return False
        self._pending_bytes -= upload.declared_size
        return True

    @staticmethod
    def _open_at(upload: Upload) -> BinaryIO:
        handle = upload.path.open("r+b")
        handle.seek(upload.stored)
        return handle

    def _check_live(self, upload: Upload) -> None:
        if upload.discarded:
            raise UploadError("gone", "this upload was discarded (its call ended, or it idled)")

    async def append(
        self, upload: Upload, offset: int, body: AsyncIterator[bytes], sha256: bytes
    ) -> int:
        """Add one part at ``offset``; it counts only if all of it arrived and its
        SHA-256 matches, otherwise the upload stays where it was. The temporary file is
        open only while a part is being written."""
        async with upload.lock:
            self._check_live(upload)
            if offset != upload.offset:
                raise UploadError("wrong_offset", "resume from the upload's offset", upload.offset)
            encryptor = upload.encryptor
            state = encryptor.snapshot()
            head_length = len(upload.head)
            checksum = hashlib.sha256()
            handle = await asyncio.to_thread(self._open_at, upload)
            try:
                async for data in body:
                    upload.last_activity = self._clock()
                    if encryptor.size + len(data) > upload.declared_size:
                        raise UploadError("too_large", "more bytes than the declared size")
                    # Hashing, sealing and writing release the GIL: off the event loop.
                    await asyncio.to_thread(self._absorb, upload, handle, data, checksum)
                if checksum.digest() != sha256:
                    raise UploadError("checksum_mismatch", "the part does not match its checksum")
                self._check_live(upload)
                upload.stored = handle.tell()
            except BaseException:
                encryptor.restore(state)
                del upload.head[head_length:]
                with contextlib.suppress(OSError):
                    handle.seek(upload.stored)
                    handle.truncate()
                raise
            finally:
                handle.close()
            upload.offset = encryptor.size
            upload.last_activity = self._clock()
            return upload.offset

    @staticmethod
    def _absorb(upload: Upload, handle: BinaryIO, data: bytes, checksum: "hashlib._Hash") -> None:
        checksum.update(data)
        if len(upload.head) < SNIFF_BYTES:
            upload.head += data[: SNIFF_BYTES - len(upload.head)]
        sealed = upload.encryptor.update(data)
        if sealed:
            handle.write(sealed)

    async def discard(self, upload: Upload) -> None:
        upload.discarded = True
        self._forget(upload)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(upload.path.unlink)

    async def discard_consultation(self, consultation_id: str) -> int:
        """Discard the unfinished uploads of a consultation whose call has ended."""
        gone = [u for u in self._uploads.values() if u.consultation_id == consultation_id]
        for upload in gone:
            await self.discard(upload)
        return len(gone)

    async def discard_idle(self) -> int:
        """Discard unfinished uploads that received nothing for the idle timeout."""
        cutoff = self._clock() - self.limits.idle_timeout
        gone = [
            u for u in self._uploads.values() if u.last_activity < cutoff and not u.lock.locked()
        ]
        for upload in gone:
            await self.discard(upload)
        return len(gone)

    def start_sweeping(self, interval: float) -> None:
        """Discard idle uploads every ``interval`` seconds until ``close``."""

        async def sweep() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.discard_idle()
                except Exception:
                    log.exception("discarding idle uploads failed")

        self._sweeper = asyncio.create_task(sweep(), name="upload-sweeper")

    @property
    def unfinished(self) -> int:
        return len(self._uploads)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    async def finish(self, upload: Upload, remote: str) -> StoredFile:
        """Seal, check the content's type against the name, move into place and record."""
        async with upload.lock:
            if upload.offset != upload.declared_size:
                raise UploadError(
                    "incomplete", "the upload has fewer bytes than declared", upload.offset
                )
            self._check_live(upload)
            try:
                file_type = check_type(upload.name, bytes(upload.head))
            except FileRejected as exc:
                await self.discard(upload)
                raise UploadError(exc.code, str(exc)) from None
            encryptor = upload.encryptor
            await asyncio.to_thread(self._seal_file, upload, encryptor.finalize())
            file_id = upload.id
            await self.blobs.put(file_id, upload.path)
            self._forget(upload)
            # Another node (or `keys rotate`) may have made a new KEK active.
            await self.keyring.refresh()
            wrapped = self.keyring.wrap(upload.data_key, upload.file_id)
            suite = encryptor.header.suite
            record = StoredFile(
                id=file_id,
                consultation_id=upload.consultation_id,
                uploader_id=upload.uploader.id,
                uploader_role=upload.uploader.role.value,
                name=upload.name,
                media_type=file_type.media_type,
                size=encryptor.size,
                digest=encryptor.digest.hexdigest(),
                digest_alg=suite.digest_name,
                created_at=time.time(),
            )

            def unit(conn: Connection) -> None:
                conn.execute(
                    files.insert().values(
                        **record.__dict__,
                        suite=int(suite),
                        kek_id=wrapped.kek_id,
                        wrapped_key=upload.file_id.hex() + ":" + wrapped.blob.hex(),
                    )
                )
                append_audit(
                    conn,
                    AuditEvent(
                        upload.uploader.username,
                        "file.upload",
                        file_id,
                        {
                            "consultation": upload.consultation_id,
                            "size": record.size,
                            "type": record.media_type,
                            record.digest_alg: record.digest,
                        },
                        remote,
                    ),
                )

            try:
                await self._db.write(unit)
            except BaseException:
                with contextlib.suppress(BlobError):
                    await self.blobs.delete(file_id)
                raise
            return record

    @classmethod
    def _seal_file(cls, upload: Upload, tail: bytes) -> None:
        with cls._open_at(upload) as handle:
            handle.write(tail)
            handle.flush()
            os.fsync(handle.fileno())

    # ---- reading -----------------------------------------------------------------

    async def get(self, file_id: str) -> StoredFile:
        row = await self._db.read(
            lambda conn: conn.execute(select(files).where(files.c.id == file_id)).first()
        )
        if row is None:
            raise RecordNotFound("no such file")
        return _stored(row)

    async def of_consultation(self, consultation_id: str) -> list[StoredFile]:
        query = (
            select(files)
            .where(files.c.consultation_id == consultation_id)
            .order_by(files.c.created_at)
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [_stored(r) for r in rows]

    async def data_key(self, file_id: str) -> bytes:
        row = await self._db.read(
            lambda conn: conn.execute(
                select(files.c.kek_id, files.c.wrapped_key, files.c.shredded_at).where(
                    files.c.id == file_id
                )
            ).one()
        )
        if row.shredded_at is not None:
            raise FileShredded("this document was shredded at the end of its retention period")
        inner_id, blob = str(row.wrapped_key).split(":", 1)
        if row.kek_id not in self.keyring.ids:
            await self.keyring.refresh()
        return self.keyring.unwrap(
            WrappedKey(row.kek_id, bytes.fromhex(blob)), bytes.fromhex(inner_id)
        )

    async def verified(self, file_id: str) -> tuple[BinaryIO, bytes]:
        """An open stored file whose every chunk has just been authenticated, and its key."""
        key = await self.data_key(file_id)
        try:
            source = await self.blobs.fetch(file_id, self._tmp)
        except BlobMissing:
            raise RecordNotFound("the document's content is missing from the store") from None
        try:
            await asyncio.to_thread(verify, source, key)
        except BaseException:
            source.close()
            raise
        return source, key

    @staticmethod
    def plaintext(source: BinaryIO, key: bytes, start: int, end: int | None) -> Iterator[bytes]:
        return decrypt_range(source, key, start, end)

    @staticmethod
    def next_batch(pieces: Iterator[bytes], size: int = 1024 * 1024) -> bytes:
        """Up to ``size`` bytes of decrypted plaintext (one thread hop per batch)."""
        batch: list[bytes] = []
        length = 0
        for piece in pieces:
            batch.append(piece)
            length += len(piece)
            if length >= size:
                break
        return b"".join(batch)

    # ---- case record -------------------------------------------------------------

    async def attach(
        self, case_number: str, file_id: str, category: str, clerk: Account, remote: str
    ) -> None:
        def unit(conn: Connection) -> None:
            found = conn.execute(
                select(files.c.id, files.c.shredded_at).where(files.c.id == file_id)
            ).first()
            if found is None:
                raise RecordNotFound("no such file")
            if found.shredded_at is not None:
                raise FileShredded("this document was shredded; it cannot be attached")
            existing = conn.execute(
                select(func.count())
                .select_from(case_attachments)
                .where(
                    case_attachments.c.case_number == case_number,
                    case_attachments.c.file_id == file_id,
                )
            ).scalar()
            if existing:
                raise RecordConflict("this file is already attached to the case")
            conn.execute(
                case_attachments.insert().values(
                    case_number=case_number,
                    file_id=file_id,
                    category=category,
                    attached_by=clerk.id,
                    attached_at=time.time(),
                )
            )
            append_audit(
                conn,
                AuditEvent(clerk.username, "file.attach", file_id, {"category": category}, remote),
            )

        await self._db.write(unit)

    async def attachments(self, case_number: str) -> list[Attachment]:
        query = (
            select(
                files,
                case_attachments.c.category,
                case_attachments.c.attached_by,
                case_attachments.c.attached_at,
            )
            .join(case_attachments, case_attachments.c.file_id == files.c.id)
            .where(case_attachments.c.case_number == case_number)
            .order_by(case_attachments.c.attached_at)
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [
            Attachment(case_number, _stored(r), r.category, r.attached_by, r.attached_at)
            for r in rows
        ]

    async def is_attached(self, file_id: str) -> bool:
        count = await self._db.read(
            lambda conn: conn.execute(
                select(func.count())
                .select_from(case_attachments)
                .where(case_attachments.c.file_id == file_id)
            ).scalar()
        )
        return bool(count)

    # ---- keys --------------------------------------------------------------------

    async def rewrap_all(self) -> int:
        """Re-wrap every data key not wrapped by the active KEK (content untouched)."""
        await self.keyring.refresh()
        active = self.keyring.active_id
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(files.c.id, files.c.kek_id, files.c.wrapped_key).where(
                    files.c.kek_id != active, files.c.shredded_at.is_(None)
                )
            ).all()
        )
        for row in rows:
            inner_id, blob = str(row.wrapped_key).split(":", 1)
            fresh = self.keyring.rewrap(
                WrappedKey(row.kek_id, bytes.fromhex(blob)), bytes.fromhex(inner_id)
            )
            statement = (
                update(files)
                .where(files.c.id == row.id)
                .values(kek_id=fresh.kek_id, wrapped_key=inner_id + ":" + fresh.blob.hex())
            )

            def unit(conn: Connection, statement: Update = statement) -> None:
                conn.execute(statement)

            await self._db.write(unit)
        return len(rows)

    async def references(self, kek_id: str) -> int:
        query = select(func.count()).select_from(files).where(files.c.kek_id == kek_id)
        count = await self._db.read(lambda conn: conn.execute(query).scalar())
        return int(count or 0)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for upload in list(self._uploads.values()):
            await self.discard(upload)
        await self.blobs.close()
