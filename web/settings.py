"""Settings: read once from flags and ``WINDOWLINK_<NAME>`` variables, checked, frozen.

A flag wins over its variable; a variable wins over the default. Defaults are
the embedded single-node set-up: SQLite and files under ./data, in-process
signaling state, no Redis.
"""

import argparse
import dataclasses
import ipaddress
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from media.ice import check_ice_url, is_turn
from storage.blobs import parse_blob_url

ENV_PREFIX = "WINDOWLINK_"


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    """Address the HTTP(S) server binds."""
    port: int = 8080
    """Port the HTTP(S) server binds."""
    data_dir: Path = Path("./data")
    """Directory for the SQLite database, files, keys and the generated certificate."""
    demo: bool = False
    """Seed the demo departments and accounts (loopback hosts only)."""
    redis_url: str | None = None
    """Redis for the live state and socket.io emits shared by every process and node;
    unset = in-process state (one process)."""
    redis_prefix: str = "windowlink:"
    """Prefix of every Redis key (and the socket.io channel) of this deployment."""
    processes: int = 1
    """Server processes on this machine, all on the same port (needs --redis-url above 1)."""
    internal_address: str = "127.0.0.1:0"
    """HOST:PORT where this node's relay workers listen for the deployment's other
    processes and nodes (worker i on PORT+i; port 0: any free one)."""
    cluster_secret: str | None = None
    """Secret the processes and nodes of a deployment share for their internal calls
    (relay workers); unset = one generated for this run."""
    database_url: str | None = None
    """postgresql://... for PostgreSQL; unset = SQLite in the data directory."""
    blob_url: str | None = None
    """Where the encrypted documents are kept: s3://BUCKET/PREFIX (shared by a cluster;
    credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION) or
    file:///DIR; unset = <data-dir>/files."""
    s3_endpoint: str | None = None
    """URL of an S3-compatible object store other than AWS (with an s3:// --blob-url)."""
    media_address: tuple[str, ...] = ()
    """Local addresses the relay gathers ICE candidates on (repeatable)."""
    media_public_address: str | None = None
    """Address the relay advertises instead of the local one (1:1 NAT in front of it)."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN server URL for the pages and the relay (repeatable), e.g.
    turn:turn.example.gov.cn:3478?transport=udp; TURN needs --turn-secret."""
    turn_secret: str | None = None
    """Secret shared with the TURN server (coturn's static-auth-secret): each page gets
    credentials that expire, never a static password."""
    turn_ttl: float = 300.0
    """Seconds the TURN credentials given to a call's page or the relay stay valid for a
    new allocation (at most 48 h; an allocation made in time lasts as long as its call)."""
    media_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Relay worker processes (default: one per core); 0 runs the relay in this process."""
    relay_datapath: str = "auto"
    """Where the relay forwards steady packets: auto (in C, media._native, where it was
    built and loads), native (a start fails without it) or python."""
    tls_cert: Path | None = None
    """PEM certificate chain to serve HTTPS with (with --tls-key)."""
    tls_key: Path | None = None
    """PEM private key for --tls-cert."""
    tls_self_signed: bool = False
    """Serve HTTPS with a certificate generated into the data directory."""
    behind_proxy: bool = False
    """TLS ends at a reverse proxy: allow plain HTTP off loopback, trust X-Forwarded-*."""
    max_file_size: int = 50 * 1024 * 1024
    """Largest document accepted, in bytes."""
    key_dir: Path | None = None
    """Directory of the key-encryption keys (default: <data-dir>/keys)."""
    master_key_file: Path | None = None
    """File (mode 600) with the 64-hex-digit master key: the key-encryption keys are then
    kept in the database, sealed under it, shared by every node (a key directory is
    imported the first time)."""
    crypto_suite: str = "aes-256-gcm"
    """aes-256-gcm, or sm4-gcm for Chinese commercial cryptography (SM4 with SM3 digests)."""
    ring_timeout: float = 20.0
    """Seconds an offer rings before it goes to the next expert."""
    grace_period: float = 30.0
    """Seconds a dropped participant has to come back before the call ends."""
    no_expert_wait: float = 120.0
    """Seconds a consultation waits with nobody of its department online."""
    wrap_up_limit: float = 180.0
    """Seconds after a call to complete its record, offered nobody, before set away (0: off)."""
    complaint_days: float = 7.0
    """Days a bad 好差评 grade's follow-up has before it shows as overdue."""
    session_idle: float = 8 * 3600.0
    """Seconds of inactivity after which a login session expires."""
    session_max: float = 24 * 3600.0
    """Seconds after login after which a session expires regardless."""
    kiosk_session_max: float = 30 * 86400.0
    """Seconds a kiosk's login lasts (no idle timeout): a hall's kiosk is logged in
    once, not every morning."""
    login_attempts: int = 5
    """Failed logins per account and address within --login-window before 429."""
    login_window: float = 300.0
    """Seconds over which failed logins are counted."""
    log_level: str = "info"
    """debug, info, warning or error."""
    extra_hosts: tuple[str, ...] = field(default=())
    """More host names for the self-signed certificate (repeatable)."""
    trusted_proxies: tuple[str, ...] = ()
    """With --behind-proxy: the proxies' addresses/networks (repeatable), or a number of
    proxy hops on a loopback --host (default 1); only X-Forwarded-For entries they
    appended are believed, and only from a proxy."""
    metrics_token: str | None = None
    """Bearer token (16+ characters) that opens /metrics to non-loopback scrapers; wrong
    tokens are throttled per address like logins."""
    log_format: str = "text"
    """text, or json: one JSON object per line on stdout and stderr."""
    retention_days: float = 0.0
    """Crypto-shred documents of consultations ended more than this many days ago (0: keep)."""
    recording_retention_days: float = 0.0
    """Crypto-shred recordings this many days after their call ended (0: as documents;
    never longer than --retention-days when that is set)."""
    hide_listening: bool = False
    """Do not show the staff in a call that a supervisor listens to it (the kiosk's
    standing notice that calls may be listened to shows regardless)."""
    recordings_play_only: bool = False
    """Serve a recording only to a page's video or audio player (Sec-Fetch-Dest), never
    as a download: a speed bump against saving and passing links, not copy protection."""
    header_timeout: float = 15.0
    """Seconds a connection may take to send a request's headers (and idle between requests)."""
    upload_idle_timeout: float = 600.0
    """Seconds after which an unfinished upload that received nothing is discarded."""
    upload_first_byte_timeout: float = 30.0
    """Seconds an upload may wait for its first part to begin before it is discarded."""
    max_open_uploads: int = 4
    """Unfinished uploads one account may hold at once."""
    max_pending_upload_bytes: int = 1024 * 1024 * 1024
    """Bytes all unfinished uploads together may hold (received, not declared), across accounts."""
    max_upload_bytes_per_account: int | None = None
    """Bytes one account's unfinished uploads may hold (received); default twice --max-file-size."""
    max_upload_bytes_per_call: int | None = None
    """Bytes one call's unfinished uploads may hold (received); default 3 x --max-file-size."""
    max_sockets_per_account: int = 8
    """socket.io connections one account may hold at once (tabs, reconnects)."""
    chat_per_minute: int = 30
    """Chat lines one account may send per minute."""
    events_per_second: float = 20.0
    """socket.io events one connection may send per second (bursts of twice that)."""
    notice_sender: str = "log"
    """How citizens' text notices (bookings, reminders, call-backs) go out: log (written
    to the log, number masked) or http (POSTed to --notice-http-url)."""
    notice_http_url: str | None = None
    """The SMS gateway's URL the http notice sender POSTs each notice to (JSON)."""
    notice_template: tuple[str, ...] = ()
    """A notice's text, TYPE=TEXT (repeatable; types booking_confirmed, reminder,
    cancelled, callback_scheduled; fields in braces such as {department} {date} {time} {code})."""

    @property
    def upload_bytes_per_account(self) -> int:
        return self.max_upload_bytes_per_account or 2 * self.max_file_size

    @property
    def upload_bytes_per_call(self) -> int:
        return self.max_upload_bytes_per_call or 3 * self.max_file_size

    @property
    def keys_directory(self) -> Path:
        return self.key_dir or self.data_dir / "keys"

    @property
    def tls(self) -> bool:
        return self.tls_self_signed or self.tls_cert is not None

    @property
    def internal_host_port(self) -> tuple[str, int]:
        host, _, port = self.internal_address.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env_name(dest: str) -> str:
    return ENV_PREFIX + dest.upper()


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="server.py",
        usage="%(prog)s [FLAGS] [COMMAND ...]",
        description="windowlink: video consultation and document exchange for service halls.",
        epilog="Every flag can also be set with the environment variable WINDOWLINK_<NAME> "
        "(e.g. WINDOWLINK_DATABASE_URL); repeatable flags take a comma-separated list there.",
    )

    def env(dest: str, fallback: object) -> object:
        return environ.get(_env_name(dest), fallback)

    def bool_env(dest: str) -> bool:
        raw = environ.get(_env_name(dest), "").strip().lower()
        if raw in ("", "0", "false", "no", "off"):
            return False
        if raw in ("1", "true", "yes", "on"):
            return True
        raise SettingsError(f"{_env_name(dest)} must be true or false, not {raw!r}")

    def help_of(dest: str) -> str:
        return _FIELD_DOCS[dest]

    grouped = {dest for _, dests in FLAG_GROUPS for dest in dests}
    # A setting not yet in a group still gets its flag (a test asks for its group).
    others = tuple(f.name for f in dataclasses.fields(Settings) if f.name not in grouped)
    for title, dests in (*FLAG_GROUPS, ("other", others)):
        group = parser.add_argument_group(title)
        for dest in dests:
            shown = f"{help_of(dest)} [default: {default_text(dest)}; {_env_name(dest)}]"
            if dest in BOOLEAN_FLAGS:
                group.add_argument(
                    _flag(dest), dest=dest, action="store_true", default=bool_env(dest), help=shown
                )
            elif dest in REPEATABLE_FLAGS:
                raw = environ.get(_env_name(dest), "")
                group.add_argument(
                    flag_of(dest),
                    dest=dest,
                    action="append",
                    default=None,
                    metavar=REPEATABLE_FLAGS[dest],
                    help=shown,
                )
                parser.set_defaults(
                    **{f"{dest}_env": [v.strip() for v in raw.split(",") if v.strip()]}
                )
            else:
                # Checked and converted in parse_settings.
                group.add_argument(
                    _flag(dest),
                    dest=dest,
                    default=env(dest, getattr(defaults, dest)),
                    metavar=dest.upper(),
                    help=shown,
                )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    audit_sub.add_parser(
        "verify", help="check the audit hash chain; exit 1 naming the first broken entry"
    )
    keys = sub.add_parser("keys", help="key-encryption keys of the document store")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    keys_sub.add_parser("rotate", help="make a new key-encryption key and re-wrap every data key")
    retire = keys_sub.add_parser("retire", help="delete an old key-encryption key nothing uses")
    retire.add_argument("kek_id")
    keys_sub.add_parser(
        "rotate-lookup",
        help="new lookup key of identity and phone numbers; every stored lookup recomputed",
    )
    backup = sub.add_parser(
        "backup", help="copy the database and the encrypted files into DEST (while serving)"
    )
    backup.add_argument("path", metavar="DEST")
    backup.add_argument(
        "--key-backup",
        dest="key_backup",
        metavar="KEYDEST",
        help="also copy the key-encryption keys here (never inside DEST)",
    )
    restore = sub.add_parser("restore", help="restore a backup into an empty data directory")
    restore.add_argument("path", metavar="SRC")
    restore.add_argument(
        "--key-backup",
        dest="key_backup",
        metavar="KEYDIR",
        help="where the key-encryption keys were backed up",
    )
    files = sub.add_parser("files", help="the document store")
    files_sub = files.add_subparsers(dest="files_command", required=True, metavar="ACTION")
    tidy = files_sub.add_parser(
        "tidy",
        help="remove this deployment's blobs that a crash left without a record (safe "
        "beside running nodes); never another deployment's",
    )
    tidy.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="list what would be removed and remove nothing",
    )
    accounts = sub.add_parser("accounts", help="accounts, without a running server")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")
    create = accounts_sub.add_parser(
        "create",
        help="create an account (the first admin of a new installation); the password is "
        "read from standard input, one line",
    )
    create.add_argument(
        "--role", required=True, choices=("admin", "clerk", "expert", "kiosk"), help="its role"
    )
    create.add_argument("--username", required=True, help="its user name (a-z, 0-9, _ . -)")
    create.add_argument("--department", help="an expert's department (code)")
    create.add_argument(
        "--hall",
        action="append",
        dest="account_halls",
        help="a kiosk's hall, or a clerk's (repeatable) (code)",
    )
    return parser


