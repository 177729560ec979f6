"""Consultation records: one row per consultation, every state's timestamp kept."""

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, select, update

from storage.audit import AuditLog
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.ids import new_id
from storage.records import (
    AuditEvent,
    ChatMessage,
    ConsultationRecord,
    ConsultationState,
    EndReason,
    Outcome,
    Role,
)
from storage.schema import chat_messages, consultations


def _record(row: Any) -> ConsultationRecord:
    data = dict(row._asdict())
    data["state"] = ConsultationState(data["state"])
    data["end_reason"] = EndReason(data["end_reason"]) if data["end_reason"] else None
    data["outcome"] = Outcome(data["outcome"]) if data["outcome"] else None
    return ConsultationRecord(**data)


class ConsultationRecords:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    async def _change(
        self,
        consultation_id: str,
        values: Mapping[str, object],
        audit: AuditEvent | None,
        *,
        only_if: Any = None,
    ) -> None:
        condition = consultations.c.id == consultation_id
        if only_if is not None:
            condition = and_(condition, only_if)
        async with self._db.transaction() as conn:
            result = await conn.execute(update(consultations).where(condition).values(**values))
            if result.rowcount == 0:
                raise RecordConflict("consultation not found or not in a state for this change")
            if audit is not None:
                await self._audit.append_in(conn, audit)

    async def create(
        self,
        kiosk_id: str,
        hall: str | None,
        department: str,
        case_number: str | None,
        *,
        audit: AuditEvent,
    ) -> ConsultationRecord:
        record = ConsultationRecord(
            id=new_id(),
            kiosk_id=kiosk_id,
            hall=hall,
            department=department,
            expert_id=None,
            case_number=case_number,
            state=ConsultationState.WAITING,
            waiting_at=time.time(),
            offered_at=None,
            active_at=None,
            ended_at=None,
            end_reason=None,
            ended_by=None,
            outcome=None,
            notes=None,
            rating=None,
        )
        async with self._db.transaction() as conn:
            await conn.execute(consultations.insert().values(**record.__dict__))
            await self._audit.append_in(
                conn, AuditEvent(**{**audit.__dict__, "subject": record.id})
            )
        return record

    async def mark_offered(self, consultation_id: str, expert_id: str, at: float) -> None:
        # The offer is transient routing state; the record keeps who was offered
        # last and when, the audit log keeps every offer.
        await self._change(
            consultation_id,
            {"state": ConsultationState.OFFERED.value, "offered_at": at, "expert_id": expert_id},
            None,
        )

    async def mark_waiting(self, consultation_id: str) -> None:
        await self._change(
            consultation_id,
            {"state": ConsultationState.WAITING.value, "expert_id": None},
            None,
            only_if=consultations.c.state != ConsultationState.ENDED.value,
        )

    async def mark_active(
        self, consultation_id: str, expert_id: str, at: float, *, audit: AuditEvent
    ) -> None:
        await self._change(
            consultation_id,
            {"state": ConsultationState.ACTIVE.value, "active_at": at, "expert_id": expert_id},
            audit,
            only_if=consultations.c.state != ConsultationState.ENDED.value,
        )

    async def mark_ended(
        self,
        consultation_id: str,
        reason: EndReason,
        ended_by: str,
        at: float,
        *,
        audit: AuditEvent,
    ) -> None:
        await self._change(
            consultation_id,
            {
                "state": ConsultationState.ENDED.value,
                "ended_at": at,
                "end_reason": reason.value,
                "ended_by": ended_by,
            },
            audit,
            only_if=consultations.c.state != ConsultationState.ENDED.value,
        )

    async def set_outcome(
        self, consultation_id: str, outcome: Outcome, notes: str, *, audit: AuditEvent
    ) -> None:
        await self._change(consultation_id, {"outcome": outcome.value, "notes": notes}, audit)

    async def set_rating(self, consultation_id: str, rating: int, *, audit: AuditEvent) -> None:
        await self._change(
            consultation_id,
            {"rating": rating},
            audit,
            only_if=consultations.c.rating.is_(None),
        )

    async def get(self, consultation_id: str) -> ConsultationRecord:
        async with self._db.reading() as conn:
            row = (
                await conn.execute(
                    select(consultations).where(consultations.c.id == consultation_id)
                )
            ).first()
        if row is None:
            raise RecordNotFound("no such consultation")
        return _record(row)

    async def open_consultations(self) -> list[ConsultationRecord]:
        """Every consultation not yet ended (to settle after a restart)."""
        async with self._db.reading() as conn:
            rows = (
                await conn.execute(
                    select(consultations).where(
                        consultations.c.state != ConsultationState.ENDED.value
                    )
                )
            ).all()
        return [_record(row) for row in rows]

    async def recent_handle_times(self, department: str, limit: int = 20) -> list[float]:
        """Seconds from active to ended of the department's latest completed calls."""
        query = (
            select(consultations.c.active_at, consultations.c.ended_at)
            .where(
                consultations.c.department == department,
                consultations.c.end_reason == EndReason.COMPLETED.value,
                consultations.c.active_at.is_not(None),
            )
            .order_by(consultations.c.ended_at.desc())
            .limit(limit)
        )
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [float(r.ended_at - r.active_at) for r in rows]

    async def find(
        self, *, case_number: str | None = None, department: str | None = None, limit: int = 100
    ) -> list[ConsultationRecord]:
        query = select(consultations).order_by(consultations.c.waiting_at.desc()).limit(limit)
        if case_number is not None:
            query = query.where(consultations.c.case_number == case_number)
        if department is not None:
            query = query.where(consultations.c.department == department)
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def add_chat(
        self, consultation_id: str, sender_id: str, sender_role: Role, text: str
    ) -> ChatMessage:
        message = ChatMessage(new_id(), consultation_id, sender_id, sender_role, text, time.time())
        async with self._db.transaction() as conn:
            await conn.execute(chat_messages.insert().values(**message.__dict__))
        return message

    async def chat(self, consultation_id: str) -> list[ChatMessage]:
        query = (
            select(chat_messages)
            .where(chat_messages.c.consultation_id == consultation_id)
            .order_by(chat_messages.c.sent_at)
        )
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ChatMessage(**{**row._asdict(), "sender_role": Role(row.sender_role)}) for row in rows
        ]
