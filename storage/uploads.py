"""Uploads: documents arriving part by part, encrypted as they stream in, each
part written where the document will live.

An upload's state is a row of ``uploads``: the offset, the encryptor's state
(the plaintext not yet sealed into a chunk kept sealed under the data key), and
its layout (``segments``): where its ciphertext stands in the blob store (an
``Assembly``: in a local directory one file extended in place; in an object
store the parts of a multipart upload under the document's key) and which
writer holds it. Any process or node can take the next part, and a restart or
the loss of a node loses nothing that was verified.

A part first takes the upload's writer lease, a compare-and-set on the row:
the lease names the writer, and the store gives a writer that takes over from
one that may still be running a region of its own (``Claim``), so that two
writers never write the same bytes. The part is then encrypted into its region
as it streams in, checked against its checksum, and committed with a
compare-and-set on the row as the lease left it, which frees the lease: of two
parts sent at once for the same offset, one commits and the other gets the
offset.

An upload becomes a document only when complete: its last chunk written, the
assembly sealed into the document where it stands (renamed in place, or the
multipart upload completed: no copy), its content's type checked, and then
recorded with its audit entry. Plaintext never touches the disk, the database
or the object store.

Rows written before the layout (``segments``: the names of segment blobs, one
per part) are read as they are: the next part or the finish carries their
segments into the new layout once (storage.blobs never sees the difference).
"""

import asyncio
import base64
import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO, Protocol, cast

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from storage.audit import append_audit
from storage.blobs import (
    PART_SUFFIX,
    Assembly,
    BlobError,
    BlobMissing,
    BlobStore,
    Prepared,
    Region,
)
from storage.database import Database
from storage.datakeys import DataKeys, NewDataKey
from storage.documents import StoredFile
from storage.errors import KeyringError, RecordNotFound
from storage.filecrypt import (
    CHUNK_SIZE,
    HEADER_SIZE,
    NONCE_PREFIX_SIZE,
    TAG_SIZE,
    DecryptionError,
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


# ---- the layout: where the ciphertext stands, and who writes it -----------------

_STATE = "~"
"""Marks the layout's own token among the blob names of ``segments``."""


@dataclass(frozen=True)
class Layout:
    """An upload's ``segments`` column: the blob names it needs (first, space
    separated: what tidying reads), then its state as one token."""

    assembly: Assembly = field(default_factory=Assembly)
    legacy: tuple[str, ...] = ()
    """Segments of a row written before the layout, in order: carried into the
    assembly by the next writer."""
    writer: str = ""
    """The writer holding the lease ('' = none)."""
    moves: int = 0
    """Times the upload was taken from a writer that may still have been running."""

    def names(self) -> list[str]:
        return [*self.legacy, *self.assembly.names()]

    def dump(self) -> str:
        return _dump(self)

    def _dump(self) -> str:
        state: dict[str, object] = {
            "a": self.assembly.dump(),
            "l": list(self.legacy),
            "w": self.writer,
        }
        if self.moves:
            state["m"] = self.moves
        token = base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode())
        return " ".join([*self.names(), _STATE + token.decode()])

    @classmethod
    def load(cls, segments: str) -> "Layout":
        return _load(segments)

    @classmethod
    def _load(cls, segments: str) -> "Layout":
        tokens = segments.split()
        states = [t for t in tokens if t.startswith(_STATE)]
        if not states:
            return cls(legacy=tuple(tokens))
        state = json.loads(base64.urlsafe_b64decode(states[0][len(_STATE) :]))
        return cls(
            Assembly.load(state["a"]),
            tuple(str(name) for name in state["l"]),
            str(state["w"]),
            int(state.get("m", 0)),
        )


@functools.lru_cache(maxsize=256)
def _dump(layout: Layout) -> str:
    return layout._dump()


