"""Backup and restore: the records, the encrypted documents, and (apart) the keys.

A backup is a directory DEST, created owner-only (0700 directories, 0600 files)::

    manifest.json       what the backup holds; written last (no manifest = incomplete)
    database.sqlite3    SQLite: a consistent copy made with SQLite's online backup API
    database.pgdump     PostgreSQL: pg_dump (custom format) in an exported snapshot
    files/<id>.wlf      the encrypted documents that the database copy lists

The key-encryption keys, the audit keys and this node's audit anchor
(storage.audit_keys) go to a second directory, KEYDEST, never inside DEST nor
DEST inside it: a lost or stolen backup without its keys is ciphertext.

The manifest is signed: an HMAC (HMAC-SHA-256, or HMAC-SM3 under the SM suite)
under a key derived from the installation's audit key, which only the key backup
holds. The manifest names the database copy's and every document's SHA-256, so
an edited backup (records removed or rewritten, the chain and the digests
recomputed) no longer matches its signature and is refused at restore.

Consistency while the server runs and writes: a document is immutable once
recorded (written to tmp/, renamed into files/, then recorded), so the
database is copied first and then exactly the documents that copy lists; one
recorded later is simply not in the backup. A listed document can disappear
meanwhile only by retention shredding; the backup says so and lists it as
``gone``, and a restore shreds its record too.

Restore goes only into an empty data directory, an empty key directory and
(PostgreSQL) an empty database, and only after the manifest's signature, every
document, the database copy and every KEK the records reference have been
checked against it; the restored audit chain is then verified with the key
backup's audit keys. Both operations are audited (actor ``operator``).
"""

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, NullPool, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage.audit import AuditLog, append_audit
from storage.audit_keys import (
    ANCHOR_FILE,
    KEY_PREFIX,
    KEY_SUFFIX,
    AuditKey,
    directory_audit_keys,
    load_directory_keys,
)
from storage.errors import AuditChainBroken, BackupError, KeyringError
from storage.filecrypt import Suite
from storage.ids import new_id
from storage.migrations import LATEST_VERSION, current_version
from storage.periodkeys import is_period_key
from storage.pg_tools import client_tool, libpq_environment, run_tool
from storage.records import AuditEvent
from storage.retention import shred_record
from storage.schema import files, period_keys
from storage.store import open_database

FORMAT = "windowlink-backup"
VERSION = 2
"""2: the manifest is signed (1: unsigned, refused: restore it with the version that
made it, then take a new backup)."""
MANIFEST_PURPOSE = "backup manifest"
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
POSTGRES_FILE = "database.pgdump"
# The file store's layout (storage.filestore.FileStore.path_of): <data-dir>/files/<id>.wlf
DOCUMENTS = "files"
DOCUMENT_SUFFIX = ".wlf"
_KEY_FILE = re.compile(
    rf"^([A-Za-z0-9._-]+\.kek|{KEY_PREFIX}[A-Za-z0-9._-]+\{KEY_SUFFIX}|{re.escape(ANCHOR_FILE)})$"
)
_COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Installation:
    """Where a windowlink installation keeps its data (the configured one)."""

    data_dir: Path
    database_url: str
    """The SQLAlchemy URL, as ``storage.database.database_url`` makes it."""
    key_dir: Path
    suite: Suite = Suite.AES_256_GCM
    """The crypto suite (its MAC signs the audit chain and the manifest)."""

    @property
    def database_kind(self) -> str:
        return (
            "sqlite" if make_url(self.database_url).get_backend_name() == "sqlite" else "postgresql"
        )


@dataclass(frozen=True)
class FileEntry:
    id: str
    size: int
    sha256: str
    """Of the ciphertext, as stored."""


@dataclass(frozen=True)
class Signature:
    key_id: str
    """The audit key the signing key was derived from (in the key backup)."""
    mac: str


