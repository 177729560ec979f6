"""The identity number a citizen gave for a consultation: only its lookup HMAC
and its sealed value (storage.sensitive), and whether the citizen let experts of
the same department see their earlier consultations. One per consultation; given
again while the consultation is open, it replaces the first."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select

from storage.database import Database
from storage.schema import consultation_identities, consultations
from storage.sensitive import Sealed


@dataclass(frozen=True)
class GivenIdentity:
    consultation_id: str
    lookup: str
    sealed: str
    history_consent: bool
    given_at: float


class ConsultationIdentities:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def give(
        self, consultation_id: str, sealed: Sealed, history_consent: bool, now: float
    ) -> None:
        row = {
            "consultation_id": consultation_id,
            "lookup": sealed.lookup,
            "sealed": sealed.sealed,
            "history_consent": history_consent,
            "given_at": now,
        }

        def unit(conn: Connection) -> None:
            conn.execute(
                delete(consultation_identities).where(
                    consultation_identities.c.consultation_id == consultation_id
                )
            )
            conn.execute(insert(consultation_identities).values(row))

        await self._db.write(unit)

    async def of(self, consultation_id: str) -> GivenIdentity | None:
        row = await self._db.read(
            lambda conn: conn.execute(
                select(consultation_identities).where(
                    consultation_identities.c.consultation_id == consultation_id
                )
            ).first()
        )
        return None if row is None else GivenIdentity(**row._mapping)

    async def of_many(self, consultation_ids: Sequence[str]) -> dict[str, GivenIdentity]:
        if not consultation_ids:
            return {}
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(consultation_identities).where(
                    consultation_identities.c.consultation_id.in_(list(consultation_ids))
                )
            ).all()
        )
        return {row.consultation_id: GivenIdentity(**row._mapping) for row in rows}

    async def consultations_of(
        self, lookup: str, *, department: str | None = None, limit: int = 100
    ) -> list[str]:
        """The consultations given this number, newest first (of ``department`` only
        when given)."""
        query = (
            select(consultations.c.id)
            .join(
                consultation_identities,
                consultation_identities.c.consultation_id == consultations.c.id,
            )
            .where(consultation_identities.c.lookup == lookup)
            .order_by(consultations.c.waiting_at.desc())
            .limit(limit)
        )
        if department is not None:
            query = query.where(consultations.c.department == department)

        def run(conn: Connection) -> list[str]:
            return [row.id for row in conn.execute(query).all()]

        return await self._db.read(run)
