"""Backup and restore as an operator runs them: a real server process that keeps
writing while the backup is taken, a restore into a new, empty installation, the
documents read back byte-exact and the audit chain intact; and the refusals."""

import asyncio
import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from harness.ports import free_port
from signaling.client import Documents, ExpertClient, KioskClient, UploadTicket
from signaling.messages import OfferView
from storage.audit import GENESIS_HASH, entry_hash
from storage.audit_keys import AuditKey
from storage.backup import (
    FileEntry,
    Installation,
    Manifest,
    backup_path_problems,
    create_backup,
    restore_backup,
    restore_problems,
)
from storage.database import database_url
from storage.errors import BackupError
from tests.conftest import (
    DEMO_PASSWORD,
    ClientFactory,
    RunningServer,
    active_call,
    create_database,
    drop_database,
    login_session,
    upload_file,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# ---- the decisions, as tables ---------------------------------------------------------

DATA = Path("/srv/wl/data")
KEYS = Path("/srv/wl/data/keys")


@pytest.mark.parametrize(
    ("dest", "key_dest", "problem"),
    [
        ("/backup/b1", "/vault/k1", None),
        ("/backup/b1", None, None),
        ("/backup/b1", "/backup/b1", "must not be inside the backup"),
        ("/backup/b1", "/backup/b1/keys", "must not be inside the backup"),
        ("/vault/k1/b1", "/vault/k1", "must not be inside the key backup"),
        ("/srv/wl/data/b1", "/vault/k1", "must not be inside the data directory"),
        ("/srv/wl/data", "/vault/k1", "must not be inside the data directory"),
        ("/backup/b1", "/srv/wl/data/keys/old", "must not be inside the key directory"),
        ("/srv/wl/b1", "/srv/wl/k1", None),  # siblings of the data directory are fine
        ("/backup/b1", "/backup/b1-keys", None),  # a name prefix is not "inside"
    ],
)
def test_where_a_backup_may_go(dest: str, key_dest: str | None, problem: str | None) -> None:
    problems = backup_path_problems(Path(dest), Path(key_dest) if key_dest else None, DATA, KEYS)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


MANIFEST = Manifest(
    backup_id="b",
    created_at=0.0,
    schema_version=1,
    database_kind="sqlite",
    database_file="database.sqlite3",
    database_size=10,
    database_sha256="d" * 64,
    files=(FileEntry("f1", 100, "1" * 64), FileEntry("f2", 200, "2" * 64)),
    gone=(),
    keks=("kek-a", "kek-b"),
    keys_backed_up=True,
)
DB_OK = (10, "d" * 64)
FILES_OK: dict[str, tuple[int, str] | None] = {"f1": (100, "1" * 64), "f2": (200, "2" * 64)}


@pytest.mark.parametrize(
    ("database", "documents", "keys", "expected"),
    [
        (DB_OK, FILES_OK, {"kek-a", "kek-b"}, []),
        (DB_OK, FILES_OK, {"kek-a", "kek-b", "kek-old"}, []),
        (None, FILES_OK, {"kek-a", "kek-b"}, ["database copy database.sqlite3 is missing"]),
        ((10, "e" * 64), FILES_OK, {"kek-a", "kek-b"}, ["database.sqlite3 is damaged"]),
        (DB_OK, {**FILES_OK, "f2": None}, {"kek-a", "kek-b"}, ["document f2 is missing"]),
        (DB_OK, {"f1": FILES_OK["f1"]}, {"kek-a", "kek-b"}, ["document f2 is missing"]),
        (DB_OK, {**FILES_OK, "f1": (99, "1" * 64)}, {"kek-a", "kek-b"}, ["f1 is damaged"]),
        (DB_OK, {**FILES_OK, "f1": (100, "0" * 64)}, {"kek-a", "kek-b"}, ["f1 is damaged"]),
        (DB_OK, FILES_OK, {"kek-a"}, ["key-encryption key kek-b is missing"]),
        (
            DB_OK,
            FILES_OK,
            set(),
            ["key-encryption key kek-a is missing", "key-encryption key kek-b is missing"],
        ),
        (DB_OK, FILES_OK, None, ["kek-a, kek-b: give their backup with --key-backup"]),
    ],
)
def test_what_a_restore_finds_missing(
    database: tuple[int, str] | None,
    documents: dict[str, tuple[int, str] | None],
    keys: set[str] | None,
    expected: list[str],
) -> None:
    problems = restore_problems(MANIFEST, database, documents, keys)
    assert len(problems) == len(expected), problems
    for found, wanted in zip(problems, expected, strict=True):
        assert wanted in found


def test_a_backup_of_no_documents_needs_no_keys() -> None:
    empty = Manifest(**{**MANIFEST.__dict__, "files": (), "keks": ()})
    assert restore_problems(empty, DB_OK, {}, None) == []


def test_the_manifest_round_trips_and_names_only_files_inside_the_backup() -> None:
    assert Manifest.from_json(MANIFEST.to_json()) == MANIFEST
    escaping = json.loads(MANIFEST.to_json())
    escaping["files"][0]["id"] = "../../etc/passwd"
    with pytest.raises(BackupError, match="damaged or not a windowlink manifest"):
        Manifest.from_json(json.dumps(escaping))


# ---- helpers --------------------------------------------------------------------------


def pdf(size: int) -> bytes:
    return b"%PDF-1.7\n" + os.urandom(size) + b"\n%%EOF\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_owner_only(root: Path) -> None:
    assert mode(root) == 0o700, root
    for path in root.rglob("*"):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


async def run_cli(*args: str) -> tuple[int, str, str]:
    """``python server.py ARGS``: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        "--log-level",
        "warning",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 240)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def storage_flags(data_dir: Path, url: str | None) -> list[str]:
    return ["--data-dir", str(data_dir), *(["--database-url", url] if url else [])]


@dataclasses.dataclass
class Served:
    base: str
    process: asyncio.subprocess.Process


ServerStarter = Callable[[Path, str | None], Awaitable[Served]]


@pytest.fixture
async def server_processes(tmp_path: Path) -> AsyncIterator[ServerStarter]:
    """Start ``python server.py`` processes; every one is stopped (or killed) after."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(data_dir: Path, url: str | None) -> Served:
        port = free_port()
        log_path = tmp_path / f"server{len(processes)}.log"
        log = log_path.open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "server.py",
            "--demo",
            "--port",
            str(port),
            "--media-workers",
            "0",
            "--media-address",
            "127.0.0.1",
            "--log-level",
            "warning",
            *storage_flags(data_dir, url),
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        log.close()
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if process.returncode is not None:
                    break
                try:
                    async with http.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            return Served(base, process)
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        raise AssertionError(f"server did not start: {log_path.read_text()}")

    yield start
    for process in processes:
        await stop_process(process)


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


@pytest.fixture
async def databases() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Fresh PostgreSQL databases on demand, dropped after."""
    urls: list[str] = []

    async def create() -> str:
        urls.append(await create_database())
        return urls[-1]

    yield create
    for url in urls:
        await drop_database(url)


async def logged_in(base: str, username: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(
        f"{base}/api/v1/login", json={"username": username, "password": DEMO_PASSWORD}
    ) as response:
        assert response.status == 200, await response.text()
    return session


async def begin_upload(
    base: str, session: aiohttp.ClientSession, call_id: str, name: str, content: bytes
) -> UploadTicket:
    """Start an upload and send its first half."""
    documents = Documents(session, base)
    ticket = await documents.begin(call_id, name, len(content))
    await documents.send(ticket, content[: len(content) // 2])
    return ticket


async def finish_upload(
    base: str, session: aiohttp.ClientSession, ticket: UploadTicket, content: bytes
) -> str:
    """Send the second half and finish; the new file's id."""
    documents = Documents(session, base)
    half = len(content) // 2
    await documents.send(ticket, content[half:], offset=half)
    return (await documents.finish(ticket)).id


async def upload(
    base: str, session: aiohttp.ClientSession, call_id: str, name: str, content: bytes
) -> str:
    """Upload in two parts; the new file's id."""
    ticket = await begin_upload(base, session, call_id, name, content)
    return await finish_upload(base, session, ticket, content)


async def open_call(base: str) -> tuple[KioskClient, ExpertClient, str]:
    expert = ExpertClient(base)
    await expert.login("expert_market", DEMO_PASSWORD)
    await expert.connect()
    await expert.set_presence("available")
    kiosk = KioskClient(base)
    await kiosk.login("kiosk01", DEMO_PASSWORD)
    await kiosk.connect()
    view = await kiosk.request("market", case_number="BK-1")
    await expert.accept((await expert.next_event("offer", OfferView)).consultation_id)
    return kiosk, expert, view.consultation_id


# ---- the round trip against real processes --------------------------------------------


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_backup_while_serving_and_restore_into_a_new_installation(
    backend: str,
    tmp_path: Path,
    databases: Callable[[], Awaitable[str]],
    server_processes: ServerStarter,  # after ``databases``: stopped before they are dropped
) -> None:
    source_url = await databases() if backend == "postgres" else None
    target_url = await databases() if backend == "postgres" else None
    data, restored = tmp_path / "data", tmp_path / "restored"
    dest, key_dest = tmp_path / "backups" / "b1", tmp_path / "vault" / "k1"
    served = await server_processes(data, source_url)
    base = served.base
    kiosk, expert, call_id = await open_call(base)
    uploaded: dict[str, bytes] = {}
    kiosk_http = await logged_in(base, "kiosk01")
    try:
        first = pdf(300_000)
        first_id = await upload(base, kiosk_http, call_id, "first.pdf", first)
        uploaded[first_id] = first
        # An upload in progress for the whole backup: it is finished only after it.
        pending = pdf(120_000)
        pending_upload = await begin_upload(base, kiosk_http, call_id, "pending.pdf", pending)

        # The server keeps writing while the backup runs: uploads and logins.
        stop = asyncio.Event()
        rounds = 0

        async def keep_writing() -> None:
            nonlocal rounds
            while not stop.is_set():
                content = pdf(50_000 + rounds)
                uploaded[await upload(base, kiosk_http, call_id, f"r{rounds}.pdf", content)] = (
                    content
                )
                clerk = await logged_in(base, "clerk")
                await clerk.close()
                rounds += 1

        writer = asyncio.create_task(keep_writing())
        try:
            code, out, err = await run_cli(
                *storage_flags(data, source_url), "backup", str(dest), "--key-backup", str(key_dest)
            )
        finally:
            stop.set()
            await writer
        assert code == 0, err
        pending_id = await finish_upload(base, kiosk_http, pending_upload, pending)
        uploaded[pending_id] = pending
        assert "written to" in out and "WARNING" not in err
        assert rounds >= 1

        # The backup was audited in the live records.
        admin = await logged_in(base, "admin")
        async with admin, admin.get(f"{base}/api/v1/audit?action=backup.create") as response:
            [entry] = (await response.json())["entries"]
        assert entry["actor"] == "operator"
    finally:
        await kiosk_http.close()
        await kiosk.close()
        await expert.close()

    # What the backup holds: owner-only, keys apart, every listed document digested.
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["backup_id"] == entry["subject"]
    assert_owner_only(dest)
    assert_owner_only(key_dest)
    assert not list(dest.rglob("*.kek"))
    backed_up = {f["id"]: f for f in manifest["files"]}
    assert set(backed_up) <= set(uploaded)
    assert first_id in backed_up
    assert pending_id not in backed_up  # recorded after the database copy
    for file_id, listed_entry in backed_up.items():
        ciphertext = (dest / "files" / f"{file_id}.wlf").read_bytes()
        assert listed_entry["sha256"] == hashlib.sha256(ciphertext).hexdigest()
        assert ciphertext == (data / "files" / f"{file_id}.wlf").read_bytes()
    assert manifest["keks"] and all((key_dest / f"{k}.kek").is_file() for k in manifest["keks"])
    assert manifest["schema_version"] >= 4
    assert manifest["database"]["kind"] == ("sqlite" if backend == "sqlite" else "postgresql")

    # Restore into a new, empty installation, once the first server has stopped.
    await stop_process(served.process)
    code, out, err = await run_cli(
        *storage_flags(restored, target_url), "restore", str(dest), "--key-backup", str(key_dest)
    )
    assert code == 0, err
    assert "restored into" in out
    assert_owner_only(restored)

    base = (await server_processes(restored, target_url)).base
    clerk = await logged_in(base, "clerk")
    async with clerk:
        async with clerk.get(f"{base}/api/v1/consultations/{call_id}/files") as response:
            listed = [f["id"] for f in (await response.json())["files"]]
        assert sorted(listed) == sorted(backed_up)
        for file_id in listed:
            async with clerk.get(f"{base}/api/v1/files/{file_id}") as response:
                assert response.status == 200
                assert await response.read() == uploaded[file_id]
    admin = await logged_in(base, "admin")
    async with admin, admin.get(f"{base}/api/v1/audit?action=backup") as response:
        actions = [e["action"] for e in (await response.json())["entries"]]
    assert actions == ["backup.restore"]  # the backup's own entry came after its snapshot
    code, out, err = await run_cli(*storage_flags(restored, target_url), "audit", "verify")
    assert code == 0, err
    assert "intact" in out


# ---- refusals -------------------------------------------------------------------------


def installation_of(server: RunningServer) -> Installation:
    data_dir = server.settings.data_dir
    return Installation(data_dir, database_url(None, data_dir), data_dir / "keys")


async def served_document(
    sqlite_server: RunningServer, connect: ClientFactory
) -> tuple[Installation, str]:
    """An installation (served in this process) holding one uploaded document."""
    _, _, call_id = await active_call(sqlite_server, connect)
    session = await login_session(sqlite_server, "kiosk01")
    async with session:
        status, record = await upload_file(sqlite_server, session, call_id, "doc.pdf", pdf(20_000))
    assert status == 201, record
    return installation_of(sqlite_server), str(record["id"])


async def test_restore_is_refused_into_a_directory_that_is_not_empty(
    sqlite_server: RunningServer, connect: ClientFactory, tmp_path: Path
) -> None:
    installation, _ = await served_document(sqlite_server, connect)
    await create_backup(installation, tmp_path / "b", tmp_path / "k")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("someone's data")
    code, _, err = await run_cli(
        "--data-dir",
        str(occupied),
        "restore",
        str(tmp_path / "b"),
        "--key-backup",
        str(tmp_path / "k"),
    )
    assert code != 0
    assert "restore refused" in err and f"{occupied} is not empty" in err
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]