@dataclass(frozen=True)
class Manifest:
    backup_id: str
    created_at: float
    schema_version: int
    database_kind: str
    """sqlite or postgresql."""
    database_file: str
    database_size: int
    database_sha256: str
    files: tuple[FileEntry, ...]
    gone: tuple[str, ...]
    """Listed by the database copy, deleted (shredded) before they could be copied."""
    keks: tuple[str, ...]
    """The key-encryption keys that the records' data keys are wrapped with."""
    keys_backed_up: bool
    signature: Signature | None = None

    def payload(self) -> bytes:
        """What the signature covers: every field but the signature, canonical."""
        body = json.loads(self.to_json())
        body.pop("signature", None)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: AuditKey) -> "Manifest":
        signer = key.derived(MANIFEST_PURPOSE)
        return dataclasses.replace(self, signature=Signature(key.id, signer.mac(self.payload())))

    def signature_problem(self, keys: Mapping[str, AuditKey] | None) -> str | None:
        """Why the signature does not vouch for this manifest (None: it does), given
        the key backup's audit keys (None without a key backup)."""
        if self.signature is None:
            return "the manifest is not signed"
        if keys is None:
            return (
                f"the manifest is signed with audit key {self.signature.key_id}: give the "
                "key backup holding it with --key-backup KEYDIR"
            )
        key = keys.get(self.signature.key_id)
        if key is None:
            return (
                f"the audit key {self.signature.key_id} that signed the manifest is missing "
                "from the key backup"
            )
        if not key.derived(MANIFEST_PURPOSE).matches(self.payload(), self.signature.mac):
            return (
                f"the manifest's signature does not verify with audit key {key.id}: the "
                "backup was altered after it was made (or is not the one these keys made)"
            )
        return None

    def to_json(self) -> str:
        signature = (
            {"key": self.signature.key_id, "mac": self.signature.mac}
            if self.signature is not None
            else None
        )
        return json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "backup_id": self.backup_id,
                "created_at": self.created_at,
                "schema_version": self.schema_version,
                "database": {
                    "kind": self.database_kind,
                    "file": self.database_file,
                    "size": self.database_size,
                    "sha256": self.database_sha256,
                },
                "files": [{"id": f.id, "size": f.size, "sha256": f.sha256} for f in self.files],
                "gone": list(self.gone),
                "keks": list(self.keks),
                "keys_backed_up": self.keys_backed_up,
                "signature": signature,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, raw: str) -> "Manifest":
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise BackupError(f"{MANIFEST} is not a windowlink backup manifest")
            if data.get("version") == 1:
                raise BackupError(
                    "this backup's manifest is not signed (backup format 1, made before "
                    "signed manifests): restore it with the version that made it, then "
                    "start this version on it and take a new backup"
                )
            if data.get("version") != VERSION:
                raise BackupError(f"backup format version {data.get('version')!r} is not known")
            database = data["database"]
            signed = data.get("signature")
            signature = (
                Signature(_plain_name(str(signed["key"])), str(signed["mac"]))
                if signed is not None
                else None
            )
            return cls(
                backup_id=str(data["backup_id"]),
                created_at=float(data["created_at"]),
                schema_version=int(data["schema_version"]),
                database_kind=str(database["kind"]),
                database_file=_plain_name(str(database["file"])),
                database_size=int(database["size"]),
                database_sha256=str(database["sha256"]),
                files=tuple(
                    FileEntry(_plain_name(str(f["id"])), int(f["size"]), str(f["sha256"]))
                    for f in data["files"]
                ),
                gone=tuple(str(g) for g in data["gone"]),
                keks=tuple(_plain_name(str(k)) for k in data["keks"]),
                keys_backed_up=bool(data["keys_backed_up"]),
                signature=signature,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackupError(f"{MANIFEST} is damaged or not a windowlink manifest") from None


def _plain_name(name: str) -> str:
    """A manifest names files inside the backup: never a path that leaves it."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise ValueError(name)
    return name


@dataclass
class Report:
    """What a backup or restore did, and what the operator must be told."""

    manifest: Manifest
    warnings: list[str] = field(default_factory=list)


# ---- decisions (pure) --------------------------------------------------------------


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def backup_path_problems(
    dest: Path, key_dest: Path | None, data_dir: Path, key_dir: Path
) -> list[str]:
    """Why these (resolved) paths cannot take a backup; empty when they can."""
    problems: list[str] = []
    for live, what in ((data_dir, "the data directory"), (key_dir, "the key directory")):
        if _within(dest, live):
            problems.append(f"the backup {dest} must not be inside {what} {live}")
        if key_dest is not None and _within(key_dest, live):
            problems.append(f"the key backup {key_dest} must not be inside {what} {live}")
    if key_dest is not None:
        if _within(key_dest, dest):
            problems.append(
                f"the key backup {key_dest} must not be inside the backup {dest}: "
                "keys and data are kept apart"
            )
        elif _within(dest, key_dest):
            problems.append(
                f"the backup {dest} must not be inside the key backup {key_dest}: "
                "keys and data are kept apart"
            )
    return problems


def restore_problems(
    manifest: Manifest,
    database: tuple[int, str] | None,
    documents: Mapping[str, tuple[int, str] | None],
    key_ids: Collection[str] | None,
) -> list[str]:
    """What is missing or damaged in a backup, named; empty when it is complete.

    ``database`` and each of ``documents`` (by id) are the size and SHA-256 found,
    None when absent; ``key_ids`` are the KEKs in the key backup, None without one.
    """
    problems: list[str] = []
    expected = (manifest.database_size, manifest.database_sha256)
    if database is None:
        problems.append(f"the database copy {manifest.database_file} is missing")
    elif database != expected:
        problems.append(f"the database copy {manifest.database_file} is damaged")
    for entry in manifest.files:
        found = documents.get(entry.id)
        name = f"{DOCUMENTS}/{entry.id}{DOCUMENT_SUFFIX}"
        if found is None:
            problems.append(f"document {entry.id} is missing ({name})")
        elif found != (entry.size, entry.sha256):
            problems.append(f"document {entry.id} is damaged ({name} differs from the manifest)")
    if manifest.keks and key_ids is None:
        problems.append(
            "the records need the key-encryption keys "
            f"{', '.join(manifest.keks)}: give their backup with --key-backup KEYDIR"
        )
    elif key_ids is not None:
        problems += [
            f"key-encryption key {kek} is missing from the key backup"
            for kek in manifest.keks
            if kek not in key_ids
        ]
    return problems


# ---- files ----------------------------------------------------------------------------


@contextlib.contextmanager
def _owner_only() -> Iterator[None]:
    """Everything created meanwhile (pg_dump's output too) is the owner's alone."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _is_empty(path: Path) -> bool:
    if not path.exists():
        return True
    return path.is_dir() and not any(path.iterdir())


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _digest(path: Path) -> tuple[int, str] | None:
    """Size and SHA-256 of a file, None when it is not there."""
    sha = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as source:
            while block := source.read(_COPY_BLOCK):
                sha.update(block)
                size += len(block)
    except (FileNotFoundError, IsADirectoryError):
        return None
    return size, sha.hexdigest()


def _copy(source: Path, target: Path) -> tuple[int, str]:
    """Copy into a new 0600 file, synced; size and SHA-256 of what was copied."""
    sha = hashlib.sha256()
    size = 0
    with source.open("rb") as reader:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as writer:
            while block := reader.read(_COPY_BLOCK):
                sha.update(block)
                size += len(block)
                writer.write(block)
            writer.flush()
            os.fsync(writer.fileno())
    return size, sha.hexdigest()


def _write_new(target: Path, content: str) -> None:
    """Write a 0600 file in one step (temporary name, then renamed)."""
    temporary = target.with_name(target.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(target)


def _key_files(directory: Path) -> list[Path]:
    """The KEKs of a key directory and its ``active`` marker."""
    found = [p for p in directory.iterdir() if p.is_file() and _KEY_FILE.match(p.name)]
    active = directory / "active"
    return sorted(found) + ([active] if active.is_file() else [])


def _kek_ids(directory: Path) -> set[str]:
    """Ids of the readable KEK files in a key directory."""
    ids: set[str] = set()
    for path in _key_files(directory):
        if path.suffix != ".kek":
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            if json.loads(path.read_text())["id"] == path.stem:
                ids.add(path.stem)
    return ids


def _copy_keys(source: Path, target: Path) -> list[str]:
    if not source.is_dir():
        raise BackupError(f"there is no key directory {source}")
    _private_dir(target)
    copied = []
    for path in _key_files(source):
        _copy(path, target / path.name)
        copied.append(path.name)
    return copied


def _document(directory: Path, file_id: str) -> Path:
    return directory / DOCUMENTS / f"{file_id}{DOCUMENT_SUFFIX}"


# ---- the database --------------------------------------------------------------------


@dataclass(frozen=True)
class _Contents:
    schema_version: int
    readable: tuple[str, ...]
    """Documents whose key still exists (shredded ones have no ciphertext to copy)."""
    keks: tuple[str, ...]


def _contents(conn: Connection) -> _Contents:
    rows = conn.execute(select(files.c.id, files.c.kek_id, files.c.shredded_at)).all()
    readable = [r for r in rows if r.shredded_at is None]
    # A data key is wrapped by a KEK directly (documents from before period keys) or
    # under a period key, which a KEK wraps.
    used = {str(r.kek_id) for r in readable}
    periods = {key_id for key_id in used if is_period_key(key_id)}
    keks = used - periods
    if periods:
        keks |= {
            str(r.kek_id)
            for r in conn.execute(
                select(period_keys.c.id, period_keys.c.kek_id).where(
                    period_keys.c.destroyed_at.is_(None)
                )
            )
            if r.id in periods
        }
    return _Contents(
        current_version(conn),
        tuple(sorted(r.id for r in readable)),
        tuple(sorted(keks)),
    )


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("the configured SQLite database is not a file")
    return Path(database)


def _sqlite_snapshot(source: Path, target: Path) -> _Contents:
    """A consistent copy with SQLite's online backup API (one step: one read
    transaction, while the server's writer carries on in the WAL)."""
    if not source.is_file():
        raise BackupError(f"there is no database at {source}")
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    # mode=rw: never create a database that is not there.
    live = sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True, timeout=60)
    try:
        copy = sqlite3.connect(target)
        try:
            live.backup(copy)
            # A self-contained file: no -wal beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        live.close()
    engine = create_engine(f"sqlite:///{target}", poolclass=NullPool, hide_parameters=True)
    try:
        with engine.connect() as conn:
            return _contents(conn)
    finally:
        engine.dispose()


async def _postgres_snapshot(url: str, target: Path) -> _Contents:
    """pg_dump inside a snapshot exported by a REPEATABLE READ transaction that
    also lists the documents: the dump and the list see the same moment."""
    sa_url, env = libpq_environment(url)
    engine = create_async_engine(sa_url, poolclass=NullPool, hide_parameters=True)
    try:
        async with engine.connect() as base:
            conn = await base.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                version_num = (await conn.execute(text("SHOW server_version_num"))).scalar_one()
                contents = await conn.run_sync(_contents)
                pg_dump = await client_tool("pg_dump", int(version_num) // 10000, env)
                await run_tool(
                    [
                        pg_dump,
                        "--no-password",
                        "--format=custom",
                        f"--snapshot={snapshot}",
                        f"--file={target}",
                        f"--dbname={sa_url.database}",
                    ],
                    env,
                )
        os.chmod(target, 0o600)
        return contents
    finally:
        await engine.dispose()


async def _postgres_empty(url: str) -> int:
    """The server's major version, once the database is known to hold no tables."""
    sa_url, _ = libpq_environment(url)
    engine = create_async_engine(sa_url, poolclass=NullPool, hide_parameters=True)
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                    )
                )
            ).scalar_one()
            version_num = (await conn.execute(text("SHOW server_version_num"))).scalar_one()
    except Exception as exc:
        raise BackupError(f"cannot connect to the database {sa_url.database}: {exc}") from None
    finally:
        await engine.dispose()
    if tables:
        raise BackupError(
            f"the database {sa_url.database} is not empty ({tables} tables): "
            "restore only into a new, empty database"
        )
    return int(version_num) // 10000