@functools.lru_cache(maxsize=256)
def _load(segments: str) -> Layout:
    # Each part reads its upload's layout and writes it twice: kept for the next.
    return Layout._load(segments)


class Claim(StrEnum):
    """What a part (or a finish) does about the upload's writer lease."""

    TAKE = "take"
    """Nobody holds it, or a writer of this process that is gone: take it and
    write where the last writer stopped."""
    STOP = "stop"
    """A part of this process holds it (a client that sent the part again while
    the first was still arriving): stop that part, and look again once it let go."""
    MOVE = "move"
    """A writer of another process or node holds it, and may still be writing
    (a part still arriving there, a paused or lost node): take it, and write to a
    region of its own."""
    REFUSE = "refuse"
    """Moved too often already: the client waits for the holder to let go."""


MAX_MOVES = 8
"""Takeovers of a writer of another process an upload may have. A move may copy
what was received (a local file), so a client sending parts at once through
different nodes could make the server copy without end."""


def claim(holder: str, process: str, running: bool, moves: int) -> Claim:
    """The lease's fate: ``holder`` the writer holding it ('' = none), ``process``
    this process's prefix of writers, ``running`` whether the holder is a part
    this process is taking in now, ``moves`` the takeovers so far."""
    if not holder:
        return Claim.TAKE
    if holder.startswith(process):
        return Claim.STOP if running else Claim.TAKE
    return Claim.MOVE if moves < MAX_MOVES else Claim.REFUSE


def _start(row: Any, layout: Layout) -> int:
    """Where the next writer's bytes go in the assembly: after the chunks sealed
    so far, or from the start (the header first) where the assembly holds none
    of them yet."""
    chunks = int(row.next_chunk)
    if layout.legacy or chunks == 0:
        return 0
    return HEADER_SIZE + chunks * (CHUNK_SIZE + TAG_SIZE)


@dataclass(frozen=True)
class _Lease:
    token: str
    before: Any
    """The row as it stood when the lease was taken (what the warm state matches)."""
    row: Any
    """The row with the lease (what the commit compares)."""
    layout: Layout
    start: int
    writer: "_Writer"


@dataclass(eq=False)
class _Writer:
    """A part of this process holding a lease: stopped by a part that takes its place."""

    reading: "asyncio.Task[None] | None" = None
    stopped: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self.stopped = True
        if self.reading is not None:
            self.reading.cancel()


_LEASE_ATTEMPTS = 5
_STOP_WAIT = 30.0
"""Seconds a part waits for a part of this process it stopped to let go (it
stops at once while reading; a commit under way takes milliseconds)."""
_BATCH = 512 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _with(row: Any, **changes: Any) -> Any:
    return SimpleNamespace(**{**row._asdict(), **changes})


def _refusal(row: Any, offset: int | None) -> "UploadError | None":
    """Why a part at ``offset`` (None: the finish) may not begin on ``row``."""
    if row.state != "open":
        return UploadError("gone", "this upload was discarded or is being finished")
    if offset is None:
        if int(row.received) != int(row.declared_size):
            return UploadError(
                "incomplete", "the upload has fewer bytes than declared", int(row.received)
            )
    elif offset != int(row.received):
        return UploadError("wrong_offset", "resume from the upload's offset", int(row.received))
    return None


def _busy(row: Any) -> "UploadError":
    return UploadError(
        "wrong_offset",
        "another part of this upload is arriving; resume from the upload's offset",
        int(row.received),
    )


def _gone() -> "UploadError":
    return UploadError("gone", "a part of this upload was lost; send the file again")


