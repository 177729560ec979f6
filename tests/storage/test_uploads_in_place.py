"""Uploads written where their documents live (storage.uploads, storage.blobs):
each part goes into the document's own file (a local directory) or its own
multipart upload (an object store), one writer at a time under a lease, and
finishing copies nothing. Run against both stores, with two "processes" (two
file stores over one database and one blob store, each with writers of its own)
where it matters."""

import asyncio
import contextlib
import errno
import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

import storage.blobs
import storage.uploads
from harness.object_store import ObjectStore
from storage.blobs import (
    PART_SIZE,
    PART_SUFFIX,
    SUFFIX,
    Assembly,
    BlobError,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    S3Location,
)
from storage.demo import seed_demo
from storage.filecrypt import decrypt_all
from storage.filestore import FileStore, StoredFile, Upload, UploadError
from storage.keyring import DirectoryKeks, Keyring
from storage.records import Account, AuditEvent
from storage.schema import blob_intents, uploads
from storage.sessions import SessionPolicy
from storage.store import Storage
from storage.uploads import MAX_MOVES, Claim, Layout, claim

MiB = 1024 * 1024


# ---- the lease and the layout, as tables ---------------------------------------------

MINE = "aaaaaaaaaa"


@pytest.mark.parametrize(
    ("holder", "running", "moves", "expected"),
    [
        ("", False, 0, Claim.TAKE),
        # A part of this process still arriving: it is stopped, never shared.
        (MINE + "0123456789", True, 0, Claim.STOP),
        # A writer of this process that is gone (its let-go failed): nothing of it
        # runs, its file is safe to go on in.
        (MINE + "0123456789", False, 0, Claim.TAKE),
        # Another process's, which may still write: a region of its own.
        ("bbbbbbbbbb0123456789", False, 0, Claim.MOVE),
        ("bbbbbbbbbb0123456789", False, MAX_MOVES - 1, Claim.MOVE),
        ("bbbbbbbbbb0123456789", False, MAX_MOVES, Claim.REFUSE),
        # Moves never matter when nobody holds it.
        ("", False, MAX_MOVES, Claim.TAKE),
    ],
)
def test_who_takes_an_uploads_lease(
    holder: str, running: bool, moves: int, expected: Claim
) -> None:
    assert claim(holder, MINE, running, moves) is expected


def test_a_layout_reads_back_and_rows_from_before_it_read_as_segments() -> None:
    layout = Layout(
        Assembly(
            multipart="up.load-id_1",
            parts=((1, '"etag one"', 5 * MiB), (3, '"e2"', 6 * MiB)),
            tail="abc-def",
            tail_size=12,
            next_part=5,
            writing=4,
        ),
        legacy=("old-1", "old-2"),
        writer="w" * 20,
        moves=2,
    )
    segments = layout.dump()
    assert Layout.load(segments) == layout
    # Tidying reads the blob names it must keep as words of the column.
    assert set(segments.split()) >= {"old-1", "old-2", "abc-def"}
    assert Layout.load("seg-1 seg-2") == Layout(legacy=("seg-1", "seg-2"))
    assert Layout.load("") == Layout()


# ---- a deployment of two processes ---------------------------------------------------


@dataclass
class Process:
    files: FileStore
    blobs: BlobStore


