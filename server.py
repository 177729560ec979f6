"""windowlink entry point: settings -> app -> run.

python server.py [flags]                 serve
python server.py [flags] audit verify    check the audit hash chain
python server.py [flags] backup DEST [--key-backup KEYDEST]
python server.py [flags] restore SRC [--key-backup KEYDIR]
python server.py [flags] files tidy [--dry-run]
python server.py [flags] accounts create --role ROLE --username NAME   (password on stdin)
"""

import asyncio
import contextlib
import getpass
import logging
import os
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from observability.logs import banner
from observability.logs import configure as configure_logging
from storage.audit import ChainReport
from storage.blobs import BlobError, open_blob_store
from storage.database import database_url
from storage.errors import (
    AuditChainBroken,
    BackupError,
    ForeignBlobStore,
    RecordConflict,
    RecordNotFound,
    StorageUnavailable,
)
from storage.filestore import FileStore
from storage.keyring import KeyringError, read_master_key
from storage.ownership import claim
from storage.password_policy import MESSAGES, weakness
from storage.records import DESK_ROLES, AuditEvent, Role
from storage.sensitive import SensitiveValues
from storage.tidying import GRACE, tidy
from web.processes import Supervisor, child_index, secrets_on_command_line
from web.settings import Settings, SettingsError, parse_settings, secret_environment
from web.shutdown import ExitWatchdog
from web.stores import crypto_suite, open_keyring, open_storage

if TYPE_CHECKING:
    from storage.backup import Installation

SHUTDOWN_SECONDS = 1.0
"""At a stop, what open requests (uploads, media offers) are given to finish, and then
to unwind once cancelled (web/shutdown.py: the whole stop within 10 s of SIGTERM)."""