async def test_backup_is_refused_with_the_keys_inside_it_or_into_a_used_directory(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    data = ["--data-dir", str(sqlite_server.settings.data_dir)]
    dest = tmp_path / "b"
    code, _, err = await run_cli(*data, "backup", str(dest), "--key-backup", str(dest / "keys"))
    assert code != 0
    assert "backup refused" in err and "must not be inside the backup" in err
    assert not dest.exists()

    code, _, err = await run_cli(
        *data, "backup", str(tmp_path / "k" / "b"), "--key-backup", str(tmp_path / "k")
    )
    assert code != 0 and "must not be inside the key backup" in err

    dest.mkdir()
    (dest / "old").write_text("an older backup")
    code, _, err = await run_cli(*data, "backup", str(dest), "--key-backup", str(tmp_path / "k2"))
    assert code != 0 and f"{dest} is not empty" in err


async def test_backup_without_key_backup_warns_that_keys_go_elsewhere(
    sqlite_server: RunningServer, connect: ClientFactory, tmp_path: Path
) -> None:
    installation, _ = await served_document(sqlite_server, connect)
    data = ["--data-dir", str(installation.data_dir)]
    code, _, err = await run_cli(*data, "backup", str(tmp_path / "b"))
    assert code == 0, err
    assert "WARNING: the key-encryption keys were NOT backed up" in err
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["keys_backed_up"] is False
    # Restoring it without keys is refused, naming the keys it needs.
    with pytest.raises(BackupError, match=manifest["keks"][0]):
        await restore_backup(
            Installation(tmp_path / "new", database_url(None, tmp_path / "new"), tmp_path / "nk"),
            tmp_path / "b",
            None,
        )


@pytest.mark.parametrize(
    "damage", ["missing_file", "altered_file", "missing_key", "no_key_backup", "no_manifest"]
)
async def test_an_incomplete_backup_is_refused_at_restore_naming_what_is_missing(
    sqlite_server: RunningServer, connect: ClientFactory, tmp_path: Path, damage: str
) -> None:
    installation, file_id = await served_document(sqlite_server, connect)
    dest, keys = tmp_path / "b", tmp_path / "k"
    report = await create_backup(installation, dest, keys)
    kek = report.manifest.keks[0]
    expected = {
        "missing_file": f"document {file_id} is missing",
        "altered_file": f"document {file_id} is damaged",
        "missing_key": f"key-encryption key {kek} is missing",
        "no_key_backup": "k does not exist",
        "no_manifest": "there is no manifest.json",
    }[damage]
    if damage == "missing_file":
        (dest / "files" / f"{file_id}.wlf").unlink()
    elif damage == "altered_file":
        path = dest / "files" / f"{file_id}.wlf"
        content = bytearray(path.read_bytes())
        content[-1] ^= 1
        path.write_bytes(bytes(content))
    elif damage == "missing_key":
        (keys / f"{kek}.kek").unlink()
    elif damage == "no_key_backup":
        keys.rename(tmp_path / "elsewhere")
    else:
        (dest / "manifest.json").unlink()
    target = tmp_path / "new"
    code, _, err = await run_cli(
        "--data-dir", str(target), "restore", str(dest), "--key-backup", str(keys)
    )
    assert code != 0
    assert "restore refused" in err and expected in err
    assert not target.exists()


async def test_a_document_gone_during_the_backup_is_shredded_in_the_restored_records(
    sqlite_server: RunningServer, connect: ClientFactory, tmp_path: Path
) -> None:
    installation, file_id = await served_document(sqlite_server, connect)
    # The file disappears between the database copy and the file copy (as when
    # retention shreds it meanwhile): simulated by removing it before the backup.
    (installation.data_dir / "files" / f"{file_id}.wlf").unlink()
    report = await create_backup(installation, tmp_path / "b", tmp_path / "k")
    assert report.manifest.gone == (file_id,)
    assert any(file_id in w for w in report.warnings)
    target = tmp_path / "new"
    restored = Installation(target, database_url(None, target), target / "keys")
    await restore_backup(restored, tmp_path / "b", tmp_path / "k")
    code, _, err = await run_cli("--data-dir", str(target), "audit", "verify")
    assert code == 0, err
    with sqlite3.connect(target / "windowlink.db") as conn:
        row = conn.execute(
            "SELECT wrapped_key, shredded_at FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY seq")]
    conn.close()
    assert row[0] == "" and row[1] is not None
    assert actions[-2:] == ["file.shred", "backup.restore"]