@dataclass
class Deployment:
    storage: Storage
    kind: str
    kiosk: Account
    consultation: str
    data_dir: Path
    store_dir: Path
    bucket: str
    endpoint: str

    def blob_store(self) -> BlobStore:
        if self.kind == "local":
            return LocalBlobStore(self.store_dir)
        return S3BlobStore(S3Location(self.bucket, "docs/"), endpoint=self.endpoint)

    @contextlib.asynccontextmanager
    async def process(self) -> AsyncIterator[Process]:
        """A file store of its own (its own writers, its own warm state) over the
        deployment's database and blob store: another process, or node."""
        keyring = await Keyring.open(DirectoryKeks(self.data_dir / "keys"))
        blobs = self.blob_store()
        files = await FileStore.open(
            self.data_dir, keyring, self.storage.db, max_size=64 * MiB, blobs=blobs
        )
        try:
            yield Process(files, blobs)
        finally:
            await files.close()

    async def row(self, upload_id: str) -> Any:
        return await self.storage.db.read(
            lambda conn: conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
        )

    async def intents(self) -> set[tuple[str, str]]:
        rows = await self.storage.db.read(
            lambda conn: conn.execute(select(blob_intents.c.name, blob_intents.c.kind)).all()
        )
        return {(r.name, r.kind) for r in rows}

    async def part_blobs(self) -> set[str]:
        return await self.blob_store_listing(PART_SUFFIX)

    async def blob_store_listing(self, suffix: str) -> set[str]:
        blobs = self.blob_store()
        await blobs.start()
        try:
            return {b.name for b in await blobs.listing(suffix)}
        finally:
            await blobs.close()

    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)


@pytest.fixture(params=["local", "s3"])
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    bucket = endpoint = ""
    if request.param == "s3":
        server: ObjectStore = request.getfixturevalue("object_store")
        bucket, endpoint = server.new_bucket(), server.endpoint
    storage_ = await Storage.open(None, tmp_path, SessionPolicy(3600, 7200))
    try:
        await seed_demo(storage_)
        kiosk = await storage_.accounts.get_by_username("kiosk01")
        consultation = await storage_.consultations.create(
            kiosk.id, None, "market", None, audit=AuditEvent("kiosk01", "test", "", {})
        )
        yield Deployment(
            storage_,
            request.param,
            kiosk,
            consultation.id,
            tmp_path,
            tmp_path / "store",
            bucket,
            endpoint,
        )
    finally:
        await storage_.close()


def pdf(size: int) -> bytes:
    return b"%PDF-1.7\n" + os.urandom(size - 9)


async def whole(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), MiB):
        yield data[at : at + MiB]


async def send(files: FileStore, upload: Upload, offset: int, data: bytes) -> int:
    current = await files.upload(upload.id)
    return await files.append(
        current, offset, whole(data), hashlib.sha256(data).digest(), len(data)
    )


async def read_document(files: FileStore, record: StoredFile, spool: Path) -> bytes:
    key = await files.keys.of_file(record.id)
    handle = await files.blobs.fetch(record.id, spool)
    with handle:
        return b"".join(decrypt_all(handle, key))


class Paused:
    """A part's body that sends ``first`` bytes, then waits until let go (a client,
    or a process, that stalls mid-part), then sends the rest."""

    def __init__(self, data: bytes, first: int) -> None:
        self.data = data
        self.first = first
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data[: self.first]
        self.waiting.set()
        await self.go.wait()
        yield self.data[self.first :]


async def stalled_part(
    files: FileStore, upload: Upload, offset: int, body: Paused
) -> "asyncio.Task[int]":
    current = await files.upload(upload.id)
    task = asyncio.create_task(
        files.append(current, offset, aiter(body), hashlib.sha256(body.data).digest())
    )
    async with asyncio.timeout(10):
        await body.waiting.wait()
    # The first bytes are sealed and written before the part waits for more.
    await asyncio.sleep(0.05)
    return task


# ---- where the bytes go -----------------------------------------------------------------


