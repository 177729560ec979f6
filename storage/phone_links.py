"""One-time links that let a citizen send photos from their own phone into their
call: the kiosk shows a link as a QR code; whoever opens it holds nothing but
the link itself, so the link is the credential, and it is worth little.

- It belongs to one consultation and one kiosk, and is valid for a few minutes.
- It is used once: the first phone to send claims it (an atomic compare-and-set
  on ``claimed_at``) and gets a claim secret of its own, with which it sends the
  files it announced (by name and size), and only those; another phone, or the
  same link opened again, is refused.
- Only hashes of the link's token and of the claim secret are stored, like
  sessions: a copy of the database opens nothing.
- A new link for a consultation replaces its unclaimed ones (one QR code on
  screen at a time), and links a day past their end are deleted then too.

Whether a link may be used is decided by ``link_state``, and whether a file is one
still announced by ``without_announced``: pure functions of the record.
"""

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select, update

from storage.audit import append_audit_if
from storage.database import Database
from storage.errors import RecordNotFound
from storage.records import AuditEvent
from storage.schema import phone_links

FORGET_AFTER = 24 * 3600.0
"""Seconds after its end that a link's record is kept (then deleted at the next
link made anywhere): long enough to explain a refusal, no longer."""


Announced = tuple[tuple[str, int], ...]
"""Files (name, size) a claim announced and that have not arrived yet."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class LinkState(StrEnum):
    READY = "ready"
    """Not used yet and not expired: a phone may claim it."""
    CLAIMED = "claimed"
    """A phone claimed it and may still send what it announced."""
    USED = "used"
    """Claimed, and everything announced has arrived or its time is over."""
    EXPIRED = "expired"
    """Nobody claimed it in time."""


@dataclass(frozen=True)
class PhoneLink:
    token_hash: str
    consultation_id: str
    kiosk_id: str
    created_at: float
    expires_at: float
    claimed_at: float | None
    claim_hash: str | None
    files_allowed: int
    files_received: int
    send_until: float | None
    announced: Announced = ()
    """What the claim announced and has not arrived yet."""


def link_state(link: PhoneLink, now: float) -> LinkState:
    """What the link allows at ``now``."""
    if link.claimed_at is None:
        return LinkState.READY if now < link.expires_at else LinkState.EXPIRED
    if link.files_received < link.files_allowed and now < (link.send_until or 0.0):
        return LinkState.CLAIMED
    return LinkState.USED


def without_announced(announced: Announced, name: str, size: int) -> Announced | None:
    """What is still to arrive once this file has; None when no file of this name and
    size is announced (a claim for one small photo opens no upload of anything else)."""
    if (name, size) not in announced:
        return None
    index = announced.index((name, size))
    return announced[:index] + announced[index + 1 :]


def _announced(stored: str | None) -> Announced:
    # A link claimed before its files were recorded announced nothing it can send.
    return tuple((str(name), int(size)) for name, size in json.loads(stored or "[]"))


def _stored(announced: Announced) -> str:
    return json.dumps([list(file) for file in announced], ensure_ascii=False)


def _link(row: Any) -> PhoneLink:
    values = row._asdict()
    return PhoneLink(**{**values, "announced": _announced(values["announced"])})


class PhoneLinks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, consultation_id: str, kiosk_id: str, valid_for: float, *, now: float | None = None
    ) -> tuple[str, PhoneLink]:
        """A new link (its token, shown once, and its record) for the consultation;
        the consultation's unclaimed links are withdrawn."""
        at = time.time() if now is None else now
        token = secrets.token_urlsafe(16)
        link = PhoneLink(
            token_hash(token), consultation_id, kiosk_id, at, at + valid_for, None, None, 0, 0, None
        )

        def unit(conn: Connection) -> None:
            conn.execute(
                delete(phone_links).where(
                    or_(
                        and_(
                            phone_links.c.consultation_id == consultation_id,
                            phone_links.c.claimed_at.is_(None),
                        ),
                        phone_links.c.expires_at < at - FORGET_AFTER,
                    )
                )
            )
            conn.execute(phone_links.insert().values(**{**link.__dict__, "announced": _stored(())}))

        await self._db.write(unit)
        return token, link

    async def get(self, token: str) -> PhoneLink:
        wanted = token_hash(token)
        row = await self._db.read(
            lambda conn: conn.execute(
                select(phone_links).where(phone_links.c.token_hash == wanted)
            ).first()
        )
        if row is None:
            raise RecordNotFound("no such link")
        return _link(row)

    async def claim(
        self,
        token: str,
        files: Sequence[tuple[str, int]],
        send_for: float,
        *,
        now: float | None = None,
        audit: AuditEvent | None = None,
    ) -> str | None:
        """Claim an unused, unexpired link for ``files`` (name, size) to be sent within
        ``send_for`` seconds: the claim secret, or None when the link was claimed
        before or has expired (of two phones at once, one wins)."""
        at = time.time() if now is None else now
        secret = secrets.token_urlsafe(24)
        wanted = token_hash(token)

        def unit(conn: Connection) -> bool:
            result = conn.execute(
                update(phone_links)
                .where(
                    phone_links.c.token_hash == wanted,
                    phone_links.c.claimed_at.is_(None),
                    phone_links.c.expires_at > at,
                )
                .values(
                    claimed_at=at,
                    claim_hash=token_hash(secret),
                    files_allowed=len(files),
                    send_until=at + send_for,
                    announced=_stored(tuple(files)),
                )
            )
            if result.rowcount != 1:
                return False
            append_audit_if(conn, audit)
            return True

        return secret if await self._db.write(unit) else None

    async def take_file(
        self, token: str, secret: str, name: str, size: int, *, now: float | None = None
    ) -> bool:
        """Count the announced file ``name`` of ``size`` bytes as sent under the claim;
        False when the secret is not the claim's, the time to send is over, or no such
        file is still announced (sent already, or never announced)."""
        at = time.time() if now is None else now
        wanted = token_hash(token)
        claim = token_hash(secret)

        def unit(conn: Connection) -> bool:
            row = conn.execute(
                select(phone_links.c.announced)
                .where(
                    phone_links.c.token_hash == wanted,
                    phone_links.c.claim_hash == claim,
                    phone_links.c.send_until > at,
                )
                .with_for_update()
            ).first()
            rest = None if row is None else without_announced(_announced(row.announced), name, size)
            if rest is None:
                return False
            conn.execute(
                update(phone_links)
                .where(phone_links.c.token_hash == wanted)
                .values(files_received=phone_links.c.files_received + 1, announced=_stored(rest))
            )
            return True

        return await self._db.write(unit)

    async def give_back_file(self, token: str, secret: str, name: str, size: int) -> None:
        """A counted file did not arrive (refused, or cut off): the phone may send it again."""
        wanted = token_hash(token)
        claim = token_hash(secret)

        def unit(conn: Connection) -> None:
            row = conn.execute(
                select(phone_links.c.announced)
                .where(
                    phone_links.c.token_hash == wanted,
                    phone_links.c.claim_hash == claim,
                    phone_links.c.files_received > 0,
                )
                .with_for_update()
            ).first()
            if row is None:
                return
            conn.execute(
                update(phone_links)
                .where(phone_links.c.token_hash == wanted)
                .values(
                    files_received=phone_links.c.files_received - 1,
                    announced=_stored((*_announced(row.announced), (name, size))),
                )
            )

        await self._db.write(unit)