async def _postgres_restore(url: str, dump: Path, server_major: int) -> None:
    sa_url, env = libpq_environment(url)
    pg_restore = await client_tool("pg_restore", server_major, env)
    await run_tool(
        [
            pg_restore,
            "--no-password",
            "--no-owner",
            "--no-acl",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={sa_url.database}",
            str(dump),
        ],
        env,
    )


# ---- backup -------------------------------------------------------------------------


async def create_backup(
    installation: Installation,
    dest: Path,
    key_dest: Path | None,
) -> Report:
    """Copy the database, then the documents it lists, into ``dest``, and the
    KEKs into ``key_dest``; write the manifest last and audit the backup."""
    dest, key_dest = await asyncio.to_thread(_backup_targets, installation, dest, key_dest)
    keys = await asyncio.to_thread(
        directory_audit_keys, installation.key_dir, installation.suite, create=True
    )
    db = await open_database(installation.database_url, keys)
    try:
        with _owner_only():
            report = await _take_backup(installation, dest, key_dest, keys.signing())
        manifest = report.manifest
        await db.write(
            lambda conn: append_audit(
                conn,
                AuditEvent(
                    "operator",
                    "backup.create",
                    manifest.backup_id,
                    {
                        "destination": str(dest),
                        "database": manifest.database_kind,
                        "schema_version": manifest.schema_version,
                        "files": len(manifest.files),
                        "gone": len(manifest.gone),
                        "keys_backed_up": manifest.keys_backed_up,
                    },
                ),
            )
        )
    finally:
        await db.close()
    return report