async def test_parts_are_written_where_the_document_lives_and_finishing_copies_nothing(
    deployment: Deployment,
) -> None:
    # Parts as the pages send them (1, 2, 4 MiB...), ending mid-chunk, more than
    # two object-store parts' worth.
    content = pdf(13 * MiB + 12_345)
    cuts = [0, MiB, 3 * MiB, 7 * MiB + 100, 11 * MiB, len(content)]
    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "a.pdf", len(content))
        for start, end in itertools.pairwise(cuts):
            assert await send(files, begun, start, content[start:end]) == end
        layout = Layout.load(str((await deployment.row(begun.id)).segments))
        assert layout.writer == "" and layout.moves == 0
        if deployment.kind == "local":
            (name,) = layout.assembly.names()
            inode = os.stat(deployment.store_dir / f"{name}{PART_SUFFIX}").st_ino
        else:
            # Every part but the last bytes went to the multipart upload as it came.
            assert layout.assembly.multipart and len(layout.assembly.parts) >= 2
            assert all(size >= PART_SIZE for _, _, size in layout.assembly.parts)
        record = await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        assert record.digest == hashlib.sha256(content).hexdigest()
        assert await read_document(files, record, deployment.data_dir / "tmp") == content
    if deployment.kind == "local":
        # The document is the very file the parts were written to: nothing copied.
        assert os.stat(deployment.store_dir / f"{record.id}{SUFFIX}").st_ino == inode
    else:
        s3 = deployment.s3()
        head = s3.head_object(Bucket=deployment.bucket, Key=f"docs/{record.id}{SUFFIX}")
        # A multipart object's ETag counts its parts: completed, not put again.
        assert head["ETag"].strip('"').endswith(f"-{len(layout.assembly.parts) + 1}")
        assert not s3.list_multipart_uploads(Bucket=deployment.bucket).get("Uploads")
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()


async def test_a_small_document_is_one_blob_and_leaves_nothing_behind(
    deployment: Deployment,
) -> None:
    content = pdf(300_000)
    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "s.pdf", len(content))
        await send(files, begun, 0, content[:1000])
        await send(files, begun, 1000, content[1000:])
        record = await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        assert await read_document(files, record, deployment.data_dir / "tmp") == content
    assert await deployment.blob_store_listing(SUFFIX) == {record.id}
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()


# ---- two writers ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["same process", "another process"])
async def test_two_parts_at_once_for_one_offset_one_counts_and_nothing_is_corrupted(
    deployment: Deployment, where: str
) -> None:
    """A client sends a part again while the first is still arriving (in this
    process: the first is stopped; through another node: the second takes the
    upload over, and the first, still running, writes its bytes where nobody reads
    them). The document is the second's, byte for byte."""
    first = pdf(6 * MiB)
    content = pdf(len(first) + 700_000)
    async with deployment.process() as one, deployment.process() as two:
        begun = await one.files.begin(
            deployment.consultation, deployment.kiosk, "b.pdf", len(content)
        )
        await send(one.files, begun, 0, content[:MiB])
        stale = Paused(first[MiB : 6 * MiB], 2 * MiB + 7)
        stalled = await stalled_part(one.files, begun, MiB, stale)
        again = one if where == "same process" else two
        assert await send(again.files, begun, MiB, content[MiB : 6 * MiB]) == 6 * MiB
        stale.go.set()
        with pytest.raises(UploadError) as refused:
            await stalled
        assert refused.value.code == "wrong_offset"
        layout = Layout.load(str((await deployment.row(begun.id)).segments))
        assert layout.writer == ""
        assert layout.moves == (0 if where == "same process" else 1)
        await send(two.files, begun, 6 * MiB, content[6 * MiB :])
        record = await two.files.finish(
            await two.files.upload(begun.id), deployment.kiosk, "127.0.0.1"
        )
        assert record.digest == hashlib.sha256(content).hexdigest()
        assert await read_document(two.files, record, deployment.data_dir / "tmp") == content
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()
    if deployment.kind == "s3":
        assert not deployment.s3().list_multipart_uploads(Bucket=deployment.bucket).get("Uploads")