# ---- the signed manifest ----------------------------------------------------------------

SIGNER = AuditKey("audit-1", "hmac-sha256", b"s" * 32, 0.0)


@pytest.mark.parametrize(
    ("manifest", "keys", "problem"),
    [
        (MANIFEST.signed(SIGNER), {SIGNER.id: SIGNER}, None),
        (MANIFEST.signed(SIGNER), {SIGNER.id: SIGNER, "audit-0": SIGNER}, None),
        (MANIFEST, {SIGNER.id: SIGNER}, "not signed"),
        (MANIFEST.signed(SIGNER), None, "give the key backup holding it"),
        (MANIFEST.signed(SIGNER), {}, "audit key audit-1 that signed the manifest is missing"),
        (
            dataclasses.replace(MANIFEST.signed(SIGNER), database_sha256="e" * 64),
            {SIGNER.id: SIGNER},
            "does not verify",
        ),
        (
            dataclasses.replace(MANIFEST.signed(SIGNER), keks=("kek-a",)),
            {SIGNER.id: SIGNER},
            "does not verify",
        ),
        (
            MANIFEST.signed(AuditKey("audit-1", "hmac-sha256", b"m" * 32, 0.0)),
            {SIGNER.id: SIGNER},
            "does not verify",
        ),
        (
            MANIFEST.signed(AuditKey("audit-1", "hmac-sm3", b"s" * 32, 0.0)),
            {SIGNER.id: SIGNER},
            "does not verify",
        ),
    ],
)
def test_what_the_manifest_signature_vouches_for(
    manifest: Manifest, keys: dict[str, AuditKey] | None, problem: str | None
) -> None:
    found = Manifest.from_json(manifest.to_json()).signature_problem(keys)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_an_unsigned_manifest_of_the_first_format_is_refused_with_what_to_do() -> None:
    old = json.loads(MANIFEST.to_json())
    old["version"] = 1
    del old["signature"]
    with pytest.raises(BackupError, match="restore it with the version that made it"):
        Manifest.from_json(json.dumps(old))


