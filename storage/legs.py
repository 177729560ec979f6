"""Each staff member's part in a consultation (its leg): who, for which department,
at which position of the call, from when to when, why it ended, and their own
outcome and notes.

Legs are written in the same unit of work as the consultation's own change
(``storage.consultations``: the first expert answering, a joiner, a transfer, a
leave, the end), so that the record and its legs never disagree. The consultation
row keeps the first expert's outcome and notes, as before calls had more than two
participants; the legs hold everyone's.
"""

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, select, update
from sqlalchemy.exc import IntegrityError

from storage.audit import append_audit
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.records import AuditEvent, ConsultationLeg, LegEnd, Outcome, Role
from storage.schema import accounts, consultation_legs, consultations

_LEGS = select(
    consultation_legs,
    accounts.c.username.label("username"),
    accounts.c.display_name.label("name"),
).select_from(consultation_legs.join(accounts, accounts.c.id == consultation_legs.c.account_id))


def _leg(row: Any) -> ConsultationLeg:
    data = {name: getattr(row, name) for name in ConsultationLeg.__dataclass_fields__}
    data["role"] = Role(data["role"])
    data["reason"] = LegEnd(data["reason"]) if data["reason"] else None
    data["outcome"] = Outcome(data["outcome"]) if data["outcome"] else None
    data["materials"] = tuple(str(m) for m in json.loads(data["materials"] or "[]"))
    return ConsultationLeg(**data)


def open_leg(
    conn: Connection,
    consultation_id: str,
    account_id: str,
    role: str,
    department: str,
    position: int,
    at: float,
    *,
    invited_by: str | None = None,
    note: str | None = None,
    invitation: str | None = None,
) -> int:
    """A new leg, numbered after the consultation's others (the caller's unit holds
    the consultation's row, so two joins cannot take the same number). An
    invitation's join happens once: a second is RecordConflict."""
    seq = conn.execute(
        select(func.coalesce(func.max(consultation_legs.c.seq), 0)).where(
            consultation_legs.c.consultation_id == consultation_id
        )
    ).scalar_one()
    try:
        conn.execute(
            consultation_legs.insert().values(
                consultation_id=consultation_id,
                seq=int(seq) + 1,
                account_id=account_id,
                role=role,
                department=department,
                position=position,
                joined_at=at,
                invited_by=invited_by,
                note=note,
                invitation=invitation,
            )
        )
    except IntegrityError:
        raise RecordConflict("this invitation has been accepted already") from None
    return int(seq) + 1


def close_legs(
    conn: Connection,
    consultation_id: str,
    at: float,
    reason: LegEnd,
    account_id: str | None = None,
) -> int:
    """End the open legs of the consultation (of ``account_id`` only, if given); how
    many were open."""
    condition = and_(
        consultation_legs.c.consultation_id == consultation_id,
        consultation_legs.c.left_at.is_(None),
    )
    if account_id is not None:
        condition = and_(condition, consultation_legs.c.account_id == account_id)
    result = conn.execute(
        update(consultation_legs).where(condition).values(left_at=at, reason=reason.value)
    )
    return int(result.rowcount)


def lock_consultation(conn: Connection, consultation_id: str) -> Any:
    """The consultation's row, locked for the unit (PostgreSQL: FOR UPDATE; SQLite has
    one writer): legs are numbered and checked against it. None if there is none."""
    query = select(consultations).where(consultations.c.id == consultation_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def role_of(conn: Connection, consultation_id: str, account_id: str) -> str | None:
    """The role the account had in its latest leg of the consultation."""
    value = conn.execute(
        select(consultation_legs.c.role)
        .where(
            consultation_legs.c.consultation_id == consultation_id,
            consultation_legs.c.account_id == account_id,
        )
        .order_by(consultation_legs.c.seq.desc())
        .limit(1)
    ).scalar()
    return None if value is None else str(value)


def _own_leg(conn: Connection, consultation_id: str, account_id: str) -> Any:
    """The account's latest expert leg of the consultation, or None."""
    return conn.execute(
        select(consultation_legs)
        .where(
            consultation_legs.c.consultation_id == consultation_id,
            consultation_legs.c.account_id == account_id,
            consultation_legs.c.role == Role.EXPERT.value,
        )
        .order_by(consultation_legs.c.seq.desc())
        .limit(1)
    ).first()


class ConsultationLegs:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of(self, consultation_id: str) -> list[ConsultationLeg]:
        """The consultation's legs in the order they began."""
        query = _LEGS.where(consultation_legs.c.consultation_id == consultation_id).order_by(
            consultation_legs.c.seq
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [_leg(row) for row in rows]

    async def experts(self, consultation_id: str) -> frozenset[str]:
        """The accounts that took part in the consultation as experts (answered it,
        joined it, took it over)."""
        query = select(consultation_legs.c.account_id).where(
            consultation_legs.c.consultation_id == consultation_id,
            consultation_legs.c.role == Role.EXPERT.value,
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return frozenset(row.account_id for row in rows)

    async def set_outcome(
        self,
        consultation_id: str,
        account_id: str,
        outcome: Outcome | None,
        notes: str,
        *,
        audit: AuditEvent,
        materials: Sequence[str] | None = None,
    ) -> None:
        """The expert's own outcome and notes (and the materials still required, when
        given) on their leg (``outcome`` None: a draft,
        refused with RecordConflict once an outcome is saved). The consultation's row
        gets them too when this is its first expert (whose they have always been).
        RecordNotFound when the account had no expert leg in it."""

        def unit(conn: Connection) -> None:
            row = lock_consultation(conn, consultation_id)
            leg = _own_leg(conn, consultation_id, account_id) if row is not None else None
            if leg is None:
                raise RecordNotFound("no consultation with this id for you")
            if outcome is None and leg.outcome is not None:
                raise RecordConflict("this record's outcome has been saved already")
            values: dict[str, object] = {"notes": notes}
            if outcome is not None:
                values["outcome"] = outcome.value
            leg_values = dict(values)
            if materials is not None:
                leg_values["materials"] = json.dumps(list(materials), ensure_ascii=False)
            conn.execute(
                update(consultation_legs)
                .where(
                    consultation_legs.c.consultation_id == consultation_id,
                    consultation_legs.c.seq == leg.seq,
                )
                .values(**leg_values)
            )
            if row.expert_id == account_id and (outcome is not None or row.outcome is None):
                conn.execute(
                    update(consultations)
                    .where(consultations.c.id == consultation_id)
                    .values(**values)
                )
            append_audit(conn, audit)

        await self._db.write(unit)
