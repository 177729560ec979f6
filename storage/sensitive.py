"""Sensitive personal values (a citizen's identity number, a phone number for a
call-back): never stored in clear.

- For exact lookup, an HMAC of the value under the deployment's lookup key
  (HMAC-SM3 with the SM4 suite, else HMAC-SHA-256): the clerk finds a citizen's
  earlier consultations by number without the database holding one.
- For showing it again (the clerk's audited reveal, the expert calling back), the
  value sealed (AES-256-GCM or SM4-GCM) under the deployment's sealing key.

Both keys are random, kept only wrapped by the key ring (storage.keyring) in
``sensitive_keys``, re-wrapped with every other key at ``keys rotate``. The lookup
key alone can be rotated (``sensitive rotate-lookup``): every stored lookup is
recomputed from its sealed value in the same transaction, so that a copy of the
old key finds nothing new. Each use reads the key row afresh (one small query),
so a rotation on one node is seen at once by every other.

Values are normalized before hashing or sealing (``normalize``): the same number
typed in lower case or with spaces is the same citizen.
"""

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from sqlalchemy import Connection, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from storage.database import Database
from storage.errors import KeyringError
from storage.filecrypt import DecryptionError, Suite, open_sealed, seal
from storage.keyring import Keyring, WrappedKey
from storage.schema import appointments, callbacks, consultation_identities, sensitive_keys

_NONCE = 12
_KEY_SIZE = 32


class Kind(StrEnum):
    ID_NUMBER = "id_number"
    PHONE = "phone"


@dataclass(frozen=True)
class LookupColumns:
    """A table keeping one kind of sensitive value: its lookup and sealed columns."""

    table: Table
    kind: Kind
    lookup: str
    sealed: str


LOOKUP_COLUMNS: list[LookupColumns] = [
    LookupColumns(consultation_identities, Kind.ID_NUMBER, "lookup", "sealed"),
    LookupColumns(appointments, Kind.PHONE, "phone_lookup", "phone_sealed"),
    LookupColumns(appointments, Kind.ID_NUMBER, "id_lookup", "id_sealed"),
    LookupColumns(callbacks, Kind.PHONE, "phone_lookup", "phone_sealed"),
]
"""Every place a sensitive value is kept: a lookup-key rotation recomputes them all.
A module storing one more appends its table here."""


@dataclass(frozen=True)
class Sealed:
    lookup: str
    sealed: str
    """hex: nonce, ciphertext and tag."""


def normalize(value: str) -> str:
    """Upper case, no spaces or dashes (how an ID-card reader or a person types it)."""
    return "".join(value.split()).replace("-", "").upper()


def mask(value: str) -> str:
    """The first 3 and last 4 characters, the rest as asterisks (a short value all
    masked): how every page shows a number."""
    value = normalize(value)
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def _binding(kind: str) -> bytes:
    return b"wl-sensitive-key|" + kind.encode()


