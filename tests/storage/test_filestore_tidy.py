"""What a (re)starting server, or ``files tidy``, removes: leftovers of its own
machine's interrupted uploads, and blobs its own deployment's database says it
put and never recorded, once they are older than the grace period. Never a blob
of another deployment, nor one a restored older database does not know."""

import asyncio
import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

import storage.blobs
import storage.uploads
from storage.blobs import OWNER_SUFFIX, PART_SUFFIX, SUFFIX, BlobError, LocalBlobStore
from storage.demo import seed_demo
from storage.errors import ForeignBlobStore
from storage.filestore import Download, FileStore, StoredFile, Upload
from storage.intents import BlobKind
from storage.keyring import DirectoryKeks, Keyring
from storage.records import Account, AuditEvent
from storage.schema import blob_intents
from storage.sessions import SessionPolicy
from storage.store import Storage
from storage.tidying import GRACE, Decision, Removal, Seen, Verdict, Why, decide, tidy
from tests.conftest import ServerFactory

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
YEAR = 365 * DAY
NOW = 1_900_000_000.0


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class FlakyBlobStore(LocalBlobStore):
    """A directory whose deletions can be made to fail (an object store that went
    away, or a process killed before it deleted)."""

    failing_deletes = False

    async def delete(self, name: str, suffix: str = SUFFIX) -> None:
        if self.failing_deletes:
            raise BlobError("deletions fail now")
        await super().delete(name, suffix)


@dataclass
class Node:
    storage: Storage
    files: FileStore
    blobs: FlakyBlobStore
    kiosk: Account
    consultation: str


@contextlib.asynccontextmanager
async def node(data_dir: Path, store: Path, *, tidy: bool = True) -> AsyncIterator[Node]:
    """A deployment's storage on ``data_dir`` (its own SQLite database) over the blob
    store directory ``store``, with demo accounts and an open consultation."""
    storage = await Storage.open(None, data_dir, SessionPolicy(3600, 7200))
    try:
        await seed_demo(storage)
        kiosk = await storage.accounts.get_by_username("kiosk01")
        open_ones = [
            c for c in await storage.consultations.open_consultations() if c.kiosk_id == kiosk.id
        ]
        if open_ones:
            consultation = open_ones[0].id
        else:
            consultation = (
                await storage.consultations.create(
                    kiosk.id, None, "market", None, audit=AuditEvent("kiosk01", "test", "", {})
                )
            ).id
        keyring = await Keyring.open(DirectoryKeks(data_dir / "keys"))
        blobs = FlakyBlobStore(store)
        files = await FileStore.open(
            data_dir, keyring, storage.db, max_size=1 << 24, tidy=tidy, blobs=blobs
        )
        try:
            yield Node(storage, files, blobs, kiosk, consultation)
        finally:
            await files.close()
    finally:
        await storage.close()


async def upload(at: Node, content: bytes, name: str = "a.pdf") -> StoredFile:
    import hashlib

    async def body() -> AsyncIterator[bytes]:
        yield content

    begun = await at.files.begin(at.consultation, at.kiosk, name, len(content))
    await at.files.append(begun, 0, body(), hashlib.sha256(content).digest())
    return await at.files.finish(await at.files.upload(begun.id), at.kiosk, "127.0.0.1")


def pdf(size: int = 100_000) -> bytes:
    return b"%PDF-1.7\n" + os.urandom(size)


def age_everything(store: Path, seconds: float) -> None:
    old = time.time() - seconds
    for path in store.iterdir():
        os.utime(path, (old, old))


def blobs_in(store: Path, suffix: str = SUFFIX) -> set[str]:
    return {p.name[: -len(suffix)] for p in store.glob(f"*{suffix}")}


