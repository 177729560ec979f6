"""Where the sealed documents are kept: one interface, a local directory (the
embedded default) or an S3-compatible object store shared by a cluster.

A blob store only ever sees the encrypted format (storage.filecrypt): data keys
are wrapped in the records, key-encryption keys are elsewhere. Names are file
ids (the caller checks them); a document's blob appears whole, once, and is
never changed.

An upload is written where its document will live (``Assembly``): in a local
directory, one file that its writers extend in place and that is renamed into
the document at the end; in an object store, the parts of a multipart upload
under the document's key, completed at the end. Finishing copies nothing (but
an object store's last bytes held back below S3's 5 MiB part minimum). One
writer at a time holds an upload (storage.uploads keeps the lease); a writer
that takes an upload over from one that may still be running gets a region of
its own (``prepare(..., move=True)``), so that two writers never write the same
bytes.
"""

import asyncio
import contextlib
import errno
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

SUFFIX = ".wlf"
# The verified parts of an upload in progress (storage.uploads), kept beside the
# documents so that any process or node can take the upload on; never listed as
# documents.
PART_SUFFIX = ".wlp"
# The owner marker: which deployment this store belongs to (storage.ownership).
OWNER_SUFFIX = ".wlo"
_SUFFIXES = (SUFFIX, PART_SUFFIX, OWNER_SUFFIX)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# S3 parts: every part but the last must be at least 5 MiB, and each is held in
# memory while it is sent. The least S3 allows: with the pages' upload parts of up
# to 8 MiB (each one segment), 8 MiB here took the server's memory growth under
# load from 29 to 42 MiB (bench/files.py).
PART_SIZE = 5 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
MAX_PARTS = 10_000
"""Part numbers of one S3 multipart upload."""
_IOV_MAX = 1024


class BlobError(Exception):
    """The blob store failed or refused an operation."""


class BlobMissing(BlobError):
    """No blob by that name."""


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    modified_at: float
    """Seconds since the epoch, by the store's clock."""


def check_suffix(suffix: str) -> str:
    if suffix not in _SUFFIXES:
        raise BlobError(f"not a blob kind: {suffix!r}")
    return suffix


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BlobError(f"not a blob name: {name!r}")
    return name


@dataclass(frozen=True)
class Assembly:
    """Where an upload's ciphertext stands in the store while it arrives: recorded
    with the upload, handed back to the store by every writer. Its bytes are the
    document's from its first byte on, in the order the document will hold them."""

    file: str = ""
    """A local directory: the blob (of ``PART_SUFFIX``) written in place, renamed
    into the document when it is sealed."""
    multipart: str = ""
    """An object store: the multipart upload under the document's key."""
    parts: tuple[tuple[int, str, int], ...] = ()
    """An object store: the parts sent, as (number, ETag, size), in order."""
    tail: str = ""
    """An object store: the blob (of ``PART_SUFFIX``) of the bytes after the parts,
    fewer than a part's minimum: they go with the next writer's."""
    tail_size: int = 0
    next_part: int = 1
    """An object store: the next part number a writer may have (never used twice,
    so that a writer taken over cannot overwrite its successor's part)."""
    writing: int = 0
    """An object store: the part number of the writer holding the upload."""

    @property
    def flushed(self) -> int:
        """Bytes sent as parts."""
        return sum(size for _, _, size in self.parts)

    def names(self) -> list[str]:
        """The blobs of ``PART_SUFFIX`` this assembly needs."""
        return [name for name in (self.file, self.tail) if name]

    def dump(self) -> dict[str, object]:
        return {
            key: value
            for key, value in (
                ("f", self.file),
                ("m", self.multipart),
                ("p", [list(part) for part in self.parts]),
                ("t", self.tail),
                ("ts", self.tail_size),
                ("n", self.next_part),
                ("w", self.writing),
            )
            if value
        }

    @classmethod
    def load(cls, state: Mapping[str, object]) -> "Assembly":
        parts = state.get("p", [])
        assert isinstance(parts, list)
        return cls(
            file=str(state.get("f", "")),
            multipart=str(state.get("m", "")),
            parts=tuple((int(n), str(tag), int(size)) for n, tag, size in parts),
            tail=str(state.get("t", "")),
            tail_size=int(str(state.get("ts", 0))),
            next_part=int(str(state.get("n", 1))),
            writing=int(str(state.get("w", 0))),
        )