BOOLEAN_FLAGS = frozenset(
    {"demo", "tls_self_signed", "behind_proxy", "recordings_play_only", "hide_listening"}
)
REPEATABLE_FLAGS = {
    "media_address": "ADDR",
    "notice_template": "TYPE=TEXT",
    "extra_hosts": "HOST",
    "trusted_proxies": "PROXY",
    "ice_servers": "URL",
}
"""Flags given once per value (their metavar)."""

FLAG_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "network",
        (
            "host",
            "port",
            "tls_cert",
            "tls_key",
            "tls_self_signed",
            "extra_hosts",
            "behind_proxy",
            "trusted_proxies",
            "header_timeout",
        ),
    ),
    (
        "storage",
        (
            "data_dir",
            "database_url",
            "blob_url",
            "s3_endpoint",
            "master_key_file",
            "key_dir",
            "crypto_suite",
            "max_file_size",
            "retention_days",
            "recording_retention_days",
        ),
    ),
    (
        "several processes and nodes",
        ("redis_url", "redis_prefix", "processes", "internal_address", "cluster_secret"),
    ),
    (
        "media",
        (
            "media_address",
            "media_public_address",
            "media_workers",
            "relay_datapath",
            "ice_servers",
            "turn_secret",
            "turn_ttl",
        ),
    ),
    (
        "consultations",
        (
            "ring_timeout",
            "grace_period",
            "no_expert_wait",
            "wrap_up_limit",
            "complaint_days",
            "hide_listening",
            "demo",
        ),
    ),
    (
        "security",
        (
            "session_idle",
            "session_max",
            "kiosk_session_max",
            "login_attempts",
            "login_window",
            "metrics_token",
            "recordings_play_only",
        ),
    ),
    (
        "limits",
        (
            "max_open_uploads",
            "max_pending_upload_bytes",
            "max_upload_bytes_per_account",
            "max_upload_bytes_per_call",
            "upload_idle_timeout",
            "upload_first_byte_timeout",
            "max_sockets_per_account",
            "chat_per_minute",
            "events_per_second",
        ),
    ),
    ("logging", ("log_level", "log_format")),
    ("notices to citizens", ("notice_sender", "notice_http_url", "notice_template")),
)
"""Every flag in the group ``--help`` lists it under (a test checks each setting is in
exactly one)."""