@pytest.mark.parametrize(
    ("seen", "decision"),
    [
        # A record needs it: kept, however old.
        (Seen("f", BlobKind.DOCUMENT, NOW - YEAR, recorded=True), Decision(Verdict.KEEP)),
        (
            Seen("f", BlobKind.DOCUMENT, NOW - YEAR, recorded=True, intended_at=NOW - YEAR),
            Decision(Verdict.KEEP),
        ),
        (Seen("p", BlobKind.PART, NOW - YEAR, recorded=True), Decision(Verdict.KEEP)),
        # Nobody here recorded it: never removed, whatever its age.
        (Seen("f", BlobKind.DOCUMENT, NOW - YEAR, recorded=False), Decision(Verdict.UNKNOWN)),
        (Seen("p", BlobKind.PART, NOW - YEAR, recorded=False), Decision(Verdict.UNKNOWN)),
        # Put (or given up) by this deployment and not recorded: after the grace period.
        (
            Seen("f", BlobKind.DOCUMENT, NOW, recorded=False, intended_at=NOW - GRACE + 1),
            Decision(Verdict.PENDING, age=GRACE - 1),
        ),
        (
            Seen("f", BlobKind.DOCUMENT, NOW, recorded=False, intended_at=NOW - GRACE - 1),
            Decision(Verdict.REMOVE, Why.UNRECORDED, GRACE + 1),
        ),
        (
            Seen("p", BlobKind.PART, NOW, recorded=False, intended_at=NOW - GRACE - 1),
            Decision(Verdict.REMOVE, Why.UNRECORDED, GRACE + 1),
        ),
        # The blob's own age says nothing: only the intent's.
        (
            Seen("f", BlobKind.DOCUMENT, NOW - YEAR, recorded=False, intended_at=NOW - 60),
            Decision(Verdict.PENDING, age=60),
        ),
        # Its key is destroyed: noise, removed at once.
        (
            Seen("f", BlobKind.DOCUMENT, NOW - 10, recorded=False, shredded=True),
            Decision(Verdict.REMOVE, Why.SHREDDED, 10),
        ),
    ],
)
def test_which_blobs_tidying_removes(seen: Seen, decision: Decision) -> None:
    assert decide(seen, NOW) == decision


async def test_a_restart_keeps_the_uploads_of_processes_still_running(tmp_path: Path) -> None:
    store = tmp_path / "files"
    async with node(tmp_path, store, tidy=False):
        pass
    parts = tmp_path / "tmp"
    running = parts / f"{os.getpid()}-aaaa.part"
    crashed = parts / f"{dead_pid()}-bbbb.part"
    forgotten = parts / f"{os.getpid()}-cccc.part"
    for path in (running, crashed, forgotten):
        path.write_bytes(b"x")
    # Untouched for longer than an upload may idle: nobody is writing it.
    old = time.time() - 3600
    os.utime(forgotten, (old, old))
    finishing = store / "dddd.wlf"
    finishing.write_bytes(b"x")
    # Old, and recorded nowhere: not this deployment's to judge.
    stranger = store / "eeee.wlf"
    stranger.write_bytes(b"x")
    os.utime(stranger, (old, old))

    async with node(tmp_path, store):
        pass

    assert running.exists(), "another process's upload in progress was removed"
    assert not crashed.exists() and not forgotten.exists()
    assert finishing.exists(), "a file another process is committing was removed"
    assert stranger.exists(), "a blob nobody recorded was removed"


async def test_a_node_of_another_deployment_refuses_the_store_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    """A staging node, or one given the wrong --database-url, on the live deployment's
    store: it used to delete every document older than 60 s at its start."""
    store = tmp_path / "shared-store"
    async with node(tmp_path / "live", store) as live:
        documents = {(await upload(live, pdf())).id for _ in range(3)}
    age_everything(store, YEAR)
    assert (store / f"deployment{OWNER_SUFFIX}").exists()

    with pytest.raises(ForeignBlobStore) as refused:
        async with node(tmp_path / "staging", store):
            pass
    message = str(refused.value)
    assert "belongs to another deployment" in message and "--blob-url" in message
    assert blobs_in(store) == documents

    # Even without the marker, its tidying would leave them: its database never
    # recorded them.
    async with node(tmp_path / "staging", tmp_path / "its-own-store") as staging:
        report = await tidy(staging.storage.db, LocalBlobStore(store), now=time.time() + YEAR)
    assert report.removed == [] and report.unknown == 3
    assert blobs_in(store) == documents


