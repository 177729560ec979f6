"""Key-encryption keys (KEKs), each with an id; the active one wraps new data
keys. Rotation makes a new active KEK; data keys wrapped by older ones are
re-wrapped (content is never re-encrypted), after which an old KEK can be
retired.

Where the KEKs are kept is a ``KekSource``:

- ``DirectoryKeks``: one file per KEK in a key directory (0700/0600), the
  embedded default; one machine.
- ``DatabaseKeks``: rows of the shared database, each KEK sealed under a master
  key the operator supplies (``--master-key-file``) and that is never stored
  there; every node of a cluster sees a rotation, a running one included.

The ring keeps the KEKs in memory: wrapping and unwrapping are synchronous;
``refresh`` (cheap when nothing changed) picks up a rotation or retirement made
elsewhere and is called before a new data key is wrapped.
"""

import asyncio
import contextlib
import json
import os
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, delete, func, insert, select

from storage.database import Database
from storage.errors import KeyringError as KeyringError
from storage.filecrypt import DecryptionError, Suite, open_sealed, seal
from storage.schema import keks as kek_rows

_WRAP_NONCE = 12
MASTER_KEY_SIZE = 32


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


@dataclass(frozen=True)
class KekSet:
    keks: dict[str, Kek]
    active_id: str


class KekSource(ABC):
    """Where KEKs are kept; each operation is complete on its own."""

    description: str

    @abstractmethod
    async def load(self) -> KekSet: ...

    @abstractmethod
    async def marker(self) -> Hashable:
        """Changes whenever a KEK is added, activated or removed (cheap to read)."""

    @abstractmethod
    async def add_active(self, kek: Kek) -> None:
        """Store ``kek`` and make it the active one."""

    @abstractmethod
    async def remove(self, kek_id: str) -> None: ...


class DirectoryKeks(KekSource):
    """``<dir>/<id>.kek`` (JSON) and ``<dir>/active`` (the active id)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"key directory {directory}"

    def _prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    async def load(self) -> KekSet:
        self._prepare()
        keks: dict[str, Kek] = {}
        for path in sorted(self.directory.glob("*.kek")):
            data = json.loads(path.read_text())
            kek = Kek(
                data["id"], Suite(data["suite"]), bytes.fromhex(data["key"]), data["created_at"]
            )
            keks[kek.id] = kek
        active = self.directory / "active"
        return KekSet(keks, active.read_text().strip() if active.exists() else "")

    async def marker(self) -> Hashable:
        with contextlib.suppress(FileNotFoundError):
            return (
                (self.directory / "active").stat().st_mtime_ns,
                len(list(self.directory.glob("*.kek"))),
            )
        return None

    async def add_active(self, kek: Kek) -> None:
        self._prepare()
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
        temporary = self.directory / "active.tmp"
        temporary.write_text(kek.id)
        os.chmod(temporary, 0o600)
        temporary.replace(self.directory / "active")

    async def remove(self, kek_id: str) -> None:
        await asyncio.to_thread(overwrite_and_unlink, self.directory / f"{kek_id}.kek")


def overwrite_and_unlink(path: Path) -> None:
    """Remove a key file without leaving its bytes in the blocks it had (as far as the
    file system rewrites a file in place: docs/SECURITY.md says where it does not)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    with path.open("r+b") as out:
        for filler in (os.urandom(size), bytes(size)):
            out.seek(0)
            out.write(filler)
            out.flush()
            os.fsync(out.fileno())
    path.unlink()