class SensitiveValues:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring
        # Unwrapped keys by their wrapping: a rotation changes the row, so a stale
        # entry is never used (only looked up by the row as read now).
        self._opened: dict[tuple[str, str], bytes] = {}

    @property
    def suite(self) -> Suite:
        return self._keyring.suite

    async def _key(self, purpose: str) -> bytes:
        """The key for ``purpose`` ("lookup" or "seal"), made the first time (the
        first process to insert it wins; the others use it)."""
        for _ in range(3):
            row = await self._db.read(
                lambda conn: conn.execute(
                    select(sensitive_keys).where(sensitive_keys.c.purpose == purpose)
                ).first()
            )
            if row is not None:
                return self._open(row.kek_id, row.wrapped, purpose)
            await self._keyring.refresh()
            key = os.urandom(_KEY_SIZE)
            wrapped = self._keyring.wrap(key, _binding(purpose))
            statement = insert(sensitive_keys).values(
                purpose=purpose,
                kek_id=wrapped.kek_id,
                wrapped=wrapped.blob.hex(),
                created_at=time.time(),
            )

            def unit(conn: Connection, statement: Any = statement) -> None:
                conn.execute(statement)

            try:
                await self._db.write(unit)
            except IntegrityError:
                continue
            return key
        raise KeyringError(f"the {purpose} key of sensitive values could not be made")

    def _open(self, kek_id: str, wrapped: str, purpose: str) -> bytes:
        cached = self._opened.get((kek_id, wrapped))
        if cached is None:
            cached = self._keyring.unwrap(
                WrappedKey(kek_id, bytes.fromhex(wrapped)), _binding(purpose)
            )
            self._opened[(kek_id, wrapped)] = cached
        return cached

    def _hmac(self, key: bytes, kind: str, value: str) -> str:
        message = kind.encode() + b"|" + normalize(value).encode()
        if self.suite is Suite.AES_256_GCM:
            return hmac.new(key, message, hashlib.sha256).hexdigest()
        mac = crypto_hmac.HMAC(key, hashes.SM3())
        mac.update(message)
        return mac.finalize().hex()

    async def lookup(self, kind: Kind, value: str) -> str:
        return self._hmac(await self._key("lookup"), kind, value)

    async def seal(self, kind: Kind, value: str) -> Sealed:
        key = await self._key("seal")
        nonce = secrets.token_bytes(_NONCE)
        body = seal(self.suite, key, nonce, normalize(value).encode(), _aad(kind))
        return Sealed(await self.lookup(kind, value), (nonce + body).hex())

    async def reveal(self, kind: Kind, sealed: str) -> str:
        key = await self._key("seal")
        blob = bytes.fromhex(sealed)
        try:
            return open_sealed(self.suite, key, blob[:_NONCE], blob[_NONCE:], _aad(kind)).decode()
        except DecryptionError:
            raise DecryptionError("cannot decrypt") from None

    async def rotate_lookup(self) -> int:
        """A new lookup key; every stored lookup recomputed under it, in one
        transaction with the key's change. The values whose lookups were rewritten."""
        seal_key = await self._key("seal")
        await self._key("lookup")
        await self._keyring.refresh()
        new_key = os.urandom(_KEY_SIZE)
        wrapped = self._keyring.wrap(new_key, _binding("lookup"))

        def unit(conn: Connection) -> int:
            done = 0
            conn.execute(
                update(sensitive_keys)
                .where(sensitive_keys.c.purpose == "lookup")
                .values(kek_id=wrapped.kek_id, wrapped=wrapped.blob.hex(), created_at=time.time())
            )
            for place in LOOKUP_COLUMNS:
                sealed_column = place.table.c[place.sealed]
                rows = conn.execute(
                    select(sealed_column).where(sealed_column.is_not(None)).distinct()
                ).all()
                for (sealed,) in rows:
                    blob = bytes.fromhex(sealed)
                    value = open_sealed(
                        self.suite, seal_key, blob[:_NONCE], blob[_NONCE:], _aad(place.kind)
                    ).decode()
                    done += conn.execute(
                        update(place.table)
                        .where(sealed_column == sealed)
                        .values({place.lookup: self._hmac(new_key, place.kind, value)})
                    ).rowcount
            return done

        return await self._db.write(unit)

    async def rewrap_all(self) -> int:
        """After a KEK rotation: both keys wrapped by the active KEK."""
        await self._keyring.refresh()
        active = self._keyring.active_id
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(sensitive_keys).where(sensitive_keys.c.kek_id != active)
            ).all()
        )
        done = 0
        for row in rows:
            fresh = self._keyring.rewrap(
                WrappedKey(row.kek_id, bytes.fromhex(row.wrapped)), _binding(row.purpose)
            )
            statement = (
                update(sensitive_keys)
                .where(
                    sensitive_keys.c.purpose == row.purpose, sensitive_keys.c.kek_id == row.kek_id
                )
                .values(kek_id=fresh.kek_id, wrapped=fresh.blob.hex())
            )

            def unit(conn: Connection, statement: Any = statement) -> int:
                return int(conn.execute(statement).rowcount)

            done += await self._db.write(unit)
        return done

    async def references(self, kek_id: str) -> int:
        query = (
            select(func.count())
            .select_from(sensitive_keys)
            .where(sensitive_keys.c.kek_id == kek_id)
        )
        return await self._db.read(lambda conn: int(conn.execute(query).scalar() or 0))


def _aad(kind: str) -> bytes:
    return b"wl-sensitive|" + kind.encode()