def _told(exc: BaseException) -> "UploadError | None":
    """What a failed write tells the client, or None to raise it as it is: a full
    disk is 503 uploads_busy (the upload stays at its offset), a lost region gone."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return UploadError("uploads_busy", "the server's storage is full; try again later")
    if isinstance(exc, BlobMissing):
        return _gone()
    return None


def _seal_into(encryptor: FileEncryptor, region: Region, pieces: list[bytes]) -> None:
    """Seal ``pieces`` and write the chunks they complete. The encryptor is fed one
    chunk at a time, cut from the pieces without a copy (a memoryview, which it
    takes as it takes bytes): it then neither joins its input to what it holds
    back nor its output into one buffer, each a copy of the batch that cost as
    much as the sealing."""
    size = encryptor.header.chunk_size
    sealed: list[bytes] = []
    for piece in pieces:
        view = memoryview(piece)
        at = 0
        while at < len(view):
            waiting = encryptor.size - encryptor.index * size
            step = size - waiting or size
            chunk = encryptor.update(cast(bytes, view[at : at + step]))
            if chunk:
                sealed.append(chunk)
            at += step
    region.write_all(sealed)


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _hash_into(hasher: _Hasher, pieces: list[bytes]) -> None:
    for piece in pieces:
        hasher.update(piece)


def _absorb(
    encryptor: FileEncryptor, region: Region, pieces: list[bytes], hashers: list[_Hasher]
) -> "asyncio.Future[Any]":
    """A batch of a part taken in (the pieces as they arrived, never joined):
    sealed and written in one worker thread, each hash (the part's checksum, the
    file's digest) in a thread of its own; each releases the GIL."""
    return asyncio.gather(
        asyncio.to_thread(_seal_into, encryptor, region, pieces),
        *(asyncio.to_thread(_hash_into, hasher, pieces) for hasher in hashers),
    )


async def _settled(future: "asyncio.Future[Any]") -> None:
    """Wait for ``future`` (work in a thread) to end, even when cancelled meanwhile:
    nothing may close a region under a thread still writing to it. A
    cancellation is passed on once it has ended."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


async def _writing(func: Callable[..., None], *args: Any) -> None:
    """``func(*args)`` in a worker thread, writing to a region: waited for to its
    end even when cancelled (``_settled``), as a writer that takes the region next
    may write where it writes."""
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(func, *args))
    await _settled(future)
    future.result()


def _copy_out(source: BinaryIO, region: Region) -> None:
    while piece := source.read(1024 * 1024):
        region.write(piece)


def _digest_and_head(source: BinaryIO, key: bytes, suite: Suite) -> tuple[str, bytes, int]:
    """The plaintext's digest, its first bytes (for the type check) and its size,
    every chunk authenticated on the way."""
    digest = new_digest(suite)
    head = bytearray()
    size = 0
    # decrypt_range authenticates each chunk before yielding it (and the last one
    # first): read to the end, it is one pass that checks everything.
    for piece in decrypt_range(source, key, 0, None):
        digest.update(piece)
        if len(head) < SNIFF_BYTES:
            head += piece[: SNIFF_BYTES - len(head)]
        size += len(piece)
    return digest.hexdigest(), bytes(head), size


# The statements of every part, built once: building SQLAlchemy expressions cost
# more than running them (a part is a lease and a commit).
_ROW = select(uploads).where(uploads.c.id == bindparam("w_id"))
_GUARD = (
    uploads.c.id == bindparam("w_id"),
    uploads.c.state == "open",
    uploads.c.received == bindparam("w_received"),
    uploads.c.segments == bindparam("w_segments"),
)
_LEASE = (
    update(uploads)
    .where(*_GUARD)
    .values(segments=bindparam("segments"), last_activity=bindparam("last_activity"))
)
_LEASE_TO_FINISH = (
    update(uploads)
    .where(*_GUARD, uploads.c.received == uploads.c.declared_size)
    .values(
        segments=bindparam("segments"),
        last_activity=bindparam("last_activity"),
        state="finishing",
    )
)
_COMMIT = (
    update(uploads)
    .where(*_GUARD)
    .values(
        received=bindparam("received"),
        next_chunk=bindparam("next_chunk"),
        carry=bindparam("carry"),
        segments=bindparam("segments"),
        last_activity=bindparam("last_activity"),
    )
)
_STANDING = select(uploads.c.received, uploads.c.state).where(uploads.c.id == bindparam("w_id"))
_TOTALS = select(
    func.sum(uploads.c.received),
    func.sum(case((uploads.c.uploader_id == bindparam("w_uploader"), uploads.c.received), else_=0)),
    func.sum(
        case(
            (uploads.c.consultation_id == bindparam("w_consultation"), uploads.c.received), else_=0
        )
    ),
)


def _guard(row: Any) -> dict[str, Any]:
    """The row as the compare-and-set expects it."""
    return {"w_id": row.id, "w_received": row.received, "w_segments": row.segments}


def _take_lease(
    row: Any,
    segments: str,
    prepared: Prepared,
    finishing: bool,
    now: float,
    admit: Callable[[Connection], None] | None = None,
) -> Callable[[Connection], bool]:
    """The unit of work that gives the lease (``segments`` names the writer) if the
    row is still as ``row`` was and ``admit`` does not refuse: records the blobs the
    store made for the writer and notes those it replaces; a finish also marks the
    upload and notes its document before it exists. The lease marks the upload as
    started (the first-byte timeout is over)."""

    statement = _LEASE_TO_FINISH if finishing else _LEASE
    values = {**_guard(row), "segments": segments, "last_activity": now}

    def unit(conn: Connection) -> bool:
        if admit is not None:
            admit(conn)
        if not conn.execute(statement, values).rowcount:
            return False
        settle(conn, BlobKind.PART, prepared.created)
        intend(conn, BlobKind.PART, prepared.superseded, now)
        if finishing:
            intend(conn, BlobKind.DOCUMENT, [row.id], now)
        return True

    return unit


def _commit_part(
    row: Any,
    received: int,
    next_chunk: int,
    carry: str,
    segments: str,
    created: list[str],
    superseded: list[str],
    now: float,
) -> Callable[[Connection], None]:
    """The unit of work that records a verified part and frees the lease, if the
    row is still as the lease left it; the blobs the part made are recorded, the
    ones it replaced noted for removal."""

    values = {
        **_guard(row),
        "received": received,
        "next_chunk": next_chunk,
        "carry": carry,
        "segments": segments,
        "last_activity": now,
    }

    def unit(conn: Connection) -> None:
        if conn.execute(_COMMIT, values).rowcount == 0:
            current = conn.execute(_STANDING, {"w_id": row.id}).first()
            if current is None or current.state != "open":
                raise UploadError("gone", "this upload was discarded or is being finished")
            raise UploadError(
                "wrong_offset",
                "another part of this upload arrived first; resume from the upload's offset",
                int(current.received),
            )
        settle(conn, BlobKind.PART, created)
        intend(conn, BlobKind.PART, superseded, now)

    return unit


def _let_go(lease: _Lease, settle_document: bool) -> Callable[[Connection], None]:
    """The unit of work that frees a lease that recorded nothing: the upload is open
    again (after a finish), and the intent of a document never made is forgotten."""
    free = replace(lease.layout, writer="").dump()

    def unit(conn: Connection) -> None:
        changed = conn.execute(
            update(uploads)
            .where(uploads.c.id == lease.row.id, uploads.c.segments == lease.row.segments)
            .values(segments=free, state="open")
        ).rowcount
        if changed and settle_document:
            settle(conn, BlobKind.DOCUMENT, [lease.row.id])

    return unit


class _Rejected(Exception):
    """A sealed document whose content's type is refused."""

    def __init__(self, error: "UploadError") -> None:
        super().__init__(str(error))
        self.error = error


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
        self._process = secrets.token_hex(5)
        """The prefix of this process's writers (each Uploads is a process of its own)."""
        self._writers: dict[str, _Writer] = {}

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
        row = await self._db.read(lambda conn: conn.execute(_ROW, {"w_id": upload_id}).first())
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

    def _admission(self, row: Any, length: int | None) -> Callable[[Connection], None]:
        """In the unit of work that gives a part its lease: refuse the part if it would
        take the uploads past their limits."""
        remaining = int(row.declared_size) - int(row.received)
        incoming = remaining if length is None else min(length, remaining)
        limits, declared = self.limits, int(row.declared_size)
        whose = {"w_uploader": row.uploader_id, "w_consultation": row.consultation_id}

        def admit(conn: Connection) -> None:
            everyone, account, call = conn.execute(_TOTALS, whose).one()
            held = Held(int(everyone or 0), int(account or 0), int(call or 0))
            refused = part_refusal(limits, held, incoming, declared)
            if refused is not None:
                raise refused

        return admit

    # ---- the writer lease ----------------------------------------------------------

    async def _intend_part(self, name: str) -> None:
        await self._db.write(partial(intend, kind=BlobKind.PART, names=[name], now=time.time()))

    async def _stop(self, holder: str, row: Any) -> None:
        """Stop this process's part ``holder`` and wait until it let go."""
        writer = self._writers.get(holder)
        if writer is None:
            return
        writer.stop()
        try:
            async with asyncio.timeout(_STOP_WAIT):
                await writer.released.wait()
        except TimeoutError:
            raise _busy(row) from None

    async def _lease(
        self, row: Any, offset: int | None, admit: Callable[[Connection], None] | None = None
    ) -> _Lease:
        """Take the upload's writer lease for a part at ``offset`` (None: to finish),
        if ``admit`` (run in the same unit of work) does not refuse the part."""
        for _ in range(_LEASE_ATTEMPTS):
            refused = _refusal(row, offset)
            if refused is not None:
                raise refused
            layout = Layout.load(str(row.segments))
            holder = layout.writer
            decision = claim(holder, self._process, holder in self._writers, layout.moves)
            if decision is Claim.STOP:
                await self._stop(holder, row)
                row = await self._again(row)
                continue
            if decision is Claim.REFUSE:
                raise _busy(row)
            token = self._process + secrets.token_hex(5)
            start = _start(row, layout)
            move = decision is Claim.MOVE
            # Known as running before the lease names it: a part of this process
            # that finds the lease must stop this writer, never take it in place.
            writer = self._writers[token] = _Writer()
            won = False
            try:
                try:
                    prepared = await self._blobs.prepare(
                        row.id, layout.assembly, start, token, move=move, intend=self._intend_part
                    )
                except BlobMissing:
                    raise _gone() from None
                leased = replace(
                    layout, assembly=prepared.assembly, writer=token, moves=layout.moves + move
                )
                segments = leased.dump()
                try:
                    won = await self._db.write(
                        _take_lease(row, segments, prepared, offset is None, time.time(), admit)
                    )
                except BaseException:
                    await self._delete_parts(prepared.created)
                    raise
            finally:
                if not won:
                    self._done(token)
            if won:
                if move:
                    log.info("upload %s taken over from writer %s", row.id, holder)
                lease = _Lease(token, row, _with(row, segments=segments), leased, start, writer)
                try:
                    await self._delete_parts(prepared.superseded)
                except BaseException:
                    await self._let_go(lease, offset is None, settle_document=True)
                    self._done(token)
                    raise
                return lease
            await self._delete_parts(prepared.created)
            row = await self._again(row)
        raise _busy(row)

    async def _again(self, row: Any) -> Any:
        """The upload's row as it stands now."""
        try:
            return await self._row(row.id)
        except RecordNotFound:
            raise UploadError("gone", "this upload was discarded") from None

    def _done(self, token: str) -> None:
        """A writer of this process let go of its lease (or never had it)."""
        writer = self._writers.pop(token, None)
        if writer is not None:
            writer.released.set()

    async def _let_go(self, lease: _Lease, finishing: bool, settle_document: bool = False) -> None:
        try:
            await self._db.write(_let_go(lease, finishing and settle_document))
        except Exception:
            # The next part takes the lease over (storage.uploads.Claim).
            log.warning("the lease of upload %s was not let go", lease.row.id, exc_info=True)

    # ---- parts ---------------------------------------------------------------------

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
        refused = _refusal(row, offset)
        if refused is not None:
            raise refused
        lease = await self._lease(row, offset, self._admission(row, length))
        try:
            return await self._write_part(lease, body, sha256)
        finally:
            self._done(lease.token)

    def _warm_for(self, lease: _Lease) -> "_Warm | None":
        # Taken out while the part runs: put back only after its commit.
        warm = self._warm.pop(lease.row.id, None)
        return warm if warm is not None and warm.matches(lease.before) else None

    async def _open(self, lease: _Lease) -> Region:
        try:
            return await self._blobs.open_region(
                lease.row.id,
                lease.layout.assembly,
                lease.start,
                lease.token,
                self._tmp,
                self._intend_part,
            )
        except BlobMissing:
            raise _gone() from None

    async def _write_part(self, lease: _Lease, body: AsyncIterator[bytes], sha256: bytes) -> int:
        row, writer = lease.row, lease.writer
        region: Region | None = None
        committed = False
        try:
            warm = self._warm_for(lease)
            if warm is None:
                encryptor, key = await self._encryptor_of(row)
                digest = new_digest(Suite(row.suite)) if int(row.received) == 0 else None
                warm = _Warm(encryptor, key, 0, "", digest, b"")
            encryptor = warm.encryptor
            region = await self._open(lease)
            # A part from the file's first byte, under SHA-256: the file's digest so
            # far is the part's checksum (one hash of its bytes instead of two).
            first = int(row.received) == 0 and warm.digest is not None
            checksum = None if first and Suite(row.suite) is Suite.AES_256_GCM else hashlib.sha256()
            reading = asyncio.create_task(self._take_in(lease, region, warm, body, checksum))
            writer.reading = reading
            if writer.stopped:
                reading.cancel()
            try:
                await asyncio.wait([reading])
            except asyncio.CancelledError:
                # This request was cancelled: its reading stops, and ends first.
                reading.cancel()
                await _settled(reading)
                raise
            if reading.cancelled():
                raise UploadError(
                    "wrong_offset",
                    "the same part was sent again; resume from the upload's offset",
                    int(row.received),
                )
            reading.result()
            received = checksum if checksum is not None else warm.digest
            assert received is not None
            if bytes.fromhex(received.hexdigest()) != sha256:
                raise UploadError("checksum_mismatch", "the part does not match its checksum")
            assembly = await region.close()
            segments = Layout(assembly, moves=lease.layout.moves).dump()
            carry = _seal_carry(
                Suite(row.suite), warm.key, row.id, encryptor.size, encryptor.pending
            )
            superseded = [*region.superseded, *lease.layout.legacy]
            await self._db.write(
                _commit_part(
                    row,
                    encryptor.size,
                    encryptor.index,
                    carry,
                    segments,
                    region.created,
                    superseded,
                    time.time(),
                )
            )
            committed = True
        except BaseException as exc:
            if region is not None:
                await region.abandon()
            if not committed:
                await self._let_go(lease, False)
            told = _told(exc)
            if told is not None:
                raise told from exc
            raise
        await self._delete_parts(superseded)
        warm.received, warm.segments = encryptor.size, segments
        self._warm[row.id] = warm
        while len(self._warm) > WARM_UPLOADS:
            self._warm.pop(next(iter(self._warm)))
        return encryptor.size

    async def _prelude(self, lease: _Lease, region: Region, encryptor: FileEncryptor) -> None:
        """What an assembly holds before the first chunk a writer seals, where it
        holds nothing yet: the header, then a row's segments from before the layout."""
        await _writing(region.write, encryptor.header_bytes())
        for name in lease.layout.legacy:
            try:
                source = await self._blobs.fetch(name, self._tmp, suffix=PART_SUFFIX)
            except BlobMissing:
                raise _gone() from None
            with source:
                await _writing(_copy_out, source, region)

    async def _take_in(
        self,
        lease: _Lease,
        region: Region,
        warm: _Warm,
        body: AsyncIterator[bytes],
        checksum: "hashlib._Hash | None",
    ) -> None:
        """The part's bytes sealed into the region as they arrive (a task of its own:
        a part that takes this one's place stops it); ``checksum`` None when the
        file's digest is the part's too."""
        row = lease.row
        encryptor, digest = warm.encryptor, warm.digest
        if lease.start == 0:
            await self._prelude(lease, region, encryptor)
        head_wanted = digest is not None and len(warm.head) < SNIFF_BYTES
        hashers: list[_Hasher] = [h for h in (checksum, digest) if h is not None]
        in_flight: asyncio.Future[Any] | None = None
        try:
            # Hashing, sealing and writing release the GIL: off the event loop, in
            # batches of up to 512 KiB (a thread hop per socket read cost more than
            # the sealing), the part's checksum beside the sealing, and one batch in
            # the threads while the next arrives.
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
                        # Shielded: a cancellation must not leave the threads
                        # running unawaited (the finally below waits for them).
                        await asyncio.shield(in_flight)
                    in_flight = _absorb(encryptor, region, batch, hashers)
                    batch, batched = [], 0
            if in_flight is not None:
                await asyncio.shield(in_flight)
                in_flight = None
            if batch:
                in_flight = _absorb(encryptor, region, batch, hashers)
                await asyncio.shield(in_flight)
        finally:
            if in_flight is not None:
                await _settled(in_flight)

    async def discard(self, upload: Upload, condition: Any = None) -> int:
        """Remove an unfinished upload and its parts (nothing if it is gone already,
        or no longer meets ``condition``); 1 if it was removed here, else 0. A part
        still arriving fails at its commit."""
        self._warm.pop(upload.id, None)
        which = uploads.c.id == upload.id
        if condition is not None:
            which = and_(which, condition)

        def unit(conn: Connection) -> Layout | None:
            # The parts lose their record here: noted in the same unit of work, so
            # that a crash before they are deleted leaves them to tidying.
            row = conn.execute(select(uploads.c.segments).where(which)).first()
            if row is None:
                return None
            conn.execute(delete(uploads).where(uploads.c.id == upload.id))
            layout = Layout.load(str(row.segments))
            intend(conn, BlobKind.PART, layout.names(), time.time())
            return layout

        layout = await self._db.write(unit)
        if layout is None:
            return 0
        try:
            await self._blobs.abort(upload.id, layout.assembly)
        except BlobError as exc:
            log.warning("an upload's multipart upload was not abandoned: %s", exc)
        await self._delete_parts(layout.names())
        return 1

    async def _delete_parts(self, names: list[str]) -> None:
        """Delete parts no record needs any more, and forget their intents."""
        deleted = []
        for name in names:
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
        """Seal the assembly into the document where it stands, check the content's
        type against the name and record it (and its audit entry)."""
        lease = await self._lease(await self._row(upload.id), None)
        try:
            return await self._finish_leased(lease, uploader, remote, allowed)
        finally:
            self._done(lease.token)

    async def _finish_leased(
        self, lease: _Lease, uploader: Account, remote: str, allowed: tuple[FileType, ...]
    ) -> StoredFile:
        try:
            region, warm = await self._seal(lease)
        except BaseException:
            # Not sealed: the upload can be finished again.
            await self._let_go(lease, True, settle_document=True)
            raise
        try:
            record, superseded = await self._record_sealed(
                lease, region, warm, uploader, remote, allowed
            )
        except BaseException as exc:
            await self._unseal(region, lease.row)
            if isinstance(exc, _Rejected):
                await self.discard(_upload(lease.row))
                raise exc.error from None
            await self._let_go(lease, True, settle_document=False)
            raise
        await self._delete_parts(superseded)
        return record

    async def _seal(self, lease: _Lease) -> tuple[Region, _Warm]:
        """The last chunk written and the assembly sealed into the document."""
        row = lease.row
        warm = self._warm_for(lease)
        if warm is None:
            encryptor, key = await self._encryptor_of(row)
            warm = _Warm(encryptor, key, int(row.received), str(row.segments), None, b"")
        region = await self._open(lease)
        try:
            if lease.start == 0:
                await self._prelude(lease, region, warm.encryptor)
            await _writing(region.write, warm.encryptor.finalize())
            await region.seal(row.id)
        except BaseException as exc:
            await region.abandon()
            told = _told(exc)
            if told is not None:
                raise told from exc
            raise
        return region, warm

    async def _record_sealed(
        self,
        lease: _Lease,
        region: Region,
        warm: _Warm,
        uploader: Account,
        remote: str,
        allowed: tuple[FileType, ...],
    ) -> tuple[StoredFile, list[str]]:
        """The sealed document's digest and type, and its record; the blobs the
        upload no longer needs. ``_Rejected`` when its type is refused."""
        row = lease.row
        suite = Suite(row.suite)
        if warm.digest is not None:
            # This process sealed every byte, hashing them as they came: the
            # document is its own output of moments ago, so no read back (downloads
            # and attaching still authenticate every chunk).
            digest, head, size = warm.digest.hexdigest(), warm.head, warm.received
        else:
            # Parts taken by other processes or nodes: the digest and the type,
            # read back through the chunks' authentication.
            digest, head, size = await self._read_back(row, warm.key, suite)
        if size != row.declared_size:
            raise UploadError("incomplete", "the upload has fewer bytes than declared", size)
        try:
            file_type = check_type(row.name, head, allowed)
        except FileRejected as exc:
            raise _Rejected(UploadError(exc.code, str(exc))) from None
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
        superseded = [*region.superseded, *lease.layout.legacy]
        await self._db.write(self._record(row, record, suite, superseded, uploader, remote))
        return record, superseded

    async def _unseal(self, region: Region, row: Any) -> None:
        """Take back a sealed document that was not recorded: the upload is as
        before where the store allows it, else discarded (the page sends the file
        again). Left alone when whether it was recorded is unknown (its intent has
        tidying remove it if it never was)."""
        try:
            recorded = await self._db.read(
                lambda conn: conn.execute(select(files.c.id).where(files.c.id == row.id)).first()
            )
            if recorded is not None:
                return
            back = await region.unseal(row.id)
            await self._db.write(partial(settle, kind=BlobKind.DOCUMENT, names=[row.id]))
        except Exception:
            log.warning("upload %s: its unrecorded document is left", row.id, exc_info=True)
            return
        if not back:
            with contextlib.suppress(Exception):
                await self.discard(_upload(row))

    async def _read_back(self, row: Any, key: bytes, suite: Suite) -> tuple[str, bytes, int]:
        try:
            source = await self._blobs.fetch(row.id, self._tmp)
        except BlobMissing:
            raise _gone() from None
        with source:
            try:
                return await asyncio.to_thread(_digest_and_head, source, key, suite)
            except DecryptionError:
                # A part lost on the way (a power cut before the disk had it).
                raise _gone() from None

    def _record(
        self,
        row: Any,
        record: StoredFile,
        suite: Suite,
        superseded: list[str],
        uploader: Account,
        remote: str,
    ) -> Callable[[Connection], None]:
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
            # What the assembly no longer needs loses its record with the upload.
            intend(conn, BlobKind.PART, superseded, record.created_at)
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

        return unit

    async def close(self) -> None:
        """Stop the sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