def _backup_targets(
    installation: Installation, dest: Path, key_dest: Path | None
) -> tuple[Path, Path | None]:
    """The resolved destinations, once they are known to be fit for a backup."""
    dest, key_dest = dest.resolve(), key_dest.resolve() if key_dest else None
    problems = backup_path_problems(
        dest, key_dest, installation.data_dir.resolve(), installation.key_dir.resolve()
    )
    for path, what in ((dest, "the backup"), (key_dest, "the key backup")):
        if path is not None and not _is_empty(path):
            problems.append(f"{what} {path} is not empty: back up into a new, empty directory")
    if installation.database_kind == "sqlite":
        database = _sqlite_path(installation.database_url)
        if not database.is_file():
            problems.append(f"there is no database at {database}: nothing to back up")
    if problems:
        raise BackupError("; ".join(problems))
    return dest, key_dest


async def _take_backup(
    installation: Installation,
    dest: Path,
    key_dest: Path | None,
    signing_key: AuditKey,
) -> Report:
    await asyncio.to_thread(_private_dir, dest)
    await asyncio.to_thread(_private_dir, dest / DOCUMENTS)
    created_at = time.time()
    if installation.database_kind == "sqlite":
        database_file = SQLITE_FILE
        contents = await asyncio.to_thread(
            _sqlite_snapshot, _sqlite_path(installation.database_url), dest / SQLITE_FILE
        )
    else:
        database_file = POSTGRES_FILE
        contents = await _postgres_snapshot(installation.database_url, dest / POSTGRES_FILE)
    warnings: list[str] = []
    entries, gone = await asyncio.to_thread(
        _copy_documents, installation.data_dir, dest, contents.readable
    )
    warnings += [
        f"document {file_id} was deleted (shredded by retention) while the backup ran; "
        "its record is shredded at restore"
        for file_id in gone
    ]
    if key_dest is not None:
        await asyncio.to_thread(_copy_keys, installation.key_dir, key_dest)
        missing = set(contents.keks) - await asyncio.to_thread(_kek_ids, key_dest)
        if missing:
            raise BackupError(
                f"the key directory {installation.key_dir} lacks {', '.join(sorted(missing))}, "
                f"which the records reference; {dest} is left without a manifest (incomplete)"
            )
    else:
        warnings.append(
            "the key-encryption keys were NOT backed up: copy the key directory "
            f"{installation.key_dir} ({', '.join(contents.keks) or 'no keys in use yet'}) "
            "to a separate, safe place (or run backup with --key-backup KEYDEST); "
            "without them the documents in this backup can never be read"
        )
    found = await asyncio.to_thread(_digest, dest / database_file)
    assert found is not None
    manifest = Manifest(
        backup_id=new_id(),
        created_at=created_at,
        schema_version=contents.schema_version,
        database_kind=installation.database_kind,
        database_file=database_file,
        database_size=found[0],
        database_sha256=found[1],
        files=tuple(entries),
        gone=tuple(gone),
        keks=contents.keks,
        keys_backed_up=key_dest is not None,
    ).signed(signing_key)
    await asyncio.to_thread(_write_new, dest / MANIFEST, manifest.to_json())
    return Report(manifest, warnings)