async def test_a_restored_older_dump_keeps_the_documents_recorded_after_it(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    live_dir, restored_dir = tmp_path / "live", tmp_path / "restored"
    async with node(live_dir, store) as live:
        older = await upload(live, pdf())
        restored_dir.mkdir()
        # A consistent copy of the database as it was then (the dump).
        with (
            contextlib.closing(sqlite3.connect(live_dir / "windowlink.db")) as source,
            contextlib.closing(sqlite3.connect(restored_dir / "windowlink.db")) as copy,
        ):
            source.backup(copy)
        newer = await upload(live, pdf())
    (restored_dir / "keys").symlink_to(live_dir / "keys")
    age_everything(store, YEAR)

    # The same deployment (its id came with the dump): the store is accepted.
    async with node(restored_dir, store) as restored:
        report = await restored.files.tidy(now=time.time() + YEAR)
    assert report.removed == [] and report.unknown == 1
    assert blobs_in(store) == {older.id, newer.id}
    async with node(live_dir, store) as live:
        back = await live.files.plaintext(
            newer, 0, newer.size, Download(live.kiosk, "127.0.0.1", "")
        )
        try:
            assert b"".join([batch async for batch in back]).startswith(b"%PDF-1.7")
        finally:
            back.close()


async def intents_of(at: Node) -> set[tuple[str, str]]:
    rows = await at.storage.db.read(
        lambda conn: conn.execute(select(blob_intents.c.name, blob_intents.c.kind)).all()
    )
    return {(r.name, r.kind) for r in rows}


async def test_a_crash_between_put_and_commit_is_tidied_after_the_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    async with node(tmp_path, store) as at:
        kept = await upload(at, pdf())

        def crash(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("the process died here")

        async def killed(*_args: object, **_kwargs: object) -> bool:
            raise BlobError("the process died before it took the document back")

        # The document is sealed, its record never committed, and the clean-up that
        # would take it back fails too (as when the process is killed at that point).
        at.blobs.failing_deletes = True
        monkeypatch.setattr(storage.uploads, "append_audit", crash)
        monkeypatch.setattr(storage.blobs._LocalRegion, "unseal", killed)
        with pytest.raises(RuntimeError):
            await upload(at, pdf(), "lost.pdf")
        monkeypatch.undo()
        at.blobs.failing_deletes = False
        (lost,) = blobs_in(store) - {kept.id}
        assert (lost, "document") in await intents_of(at)
        put_at = time.time()

        # Not before the grace period: it could be a commit still on its way.
        early = await at.files.tidy(now=put_at + GRACE - 60)
        assert early.removed == [] and early.pending == 1

        # A dry run says what would go, and removes nothing.
        dry = await at.files.tidy(now=put_at + GRACE + 60, dry_run=True)
        assert [(r.name, r.kind, r.why) for r in dry.removed] == [
            (lost, BlobKind.DOCUMENT, Why.UNRECORDED)
        ]
        assert lost in blobs_in(store) and (lost, "document") in await intents_of(at)

        seen: list[Removal] = []
        with caplog.at_level(logging.WARNING, logger="storage.tidying"):
            done = await at.files.tidy(now=put_at + GRACE + 60, on_removed=seen.append)
        assert [r.name for r in done.removed] == [r.name for r in seen] == [lost]
        assert blobs_in(store) == {kept.id}
        assert await intents_of(at) == set()
        (line,) = [
            r.getMessage()
            for r in caplog.records
            if r.name == "storage.tidying" and lost in r.getMessage()
        ]
        assert "removed document" in line and "unrecorded" in line


async def test_parts_of_a_discarded_upload_left_behind_are_tidied_after_the_grace_period(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    async with node(tmp_path, store) as at:
        import hashlib

        content = pdf(200_000)

        async def body() -> AsyncIterator[bytes]:
            yield content[:100_000]

        begun: Upload = await at.files.begin(at.consultation, at.kiosk, "a.pdf", len(content))
        await at.files.append(begun, 0, body(), hashlib.sha256(content[:100_000]).digest())
        (part,) = blobs_in(store, PART_SUFFIX)
        # Recorded by its upload: no intent.
        assert await intents_of(at) == set()
        at.blobs.failing_deletes = True
        await at.files.discard(begun)
        at.blobs.failing_deletes = False
        assert blobs_in(store, PART_SUFFIX) == {part}
        assert await intents_of(at) == {(part, "part")}
        assert (await at.files.tidy(now=time.time() + 60)).removed == []
        done = await at.files.tidy(now=time.time() + GRACE + 60)
        assert [(r.name, r.kind) for r in done.removed] == [(part, BlobKind.PART)]
        assert blobs_in(store, PART_SUFFIX) == set() and await intents_of(at) == set()


async def test_a_finished_upload_leaves_no_intent_and_no_part(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with node(tmp_path, store) as at:
        record = await upload(at, pdf(300_000))
        assert await intents_of(at) == set()
        assert blobs_in(store) == {record.id} and blobs_in(store, PART_SUFFIX) == set()


def server_command(data_dir: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINDOWLINK_")}
    return subprocess.run(
        [
            sys.executable,
            "server.py",
            "--data-dir",
            str(data_dir),
            "--blob-url",
            f"file://{store}",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_files_tidy_lists_in_a_dry_run_and_then_removes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    data_dir = tmp_path / "data"
    async with node(data_dir, store) as at:
        kept = await upload(at, pdf())
        # An intent two days old whose commit never came.
        (store / f"{'f' * 16}{SUFFIX}").write_bytes(b"sealed bytes")
        await at.storage.db.write(
            lambda conn: conn.execute(
                blob_intents.insert().values(
                    name="f" * 16, kind="document", created_at=time.time() - 2 * DAY
                )
            )
        )
        (store / f"{'e' * 16}{SUFFIX}").write_bytes(b"nobody's")
    dry = await asyncio.to_thread(server_command, data_dir, store, "files", "tidy", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would remove document {'f' * 16}" in dry.stdout
    assert "1 unknown" in dry.stdout
    assert blobs_in(store) == {kept.id, "f" * 16, "e" * 16}
    done = await asyncio.to_thread(server_command, data_dir, store, "files", "tidy")
    assert done.returncode == 0, done.stderr
    assert f"removed document {'f' * 16}" in done.stdout
    assert blobs_in(store) == {kept.id, "e" * 16}


async def test_a_server_of_another_deployment_refuses_to_start_on_the_store(
    tmp_path: Path,
) -> None:
    """A real server.py on another database (its own data directory) and the same
    store: it exits saying what is wrong and what to do; the documents stay."""
    store = tmp_path / "store"
    async with node(tmp_path / "live", store) as live:
        document = await upload(live, pdf())
    age_everything(store, YEAR)
    started = await asyncio.to_thread(
        server_command,
        tmp_path / "other",
        store,
        "--port",
        "0",
        "--media-workers",
        "0",
    )
    assert started.returncode == 2, started.stderr
    assert "belongs to another deployment" in started.stderr
    assert "--blob-url" in started.stderr and "Traceback" not in started.stderr
    assert blobs_in(store) == {document.id}
    tidied = await asyncio.to_thread(server_command, tmp_path / "other", store, "files", "tidy")
    assert tidied.returncode == 2 and "belongs to another deployment" in tidied.stderr
    assert blobs_in(store) == {document.id}


async def test_a_removal_at_start_is_counted_in_the_metrics(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    data_dir = tmp_path / "served"
    async with node(data_dir, data_dir / "files") as at:
        (data_dir / "files" / f"{'a' * 16}{SUFFIX}").write_bytes(b"sealed bytes")
        await at.storage.db.write(
            lambda conn: conn.execute(
                blob_intents.insert().values(
                    name="a" * 16, kind="document", created_at=time.time() - GRACE - 60
                )
            )
        )
    server = await start_server(data_dir=data_dir)
    assert blobs_in(data_dir / "files") == set()
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as response:
        text = await response.text()
    assert 'windowlink_blobs_removed_total{kind="document",why="unrecorded"} 1.0' in text