async def test_a_part_that_just_took_the_lease_is_stopped_not_written_over(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease names a part of this process a moment before that part starts
    writing: a part sent again at that moment must stop it, not take the lease in
    place beside it (the first part, going on, would write over what the second
    recorded)."""
    content = pdf(3 * MiB)
    first = pdf(2 * MiB)
    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "l.pdf", len(content))
        await send(files, begun, 0, content[:MiB])
        removing = files.uploads._delete_parts
        paused, go = asyncio.Event(), asyncio.Event()

        async def after_the_lease(names: list[str]) -> None:
            # The first part's lease is recorded: it waits here, before it writes.
            if not paused.is_set():
                paused.set()
                await go.wait()
            await removing(names)

        monkeypatch.setattr(files.uploads, "_delete_parts", after_the_lease)
        current = await files.upload(begun.id)
        stale = asyncio.create_task(
            files.append(current, MiB, whole(first), hashlib.sha256(first).digest())
        )
        async with asyncio.timeout(10):
            await paused.wait()
        again = asyncio.create_task(send(files, begun, MiB, content[MiB:]))
        await asyncio.sleep(0.2)
        go.set()
        assert await again == len(content)
        with pytest.raises(UploadError) as refused:
            await stale
        assert refused.value.code == "wrong_offset"
        record = await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        assert record.digest == hashlib.sha256(content).hexdigest()
        assert await read_document(files, record, deployment.data_dir / "tmp") == content


async def test_a_writer_that_died_holding_the_lease_is_taken_over(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed mid-part never lets go of its lease: the next part, through
    another process or the restarted one, takes the upload over where it stood."""
    content = pdf(3 * MiB + 5)
    async with deployment.process() as survivor:
        async with deployment.process() as doomed:
            begun = await doomed.files.begin(
                deployment.consultation, deployment.kiosk, "c.pdf", len(content)
            )
            await send(doomed.files, begun, 0, content[:MiB])

            async def killed(*_args: object, **_kwargs: object) -> None:
                pass

            # Killed: nothing it does after the lease reaches the database.
            monkeypatch.setattr(doomed.files.uploads, "_let_go", killed)
            body = Paused(content[MiB : 2 * MiB], 1000)
            stalled = await stalled_part(doomed.files, begun, MiB, body)
            stalled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stalled
        held = Layout.load(str((await deployment.row(begun.id)).segments))
        assert held.writer != ""
        assert await send(survivor.files, begun, MiB, content[MiB:]) == len(content)
        record = await survivor.files.finish(
            await survivor.files.upload(begun.id), deployment.kiosk, "127.0.0.1"
        )
        assert await read_document(survivor.files, record, deployment.data_dir / "tmp") == content
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()


async def test_an_upload_moved_too_often_waits_for_its_writer(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each takeover from another process may copy what was received: a client
    sending parts at once through different nodes gets 409 after MAX_MOVES, not a
    server copying without end."""
    content = pdf(2 * MiB)
    async with deployment.process() as one, deployment.process() as two:
        begun = await one.files.begin(
            deployment.consultation, deployment.kiosk, "d.pdf", len(content)
        )
        await send(one.files, begun, 0, content[:MiB])
        layout = Layout.load(str((await deployment.row(begun.id)).segments))
        held = Layout(layout.assembly, writer="cccccccccc0123456789", moves=MAX_MOVES).dump()
        await deployment.storage.db.write(
            lambda conn: conn.execute(
                update(uploads).where(uploads.c.id == begun.id).values(segments=held)
            )
        )
        with pytest.raises(UploadError) as refused:
            await send(two.files, begun, MiB, content[MiB:])
        assert refused.value.code == "wrong_offset" and refused.value.offset == MiB


# ---- failures ----------------------------------------------------------------------------


async def test_a_part_that_fails_frees_the_lease_and_the_next_goes_on_in_place(
    deployment: Deployment,
) -> None:
    content = pdf(2 * MiB + 300)
    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "e.pdf", len(content))
        await send(files, begun, 0, content[:MiB])
        before = Layout.load(str((await deployment.row(begun.id)).segments))

        async def cut_off() -> AsyncIterator[bytes]:
            yield content[MiB : MiB + 5000]
            raise ConnectionResetError("the client went away")

        failures: list[Callable[[], Any]] = [
            # A wrong checksum.
            lambda: files.append(begun, MiB, whole(content[MiB:]), b"\0" * 32),
            # A connection cut mid-part.
            lambda: files.append(begun, MiB, cut_off(), b"\0" * 32),
            # More than declared, whatever Content-Length said.
            lambda: files.append(begun, MiB, whole(content[MiB:] + b"x"), b"\0" * 32, 10),
        ]
        for failing in failures:
            begun = await files.upload(begun.id)
            with pytest.raises((UploadError, ConnectionResetError)):
                await failing()
            after = Layout.load(str((await deployment.row(begun.id)).segments))
            assert after.writer == "" and after.moves == 0
            if deployment.kind == "local":
                assert after.assembly.file == before.assembly.file
        await send(files, begun, MiB, content[MiB:])
        record = await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        assert await read_document(files, record, deployment.data_dir / "tmp") == content
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()


async def test_a_full_disk_refuses_the_part_for_now_and_the_upload_resumes(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = pdf(MiB + 70_000)
    region = storage.blobs._LocalRegion if deployment.kind == "local" else storage.blobs._S3Region
    write, write_all = region.write, region.write_all
    full = {"writes": 1}

    def room() -> None:
        if full["writes"] == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        full["writes"] -= 1

    def filling(self: Any, data: bytes) -> None:
        room()
        write(self, data)

    def filling_all(self: Any, pieces: Any) -> None:
        room()
        write_all(self, pieces)

    monkeypatch.setattr(region, "write", filling)
    monkeypatch.setattr(region, "write_all", filling_all)
    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "f.pdf", len(content))
        with pytest.raises(UploadError) as refused:
            await send(files, begun, 0, content[:MiB])
        # 503 with Retry-After (web.errors): the page tries again.
        assert refused.value.code == "uploads_busy"
        full["writes"] = 10**6
        await send(files, begun, 0, content[:MiB])
        await send(files, begun, MiB, content[MiB:])
        full["writes"] = 0
        with pytest.raises(UploadError) as refused:
            await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        assert refused.value.code == "uploads_busy"
        full["writes"] = 10**6
        record = await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        assert await read_document(files, record, deployment.data_dir / "tmp") == content
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()


async def test_a_finish_whose_record_failed_can_be_finished_again(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The document is sealed, then its record fails: locally the document goes
    back to being the upload's file, finished again at the next try; an object
    store cannot take back a completed upload, so the upload is gone (404: the
    page sends the file again)."""
    content = pdf(400_000)

    def failing(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the database went away")

    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "g.pdf", len(content))
        await send(files, begun, 0, content)
        monkeypatch.setattr(storage.uploads, "append_audit", failing)
        with pytest.raises(RuntimeError):
            await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        monkeypatch.undo()
        assert await deployment.blob_store_listing(SUFFIX) == set()
        if deployment.kind == "local":
            record = await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
            assert await read_document(files, record, deployment.data_dir / "tmp") == content
        else:
            assert await deployment.row(begun.id) is None
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()


async def test_a_refused_type_leaves_no_document_and_no_upload(deployment: Deployment) -> None:
    content = b"MZ" + os.urandom(200_000)
    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "h.pdf", len(content))
        await send(files, begun, 0, content)
        with pytest.raises(UploadError) as refused:
            await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        assert refused.value.code in ("type_mismatch", "unsupported_type")
        assert await deployment.row(begun.id) is None
    assert await deployment.blob_store_listing(SUFFIX) == set()
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()


async def test_a_discard_while_a_part_arrives_leaves_nothing(deployment: Deployment) -> None:
    content = pdf(7 * MiB)
    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "i.pdf", len(content))
        await send(files, begun, 0, content[:MiB])
        body = Paused(content[MiB:], 5 * MiB)
        stalled = await stalled_part(files, begun, MiB, body)
        await files.discard(await files.upload(begun.id))
        body.go.set()
        with pytest.raises(UploadError) as refused:
            await stalled
        assert refused.value.code == "gone"
    assert await deployment.blob_store_listing(SUFFIX) == set()
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()
    if deployment.kind == "s3":
        assert not deployment.s3().list_multipart_uploads(Bucket=deployment.bucket).get("Uploads")