@dataclass(frozen=True)
class Prepared:
    """An assembly made ready for a new writer, before the writer's lease is
    recorded: the blobs it made (to forget if the lease is not had) and the ones
    it replaces (to remove once the lease is recorded)."""

    assembly: Assembly
    created: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


Intend = Callable[[str], Awaitable[None]]
"""Called with a blob's name (of ``PART_SUFFIX``) before the store creates it, so
that a crash before it is recorded leaves a blob this deployment knows is its own."""


class Region(ABC):
    """One writer's bytes of an assembly, from where the upload stands on:
    ``write`` them in order (from one thread at a time), then ``close`` them into
    the assembly, or ``seal`` the assembly into the document; ``abandon`` after a
    failure or when the writer's commit lost."""

    written: int = 0
    created: list[str]
    """Blobs of ``PART_SUFFIX`` this region made (recorded by the caller's commit)."""
    superseded: list[str]
    """Blobs of ``PART_SUFFIX`` the assembly no longer needs once that is recorded."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append ``data`` (blocking: called in a worker thread)."""

    def write_all(self, pieces: Sequence[bytes]) -> None:
        """Append ``pieces`` in order, never joined into one copy."""
        for piece in pieces:
            self.write(piece)

    @abstractmethod
    async def close(self) -> Assembly:
        """What was written, made part of the assembly (not yet flushed to the disk:
        ``seal`` does that); the assembly to record."""

    @abstractmethod
    async def seal(self, document: str) -> None:
        """The assembly, ending with what was written, becomes the document
        ``document``: durable, appearing whole or not at all."""

    @abstractmethod
    async def unseal(self, document: str) -> bool:
        """Undo ``seal`` (the document was not recorded): whether the assembly is
        back as it was, to be sealed again."""

    @abstractmethod
    async def abandon(self) -> None:
        """Remove what this region made that nobody recorded."""


class BlobStore(ABC):
    """The operations the file store needs; each is complete on its own."""

    description: str

    async def start(self) -> None:  # noqa: B027 - most stores have nothing to start
        """Connect or create what the store needs; called once before use."""

    async def close(self) -> None:  # noqa: B027
        """Release connections; called once at the end."""

    @abstractmethod
    async def put(self, name: str, source: Path, suffix: str = SUFFIX) -> None:
        """Keep the finished file at ``source`` as ``name``, durably, then remove
        ``source``. A reader sees either no blob or the whole of it."""

    @abstractmethod
    async def create(self, name: str, data: bytes, suffix: str) -> bool:
        """Keep ``data`` as ``name`` only if there is no such blob yet (two callers at
        once: one wins); whether this call made it."""

    @abstractmethod
    async def fetch(self, name: str, spool: Path, suffix: str = SUFFIX) -> BinaryIO:
        """A readable, seekable handle on the blob (a copy in ``spool``, a directory
        of the caller's, where the store is remote); ``BlobMissing`` if none."""

    @abstractmethod
    async def delete(self, name: str, suffix: str = SUFFIX) -> None:
        """Remove the blob; nothing happens if there is none."""

    @abstractmethod
    async def listing(self, suffix: str = SUFFIX) -> list[BlobInfo]:
        """Every blob of this kind in this store (for tidying orphans)."""

    async def reachable(self, timeout: float = 2.0) -> bool:
        """Whether the store answers within ``timeout`` seconds (for /healthz)."""
        try:
            async with asyncio.timeout(timeout):
                await self.listing_probe()
        except (BlobError, TimeoutError):
            return False
        return True

    async def listing_probe(self) -> None:  # noqa: B027 - local directories always answer
        """One cheap request that fails when the store is unreachable."""

    @abstractmethod
    async def prepare(
        self,
        document: str,
        assembly: Assembly,
        upto: int,
        token: str,
        *,
        move: bool,
        intend: Intend,
    ) -> Prepared:
        """``assembly`` ready for a new writer (``token``: unique to it) that writes
        from byte ``upto`` on. ``move``: the writer before may still be running, so
        the new one gets a region of its own (the bytes before ``upto`` carried into
        it where the store cannot give it a region otherwise)."""

    @abstractmethod
    async def open_region(
        self, document: str, assembly: Assembly, start: int, token: str, spool: Path, intend: Intend
    ) -> Region:
        """A region for the writer holding ``assembly`` (made ready by ``prepare``),
        from byte ``start`` on: what lies at and after ``start`` was never recorded
        and is replaced. ``BlobMissing`` when the bytes before ``start`` are lost."""

    @abstractmethod
    async def abort(self, document: str, assembly: Assembly) -> None:
        """Give up what an assembly holds apart from its blobs (``names``, which the
        caller removes): an object store's multipart upload."""


