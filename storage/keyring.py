"""Key-encryption keys (KEKs): kept one per file in a key directory (0700/0600),
each with an id; the active one wraps new data keys. Rotation makes a new
active KEK; data keys wrapped by older ones are re-wrapped (content is never
re-encrypted), after which an old KEK can be retired."""

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from storage.filecrypt import DecryptionError, Suite, open_sealed, seal

_WRAP_NONCE = 12


class KeyringError(Exception):
    """The key directory is missing a key, unsafe, or inconsistent."""


@dataclass(frozen=True)
class Kek:
    id: str
    suite: Suite
    key: bytes
    created_at: float


@dataclass(frozen=True)
class WrappedKey:
    kek_id: str
    blob: bytes


class Keyring:
    def __init__(self, directory: Path, suite: Suite) -> None:
        self.directory = directory
        self.suite = suite
        self._keks: dict[str, Kek] = {}
        self.active_id = ""
        self._seen = 0

    @classmethod
    def open(cls, directory: Path, suite: Suite = Suite.AES_256_GCM) -> "Keyring":
        """Load the key directory, creating it (and a first KEK) on first start."""
        ring = cls(directory, suite)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        ring._load()
        if ring.active_id not in ring._keks or ring._keks[ring.active_id].suite is not suite:
            ring.rotate()
        return ring

    def _load(self) -> None:
        keks: dict[str, Kek] = {}
        for path in sorted(self.directory.glob("*.kek")):
            data = json.loads(path.read_text())
            kek = Kek(
                data["id"],
                Suite(data["suite"]),
                bytes.fromhex(data["key"]),
                float(data["created_at"]),
            )
            keks[kek.id] = kek
        self._keks = keks
        active = self.directory / "active"
        self.active_id = active.read_text().strip() if active.exists() else ""
        self._seen = active.stat().st_mtime_ns if active.exists() else 0

    def refresh(self) -> None:
        """Pick up a rotation or retirement done by ``server.py keys`` meanwhile."""
        active = self.directory / "active"
        if active.exists() and active.stat().st_mtime_ns != self._seen:
            self._load()

    def _write(self, kek: Kek) -> None:
        path = self.directory / f"{kek.id}.kek"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(
                {
                    "id": kek.id,
                    "suite": int(kek.suite),
                    "key": kek.key.hex(),
                    "created_at": kek.created_at,
                },
                out,
            )

    def _set_active(self, kek_id: str) -> None:
        temporary = self.directory / "active.tmp"
        temporary.write_text(kek_id)
        os.chmod(temporary, 0o600)
        temporary.replace(self.directory / "active")
        self.active_id = kek_id

    def rotate(self) -> Kek:
        """A new KEK becomes the active one; the old ones stay until retired."""
        kek = Kek(
            f"kek-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}",
            self.suite,
            os.urandom(self.suite.key_size),
            time.time(),
        )
        self._write(kek)
        self._keks[kek.id] = kek
        self._set_active(kek.id)
        self._seen = (self.directory / "active").stat().st_mtime_ns
        return kek

    @property
    def ids(self) -> list[str]:
        return sorted(self._keks)

    def _kek(self, kek_id: str) -> Kek:
        kek = self._keks.get(kek_id)
        if kek is None:
            self._load()
            kek = self._keks.get(kek_id)
        if kek is None:
            raise KeyringError(f"no key-encryption key {kek_id!r} in {self.directory}")
        return kek

    def wrap(self, data_key: bytes, file_id: bytes) -> WrappedKey:
        self.refresh()
        kek = self._kek(self.active_id)
        nonce = os.urandom(_WRAP_NONCE)
        aad = b"wl-wrap|" + kek.id.encode() + b"|" + file_id
        return WrappedKey(kek.id, nonce + seal(kek.suite, kek.key, nonce, data_key, aad))

    def unwrap(self, wrapped: WrappedKey, file_id: bytes) -> bytes:
        kek = self._kek(wrapped.kek_id)
        nonce, sealed = wrapped.blob[:_WRAP_NONCE], wrapped.blob[_WRAP_NONCE:]
        aad = b"wl-wrap|" + kek.id.encode() + b"|" + file_id
        try:
            return open_sealed(kek.suite, kek.key, nonce, sealed, aad)
        except DecryptionError:
            raise DecryptionError("cannot decrypt") from None

    def rewrap(self, wrapped: WrappedKey, file_id: bytes) -> WrappedKey:
        """The same data key wrapped by the active KEK."""
        if wrapped.kek_id == self.active_id:
            return wrapped
        return self.wrap(self.unwrap(wrapped, file_id), file_id)

    def retire(self, kek_id: str, still_used: int) -> None:
        """Delete an old KEK once nothing references it."""
        if kek_id == self.active_id:
            raise KeyringError("the active key-encryption key cannot be retired")
        if still_used:
            raise KeyringError(f"{still_used} data keys are still wrapped by {kek_id}")
        self._kek(kek_id)
        (self.directory / f"{kek_id}.kek").unlink()
        del self._keks[kek_id]