# ---- restarts, and rows from before --------------------------------------------------------


async def test_a_restarted_process_resumes_the_upload_and_reads_it_back_to_finish(
    deployment: Deployment,
) -> None:
    content = pdf(6 * MiB + 999)
    async with deployment.process() as before:
        begun = await before.files.begin(
            deployment.consultation, deployment.kiosk, "j.pdf", len(content)
        )
        await send(before.files, begun, 0, content[: 3 * MiB])
    async with deployment.process() as after:
        await send(after.files, begun, 3 * MiB, content[3 * MiB :])
        record = await after.files.finish(
            await after.files.upload(begun.id), deployment.kiosk, "127.0.0.1"
        )
        # Not every byte went through this process: the digest was read back.
        assert record.digest == hashlib.sha256(content).hexdigest()
        assert await read_document(after.files, record, deployment.data_dir / "tmp") == content


async def make_legacy(deployment: Deployment, node: Process, upload: Upload, data: bytes) -> None:
    """The upload's row and blobs as the code before the layout left them after
    parts ``data`` (a segment per 100 kB): sealed chunks only, no header, each
    segment a blob of its own, their names in ``segments``."""
    row = await deployment.row(upload.id)
    uploads_ = node.files.uploads
    encryptor, key = await uploads_._encryptor_of(row)
    names = []
    for at in range(0, len(data), 100_000):
        sealed = encryptor.update(data[at : at + 100_000])
        if not sealed:
            continue
        name = f"{upload.id}-{os.urandom(4).hex()}"
        staged = deployment.data_dir / "tmp" / name
        staged.write_bytes(sealed)
        await node.blobs.put(name, staged, suffix=PART_SUFFIX)
        names.append(name)
    carry = storage.uploads._seal_carry(
        encryptor.header.suite, key, upload.id, encryptor.size, encryptor.pending
    )
    await deployment.storage.db.write(
        lambda conn: conn.execute(
            update(uploads)
            .where(uploads.c.id == upload.id)
            .values(
                received=encryptor.size,
                next_chunk=encryptor.index,
                carry=carry,
                segments=" ".join(names),
            )
        )
    )


