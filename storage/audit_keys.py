"""The keys of the audit chain: each entry is an HMAC (HMAC-SHA-256, or HMAC-SM3
under the SM suite) over its content and its predecessor's MAC, under a key that is
kept with the key-encryption keys and never in the database. Whoever can write to
the database (or edit a backup of it) can no longer recompute the chain.

Where the key comes from:

- a key directory: ``<key-dir>/audit-<id>.key`` (JSON, 0600), made at the first
  start; the newest one of the suite's algorithm signs, every one verifies;
- with ``--master-key-file``: derived from the master key (HKDF-SHA256, a label
  of its own), so that every node of a cluster signs with the same key and none is
  stored anywhere; the key directory's keys still verify the entries made before
  the move.

Each node also keeps ``<key-dir>/audit-anchor.json``: how many unkeyed entries
(made before keying existed) the chain began with when this node first saw it,
and the last one's hash. An unkeyed entry after them, or a different prefix, is
a broken chain: a chain cannot be passed off as "made before keying" by
rewriting it the unkeyed way.
"""

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from storage.errors import KeyringError
from storage.filecrypt import Suite

HMAC_SHA256 = "hmac-sha256"
HMAC_SM3 = "hmac-sm3"
ALGORITHMS = (HMAC_SHA256, HMAC_SM3)
KEY_SIZE = 32
ANCHOR_FILE = "audit-anchor.json"
KEY_PREFIX = "audit-"
KEY_SUFFIX = ".key"


def algorithm_of(suite: Suite) -> str:
    """The chain's MAC under a crypto suite: HMAC-SM3 with SM4, HMAC-SHA-256 otherwise."""
    return HMAC_SM3 if suite is Suite.SM4_GCM else HMAC_SHA256


def _hmac(algorithm: str, key: bytes, data: bytes) -> bytes:
    if algorithm == HMAC_SHA256:
        return hmac.new(key, data, hashlib.sha256).digest()
    if algorithm == HMAC_SM3:
        mac = crypto_hmac.HMAC(key, hashes.SM3())
        mac.update(data)
        return mac.finalize()
    raise KeyringError(f"unknown audit MAC algorithm {algorithm!r}")


@dataclass(frozen=True)
class AuditKey:
    id: str
    algorithm: str
    key: bytes
    created_at: float

    def mac(self, data: bytes) -> str:
        """Hex HMAC of ``data`` under this key."""
        return _hmac(self.algorithm, self.key, data).hex()

    def matches(self, data: bytes, mac: str) -> bool:
        """Whether ``mac`` is this key's MAC of ``data`` (constant time)."""
        return hmac.compare_digest(self.mac(data), mac)

    def derived(self, purpose: str) -> "AuditKey":
        """A key of its own for another purpose (the backup manifest), same id."""
        return AuditKey(
            self.id,
            self.algorithm,
            _hmac(self.algorithm, self.key, b"windowlink " + purpose.encode()),
            self.created_at,
        )

    @property
    def description(self) -> str:
        return f"{self.id} ({'HMAC-SM3' if self.algorithm == HMAC_SM3 else 'HMAC-SHA-256'})"


@dataclass(frozen=True)
class ChainAnchor:
    """The chain's unkeyed beginning as this node first saw it."""

    legacy_entries: int
    legacy_head: str
    """The hash of the last unkeyed entry ('' when there are none)."""


@dataclass(frozen=True)
class AuditKeys:
    """The key new entries are made with (None: this process only verifies) and
    every key that verifies; the node's anchor lives in ``directory``."""

    active: AuditKey | None
    known: Mapping[str, AuditKey]
    directory: Path
    source: str
    """Where the keys are, for messages: the key directory, or the master key."""

    def signing(self) -> AuditKey:
        if self.active is None:
            raise KeyringError(
                f"no audit key to sign with in {self.source}: this process only verifies"
            )
        return self.active


# ---- the key directory ----------------------------------------------------------------


def _key_path(directory: Path, key_id: str) -> Path:
    return directory / f"{key_id}{KEY_SUFFIX}"