_DEFAULT_TEXTS = {
    "media_workers": "one per core",
    "database_url": "SQLite in the data directory",
    "blob_url": "<data-dir>/files",
    "key_dir": "<data-dir>/keys",
    "cluster_secret": "generated for each run",
    "media_address": "every address but loopback",
    "trusted_proxies": "1 (one proxy hop, loopback --host only)",
    "max_upload_bytes_per_account": "twice --max-file-size",
    "max_upload_bytes_per_call": "3 x --max-file-size",
    "redis_url": "in-process state",
}


def default_text(dest: str) -> str:
    """A setting's built-in default as --help shows it (never a value from the
    environment, which may be a secret)."""
    if dest in _DEFAULT_TEXTS:
        return _DEFAULT_TEXTS[dest]
    value = getattr(Settings(), dest)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == ():
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


SECRET_FIELDS = ("cluster_secret", "turn_secret", "metrics_token", "database_url", "redis_url")
"""Settings that are secrets or may carry one (a password in a URL). A process list
shows every command line to every local user: a supervisor gives these to its
children in their environment only (web/processes.py), and the docs recommend the
WINDOWLINK_* variables for them."""


def flag_of(dest: str) -> str:
    """The long flag of a setting (the repeatable ones are singular: --ice-server)."""
    return _flag(dest).removesuffix("s") if dest in ("extra_hosts", "ice_servers") else _flag(dest)