def _copy_documents(
    data_dir: Path, dest: Path, file_ids: tuple[str, ...]
) -> tuple[list[FileEntry], list[str]]:
    entries: list[FileEntry] = []
    gone: list[str] = []
    for file_id in file_ids:
        try:
            size, sha = _copy(_document(data_dir, file_id), _document(dest, file_id))
        except FileNotFoundError:
            gone.append(file_id)
            continue
        entries.append(FileEntry(file_id, size, sha))
    return entries, gone


# ---- restore ------------------------------------------------------------------------


def _read_manifest(source: Path) -> Manifest:
    try:
        raw = (source / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BackupError(
            f"there is no {MANIFEST} in {source}: not a windowlink backup, or an incomplete one"
        ) from None
    return Manifest.from_json(raw)


def _check_backup(source: Path, manifest: Manifest, key_source: Path | None) -> list[str]:
    if manifest.schema_version > LATEST_VERSION:
        raise BackupError(
            f"the backup's records are schema version {manifest.schema_version}, newer than "
            f"this code ({LATEST_VERSION}): restore it with the version that made it"
        )
    if key_source is not None and not key_source.is_dir():
        return [f"the key backup {key_source} does not exist"]
    try:
        audit_keys = load_directory_keys(key_source) if key_source is not None else None
    except KeyringError as exc:
        return [str(exc)]
    problem = manifest.signature_problem(audit_keys)
    if problem is not None and audit_keys is not None:
        # Nothing else in the backup can be believed: its digests are the manifest's.
        raise BackupError(f"the backup cannot be trusted: {problem}")
    documents = {f.id: _digest(_document(source, f.id)) for f in manifest.files}
    key_ids = _kek_ids(key_source) if key_source is not None else None
    found = restore_problems(manifest, _digest(source / manifest.database_file), documents, key_ids)
    return ([problem] if problem is not None else []) + found


async def restore_backup(
    installation: Installation, source: Path, key_source: Path | None
) -> Report:
    """Check the backup against its manifest, then restore it into the empty
    installation; records of documents that were ``gone`` are shredded."""
    source = await asyncio.to_thread(source.resolve)
    key_source = await asyncio.to_thread(key_source.resolve) if key_source else None
    manifest = await asyncio.to_thread(_read_manifest, source)
    if manifest.database_kind != installation.database_kind:
        hint = "with no --database-url" if manifest.database_kind == "sqlite" else "into PostgreSQL"
        raise BackupError(
            f"this backup holds a {manifest.database_kind} database: restore it {hint}"
        )
    targets = [installation.data_dir, installation.key_dir]
    if installation.database_kind == "sqlite":
        targets.append(_sqlite_path(installation.database_url))
    for target in targets:
        if not await asyncio.to_thread(_is_empty, target):
            raise BackupError(
                f"{target} is not empty: restore only into an empty data directory, "
                "key directory and database"
            )
    server_major = 0
    if installation.database_kind == "postgresql":
        server_major = await _postgres_empty(installation.database_url)
    problems = await asyncio.to_thread(_check_backup, source, manifest, key_source)
    if problems:
        raise BackupError("the backup is incomplete: " + "; ".join(problems))
    with _owner_only():
        await asyncio.to_thread(_restore_files, installation, source, key_source, manifest)
        if installation.database_kind == "sqlite":
            await asyncio.to_thread(
                _restore_sqlite, source / manifest.database_file, installation.database_url
            )
        else:
            await _postgres_restore(
                installation.database_url, source / manifest.database_file, server_major
            )
    keys = await asyncio.to_thread(
        directory_audit_keys, installation.key_dir, installation.suite, create=True
    )
    db = await open_database(installation.database_url, keys)
    try:
        try:
            await AuditLog(db).check()
        except AuditChainBroken as exc:
            raise BackupError(
                f"the restored records' audit chain is broken at entry {exc.seq}: {exc.reason} "
                f"(the backup was signed, so it was made from a broken chain); the restored "
                f"installation in {installation.data_dir} is left for inspection"
            ) from None
        await db.write(lambda conn: _record_restore(conn, manifest, source))
    finally:
        await db.close()
    warnings = [
        f"document {file_id} was deleted while the backup was taken; its record is shredded"
        for file_id in manifest.gone
    ]
    if key_source is None:
        warnings.append("no key backup given: the configured key directory starts empty")
    return Report(manifest, warnings)


def _restore_files(
    installation: Installation, source: Path, key_source: Path | None, manifest: Manifest
) -> None:
    _private_dir(installation.data_dir)
    _private_dir(installation.data_dir / DOCUMENTS)
    for entry in manifest.files:
        copied = _copy(_document(source, entry.id), _document(installation.data_dir, entry.id))
        if copied != (entry.size, entry.sha256):
            raise BackupError(f"document {entry.id} changed while it was being restored")
    if key_source is not None:
        _copy_keys(key_source, installation.key_dir)


def _restore_sqlite(copy: Path, url: str) -> None:
    target = _sqlite_path(url)
    # Only a directory made here is made private: a configured one is left as it is.
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _copy(copy, target)


def _record_restore(conn: Connection, manifest: Manifest, source: Path) -> None:
    now = time.time()
    for file_id in manifest.gone:
        shred_record(
            conn,
            file_id,
            now,
            AuditEvent(
                "operator",
                "file.shred",
                file_id,
                {"reason": "deleted while the backup was taken", "backup": manifest.backup_id},
            ),
        )
    append_audit(
        conn,
        AuditEvent(
            "operator",
            "backup.restore",
            manifest.backup_id,
            {
                "source": str(source),
                "created_at": manifest.created_at,
                "database": manifest.database_kind,
                "schema_version": manifest.schema_version,
                "files": len(manifest.files),
                "gone": len(manifest.gone),
            },
        ),
    )