def rewrite_audit_unkeyed(database: Path, drop: set[int], actor: str) -> int:
    """The attack of issue 19 on a backup's database copy: audit entries removed,
    actors rewritten, the chain and its head recomputed the unkeyed way (all that
    can be done without the audit key). The entries left."""
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute(
            "SELECT seq, at, actor, action, subject, detail, remote FROM audit_log ORDER BY seq"
        ).fetchall()
        kept = [r for r in rows if r[0] not in drop]
        conn.execute("DELETE FROM audit_log")
        prev = GENESIS_HASH
        for seq, (_, at, _, action, subject, detail, remote) in enumerate(kept, start=1):
            digest = entry_hash(seq, at, actor, action, subject, detail, remote, prev)
            conn.execute(
                "INSERT INTO audit_log (seq, at, actor, action, subject, detail, remote, "
                "prev_hash, hash, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
                (seq, at, actor, action, subject, detail, remote, prev, digest),
            )
            prev = digest
        conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (len(kept), prev))
        conn.commit()
    finally:
        conn.close()
    return len(kept)


@pytest.mark.parametrize("signature", ["kept", "removed", "made_with_a_guessed_key"])
async def test_an_edited_backup_is_refused_by_restore_and_by_audit_verify(
    sqlite_server: RunningServer, connect: ClientFactory, tmp_path: Path, signature: str
) -> None:
    installation, _ = await served_document(sqlite_server, connect)
    dest, keys = tmp_path / "b", tmp_path / "k"
    report = await create_backup(installation, dest, keys)
    assert report.manifest.signature is not None
    key_id = report.manifest.signature.key_id
    # The key backup carries what verifies the backup: the audit key and the anchor.
    assert (keys / f"{key_id}.key").is_file() and (keys / "audit-anchor.json").is_file()

    # The honest backup restores and verifies, naming the key.
    honest = tmp_path / "honest"
    code, out, err = await run_cli(
        "--data-dir", str(honest), "restore", str(dest), "--key-backup", str(keys)
    )
    assert code == 0, err
    assert f"manifest signature verified with audit key {key_id}" in out
    code, out, err = await run_cli("--data-dir", str(honest), "audit", "verify")
    assert code == 0, err
    assert f"verified with audit key {key_id} (HMAC-SHA-256)" in out

    # The edited one: three entries gone, actors rewritten, chain and manifest
    # recomputed.
    edited = tmp_path / "edited"
    shutil.copytree(dest, edited)
    left = rewrite_audit_unkeyed(edited / "database.sqlite3", {2, 3, 4}, "nobody")
    assert left >= 3
    manifest = json.loads((edited / "manifest.json").read_text())
    content = (edited / "database.sqlite3").read_bytes()
    manifest["database"]["size"] = len(content)
    manifest["database"]["sha256"] = hashlib.sha256(content).hexdigest()
    if signature == "removed":
        manifest["signature"] = None
    elif signature == "made_with_a_guessed_key":
        forged = Manifest.from_json(json.dumps(manifest)).signed(
            AuditKey(key_id, "hmac-sha256", os.urandom(32), 0.0)
        )
        manifest = json.loads(forged.to_json())
    (edited / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "target"
    code, _, err = await run_cli(
        "--data-dir", str(target), "restore", str(edited), "--key-backup", str(keys)
    )
    assert code != 0
    assert "restore refused: the backup cannot be trusted" in err
    assert not target.exists()

    # Put in place by hand with the genuine keys, the records fail verification.
    by_hand = tmp_path / "by_hand"
    by_hand.mkdir(mode=0o700)
    shutil.copy(edited / "database.sqlite3", by_hand / "windowlink.db")
    shutil.copytree(keys, by_hand / "keys")
    code, _, err = await run_cli("--data-dir", str(by_hand), "audit", "verify")
    assert code == 1
    assert "audit chain BROKEN at entry 1" in err