def read_master_key(path: Path) -> bytes:
    """The operator's master key: 64 hex digits in a file only its owner may read."""
    try:
        mode = path.stat().st_mode
        raw = path.read_text().strip()
    except OSError as exc:
        raise KeyringError(f"cannot read the master key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyringError(f"the master key file {path} may be read by others; chmod 600 it first")
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        key = b""
    if len(key) != MASTER_KEY_SIZE:
        raise KeyringError(
            f"the master key file {path} must hold {MASTER_KEY_SIZE * 2} hex digits "
            "(for example: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')"
        )
    return key


class DatabaseKeks(KekSource):
    """KEKs as rows of the shared database, each sealed under a key derived from the
    master key (HKDF-SHA256, one per suite), bound to its id."""

    def __init__(self, db: Database, master_key: bytes, suite: Suite) -> None:
        self._db = db
        self._suite = suite
        self._key = HKDF(
            algorithm=hashes.SHA256(),
            length=suite.key_size,
            salt=None,
            info=b"windowlink kek wrap " + suite.name.encode(),
        ).derive(master_key)
        self.description = "the database (sealed under the master key)"

    def _aad(self, kek_id: str) -> bytes:
        return b"wl-kek|" + kek_id.encode()

    async def load(self) -> KekSet:
        rows = await self._db.read(
            lambda conn: conn.execute(select(kek_rows).order_by(kek_rows.c.activated_at)).all()
        )
        keks: dict[str, Kek] = {}
        active = ""
        for row in rows:
            sealed = bytes.fromhex(row.sealed)
            suite = Suite(row.suite)
            if suite is not self._suite:
                raise KeyringError(
                    f"key-encryption key {row.id} is for another crypto suite ({suite.name})"
                )
            try:
                key = open_sealed(
                    suite, self._key, sealed[:_WRAP_NONCE], sealed[_WRAP_NONCE:], self._aad(row.id)
                )
            except DecryptionError:
                raise KeyringError(
                    "the master key does not open the key-encryption keys in the database "
                    "(a different --master-key-file than the other nodes?)"
                ) from None
            keks[row.id] = Kek(row.id, suite, key, row.created_at)
            active = row.id
        return KekSet(keks, active)

    async def marker(self) -> Hashable:
        row = await self._db.read(
            lambda conn: conn.execute(
                select(func.count(), func.max(kek_rows.c.activated_at)).select_from(kek_rows)
            ).one()
        )
        return (int(row[0]), row[1])

    async def add_active(self, kek: Kek) -> None:
        nonce = os.urandom(_WRAP_NONCE)
        sealed = nonce + seal(kek.suite, self._key, nonce, kek.key, self._aad(kek.id))
        values = {
            "id": kek.id,
            "suite": int(kek.suite),
            "sealed": sealed.hex(),
            "created_at": kek.created_at,
            "activated_at": time.time(),
        }

        def unit(conn: Connection) -> None:
            # Later than any activation so far, whatever the clocks of the nodes say.
            latest = conn.execute(select(func.max(kek_rows.c.activated_at))).scalar()
            if latest is not None and latest >= values["activated_at"]:
                values["activated_at"] = float(latest) + 0.001
            conn.execute(insert(kek_rows).values(**values))

        await self._db.write(unit)

    async def remove(self, kek_id: str) -> None:
        await self._db.write(
            lambda conn: conn.execute(delete(kek_rows).where(kek_rows.c.id == kek_id))
        )
        # Not left in the database's files either (storage.database.erase_freed).
        await self._db.erase_freed(kek_rows.name)


class Keyring:
    def __init__(self, source: KekSource, suite: Suite) -> None:
        self.source = source
        self.suite = suite
        self._keks: dict[str, Kek] = {}
        self.active_id = ""
        self._seen: Hashable = None

    @classmethod
    async def open(
        cls,
        source: KekSource,
        suite: Suite = Suite.AES_256_GCM,
        *,
        seed: KekSource | None = None,
    ) -> "Keyring":
        """Load the KEKs, creating a first one (or one of the configured suite). An
        empty ``source`` first takes the KEKs of ``seed`` (moving a node's key
        directory into the database)."""
        ring = cls(source, suite)
        await ring._load()
        if not ring._keks and seed is not None:
            previous = cls(seed, suite)
            await previous._load()
            if previous._keks:
                await ring.import_from(previous)
        if ring.active_id not in ring._keks or ring._keks[ring.active_id].suite is not suite:
            await ring.rotate()
        return ring

    async def _load(self) -> None:
        marker = await self.source.marker()
        loaded = await self.source.load()
        self._keks, self.active_id, self._seen = loaded.keks, loaded.active_id, marker

    async def refresh(self) -> None:
        """Pick up a rotation or retirement done elsewhere (``keys``, another node)."""
        if await self.source.marker() != self._seen:
            await self._load()

    async def rotate(self) -> Kek:
        """A new KEK becomes the active one; the old ones stay until retired."""
        kek = Kek(
            f"kek-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}",
            self.suite,
            os.urandom(self.suite.key_size),
            time.time(),
        )
        await self.source.add_active(kek)
        await self._load()
        return kek

    @property
    def ids(self) -> list[str]:
        return sorted(self._keks)

    def _kek(self, kek_id: str) -> Kek:
        kek = self._keks.get(kek_id)
        if kek is None:
            raise KeyringError(f"no key-encryption key {kek_id!r} in {self.source.description}")
        return kek

    def wrap(self, data_key: bytes, file_id: bytes) -> WrappedKey:
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

    async def retire(self, kek_id: str, still_used: int) -> None:
        """Delete an old KEK once nothing references it."""
        await self.refresh()
        if kek_id == self.active_id:
            raise KeyringError("the active key-encryption key cannot be retired")
        if still_used:
            raise KeyringError(f"{still_used} data keys are still wrapped by {kek_id}")
        self._kek(kek_id)
        await self.source.remove(kek_id)
        await self._load()

    async def import_from(self, other: "Keyring") -> int:
        """Copy another source's KEKs here (oldest first, its active one last), so
        that a node moving its keys into the database keeps reading its files."""
        order = sorted(
            (k for k in other._keks.values() if k.id != other.active_id),
            key=lambda k: k.created_at,
        )
        if other.active_id in other._keks:
            order.append(other._keks[other.active_id])
        for kek in order:
            if kek.id not in self._keks:
                await self.source.add_active(kek)
        await self._load()
        return len(order)
