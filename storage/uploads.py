"""Uploads: documents arriving part by part, encrypted as they stream in.

An upload's state is a row of ``uploads`` and its verified parts are segments
in the blob store, so that any process or node can take the next part, and a
restart or the loss of a node loses nothing that was verified. A part is
encrypted as it streams into a local temporary file, checked against its
checksum, put into the blob store under a name of its own, and only then
committed with a compare-and-set on the upload's offset: of two parts sent at
once for the same offset, one commits and the other's segment is removed.

An upload becomes a document only when complete: assembled, authenticated, put
whole into the blob store, then recorded with its audit entry. Plaintext never
touches the disk, the database or the object store.
"""

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, text, update

from storage.audit import append_audit
from storage.blobs import PART_SUFFIX, BlobError, BlobMissing, BlobStore
from storage.database import Database
from storage.datakeys import DataKeys, NewDataKey
from storage.documents import StoredFile
from storage.errors import KeyringError, RecordNotFound
from storage.filecrypt import (
    NONCE_PREFIX_SIZE,
    Digest,
    FileEncryptor,
    Suite,
    decrypt_range,
    new_digest,
    open_sealed,
    seal,
)
from storage.filetypes import (
    ALLOWED,
    SNIFF_BYTES,
    FileRejected,
    FileType,
    check_name,
    check_type,
)
from storage.ids import new_id
from storage.intents import BlobKind, intend, settle
from storage.periodkeys import lock_live
from storage.records import Account, AuditEvent
from storage.schema import files, uploads

log = logging.getLogger(__name__)