class LocalBlobStore(BlobStore):
    """Blobs as files ``<directory>/<name>.wlf`` (owner-only)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"directory {directory}"

    async def start(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, mode=0o700, parents=True, exist_ok=True)

    def path_of(self, name: str, suffix: str = SUFFIX) -> Path:
        return self.directory / f"{check_name(name)}{check_suffix(suffix)}"

    async def put(self, name: str, source: Path, suffix: str = SUFFIX) -> None:
        target = self.path_of(name, suffix)

        durable = suffix == SUFFIX

        def move() -> None:
            # A document is flushed to the disk before it is recorded. An upload's
            # segment is not: one lost in a power cut makes its upload fail at
            # finish ("send the file again"), which the page does by itself, and a
            # flush per 1 MiB part cost four fifths of the upload speed.
            if durable:
                with source.open("rb") as handle:
                    os.fsync(handle.fileno())
            # A rename within one file system: the blob appears whole or not at all.
            source.replace(target)
            if durable:
                directory = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)

        await asyncio.to_thread(move)

    async def create(self, name: str, data: bytes, suffix: str) -> bool:
        target = self.path_of(name, suffix)

        def link() -> bool:
            # Written whole beside it, then linked: a link never replaces a file, and
            # a reader sees the blob whole or not at all.
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".new-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(temporary, target)
                except FileExistsError:
                    return False
                return True
            finally:
                os.unlink(temporary)

        return await asyncio.to_thread(link)

    async def fetch(self, name: str, spool: Path, suffix: str = SUFFIX) -> BinaryIO:
        try:
            return await asyncio.to_thread(self.path_of(name, suffix).open, "rb")
        except FileNotFoundError:
            raise BlobMissing(f"no blob {name!r}") from None

    async def delete(self, name: str, suffix: str = SUFFIX) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path_of(name, suffix).unlink)

    async def listing(self, suffix: str = SUFFIX) -> list[BlobInfo]:
        check_suffix(suffix)

        def scan() -> list[BlobInfo]:
            found = []
            for path in self.directory.glob(f"*{suffix}"):
                with contextlib.suppress(FileNotFoundError):
                    stat = path.stat()
                    found.append(BlobInfo(path.stem, stat.st_size, stat.st_mtime))
            return found

        return await asyncio.to_thread(scan)

    async def prepare(
        self,
        document: str,
        assembly: Assembly,
        upto: int,
        token: str,
        *,
        move: bool,
        intend: Intend,
    ) -> Prepared:
        if not assembly.file:
            # Named now, made by the writer's region: recorded before it exists.
            return Prepared(replace(assembly, file=f"{document}-{token}"))
        if not move:
            return Prepared(assembly)
        # The writer before may still write to its file (a process paused, a part
        # still streaming elsewhere): the new one writes to a file of its own,
        # which starts as a copy of what was recorded (in the kernel; a reflink
        # where the file system has them). The old writer's bytes land in a file
        # nobody reads any more.
        moved = f"{document}-{token}"
        if upto == 0:
            # Nothing to carry: made by the writer's region, recorded before.
            return Prepared(replace(assembly, file=moved), [], [assembly.file])
        await intend(moved)
        source, target = self.path_of(assembly.file, PART_SUFFIX), self.path_of(moved, PART_SUFFIX)

        def copy() -> None:
            try:
                old = source.open("rb")
            except FileNotFoundError:
                raise BlobMissing(f"no blob {assembly.file!r}") from None
            with old, _create(target) as new:
                if os.fstat(old.fileno()).st_size < upto:
                    raise BlobMissing(f"blob {assembly.file!r} is shorter than recorded")
                _copy_range(old, new, upto)

        try:
            await asyncio.to_thread(copy)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(target.unlink)
            raise
        return Prepared(replace(assembly, file=moved), [moved], [assembly.file])

    async def open_region(
        self, document: str, assembly: Assembly, start: int, token: str, spool: Path, intend: Intend
    ) -> Region:
        # Opened by its first write, in the writer's thread: no thread of its own.
        return _LocalRegion(self, assembly, self.path_of(assembly.file, PART_SUFFIX), start)

    async def abort(self, document: str, assembly: Assembly) -> None:
        pass


def _create(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb", buffering=0)


def _copy_range(source: BinaryIO, target: BinaryIO, size: int) -> None:
    """The first ``size`` bytes of ``source`` into ``target`` (both at their start),
    inside the kernel where the file systems allow it."""
    left = size
    try:
        while left:
            copied = os.copy_file_range(source.fileno(), target.fileno(), left)
            if copied == 0:
                raise BlobMissing("the source ended before the bytes recorded")
            left -= copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        # Both positions stand after what was copied: go on from there.
        while left:
            piece = source.read(min(left, _READ_CHUNK))
            if not piece:
                raise BlobMissing("the source ended before the bytes recorded") from None
            target.write(piece)
            left -= len(piece)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _LocalRegion(Region):
    def __init__(self, store: LocalBlobStore, assembly: Assembly, path: Path, start: int) -> None:
        self._store = store
        self._assembly = assembly
        self._path = path
        self._start = start
        self._handle: BinaryIO | None = None
        self._made = False
        """The file was made here: nothing recorded is in it (its upload may even
        have been discarded since it was named)."""
        self.created = []
        self.superseded = []

    def _opened(self) -> BinaryIO:
        """The file, open at ``start`` (blocking)."""
        if self._handle is not None:
            return self._handle
        start = self._start
        try:
            fd = os.open(self._path, os.O_RDWR)
        except FileNotFoundError:
            if start:
                raise BlobMissing(f"no blob {self._path.name!r}") from None
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            self._made = True
        try:
            if os.fstat(fd).st_size < start:
                # Never extended with zeros: what was recorded is lost (a power cut
                # before the disk had it).
                raise BlobMissing(f"blob {self._path.name!r} is shorter than recorded")
            # What lies beyond was never recorded (a part that failed).
            os.ftruncate(fd, start)
            os.lseek(fd, start, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        self._handle = os.fdopen(fd, "r+b", buffering=0)
        return self._handle

    def write(self, data: bytes) -> None:
        self._opened().write(data)
        self.written += len(data)

    def write_all(self, pieces: Sequence[bytes]) -> None:
        # One system call for many sealed chunks, none of them copied in between.
        fd = self._opened().fileno()
        views = [memoryview(piece) for piece in pieces if piece]
        while views:
            done = os.writev(fd, views[:_IOV_MAX])
            self.written += done
            while views and done >= len(views[0]):
                done -= len(views[0])
                views.pop(0)
            if done:
                views[0] = views[0][done:]

    async def close(self) -> Assembly:
        # Not flushed to the disk here: a part lost in a power cut is found at
        # finish (its chunks fail their authentication when read back, and the
        # upload is "gone"), and a flush per part cost four fifths of the speed.
        # Closing a descriptor does not wait for the disk: no thread for it.
        if self._handle is not None:
            self._handle.close()
        return self._assembly

    async def seal(self, document: str) -> None:
        target = self._store.path_of(document)

        def sealed() -> None:
            with self._opened() as handle:
                os.fsync(handle.fileno())
            # A rename within the directory: the document appears whole or not at
            # all, and nothing of it is copied.
            self._path.rename(target)
            try:
                _fsync_directory(self._store.directory)
            except BaseException:
                with contextlib.suppress(OSError):
                    target.rename(self._path)
                raise

        await asyncio.to_thread(sealed)
        self._made = False

    async def unseal(self, document: str) -> bool:
        target = self._store.path_of(document)

        def back() -> bool:
            try:
                target.rename(self._path)
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(back)

    async def abandon(self) -> None:
        def gone() -> None:
            if self._handle is not None:
                with contextlib.suppress(OSError):
                    self._handle.close()
            if self._made:
                self._path.unlink(missing_ok=True)

        await asyncio.to_thread(gone)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str


def parse_blob_url(url: str) -> S3Location | Path:
    """``s3://BUCKET/PREFIX`` or ``file:///DIR`` (a plain path is a directory too)."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("an s3:// blob URL needs a bucket: s3://BUCKET/PREFIX")
        prefix = parts.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Location(parts.netloc, prefix)
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme == "":
        return Path(url)
    raise ValueError(f"unsupported blob URL scheme {parts.scheme!r} (s3:// or file://)")


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix><name>.wlf`` of one bucket, on AWS or any
    S3-compatible store (``endpoint``). Credentials come from the standard
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION``."""

    def __init__(
        self,
        location: S3Location,
        *,
        endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.location = location
        self.endpoint = endpoint
        self._environ = os.environ if environ is None else environ
        self._timeout = timeout
        self._client: Any = None
        self._exit = contextlib.AsyncExitStack()
        where = f" at {endpoint}" if endpoint else ""
        self.description = f"s3://{location.bucket}/{location.prefix}{where}"

    async def start(self) -> None:
        # Imported here: a deployment without an object store never loads botocore.
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        session = get_session()
        config = AioConfig(
            connect_timeout=self._timeout,
            read_timeout=self._timeout,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        region = self._environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self._client = await self._exit.enter_async_context(
            session.create_client(
                "s3", endpoint_url=self.endpoint, region_name=region, config=config
            )
        )

    async def close(self) -> None:
        await self._exit.aclose()
        self._client = None

    def _key(self, name: str, suffix: str = SUFFIX) -> str:
        return f"{self.location.prefix}{check_name(name)}{check_suffix(suffix)}"

    @contextlib.contextmanager
    def _failures(self, what: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload"):
                raise BlobMissing(f"no blob for {what}") from None
            raise BlobError(f"the object store refused {what}: {code}") from exc
        except (TimeoutError, BotoCoreError, OSError) as exc:
            raise BlobError(f"the object store cannot be reached for {what}") from exc

    async def put(self, name: str, source: Path, suffix: str = SUFFIX) -> None:
        key = self._key(name, suffix)
        bucket = self.location.bucket
        size = (await asyncio.to_thread(source.stat)).st_size
        with self._failures(f"storing {name}"):
            if size <= PART_SIZE:
                body = await asyncio.to_thread(source.read_bytes)
                await self._client.put_object(Bucket=bucket, Key=key, Body=body)
            else:
                await self._put_in_parts(key, source)
        await asyncio.to_thread(source.unlink)

    async def _put_in_parts(self, key: str, source: Path) -> None:
        bucket = self.location.bucket
        started = await self._client.create_multipart_upload(Bucket=bucket, Key=key)
        upload_id = started["UploadId"]
        try:
            parts = []
            with source.open("rb") as handle:
                number = 1
                while True:
                    chunk = await asyncio.to_thread(handle.read, PART_SIZE)
                    if not chunk:
                        break
                    sent = await self._client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                    parts.append({"PartNumber": number, "ETag": sent["ETag"]})
                    number += 1
            # Until this call nothing is visible under the key.
            await self._client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._client.abort_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id
                )
            raise

    async def create(self, name: str, data: bytes, suffix: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with self._failures(f"storing {name}"):
                # A conditional write: S3 (and stores that follow it) refuse it with
                # 412 when the key exists; a store that ignores the condition
                # overwrites, which the caller's read back catches.
                await self._client.put_object(
                    Bucket=self.location.bucket,
                    Key=self._key(name, suffix),
                    Body=data,
                    IfNoneMatch="*",
                )
        except BlobError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and str(
                cause.response.get("Error", {}).get("Code", "")
            ) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    async def fetch(self, name: str, spool: Path, suffix: str = SUFFIX) -> BinaryIO:
        # Unlinked at once: the copy lives as long as the handle, and a crash
        # leaves nothing behind in the spool directory.
        copy: BinaryIO = await asyncio.to_thread(tempfile.TemporaryFile, dir=spool)
        try:
            await self._download(name, suffix, copy)
            await asyncio.to_thread(copy.seek, 0)
        except BaseException:
            copy.close()
            raise
        return copy

    async def _download(self, name: str, suffix: str, copy: BinaryIO) -> None:
        """The blob appended to ``copy``."""
        with self._failures(f"reading {name}"):
            reply = await self._client.get_object(
                Bucket=self.location.bucket, Key=self._key(name, suffix)
            )
            async with reply["Body"] as body:
                while True:
                    chunk = await body.read(_READ_CHUNK)
                    if not chunk:
                        break
                    await asyncio.to_thread(copy.write, chunk)

    async def _put_handle(self, key: str, handle: BinaryIO, size: int, what: str) -> None:
        """The ``size`` bytes of ``handle`` as one object, streamed from the file."""
        await asyncio.to_thread(handle.seek, 0)
        with self._failures(f"storing {what}"):
            await self._client.put_object(
                Bucket=self.location.bucket, Key=key, Body=handle, ContentLength=size
            )

    async def _send_part(
        self, key: str, multipart: str, number: int, handle: BinaryIO, size: int
    ) -> str:
        """The ``size`` bytes of ``handle`` as part ``number``; its ETag."""
        await asyncio.to_thread(handle.seek, 0)
        with self._failures(f"storing part {number} of {key}"):
            sent = await self._client.upload_part(
                Bucket=self.location.bucket,
                Key=key,
                UploadId=multipart,
                PartNumber=number,
                Body=handle,
                ContentLength=size,
            )
        return str(sent["ETag"])

    async def _abort(self, key: str, multipart: str) -> None:
        from botocore.exceptions import ClientError

        with self._failures(f"abandoning {key}"):
            try:
                await self._client.abort_multipart_upload(
                    Bucket=self.location.bucket, Key=key, UploadId=multipart
                )
            except ClientError as exc:
                # Completed or aborted already: nothing of it is left to remove.
                if str(exc.response.get("Error", {}).get("Code", "")) != "NoSuchUpload":
                    raise

    async def prepare(
        self,
        document: str,
        assembly: Assembly,
        upto: int,
        token: str,
        *,
        move: bool,
        intend: Intend,
    ) -> Prepared:
        if assembly.next_part > MAX_PARTS:
            raise BlobMissing("this upload has had every part number an object store allows")
        # Every writer has a part number of its own, taken over or not: one that
        # still sends its part after it was taken over sends it under a number
        # nobody completes, and its held-back bytes under a name of its own.
        return Prepared(
            replace(assembly, writing=assembly.next_part, next_part=assembly.next_part + 1)
        )

    async def open_region(
        self, document: str, assembly: Assembly, start: int, token: str, spool: Path, intend: Intend
    ) -> Region:
        # The bytes not yet sent as a part, then the writer's: local, unlinked at
        # once (ciphertext only), sent when the writer is done.
        handle: BinaryIO = await asyncio.to_thread(tempfile.TemporaryFile, dir=spool)
        try:
            if start and assembly.flushed + assembly.tail_size != start:
                raise BlobMissing("the upload's bytes in the store are not where it stands")
            if not start and assembly.parts:
                raise BlobMissing("the upload's parts are not where it stands")
            if start and assembly.tail:
                try:
                    await self._download(assembly.tail, PART_SUFFIX, handle)
                except BlobMissing:
                    raise BlobMissing(f"no blob {assembly.tail!r}") from None
                if handle.tell() != assembly.tail_size:
                    raise BlobMissing(f"blob {assembly.tail!r} is not the size recorded")
        except BaseException:
            handle.close()
            raise
        return _S3Region(self, document, assembly, handle, token, intend)

    async def abort(self, document: str, assembly: Assembly) -> None:
        if assembly.multipart:
            await self._abort(self._key(document), assembly.multipart)

    async def delete(self, name: str, suffix: str = SUFFIX) -> None:
        with self._failures(f"deleting {name}"):
            await self._client.delete_object(
                Bucket=self.location.bucket, Key=self._key(name, suffix)
            )

    async def listing(self, suffix: str = SUFFIX) -> list[BlobInfo]:
        check_suffix(suffix)
        found = []
        with self._failures("listing"):
            paginator = self._client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(
                Bucket=self.location.bucket, Prefix=self.location.prefix
            ):
                for item in page.get("Contents", []):
                    rest = str(item["Key"])[len(self.location.prefix) :]
                    if "/" in rest or not rest.endswith(suffix):
                        continue
                    name = rest[: -len(suffix)]
                    if _NAME.match(name):
                        found.append(
                            BlobInfo(name, int(item["Size"]), item["LastModified"].timestamp())
                        )
        return found

    async def listing_probe(self) -> None:
        with self._failures("a health check"):
            await self._client.head_bucket(Bucket=self.location.bucket)


class _S3Region(Region):
    def __init__(
        self,
        store: S3BlobStore,
        document: str,
        assembly: Assembly,
        handle: BinaryIO,
        token: str,
        intend: Intend,
    ) -> None:
        self._store = store
        self._document = document
        self._assembly = assembly
        self._handle = handle
        self._token = token
        self._intend = intend
        self._multipart = ""
        """A multipart upload this region began (nobody else knows of it yet)."""
        self._sealed = False
        self.created = []
        self.superseded = []

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self.written += len(data)

    async def close(self) -> Assembly:
        assembly = self._assembly
        if not self.written:
            self._handle.close()
            return replace(assembly, writing=0)
        size = self._handle.tell()
        store = self._store
        if size >= PART_SIZE:
            multipart = assembly.multipart
            if not multipart:
                with store._failures(f"storing {self._document}"):
                    started = await store._client.create_multipart_upload(
                        Bucket=store.location.bucket, Key=store._key(self._document)
                    )
                multipart = self._multipart = str(started["UploadId"])
            tag = await store._send_part(
                store._key(self._document), multipart, assembly.writing, self._handle, size
            )
            done = replace(
                assembly,
                multipart=multipart,
                parts=(*assembly.parts, (assembly.writing, tag, size)),
                tail="",
                tail_size=0,
                writing=0,
            )
        else:
            # Too small to be a part (but the last): held back as a blob, sent
            # with the next writer's bytes.
            tail = f"{self._document}-{self._token}"
            await self._intend(tail)
            await store._put_handle(store._key(tail, PART_SUFFIX), self._handle, size, tail)
            self.created.append(tail)
            done = replace(assembly, tail=tail, tail_size=size, writing=0)
        self.superseded = [assembly.tail] if assembly.tail else []
        self._handle.close()
        return done

    async def seal(self, document: str) -> None:
        assembly = self._assembly
        size = self._handle.tell()
        store = self._store
        key = store._key(document)
        if not assembly.multipart:
            # The whole document was held back (smaller than a part): one object.
            await store._put_handle(key, self._handle, size, document)
        else:
            tag = await store._send_part(
                key, assembly.multipart, assembly.writing, self._handle, size
            )
            parts = [
                {"PartNumber": number, "ETag": etag}
                for number, etag, _ in (*assembly.parts, (assembly.writing, tag, size))
            ]
            # Until this call nothing is visible under the key; nothing is copied.
            with store._failures(f"storing {document}"):
                await store._client.complete_multipart_upload(
                    Bucket=store.location.bucket,
                    Key=key,
                    UploadId=assembly.multipart,
                    MultipartUpload={"Parts": parts},
                )
        self._sealed = True
        self.superseded = [assembly.tail] if assembly.tail else []
        self._handle.close()

    async def unseal(self, document: str) -> bool:
        # A completed multipart upload cannot be taken back: the document goes,
        # and the upload with it (sent again by the page).
        if self._sealed:
            await self._store.delete(document)
        return False

    async def abandon(self) -> None:
        self._handle.close()
        for name in self.created:
            with contextlib.suppress(BlobError):
                await self._store.delete(name, PART_SUFFIX)
        if self._multipart:
            with contextlib.suppress(BlobError):
                await self._store._abort(self._store._key(self._document), self._multipart)


def open_blob_store(url: str | None, data_dir: Path, endpoint: str | None) -> BlobStore:
    """The configured store; unset = ``<data-dir>/files`` (the embedded default)."""
    if not url:
        return LocalBlobStore(data_dir / "files")
    location = parse_blob_url(url)
    if isinstance(location, Path):
        return LocalBlobStore(location)
    return S3BlobStore(location, endpoint=endpoint)


def age(info: BlobInfo, now: float | None = None) -> float:
    return (time.time() if now is None else now) - info.modified_at