def load_directory_keys(directory: Path) -> dict[str, AuditKey]:
    """Every audit key in a key directory (none when it does not exist)."""
    keys: dict[str, AuditKey] = {}
    if not directory.is_dir():
        return keys
    for path in sorted(directory.glob(f"{KEY_PREFIX}*{KEY_SUFFIX}")):
        try:
            data = json.loads(path.read_text())
            key = AuditKey(
                str(data["id"]),
                str(data["algorithm"]),
                bytes.fromhex(str(data["key"])),
                float(data["created_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            raise KeyringError(f"the audit key file {path} is unreadable or damaged") from None
        if key.id != path.name.removesuffix(KEY_SUFFIX) or key.algorithm not in ALGORITHMS:
            raise KeyringError(f"the audit key file {path} is damaged")
        keys[key.id] = key
    return keys


def _write_private(path: Path, content: str) -> None:
    """A new 0600 file, synced; never replaces one that exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())


def _prepare(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def make_directory_key(directory: Path, algorithm: str) -> AuditKey:
    """A new audit key in the key directory."""
    _prepare(directory)
    key = AuditKey(
        f"{KEY_PREFIX}{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(4)}",
        algorithm,
        os.urandom(KEY_SIZE),
        time.time(),
    )
    _write_private(
        _key_path(directory, key.id),
        json.dumps(
            {
                "id": key.id,
                "algorithm": key.algorithm,
                "key": key.key.hex(),
                "created_at": key.created_at,
            }
        ),
    )
    return key


def _newest(keys: Mapping[str, AuditKey], algorithm: str) -> AuditKey | None:
    fitting = [k for k in keys.values() if k.algorithm == algorithm]
    return max(fitting, key=lambda k: (k.created_at, k.id), default=None)


def directory_audit_keys(directory: Path, suite: Suite, *, create: bool) -> AuditKeys:
    """The key directory's audit keys; the newest of the suite's algorithm signs
    (made now if there is none and ``create``)."""
    keys = load_directory_keys(directory)
    active = _newest(keys, algorithm_of(suite))
    if active is None and create:
        active = make_directory_key(directory, algorithm_of(suite))
        keys[active.id] = active
    return AuditKeys(active, keys, directory, f"the key directory {directory}")


# ---- the master key ---------------------------------------------------------------------


def master_audit_key(master_key: bytes, algorithm: str) -> AuditKey:
    """The audit key every node holding the master key derives alike."""
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=None,
        info=b"windowlink audit chain " + algorithm.encode(),
    ).derive(master_key)
    fingerprint = hmac.new(key, b"windowlink audit key id", hashlib.sha256).hexdigest()[:12]
    short = "sm3" if algorithm == HMAC_SM3 else "sha256"
    return AuditKey(f"master-{short}-{fingerprint}", algorithm, key, 0.0)


def master_audit_keys(master_key: bytes, suite: Suite, directory: Path) -> AuditKeys:
    """Signing with the master key's audit key; verifying with it (both algorithms)
    and with the key directory's keys (entries made before the move)."""
    keys = load_directory_keys(directory)
    for algorithm in ALGORITHMS:
        derived = master_audit_key(master_key, algorithm)
        keys[derived.id] = derived
    active = master_audit_key(master_key, algorithm_of(suite))
    return AuditKeys(active, keys, directory, "the master key")


# ---- the anchor ----------------------------------------------------------------------


def read_anchor(directory: Path) -> ChainAnchor | None:
    """This node's record of the chain's unkeyed beginning, None when it has none."""
    path = directory / ANCHOR_FILE
    try:
        data = json.loads(path.read_text())
        return ChainAnchor(int(data["legacy_entries"]), str(data["legacy_head"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise KeyringError(f"the audit anchor {path} is unreadable or damaged") from None


def record_anchor(directory: Path, anchor: ChainAnchor) -> ChainAnchor:
    """Keep ``anchor`` unless the node already has one (which then stands)."""
    _prepare(directory)
    with contextlib.suppress(FileExistsError):
        _write_private(
            directory / ANCHOR_FILE,
            json.dumps(
                {
                    "legacy_entries": anchor.legacy_entries,
                    "legacy_head": anchor.legacy_head,
                    "recorded_at": time.time(),
                }
            ),
        )
        return anchor
    found = read_anchor(directory)
    assert found is not None
    return found
