"""Where the sealed documents are kept: one interface, a local directory (the
embedded default) or an S3-compatible object store shared by a cluster.

A blob store only ever sees the encrypted format (storage.filecrypt): data keys
are wrapped in the records, key-encryption keys are elsewhere. Names are file
ids (the caller checks them); a blob is written once, whole, and never changed.
"""

import asyncio
import contextlib
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
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
            if code in ("NoSuchKey", "404", "NotFound"):
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
        copy = await asyncio.to_thread(tempfile.TemporaryFile, dir=spool)
        try:
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
            await asyncio.to_thread(copy.seek, 0)
        except BaseException:
            copy.close()
            raise
        return copy  # type: ignore[return-value]

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