async def verify_audit(settings: Settings) -> int:
    try:
        storage = await open_storage(settings, sign=False)
    except KeyringError as exc:
        print(f"windowlink: {exc}", file=sys.stderr)
        return 2
    try:
        report = await storage.audit.check()
    except AuditChainBroken as exc:
        print(f"audit chain BROKEN at entry {exc.seq}: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
    print(f"audit chain intact: {report.entries} entries")
    for line in chain_report_lines(report):
        print(f"  {line}")
    return 0


def chain_report_lines(report: ChainReport) -> list[str]:
    """What vouches for an intact chain: the keys (ids, entries each) and the unkeyed
    beginning, if any."""
    lines: list[str] = []
    if report.unkeyed:
        lines.append(
            f"entries 1-{report.unkeyed}: unkeyed (SHA-256 only, made before keyed chains)"
            + ("; matches this node's record of them" if report.anchored else "")
        )
    first = report.unkeyed + 1
    for key_id, count in report.by_key.items():
        lines.append(
            f"{count} entries verified with audit key {report.key_descriptions[key_id]}"
            + (f", from entry {first}" if first > 1 else "")
        )
        first += count
    if not report.anchored and report.entries:
        lines.append(
            "this node has no record of where keyed entries begin (audit-anchor.json in "
            "the key directory): a chain rewritten whole the unkeyed way would not be seen"
        )
    if report.entries:
        lines.append(f"head: entry {report.entries}, {report.head}")
    return lines


async def manage_keys(settings: Settings, action: tuple[str, ...]) -> int:
    """``keys rotate``: new active KEK, every data key re-wrapped; ``keys retire ID``."""
    storage = await open_storage(settings)
    files: FileStore | None = None
    try:
        keyring = await open_keyring(settings, storage.db)
        files = await FileStore.open(
            settings.data_dir,
            keyring,
            storage.db,
            max_size=settings.max_file_size,
            blobs=open_blob_store(settings.blob_url, settings.data_dir, settings.s3_endpoint),
        )
        sensitive = SensitiveValues(storage.db, keyring)
        if action[0] == "rotate-lookup":
            count = await sensitive.rotate_lookup()
            await storage.audit.append(
                AuditEvent("operator", "keys.rotate_lookup", "lookup", {"recomputed": count})
            )
            print(f"new lookup key of sensitive values; {count} stored lookups recomputed")
            return 0
        if action[0] == "rotate":
            old = keyring.active_id
            new = await keyring.rotate()
            count = await files.rewrap_all() + await sensitive.rewrap_all()
            await storage.audit.append(
                AuditEvent("operator", "keys.rotate", new.id, {"previous": old, "rewrapped": count})
            )
            print(
                f"new key-encryption key {new.id}; {count} keys re-wrapped under it (keys of "
                "retention periods, and documents from before them moved under theirs)"
            )
            return 0
        kek_id = action[1]
        try:
            await keyring.retire(
                kek_id, await files.references(kek_id) + await sensitive.references(kek_id)
            )
        except KeyringError as exc:
            print(f"cannot retire: {exc}", file=sys.stderr)
            return 1
        await storage.audit.append(AuditEvent("operator", "keys.retire", kek_id, {}))
        print(f"key-encryption key {kek_id} retired")
        return 0
    finally:
        if files is not None:
            await files.close()
        await storage.close()


async def tidy_files(settings: Settings, *, dry_run: bool) -> int:
    """``files tidy [--dry-run]``: remove (or list) this deployment's blobs that a
    crash left without a record; safe beside running nodes (storage.tidying)."""
    storage = await open_storage(settings)
    blobs = open_blob_store(settings.blob_url, settings.data_dir, settings.s3_endpoint)
    spool = settings.data_dir / "tmp"
    try:
        await asyncio.to_thread(spool.mkdir, mode=0o700, parents=True, exist_ok=True)
        await blobs.start()
        deployment = await claim(storage.db, blobs, spool)
        report = await tidy(storage.db, blobs, dry_run=dry_run)
        if report.removed and not dry_run:
            await storage.audit.append(
                AuditEvent(
                    "operator",
                    "files.tidy",
                    deployment,
                    {"removed": len(report.removed), "unknown": report.unknown},
                )
            )
    except ForeignBlobStore as exc:
        print(f"windowlink: {exc}", file=sys.stderr)
        return 2
    except BlobError as exc:
        print(f"windowlink: the blob store cannot be tidied: {exc}", file=sys.stderr)
        return 1
    finally:
        await blobs.close()
        await storage.close()
    verb = "would remove" if dry_run else "removed"
    for removal in report.removed:
        print(
            f"{verb} {removal.kind.value} {removal.name} ({removal.age:.0f} s old, {removal.why})"
        )
    print(
        f"{len(report.removed)} blobs {verb}; {report.pending} pending (intent younger than "
        f"{GRACE / 3600:.0f} h); {report.unknown} unknown (never recorded by this "
        "deployment's database: left alone)"
    )
    return 0


MAX_PASSWORD = 256
"""As the admin API's: longer is refused, not cut."""


def read_password() -> str | None:
    """One line from standard input (without echo when it is a terminal), or None
    when there is nothing to read."""
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r") if line else None


def account_options(command: tuple[str, ...]) -> dict[str, list[str]]:
    """``--name value`` pairs of an ``accounts create`` command, by name."""
    options: dict[str, list[str]] = {}
    for name, value in zip(command[2::2], command[3::2], strict=True):
        options.setdefault(name.removeprefix("--"), []).append(value)
    return options


async def create_account(settings: Settings, command: tuple[str, ...]) -> int:
    """``accounts create --role ROLE --username NAME [--department D] [--hall H]``:
    an account made without a server (the first admin of a new installation), its
    password read from standard input and held to the admin page's rules; audited."""
    # Here, not at the top: every REST body's model, which no other command needs.
    from web.schemas import Username

    options = account_options(command)
    role = Role(options["role"][0])
    username = options["username"][0]
    department = options.get("department", [None])[0]
    halls = options.get("hall", [])
    try:
        # What the admin page accepts as a user name.
        TypeAdapter(Username).validate_python(username)
    except ValidationError:
        print(
            f"windowlink: {username!r} is not a user name: 3 to 32 of a-z, 0-9, _ . - "
            "(starting with a letter or digit)",
            file=sys.stderr,
        )
        return 2
    if (role in DESK_ROLES) != (department is not None):
        print(
            "windowlink: experts and interpreters, and only they, need --department",
            file=sys.stderr,
        )
        return 2
    if (role is Role.KIOSK and len(halls) != 1) or (role not in (Role.KIOSK, Role.CLERK) and halls):
        print(
            "windowlink: a kiosk stands in one --hall, a clerk works at one or more; "
            "other roles have none",
            file=sys.stderr,
        )
        return 2
    password = read_password()
    if password is None:
        print("windowlink: give the password on standard input (one line)", file=sys.stderr)
        return 2
    problem = weakness(password, username, staff=role is not Role.KIOSK)
    if problem is not None or len(password) > MAX_PASSWORD:
        reason = MESSAGES[problem] if problem is not None else "the password is too long"
        print(f"windowlink: password refused: {reason}", file=sys.stderr)
        return 1
    storage = await open_storage(settings)
    try:
        await storage.accounts.create(
            username,
            password,
            role,
            department=department,
            hall=halls[0] if role is Role.KIOSK else None,
            halls=halls if role is Role.CLERK else (),
            audit=AuditEvent(
                "operator", "account.create", username, {"role": role.value, "via": "command"}
            ),
        )
    except (RecordConflict, RecordNotFound) as exc:
        print(f"windowlink: account not created: {exc}", file=sys.stderr)
        return 1
    except StorageUnavailable as exc:
        print(f"windowlink: the database cannot be reached: {exc}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
    print(f"account {username} ({role.value}) created")
    return 0


def installation(settings: Settings) -> "Installation":
    from storage.backup import Installation

    return Installation(
        settings.data_dir,
        database_url(settings.database_url, settings.data_dir),
        settings.keys_directory,
        crypto_suite(settings),
    )


async def backup_or_restore(settings: Settings, command: tuple[str, ...]) -> int:
    """``backup DEST [--key-backup KEYDEST]`` / ``restore SRC [--key-backup KEYDIR]``."""
    action, path = command[0], Path(command[1])
    if settings.blob_url or settings.master_key_file:
        # The documents live in the object store (or a shared directory), kept by
        # its own versioning and replication; see docs/OPERATIONS.md.
        print(
            f"{action} refused: with --blob-url or --master-key-file the documents or "
            "the keys are not in the data and key directories; back up the database with "
            "pg_dump, the object store with its own tools and the master key apart "
            "(docs/OPERATIONS.md)",
            file=sys.stderr,
        )
        return 1
    # Here, not at the top: backups are the only users of storage.backup's imports.
    from storage.backup import create_backup, restore_backup

    keys = Path(command[3]) if len(command) > 3 else None
    try:
        if action == "backup":
            report = await create_backup(installation(settings), path, keys)
        else:
            report = await restore_backup(installation(settings), path, keys)
    except BackupError as exc:
        print(f"{action} refused: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{action} failed: {exc}", file=sys.stderr)
        return 1
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    done = report.manifest
    what = f"{len(done.files)} documents, {len(done.keks)} key-encryption keys referenced"
    signer = done.signature.key_id if done.signature is not None else "?"
    if action == "backup":
        print(f"backup {done.backup_id} written to {path} ({what})")
        print(f"manifest signed with (a key derived from) audit key {signer}")
    else:
        print(f"backup {done.backup_id} restored into {settings.data_dir} ({what})")
        print(f"manifest signature verified with audit key {signer}; audit chain intact")
    return 0


def installed(settings: Settings) -> bool:
    """Whether there is an installation to work on (a command must not create one)."""
    return settings.database_url is not None or (settings.data_dir / "windowlink.db").exists()


def raise_open_file_limit() -> None:
    """Use the open-file allowance the system grants (the soft limit is often 1,024
    while the hard one is far higher): every socket.io connection, upload part and
    relay socket is a file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        invocation = parse_settings(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        print(f"windowlink: {exc}", file=sys.stderr)
        return 2
    settings = invocation.settings
    # Everything the server writes (database, documents, keys, certificates, backups)
    # is for its own account only.
    os.umask(0o077)
    raise_open_file_limit()
    configure_logging(settings.log_level, settings.log_format)
    if invocation.command[:1] in (("audit",), ("keys",), ("files",)) and not installed(settings):
        print(
            f"windowlink: no installation in {settings.data_dir} (no database there); "
            "check --data-dir / --database-url",
            file=sys.stderr,
        )
        return 2
    if invocation.command == ("audit", "verify"):
        return asyncio.run(verify_audit(settings))
    if invocation.command[:1] == ("keys",):
        try:
            return asyncio.run(manage_keys(settings, invocation.command[1:]))
        except KeyringError as exc:
            print(f"windowlink: {exc}", file=sys.stderr)
            return 2
    if invocation.command[:1] == ("files",):
        return asyncio.run(tidy_files(settings, dry_run="--dry-run" in invocation.command))
    if invocation.command[:1] in (("backup",), ("restore",)):
        return asyncio.run(backup_or_restore(settings, invocation.command))
    if invocation.command[:2] == ("accounts", "create"):
        try:
            return asyncio.run(create_account(settings, invocation.command))
        except KeyringError as exc:
            print(f"windowlink: {exc}", file=sys.stderr)
            return 2
    return serve(settings, argv)


def serve(settings: Settings, argv: Sequence[str] | None) -> int:
    """Run the server (or, with --processes, the supervisor of its processes)."""
    url = f"{settings.scheme}://{settings.host}:{settings.port}"
    # SIGUSR1/SIGUSR2 drain and undrain a serving node (web.app); until its handler
    # is installed they must not end the process, as their default action would.
    for drain_signal in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(drain_signal, signal.SIG_IGN)
    index = child_index()
    for flag in secrets_on_command_line(sys.argv[1:] if argv is None else argv):
        logging.getLogger("windowlink").warning(
            "%s was given on the command line, which every local user can read: give it "
            "as the environment variable WINDOWLINK_%s instead",
            flag,
            flag.removeprefix("--").replace("-", "_").upper(),
        )
    if settings.processes > 1 and index is None:
        banner(
            f"windowlink serving {url}/kiosk /expert /clerk /admin "
            f"with {settings.processes} processes",
            settings.log_format,
        )
        argv = sys.argv if argv is None else [sys.argv[0], *argv]
        supervisor = Supervisor(
            settings.processes,
            argv,
            settings.cluster_secret,
            (settings.host, settings.port),
            settings.data_dir,
            secret_env=secret_environment(settings),
        )
        return supervisor.run()
    # Imported here, not at the top: the web application (aiohttp, socket.io, the
    # relay's aiortc and PyAV, every API module) is two seconds of imports that
    # neither the commands nor the supervisor of --processes needs.
    from aiohttp import web

    from web.app import create_app
    from web.tls import ssl_context

    context = ssl_context(settings)
    if index is None:
        banner(f"windowlink serving {url}/kiosk /expert /clerk /admin", settings.log_format)
    if settings.master_key_file is not None:
        # Checked before serving: a node must not start unable to read the keys.
        try:
            read_master_key(settings.master_key_file)
        except KeyringError as exc:
            print(f"windowlink: {exc}", file=sys.stderr)
            return 2
    app = create_app(settings)
    watchdog = ExitWatchdog()

    async def arm_watchdog(_app: web.Application) -> None:
        watchdog.arm()

    # First of the stop's hooks: whatever else hangs, the process ends in time.
    app.on_shutdown.insert(0, arm_watchdog)
    app.on_cleanup.insert(0, arm_watchdog)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            ssl_context=context,
            print=None,
            access_log=None,
            # Several processes of this machine share the port (--processes).
            reuse_port=index is not None,
            # A stopping node does not wait for its open sockets to be closed by their
            # clients (engine.io would keep each for its ping timeout): the pages and
            # clients reconnect to another node by themselves.
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
    except (ForeignBlobStore, BlobError) as exc:
        # Found while starting (web.app's document store): the store is another
        # deployment's, or cannot be asked whose it is.
        print(f"windowlink: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