def long_flags() -> tuple[str, ...]:
    """Every long option the server takes before its sub-command."""
    return (*(flag_of(f.name) for f in dataclasses.fields(Settings)), "--help")


def secret_environment(settings: Settings) -> dict[str, str]:
    """The secret settings that are set, as the WINDOWLINK_* variables naming them."""
    values = {dest: getattr(settings, dest) for dest in SECRET_FIELDS}
    return {_env_name(dest): str(value) for dest, value in values.items() if value is not None}


def _field_docs() -> dict[str, str]:
    """Each field's docstring, read from this module's source (the one-line docs above)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Settings))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    return docs


_FIELD_DOCS = _field_docs()


def _number(name: str, raw: object, kind: type[int] | type[float], minimum: float) -> float:
    try:
        value = kind(str(raw))
    except (TypeError, ValueError):
        raise SettingsError(f"{_flag(name)} must be a number, not {raw!r}") from None
    if not math.isfinite(value):
        # float() reads "nan" and "inf": nan passes every bound, and either would
        # become a deadline that never comes or a value no JSON can carry.
        raise SettingsError(f"{_flag(name)} must be a number, not {raw!r}")
    if value < minimum:
        raise SettingsError(f"{_flag(name)} must be at least {minimum}, not {value}")
    return value


def _upload_bytes(name: str, raw: object, max_file_size: object) -> int | None:
    """A byte limit on unfinished uploads; unset = derived from --max-file-size. Less
    than one document of the largest size would refuse such documents for good."""
    if raw is None or raw == "":
        return None
    value = int(_number(name, raw, int, 1))
    largest = int(_number("max_file_size", max_file_size, int, 1))
    if value < largest:
        raise SettingsError(
            f"{_flag(name)} must be at least --max-file-size ({largest}), not {value}: "
            "a document of the largest size could never be uploaded"
        )
    return value


def _suite(value: str) -> str:
    value = value.lower()
    if value not in ("aes-256-gcm", "sm4-gcm"):
        raise SettingsError(f"--crypto-suite must be aes-256-gcm or sm4-gcm, not {value!r}")
    return value


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SettingsError(f"{_flag(name)} must be {' or '.join(allowed)}, not {value!r}")
    return value


def _trusted_proxies(values: Sequence[str]) -> tuple[str, ...]:
    """One hop count, or addresses/networks of the proxies in front."""
    values = [v.strip() for v in values if v.strip()]
    if len(values) == 1 and values[0].isdigit():
        if not 1 <= int(values[0]) <= 10:
            raise SettingsError("--trusted-proxies as a hop count must be 1 to 10")
        return (str(int(values[0])),)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SettingsError(
                f"--trusted-proxies takes a hop count or addresses/networks, not {value!r}"
            ) from None
    return tuple(values)


def _ice_servers(values: Sequence[str]) -> tuple[str, ...]:
    try:
        return tuple(check_ice_url(v) for v in values)
    except ValueError as exc:
        raise SettingsError(f"--ice-server: {exc}") from None


MAX_TURN_TTL = 48 * 3600.0
"""TURN credentials valid longer would outlive by days an account disabled or a call
ended: refused."""


def _turn_ttl(value: float) -> float:
    if value > MAX_TURN_TTL:
        raise SettingsError(f"--turn-ttl must be at most {MAX_TURN_TTL:.0f} (48 h), not {value}")
    return value


def _blob_url(value: str) -> str:
    try:
        parse_blob_url(value)
    except ValueError as exc:
        raise SettingsError(f"--blob-url: {exc}") from None
    return value


def _s3_endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"--s3-endpoint must be an http(s):// URL, not {value!r}")
    return value


def _internal_address(value: str) -> str:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if not host or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"--internal-address must be HOST:PORT, not {value!r}")
    if address is not None and address.is_unspecified:
        raise SettingsError(
            "--internal-address must be an address the other nodes reach, not "
            f"{host} (every interface)"
        )
    return value


def _notice_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"--notice-http-url must be an http(s):// URL, not {value!r}")
    return value


def _notice_templates(values: Sequence[str]) -> tuple[str, ...]:
    # Checked here so that a template naming an unknown field fails at start, not at
    # the first booking; web.notices parses them again into templates by type.
    from web.notices import parse_templates

    try:
        parse_templates(values)
    except ValueError as exc:
        raise SettingsError(f"--notice-template: {exc}") from None
    return tuple(values)


@dataclass(frozen=True)
class Invocation:
    settings: Settings
    command: tuple[str, ...]


def parse_settings(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Invocation:
    """Flags and environment -> checked settings and the sub-command (if any)."""
    environ = os.environ if environ is None else environ
    args = _build_parser(environ).parse_args(list(argv))
    port = int(_number("port", args.port, int, 0))
    if port > 65535:
        raise SettingsError("--port must be at most 65535")
    log_level = str(args.log_level).lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise SettingsError(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    settings = Settings(
        host=str(args.host),
        port=port,
        data_dir=Path(str(args.data_dir)),
        demo=bool(args.demo),
        redis_url=str(args.redis_url) if args.redis_url else None,
        redis_prefix=str(args.redis_prefix),
        processes=int(_number("processes", args.processes, int, 1)),
        cluster_secret=str(args.cluster_secret) if args.cluster_secret else None,
        internal_address=_internal_address(str(args.internal_address)),
        database_url=str(args.database_url) if args.database_url else None,
        blob_url=_blob_url(str(args.blob_url)) if args.blob_url else None,
        s3_endpoint=_s3_endpoint(str(args.s3_endpoint)) if args.s3_endpoint else None,
        media_address=tuple(args.media_address or args.media_address_env),
        media_public_address=str(args.media_public_address) if args.media_public_address else None,
        ice_servers=_ice_servers(args.ice_servers or args.ice_servers_env),
        turn_secret=str(args.turn_secret) if args.turn_secret else None,
        turn_ttl=_turn_ttl(_number("turn_ttl", args.turn_ttl, float, 60)),
        media_workers=int(_number("media_workers", args.media_workers, int, 0)),
        relay_datapath=_choice(
            "relay_datapath", str(args.relay_datapath).lower(), ("auto", "native", "python")
        ),
        max_file_size=int(_number("max_file_size", args.max_file_size, int, 1)),
        key_dir=Path(str(args.key_dir)) if args.key_dir else None,
        master_key_file=Path(str(args.master_key_file)) if args.master_key_file else None,
        crypto_suite=_suite(str(args.crypto_suite)),
        tls_cert=Path(str(args.tls_cert)) if args.tls_cert else None,
        tls_key=Path(str(args.tls_key)) if args.tls_key else None,
        tls_self_signed=bool(args.tls_self_signed),
        behind_proxy=bool(args.behind_proxy),
        ring_timeout=_number("ring_timeout", args.ring_timeout, float, 1),
        grace_period=_number("grace_period", args.grace_period, float, 1),
        no_expert_wait=_number("no_expert_wait", args.no_expert_wait, float, 1),
        wrap_up_limit=_number("wrap_up_limit", args.wrap_up_limit, float, 0),
        complaint_days=_number("complaint_days", args.complaint_days, float, 1),
        session_idle=_number("session_idle", args.session_idle, float, 60),
        session_max=_number("session_max", args.session_max, float, 60),
        kiosk_session_max=_number("kiosk_session_max", args.kiosk_session_max, float, 60),
        login_attempts=int(_number("login_attempts", args.login_attempts, int, 1)),
        login_window=_number("login_window", args.login_window, float, 1),
        log_level=log_level,
        extra_hosts=tuple(args.extra_hosts or args.extra_hosts_env),
        trusted_proxies=_trusted_proxies(args.trusted_proxies or args.trusted_proxies_env),
        metrics_token=str(args.metrics_token) if args.metrics_token else None,
        log_format=_choice("log_format", str(args.log_format).lower(), ("text", "json")),
        retention_days=_number("retention_days", args.retention_days, float, 0),
        recording_retention_days=_number(
            "recording_retention_days", args.recording_retention_days, float, 0
        ),
        recordings_play_only=bool(args.recordings_play_only),
        hide_listening=bool(args.hide_listening),
        header_timeout=_number("header_timeout", args.header_timeout, float, 1),
        upload_idle_timeout=_number("upload_idle_timeout", args.upload_idle_timeout, float, 10),
        upload_first_byte_timeout=_number(
            "upload_first_byte_timeout", args.upload_first_byte_timeout, float, 1
        ),
        max_open_uploads=int(_number("max_open_uploads", args.max_open_uploads, int, 1)),
        max_pending_upload_bytes=int(
            _number("max_pending_upload_bytes", args.max_pending_upload_bytes, int, 1)
        ),
        max_upload_bytes_per_account=_upload_bytes(
            "max_upload_bytes_per_account", args.max_upload_bytes_per_account, args.max_file_size
        ),
        max_upload_bytes_per_call=_upload_bytes(
            "max_upload_bytes_per_call", args.max_upload_bytes_per_call, args.max_file_size
        ),
        max_sockets_per_account=int(
            _number("max_sockets_per_account", args.max_sockets_per_account, int, 1)
        ),
        chat_per_minute=int(_number("chat_per_minute", args.chat_per_minute, int, 1)),
        events_per_second=_number("events_per_second", args.events_per_second, float, 1),
        notice_sender=_choice("notice_sender", str(args.notice_sender).lower(), ("log", "http")),
        notice_http_url=_notice_url(str(args.notice_http_url)) if args.notice_http_url else None,
        notice_template=_notice_templates(args.notice_template or args.notice_template_env),
    )
    command: tuple[str, ...] = ()
    if args.command == "audit":
        command = ("audit", str(args.audit_command))
    elif args.command == "keys":
        retired = [str(args.kek_id)] if args.keys_command == "retire" else []
        command = ("keys", str(args.keys_command), *retired)
    elif args.command == "files":
        command = ("files", str(args.files_command), *(["--dry-run"] if args.dry_run else []))
    elif args.command == "accounts":
        command = ("accounts", str(args.accounts_command), "--role", str(args.role))
        command += ("--username", str(args.username))
        if args.department:
            command += ("--department", str(args.department))
        for hall in args.account_halls or ():
            command += ("--hall", str(hall))
    elif args.command in ("backup", "restore"):
        keys = ("--key-backup", str(args.key_backup)) if args.key_backup else ()
        command = (str(args.command), str(args.path), *keys)
    if not command:
        check_serving(settings)
    return Invocation(settings, command)


def counts_proxy_hops(settings: Settings) -> bool:
    """Whether forwarded headers are believed by hop count (no proxy addresses given)."""
    proxies = settings.trusted_proxies
    return settings.behind_proxy and (not proxies or (len(proxies) == 1 and proxies[0].isdigit()))


def check_serving(settings: Settings) -> None:
    """Refuse set-ups that would be unsafe to serve."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SettingsError("--tls-cert and --tls-key go together")
    if settings.tls_cert is not None and settings.tls_self_signed:
        raise SettingsError("choose either --tls-cert/--tls-key or --tls-self-signed")
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not path.is_file():
            raise SettingsError(f"TLS file {path} does not exist")
    if not settings.tls and not settings.behind_proxy and not is_loopback(settings.host):
        raise SettingsError(
            f"refusing to serve plain HTTP on {settings.host}: cameras and the files need an "
            "encrypted connection. Use --tls-cert/--tls-key or --tls-self-signed, or "
            "--behind-proxy if a reverse proxy ends TLS in front of this server."
        )
    if counts_proxy_hops(settings) and not is_loopback(settings.host):
        raise SettingsError(
            f"--behind-proxy with a hop count (--trusted-proxies N, 1 by default) believes "
            f"X-Forwarded-For from whoever connects, and {settings.host} can be reached "
            "without the proxy: name the proxies instead (--trusted-proxies 10.0.0.5, "
            "repeatable, or a network such as 10.0.0.0/24), or listen on loopback only "
            "(--host 127.0.0.1) with the proxy on this machine."
        )
    if settings.demo and not is_loopback(settings.host):
        raise SettingsError(
            f"--demo publishes known passwords and is only allowed on a loopback host, "
            f"not {settings.host}"
        )
    if settings.processes > 1 and not settings.redis_url:
        raise SettingsError(
            "--processes above 1 needs --redis-url: the processes share the live state there"
        )
    if settings.processes > 1 and settings.port == 0:
        raise SettingsError("--processes above 1 needs a fixed --port that they share")
    if settings.processes > 1 and settings.media_workers == 0:
        raise SettingsError(
            "--processes above 1 needs relay workers (--media-workers 1 or more): a call's "
            "media must be reachable from every process"
        )
    if any(is_turn(u) for u in settings.ice_servers) and not settings.turn_secret:
        raise SettingsError(
            "a TURN --ice-server needs --turn-secret (the TURN server's static-auth-secret): "
            "pages get credentials that expire, never a static password"
        )
    if settings.turn_secret is not None and len(settings.turn_secret) < 16:
        raise SettingsError("--turn-secret must be at least 16 characters")
    if settings.s3_endpoint and not (settings.blob_url or "").startswith("s3://"):
        raise SettingsError("--s3-endpoint goes with an s3:// --blob-url")
    if settings.cluster_secret is not None and len(settings.cluster_secret) < 16:
        raise SettingsError("--cluster-secret must be at least 16 characters")
    if settings.metrics_token is not None and len(settings.metrics_token) < 16:
        raise SettingsError(
            "--metrics-token must be at least 16 characters (head -c 24 /dev/urandom | base64)"
        )
    if settings.notice_sender == "http" and settings.notice_http_url is None:
        raise SettingsError("--notice-sender http needs --notice-http-url (the SMS gateway)")
    if settings.session_max < settings.session_idle:
        raise SettingsError("--session-max must not be shorter than --session-idle")
    if shares_documents(settings) and settings.master_key_file is None:
        raise SettingsError(
            "this node shares its records and documents with other processes or nodes "
            "(--redis-url, or PostgreSQL with a shared --blob-url), but without "
            "--master-key-file it would keep its key-encryption keys in a key directory of "
            f"its own ({settings.keys_directory}), which the others cannot read: uploads and "
            "downloads through them would fail. Make one master key, once: "
            "(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > master.key), "
            "give the same file to every node with --master-key-file (or "
            "WINDOWLINK_MASTER_KEY_FILE), mode 600, and keep a copy apart from the database "
            "backups. The keys then live in the shared database, sealed under it; this "
            "node's key directory is taken in at its first start (docs/DEPLOY.md)."
        )


def shares_documents(settings: Settings) -> bool:
    """Whether other processes or nodes read and write this node's documents: they
    then need the same key-encryption keys (a master key)."""
    shared_database = (settings.database_url or "").startswith("postgres")
    return settings.redis_url is not None or (shared_database and settings.blob_url is not None)