@pytest.mark.parametrize("then", ["a part", "the finish"])
async def test_an_upload_begun_before_the_layout_is_finished_from_its_segments(
    deployment: Deployment, then: str
) -> None:
    content = pdf(450_000)
    async with deployment.process() as node:
        files = node.files
        begun = await files.begin(deployment.consultation, deployment.kiosk, "k.pdf", len(content))
        done = 300_000 if then == "a part" else len(content)
        await make_legacy(deployment, node, begun, content[:done])
        legacy = str((await deployment.row(begun.id)).segments).split()
        assert len(legacy) >= 2 and await deployment.part_blobs() == set(legacy)
        if done < len(content):
            await send(files, begun, done, content[done:])
        record = await files.finish(await files.upload(begun.id), deployment.kiosk, "127.0.0.1")
        assert record.digest == hashlib.sha256(content).hexdigest()
        assert await read_document(files, record, deployment.data_dir / "tmp") == content
    assert await deployment.part_blobs() == set()
    assert await deployment.intents() == set()


async def test_blobs_refuse_a_region_whose_recorded_bytes_are_lost(tmp_path: Path) -> None:
    """A file shorter than its upload's record (the disk lost what was never
    flushed) is never extended with zeros: the upload is gone."""
    blobs = LocalBlobStore(tmp_path)
    await blobs.start()

    async def nothing(_name: str) -> None:
        pass

    (tmp_path / f"doc-x{PART_SUFFIX}").write_bytes(b"short")
    region = await blobs.open_region("doc", Assembly(file="doc-x"), 1000, "t", tmp_path, nothing)
    with pytest.raises(BlobError):
        region.write(b"more")
    await region.abandon()
    assert (tmp_path / f"doc-x{PART_SUFFIX}").read_bytes() == b"short"
    # Nor is a lost file made anew past its start.
    region = await blobs.open_region("doc", Assembly(file="doc-y"), 1000, "t", tmp_path, nothing)
    with pytest.raises(BlobError):
        region.write(b"more")
    await region.abandon()
    assert not (tmp_path / f"doc-y{PART_SUFFIX}").exists()