class UploadError(Exception):
    """An upload request that cannot be applied; ``code`` says why."""

    def __init__(self, code: str, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.offset = offset


@dataclass(frozen=True)
class UploadLimits:
    """What unfinished uploads may hold: their parts take space in the blob store
    until they finish, so neither one account nor one call may take it all, and
    an upload that never sends anything must not hold a place for long.

    Bytes count as received (verified parts, and the part arriving), never as
    declared: declaring is free, so declared sizes could block everyone else."""

    per_account: int = 4
    """Unfinished uploads one account may hold."""
    pending_bytes: int = 1024 * 1024 * 1024
    """Bytes all unfinished uploads together may hold."""
    per_account_bytes: int = 100 * 1024 * 1024
    """Bytes one account's unfinished uploads may hold (an upload alone may always
    reach its declared size)."""
    per_call_bytes: int = 150 * 1024 * 1024
    """Bytes the unfinished uploads of one consultation may hold (the same exception)."""
    idle_timeout: float = 600.0
    """Seconds without a part after which an unfinished upload is discarded."""
    first_byte_timeout: float = 30.0
    """Seconds an upload may wait for its first part to begin before it is discarded."""

    @property
    def sweep_interval(self) -> float:
        """How often idle uploads are looked for: often enough that neither timeout
        is overstayed by more than half of itself."""
        return min(60.0, self.idle_timeout / 4, self.first_byte_timeout / 2)


@dataclass(frozen=True)
class Held:
    """Bytes unfinished uploads hold, received so far."""

    everyone: int
    account: int
    """The uploading account's, this upload included."""
    call: int
    """The consultation's, this upload included."""


def part_refusal(
    limits: UploadLimits, held: Held, incoming: int, declared: int
) -> "UploadError | None":
    """Why a part of ``incoming`` bytes (at most) may not start now, if it may not,
    for an upload of ``declared`` bytes."""
    if held.everyone + incoming > limits.pending_bytes:
        return UploadError("uploads_busy", "the server is receiving too much; try again soon")
    if held.account + incoming > max(limits.per_account_bytes, declared):
        return UploadError(
            "account_upload_limit",
            f"your unfinished uploads may hold at most {limits.per_account_bytes} bytes; "
            "finish or abandon one first",
        )
    if held.call + incoming > max(limits.per_call_bytes, declared):
        return UploadError(
            "call_upload_limit",
            f"this consultation's unfinished uploads may hold at most {limits.per_call_bytes} "
            "bytes; finish or abandon one first",
        )
    return None


@dataclass(frozen=True)
class Upload:
    """An unfinished upload as the web layer sees it (its state is in the database)."""

    id: str
    consultation_id: str
    uploader_id: str
    name: str
    declared_size: int
    offset: int
    """Bytes stored and verified: where the next part must start (never mid-part)."""
    last_activity: float
    row: Any = field(default=None, repr=False, compare=False)
    """The database row this was read from: where ``append`` starts without reading
    it again (its compare-and-set refuses the part if the row has moved since)."""


def _upload(row: Any) -> Upload:
    return Upload(
        row.id,
        row.consultation_id,
        row.uploader_id,
        row.name,
        int(row.declared_size),
        int(row.received),
        float(row.last_activity),
        row,
    )


@dataclass
class _Warm:
    """What this process knows of an upload whose last part it took in: the
    encryptor where it stopped and, when this process saw every byte from the
    first, the plaintext's digest and first bytes. A finish here then needs no read
    back of the assembled file. Valid only while the database row still says
    ``received`` and ``segments`` (another process or node may have moved on)."""

    encryptor: FileEncryptor
    key: bytes
    received: int
    segments: str
    digest: Digest | None
    head: bytes

    def matches(self, row: Any) -> bool:
        return self.received == int(row.received) and self.segments == str(row.segments)


WARM_UPLOADS = 64
"""Uploads whose warm state a process keeps (each at most a chunk of plaintext
and a digest state; the least recently used goes first)."""


_CARRY_NONCE = 12
_BATCH = 512 * 1024


def _carry_aad(upload_id: str, received: int) -> bytes:
    return b"wl-carry|" + upload_id.encode() + b"|" + str(received).encode()


def _seal_carry(suite: Suite, key: bytes, upload_id: str, received: int, carry: bytes) -> str:
    """The plaintext not yet sealed into a chunk, sealed under the data key with a
    random nonce (never one of the file's chunk nonces) and bound to the upload and
    its offset: the database never holds a byte of a document in clear."""
    nonce = os.urandom(_CARRY_NONCE)
    return (nonce + seal(suite, key, nonce, carry, _carry_aad(upload_id, received))).hex()


def _open_carry(suite: Suite, key: bytes, upload_id: str, received: int, sealed: str) -> bytes:
    raw = bytes.fromhex(sealed)
    return open_sealed(
        suite, key, raw[:_CARRY_NONCE], raw[_CARRY_NONCE:], _carry_aad(upload_id, received)
    )


def _create_exclusive(path: Path, buffering: int = -1) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb", buffering=buffering)


def _seal_into(
    encryptor: FileEncryptor, handle: BinaryIO, data: bytes, digest: Digest | None
) -> None:
    if digest is not None:
        digest.update(data)
    sealed = encryptor.update(data)
    if sealed:
        handle.write(sealed)


def _absorb(
    encryptor: FileEncryptor,
    handle: BinaryIO,
    data: bytes,
    checksum: "hashlib._Hash",
    digest: Digest | None,
) -> "asyncio.Future[Any]":
    """A batch of a part taken in: its checksum in one worker thread, the file's
    digest and the sealing in another (each releases the GIL)."""
    return asyncio.gather(
        asyncio.to_thread(checksum.update, data),
        asyncio.to_thread(_seal_into, encryptor, handle, data, digest),
    )


def _copy_into(source: BinaryIO, out: BinaryIO) -> None:
    """Append ``source`` to ``out`` (an unbuffered file) inside the kernel where
    the file systems allow it, else through a buffer."""
    try:
        while os.copy_file_range(source.fileno(), out.fileno(), 1 << 30):
            pass
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        # Both positions stand after what was copied: go on from there.
        shutil.copyfileobj(source, out, 1024 * 1024)


def _seal_last(handle: BinaryIO, tail: bytes) -> None:
    handle.write(tail)
    handle.flush()
    os.fsync(handle.fileno())


def _digest_and_head(path: Path, key: bytes, suite: Suite) -> tuple[str, bytes, int]:
    """The plaintext's digest, its first bytes (for the type check) and its size,
    every chunk authenticated on the way."""
    digest = new_digest(suite)
    head = bytearray()
    size = 0
    with path.open("rb") as source:
        # decrypt_range authenticates each chunk before yielding it (and the last
        # one first): read to the end, it is one pass that checks everything.
        for piece in decrypt_range(source, key, 0, None):
            digest.update(piece)
            if len(head) < SNIFF_BYTES:
                head += piece[: SNIFF_BYTES - len(head)]
            size += len(piece)
    return digest.hexdigest(), bytes(head), size


def _commit_part(
    row: Any,
    received: int,
    next_chunk: int,
    carry: str,
    segment: str | None,
    segments: str,
    now: float,
) -> Callable[[Connection], None]:
    """The unit of work that records a verified part (and its segment, whose intent
    it settles), if nothing else did first."""

    def unit(conn: Connection) -> None:
        changed = conn.execute(
            update(uploads)
            .where(
                uploads.c.id == row.id,
                uploads.c.state == "open",
                uploads.c.received == row.received,
                uploads.c.segments == row.segments,
            )
            .values(
                received=received,
                next_chunk=next_chunk,
                carry=carry,
                segments=segments,
                last_activity=now,
            )
        ).rowcount
        if changed == 0:
            current = conn.execute(
                select(uploads.c.received, uploads.c.state).where(uploads.c.id == row.id)
            ).first()
            if current is None or current.state != "open":
                raise UploadError("gone", "this upload was discarded or is being finished")
            raise UploadError(
                "wrong_offset",
                "another part of this upload arrived first; resume from the upload's offset",
                int(current.received),
            )
        if segment is not None:
            settle(conn, BlobKind.PART, [segment])

    return unit


def _claim_for_finishing(upload_id: str) -> Callable[[Connection], None]:
    def unit(conn: Connection) -> None:
        changed = conn.execute(
            update(uploads)
            .where(
                uploads.c.id == upload_id,
                uploads.c.state == "open",
                uploads.c.received == uploads.c.declared_size,
            )
            .values(state="finishing")
        ).rowcount
        if changed:
            return
        current = conn.execute(
            select(uploads.c.received, uploads.c.state).where(uploads.c.id == upload_id)
        ).first()
        if current is None or current.state != "open":
            raise UploadError("gone", "this upload was discarded or is being finished")
        raise UploadError(
            "incomplete", "the upload has fewer bytes than declared", int(current.received)
        )

    return unit


class Uploads:
    """Unfinished uploads of every process and node: begin, take parts, finish
    into a recorded document, discard."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        keys: DataKeys,
        scratch: Path,
        *,
        max_size: int,
        limits: UploadLimits,
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._keys = keys
        self._tmp = scratch
        self.max_size = max_size
        self.limits = limits
        self._warm: dict[str, _Warm] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def begin(
        self,
        consultation_id: str,
        uploader: Account,
        name: str,
        size: int,
        max_size: int | None = None,
    ) -> Upload:
        """``max_size``: this file's own limit (a recording's), else the documents'."""
        try:
            clean = check_name(name)
        except FileRejected as exc:
            raise UploadError(exc.code, str(exc)) from None
        limit = self.max_size if max_size is None else max_size
        if size < 0 or size > limit:
            raise UploadError("too_large", f"files may be at most {limit} bytes")
        for _ in range(3):
            upload = await self._begin_under(
                await self._keys.new(), consultation_id, uploader, clean, size
            )
            if upload is not None:
                return upload
        raise KeyringError("no live key of the current period could be had for a new upload")

    async def _begin_under(
        self, new_key: NewDataKey, consultation_id: str, uploader: Account, clean: str, size: int
    ) -> Upload | None:
        """The upload's row, its data key wrapped as ``new_key``; None when that key's
        period key was destroyed meanwhile (a node whose clock runs ahead of this
        one's by more than the grace): the caller takes the period's next key."""
        now = time.time()
        upload = Upload(new_id(), consultation_id, uploader.id, clean, size, 0, now)
        limits = self.limits
        row = {
            "id": upload.id,
            "consultation_id": consultation_id,
            "uploader_id": uploader.id,
            "name": clean,
            "declared_size": size,
            "received": 0,
            "next_chunk": 0,
            "carry": _seal_carry(new_key.suite, new_key.key, upload.id, 0, b""),
            "segments": "",
            "suite": int(new_key.suite),
            "kek_id": new_key.kek_id,
            "wrapped_key": new_key.wrapped_key,
            "nonce_prefix": os.urandom(NONCE_PREFIX_SIZE).hex(),
            "state": "open",
            "last_activity": now,
            "created_at": now,
        }

        def unit(conn: Connection) -> bool:
            if conn.dialect.name == "postgresql":
                # Begins are few: taken one at a time in the cluster, so that
                # concurrent ones cannot all pass the limits.
                conn.execute(text("SELECT pg_advisory_xact_lock(736216)"))
            # Held until the row is in: the key cannot be destroyed under it.
            if not lock_live(conn, new_key.kek_id):
                return False
            mine = conn.execute(
                select(func.count()).where(uploads.c.uploader_id == uploader.id)
            ).scalar()
            if int(mine or 0) >= limits.per_account:
                raise UploadError(
                    "too_many_uploads",
                    f"at most {limits.per_account} unfinished uploads at once; "
                    "finish or abandon one first",
                )
            # Only what arrived counts: declaring is free (six kiosks declaring
            # 4 x 50 MiB each used to keep every other call from uploading).
            held = conn.execute(select(func.sum(uploads.c.received))).scalar()
            if int(held or 0) >= limits.pending_bytes:
                raise UploadError(
                    "uploads_busy", "the server is receiving too much; try again soon"
                )
            conn.execute(insert(uploads).values(**row))
            return True

        return upload if await self._db.write(unit) else None

    async def _row(self, upload_id: str) -> Any:
        row = await self._db.read(
            lambda conn: conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
        )
        if row is None:
            raise RecordNotFound("no such upload")
        return row

    async def get(self, upload_id: str) -> Upload:
        """An unfinished upload, whichever process or node began it."""
        return _upload(await self._row(upload_id))

    async def _encryptor_of(self, row: Any) -> tuple[FileEncryptor, bytes]:
        key, file_id = await self._keys.of_upload(row)
        suite = Suite(row.suite)
        pending = _open_carry(suite, key, row.id, int(row.received), row.carry)
        encryptor = FileEncryptor.resumed(
            suite,
            key,
            file_id,
            bytes.fromhex(row.nonce_prefix),
            index=int(row.next_chunk),
            pending=pending,
            size=int(row.received),
            total=int(row.declared_size),
        )
        return encryptor, key

    async def _admit_part(self, row: Any, length: int | None) -> None:
        """Refuse a part that would take the uploads past their limits; mark the
        upload as started at its first part (the first-byte timeout is over)."""
        remaining = int(row.declared_size) - int(row.received)
        incoming = remaining if length is None else min(length, remaining)
        mine = uploads.c.uploader_id == row.uploader_id
        this_call = uploads.c.consultation_id == row.consultation_id
        totals = select(
            func.sum(uploads.c.received),
            func.sum(case((mine, uploads.c.received), else_=0)),
            func.sum(case((this_call, uploads.c.received), else_=0)),
        )
        everyone, account, call = await self._db.read(lambda conn: conn.execute(totals).one())
        held = Held(int(everyone or 0), int(account or 0), int(call or 0))
        refused = part_refusal(self.limits, held, incoming, int(row.declared_size))
        if refused is not None:
            raise refused
        if int(row.received) == 0 and float(row.last_activity) == float(row.created_at):
            started = (
                update(uploads)
                .where(uploads.c.id == row.id, uploads.c.last_activity == row.created_at)
                .values(last_activity=time.time())
            )
            await self._db.write(lambda conn: conn.execute(started))

    async def append(
        self,
        upload: Upload,
        offset: int,
        body: AsyncIterator[bytes],
        sha256: bytes,
        length: int | None = None,
    ) -> int:
        """Add one part at ``offset`` (``length``: its size if known); it counts only
        if all of it arrived and its SHA-256 matches, otherwise the upload stays where
        it was. Returns the new offset."""
        row = upload.row if upload.row is not None else await self._row(upload.id)
        if row.state != "open":
            raise UploadError("gone", "this upload is being finished")
        if offset != row.received:
            raise UploadError("wrong_offset", "resume from the upload's offset", int(row.received))
        await self._admit_part(row, length)
        # Taken out while this part runs: a concurrent part of the same upload
        # starts from the row, and the compare-and-set lets one of them count.
        warm = self._warm.pop(upload.id, None)
        if warm is None or not warm.matches(row):
            encryptor, key = await self._encryptor_of(row)
            digest = new_digest(Suite(row.suite)) if int(row.received) == 0 else None
            warm = _Warm(encryptor, key, 0, "", digest, b"")
        encryptor, key, digest = warm.encryptor, warm.key, warm.digest
        head_wanted = digest is not None and len(warm.head) < SNIFF_BYTES
        token = secrets.token_hex(4)
        scratch = self._tmp / f"{os.getpid()}-{upload.id}-{token}.seg"
        checksum = hashlib.sha256()
        handle = await asyncio.to_thread(_create_exclusive, scratch)
        in_flight: asyncio.Future[Any] | None = None
        segment: str | None = None
        try:
            try:
                # Hashing, sealing and writing release the GIL: off the event loop, in
                # batches of up to 512 KiB (a thread hop per socket read cost more
                # than the sealing), the part's checksum beside the sealing, and one
                # batch in the threads while the next arrives.
                batch: list[bytes] = []
                batched = 0
                arrived = int(row.received)
                async for data in body:
                    arrived += len(data)
                    if arrived > row.declared_size:
                        raise UploadError("too_large", "more bytes than the declared size")
                    if head_wanted:
                        warm.head += data[: SNIFF_BYTES - len(warm.head)]
                        head_wanted = len(warm.head) < SNIFF_BYTES
                    batch.append(data)
                    batched += len(data)
                    if batched >= _BATCH:
                        if in_flight is not None:
                            await in_flight
                        in_flight = _absorb(encryptor, handle, b"".join(batch), checksum, digest)
                        batch, batched = [], 0
                if in_flight is not None:
                    await in_flight
                    in_flight = None
                if batch:
                    await _absorb(encryptor, handle, b"".join(batch), checksum, digest)
            finally:
                if in_flight is not None and not in_flight.done():
                    # Never close the file under a thread still writing to it.
                    await asyncio.wait([in_flight])
                handle.close()
            if checksum.digest() != sha256:
                raise UploadError("checksum_mismatch", "the part does not match its checksum")
            if scratch.stat().st_size:
                segment = f"{upload.id}-{token}"
                # Noted before it exists: a crash before the commit below leaves a
                # blob this deployment's tidying knows to be its own.
                await self._db.write(
                    partial(intend, kind=BlobKind.PART, names=[segment], now=time.time())
                )
                await self._blobs.put(segment, scratch, suffix=PART_SUFFIX)
            segments = " ".join(s for s in (row.segments, segment) if s)
            carry = _seal_carry(Suite(row.suite), key, upload.id, encryptor.size, encryptor.pending)
            await self._db.write(
                _commit_part(
                    row, encryptor.size, encryptor.index, carry, segment, segments, time.time()
                )
            )
            warm.received, warm.segments = encryptor.size, segments
            self._warm[upload.id] = warm
            while len(self._warm) > WARM_UPLOADS:
                self._warm.pop(next(iter(self._warm)))
        except BaseException:
            if segment is not None:
                await self._delete_segments(segment)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(scratch.unlink)
        return encryptor.size

    async def discard(self, upload: Upload, condition: Any = None) -> int:
        """Remove an unfinished upload and its parts (nothing if it is gone already,
        or no longer meets ``condition``); 1 if it was removed here, else 0."""
        self._warm.pop(upload.id, None)
        which = uploads.c.id == upload.id
        if condition is not None:
            which = and_(which, condition)

        def unit(conn: Connection) -> str | None:
            # The parts lose their record here: noted in the same unit of work, so
            # that a crash before they are deleted leaves them to tidying.
            row = conn.execute(select(uploads.c.segments).where(which)).first()
            if row is None:
                return None
            conn.execute(delete(uploads).where(uploads.c.id == upload.id))
            intend(conn, BlobKind.PART, str(row.segments).split(), time.time())
            return str(row.segments)

        segments = await self._db.write(unit)
        if segments is None:
            return 0
        await self._delete_segments(segments)
        return 1

    async def _delete_segments(self, segments: str) -> None:
        """Delete parts no record needs any more, and forget their intents."""
        deleted = []
        for name in segments.split():
            try:
                await self._blobs.delete(name, suffix=PART_SUFFIX)
            except BlobError as exc:
                # Left for tidying (its intent stays).
                log.warning("an upload part was not removed: %s", exc)
            else:
                deleted.append(name)
        if deleted:
            with contextlib.suppress(Exception):
                await self._db.write(partial(settle, kind=BlobKind.PART, names=deleted))

    async def _discard_where(self, condition: Any) -> int:
        rows = await self._db.read(
            lambda conn: conn.execute(select(uploads.c.id).where(condition)).all()
        )
        discarded = 0
        for row in rows:
            # Checked again as it is deleted: a part may have begun meanwhile.
            discarded += await self.discard(Upload(row.id, "", "", "", 0, 0, 0.0), condition)
        return discarded

    async def discard_consultation(self, consultation_id: str) -> int:
        """Discard the unfinished uploads of a consultation whose call has ended."""
        return await self._discard_where(uploads.c.consultation_id == consultation_id)

    async def discard_idle(self, now: float | None = None) -> int:
        """Discard unfinished uploads that received nothing for the idle timeout, and
        those whose first part never began within the first-byte timeout."""
        now = time.time() if now is None else now
        idle = uploads.c.last_activity < now - self.limits.idle_timeout
        never_started = and_(
            uploads.c.received == 0,
            uploads.c.last_activity == uploads.c.created_at,
            uploads.c.created_at < now - self.limits.first_byte_timeout,
        )
        return await self._discard_where(or_(idle, never_started))

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

    async def unfinished(self) -> tuple[int, int]:
        """Unfinished uploads in the deployment, and the bytes they declared."""
        row = await self._db.read(
            lambda conn: conn.execute(select(func.count(), func.sum(uploads.c.declared_size))).one()
        )
        return int(row[0]), int(row[1] or 0)

    async def finish(
        self,
        upload: Upload,
        uploader: Account,
        remote: str,
        allowed: tuple[FileType, ...] = ALLOWED,
    ) -> StoredFile:
        """Assemble the parts, check the content's type against the name, store the
        sealed file in the blob store and record it (and its audit entry)."""
        await self._db.write(_claim_for_finishing(upload.id))
        try:
            return await self._finish_claimed(await self._row(upload.id), uploader, remote, allowed)
        except BaseException:
            # Not finished: the upload can be finished again (if it still exists).
            with contextlib.suppress(Exception):
                await self._db.write(
                    lambda conn: conn.execute(
                        update(uploads)
                        .where(uploads.c.id == upload.id, uploads.c.state == "finishing")
                        .values(state="open")
                    )
                )
            raise

    async def _finish_claimed(
        self, row: Any, uploader: Account, remote: str, allowed: tuple[FileType, ...]
    ) -> StoredFile:
        warm = self._warm.pop(row.id, None)
        if warm is None or not warm.matches(row):
            encryptor, key = await self._encryptor_of(row)
            warm = _Warm(encryptor, key, int(row.received), str(row.segments), None, b"")
        encryptor, key = warm.encryptor, warm.key
        suite = Suite(row.suite)
        assembled = self._tmp / f"{os.getpid()}-{row.id}-{secrets.token_hex(4)}.seg"
        try:
            with await asyncio.to_thread(_create_exclusive, assembled, 0) as out:
                await asyncio.to_thread(out.write, encryptor.header_bytes())
                for name in str(row.segments).split():
                    try:
                        source = await self._blobs.fetch(name, self._tmp, suffix=PART_SUFFIX)
                    except BlobMissing:
                        raise UploadError(
                            "gone", "a part of this upload was lost; send the file again"
                        ) from None
                    with source:
                        await asyncio.to_thread(_copy_into, source, out)
                await asyncio.to_thread(_seal_last, out, encryptor.finalize())
            if warm.digest is not None:
                # This process sealed every byte, hashing them as they came: the
                # segments are its own output of moments ago, so no read back
                # (downloads and attaching still authenticate every chunk).
                digest, head, size = warm.digest.hexdigest(), warm.head, warm.received
            else:
                # Parts taken by other processes or nodes: the digest and the type,
                # read back through the chunks' authentication.
                digest, head, size = await asyncio.to_thread(
                    _digest_and_head, assembled, key, suite
                )
            if size != row.declared_size:
                raise UploadError("incomplete", "the upload has fewer bytes than declared", size)
            try:
                file_type = check_type(row.name, head, allowed)
            except FileRejected as exc:
                await self.discard(_upload(row))
                raise UploadError(exc.code, str(exc)) from None
            # Noted before it exists: a crash before the record is committed leaves
            # a blob this deployment's tidying knows to be its own.
            await self._db.write(
                partial(intend, kind=BlobKind.DOCUMENT, names=[row.id], now=time.time())
            )
            await self._blobs.put(row.id, assembled)
        finally:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(assembled.unlink)
        record = StoredFile(
            id=row.id,
            consultation_id=row.consultation_id,
            uploader_id=row.uploader_id,
            uploader_role=uploader.role.value,
            name=row.name,
            media_type=file_type.media_type,
            size=size,
            digest=digest,
            digest_alg=suite.digest_name,
            created_at=time.time(),
        )

        def unit(conn: Connection) -> None:
            conn.execute(
                files.insert().values(
                    **record.__dict__,
                    suite=int(suite),
                    kek_id=row.kek_id,
                    wrapped_key=row.wrapped_key,
                )
            )
            conn.execute(delete(uploads).where(uploads.c.id == row.id))
            settle(conn, BlobKind.DOCUMENT, [row.id])
            # The parts lose their record with the upload (deleted below).
            intend(conn, BlobKind.PART, str(row.segments).split(), record.created_at)
            append_audit(
                conn,
                AuditEvent(
                    uploader.username,
                    "file.upload",
                    row.id,
                    {
                        "consultation": row.consultation_id,
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
            with contextlib.suppress(Exception):
                await self._blobs.delete(row.id)
                await self._db.write(partial(settle, kind=BlobKind.DOCUMENT, names=[row.id]))
            raise
        await self._delete_segments(row.segments)
        return record

    async def close(self) -> None:
        """Stop the sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
