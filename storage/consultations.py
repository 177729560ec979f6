"""Consultation records: one row per consultation, every state's timestamp kept."""

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Update, and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from storage.audit import append_audit, append_audit_if
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.followups import DAY, open_follow_up
from storage.ids import new_id
from storage.legs import close_legs, lock_consultation, open_leg, role_of
from storage.records import (
    BAD_GRADES,
    RATING_OF_GRADE,
    AuditEvent,
    ChatMessage,
    ConsultationRecord,
    ConsultationState,
    EndReason,
    Grade,
    GradeReason,
    LegEnd,
    Outcome,
    Role,
)
from storage.references import reference_of
from storage.schema import (
    accounts,
    chat_messages,
    consultation_legs,
    consultations,
    departments,
)

# Records are read with the answering expert's display name for the staff pages.
_experts = accounts.alias("experts")
_RECORDS = select(consultations, _experts.c.display_name.label("expert_name")).select_from(
    consultations.outerjoin(_experts, _experts.c.id == consultations.c.expert_id)
)


def _record(row: Any) -> ConsultationRecord:
    data = dict(row._asdict())
    data["state"] = ConsultationState(data["state"])
    data["end_reason"] = EndReason(data["end_reason"]) if data["end_reason"] else None
    data["outcome"] = Outcome(data["outcome"]) if data["outcome"] else None
    data["grade"] = Grade(data["grade"]) if data.get("grade") else None
    return ConsultationRecord(**data)


def _update(*columns: str, only_if: Any = None) -> Update:
    """An UPDATE of one consultation's ``columns``, built once; binds b_<column> and b_id."""
    condition = consultations.c.id == bindparam("b_id")
    if only_if is not None:
        condition = and_(condition, only_if)
    return (
        update(consultations)
        .where(condition)
        .values({name: bindparam(f"b_{name}") for name in columns})
    )


_NOT_ENDED = consultations.c.state != ConsultationState.ENDED.value
# Offers are routing, kept in the live state; the record learns the answered
# offer's time when the call starts (or the ringing one's when it ends first).
# Exactly once: a consultation becomes active from waiting only (the records never
# see "offered"), so two nodes accepting it at once cannot both succeed.
_MARK_ACTIVE = _update(
    "state",
    "offered_at",
    "active_at",
    "expert_id",
    only_if=consultations.c.state == ConsultationState.WAITING.value,
)
_MARK_ENDED = _update(
    "state", "offered_at", "ended_at", "end_reason", "ended_by", only_if=_NOT_ENDED
)
_SET_OUTCOME = _update("outcome", "notes")
# A draft never replaces the notes of a record whose outcome is saved.
_SAVE_DRAFT = _update("notes", only_if=consultations.c.outcome.is_(None))
_SET_RATING = _update("rating", only_if=consultations.c.rating.is_(None))
_LINK_CASE = _update("case_number", only_if=consultations.c.case_number.is_(None))
_RECORD_BY_ID = _RECORDS.where(consultations.c.id == bindparam("b_id"))
_OPEN_DEPARTMENT = select(departments.c.code).where(
    departments.c.code == bindparam("code"), departments.c.disabled.is_(False)
)


# Called with the record as it is inside the unit of work (None if there is no
# such consultation); raises to refuse a change, which then writes nothing.
Check = Callable[[ConsultationRecord | None], None]


class ConsultationRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _change(
        self,
        statement: Update,
        consultation_id: str,
        values: Mapping[str, object],
        audit: AuditEvent | None,
        check: "Check | None" = None,
    ) -> None:
        params = {"b_id": consultation_id, **{f"b_{k}": v for k, v in values.items()}}

        def unit(conn: Connection) -> None:
            if check is not None:
                row = conn.execute(_RECORD_BY_ID, {"b_id": consultation_id}).first()
                check(None if row is None else _record(row))
            if conn.execute(statement, params).rowcount == 0:
                raise RecordConflict("consultation not found or not in a state for this change")
            append_audit_if(conn, audit)

        await self._db.write(unit)

    async def create(
        self,
        kiosk_id: str,
        hall: str | None,
        department: str,
        case_number: str | None,
        *,
        audit: AuditEvent,
        consultation_id: str | None = None,
        at: float | None = None,
    ) -> ConsultationRecord:
        """A new waiting consultation; the audit entry's subject becomes its id.
        RecordConflict if the kiosk has an open one already (the records allow one)."""
        consultation_id = consultation_id or new_id()
        record = ConsultationRecord(
            id=consultation_id,
            kiosk_id=kiosk_id,
            hall=hall,
            department=department,
            expert_id=None,
            case_number=case_number,
            state=ConsultationState.WAITING,
            waiting_at=time.time() if at is None else at,
            offered_at=None,
            active_at=None,
            ended_at=None,
            end_reason=None,
            ended_by=None,
            outcome=None,
            notes=None,
            rating=None,
            reference=reference_of(consultation_id),
        )

        def unit(conn: Connection) -> None:
            open_department = conn.execute(_OPEN_DEPARTMENT, {"code": department}).first()
            if open_department is None:
                raise RecordNotFound(f"no department {department!r}")
            row = {k: v for k, v in record.__dict__.items() if k in consultations.c}
            try:
                conn.execute(consultations.insert().values(**row))
            except IntegrityError:
                raise RecordConflict("this kiosk already has an open consultation") from None
            append_audit(conn, dataclasses.replace(audit, subject=record.id))

        await self._db.write(unit)
        return record

    async def mark_active(
        self,
        consultation_id: str,
        expert_id: str,
        offered_at: float | None,
        at: float,
        *,
        audit: AuditEvent,
        position: int = 1,
    ) -> None:
        """The first expert answers: the call starts, and their leg with it."""
        params = {
            "b_id": consultation_id,
            "b_state": ConsultationState.ACTIVE.value,
            "b_offered_at": offered_at,
            "b_active_at": at,
            "b_expert_id": expert_id,
        }

        def unit(conn: Connection) -> None:
            row = lock_consultation(conn, consultation_id)
            if row is None or conn.execute(_MARK_ACTIVE, params).rowcount == 0:
                raise RecordConflict("consultation not found or not in a state for this change")
            open_leg(
                conn, consultation_id, expert_id, Role.EXPERT.value, row.department, position, at
            )
            append_audit(conn, audit)

        await self._db.write(unit)

    async def resume(
        self,
        consultation_id: str,
        expert_id: str,
        position: int,
        at: float,
        *,
        invited_by: str | None,
        note: str | None,
        audit: AuditEvent,
    ) -> None:
        """An expert of the department a consultation was transferred to takes it: the
        call goes on with their leg (the first expert's outcome stays on the row).
        Exactly once, as the first answer: only from waiting."""

        def unit(conn: Connection) -> None:
            row = lock_consultation(conn, consultation_id)
            if row is None or row.state != ConsultationState.WAITING.value:
                raise RecordConflict("consultation not found or not in a state for this change")
            conn.execute(
                update(consultations)
                .where(consultations.c.id == consultation_id)
                .values(state=ConsultationState.ACTIVE.value)
            )
            open_leg(
                conn,
                consultation_id,
                expert_id,
                Role.EXPERT.value,
                row.department,
                position,
                at,
                invited_by=invited_by,
                note=note,
            )
            append_audit(conn, audit)

        await self._db.write(unit)

    async def join(
        self,
        consultation_id: str,
        account_id: str,
        role: Role,
        department: str,
        position: int,
        at: float,
        *,
        invitation: str | None,
        invited_by: str,
        note: str | None,
        audit: AuditEvent,
    ) -> None:
        """An invited expert or interpreter joins the active call (once per invitation),
        or a supervisor steps in (no invitation)."""

        def unit(conn: Connection) -> None:
            row = lock_consultation(conn, consultation_id)
            if row is None or row.state != ConsultationState.ACTIVE.value:
                raise RecordConflict("the call is not going on")
            open_leg(
                conn,
                consultation_id,
                account_id,
                role.value,
                department,
                position,
                at,
                invited_by=invited_by,
                note=note,
                invitation=invitation,
            )
            append_audit(conn, audit)

        await self._db.write(unit)

    async def leave(
        self,
        consultation_id: str,
        account_id: str,
        at: float,
        reason: LegEnd,
        *,
        audit: AuditEvent,
    ) -> None:
        """A staff member's part ends while the call goes on (left, or dropped past
        the grace period). RecordConflict if they had no open leg."""

        def unit(conn: Connection) -> None:
            row = lock_consultation(conn, consultation_id)
            if close_legs(conn, consultation_id, at, reason, account_id) == 0:
                raise RecordConflict("not taking part in this call")
            # The last expert's part ends only with the call (another node's leave of
            # the other expert came first: the caller decides again, on what is now).
            experts_left = conn.execute(
                select(consultation_legs.c.seq).where(
                    consultation_legs.c.consultation_id == consultation_id,
                    consultation_legs.c.role == Role.EXPERT.value,
                    consultation_legs.c.left_at.is_(None),
                )
            ).first()
            if (
                row is not None
                and row.state == ConsultationState.ACTIVE.value
                and experts_left is None
                and role_of(conn, consultation_id, account_id) == Role.EXPERT.value
            ):
                raise RecordConflict("the last expert ends the call")
            append_audit(conn, audit)

        await self._db.write(unit)

    async def transfer(
        self,
        consultation_id: str,
        account_id: str,
        department: str,
        at: float,
        *,
        audit: AuditEvent,
    ) -> None:
        """The expert hands the consultation to ``department``: their leg ends as
        transferred, and the consultation waits for that department (one transfer at a
        time: only an active one is transferred)."""

        def unit(conn: Connection) -> None:
            row = lock_consultation(conn, consultation_id)
            if row is None or row.state != ConsultationState.ACTIVE.value:
                raise RecordConflict("consultation not found or not in a state for this change")
            # Another expert who joined meanwhile (another node) stays the citizen's.
            others = conn.execute(
                select(consultation_legs.c.seq).where(
                    consultation_legs.c.consultation_id == consultation_id,
                    consultation_legs.c.role == Role.EXPERT.value,
                    consultation_legs.c.left_at.is_(None),
                    consultation_legs.c.account_id != account_id,
                )
            ).first()
            if others is not None:
                raise RecordConflict("another expert is in the call")
            if close_legs(conn, consultation_id, at, LegEnd.TRANSFERRED, account_id) == 0:
                raise RecordConflict("not taking part in this call")
            conn.execute(
                update(consultations)
                .where(consultations.c.id == consultation_id)
                .values(department=department, state=ConsultationState.WAITING.value)
            )
            append_audit(conn, audit)

        await self._db.write(unit)

    async def mark_ended(
        self,
        consultation_id: str,
        reason: EndReason,
        ended_by: str,
        at: float,
        *,
        offered_at: float | None = None,
        audit: AuditEvent,
    ) -> None:
        params = {
            "b_id": consultation_id,
            "b_state": ConsultationState.ENDED.value,
            "b_offered_at": offered_at,
            "b_ended_at": at,
            "b_end_reason": reason.value,
            "b_ended_by": ended_by,
        }
        leg_end = LegEnd.DROPPED if reason is EndReason.DROPPED else LegEnd.ENDED

        def unit(conn: Connection) -> None:
            if conn.execute(_MARK_ENDED, params).rowcount == 0:
                raise RecordConflict("consultation not found or not in a state for this change")
            # Whoever was still in the call, their part ends with it.
            close_legs(conn, consultation_id, at, leg_end)
            append_audit(conn, audit)

        await self._db.write(unit)

    async def set_outcome(
        self,
        consultation_id: str,
        outcome: Outcome,
        notes: str,
        *,
        audit: AuditEvent,
        check: "Check | None" = None,
    ) -> None:
        """``check`` sees the record inside the same unit of work (one hop, not a
        read and then a write) and raises to refuse the change."""
        await self._change(
            _SET_OUTCOME, consultation_id, {"outcome": outcome.value, "notes": notes}, audit, check
        )

    async def save_draft_notes(
        self,
        consultation_id: str,
        notes: str,
        *,
        audit: AuditEvent,
        check: "Check | None" = None,
    ) -> None:
        """Notes without an outcome (the expert completes the record later): it stays
        unfinished. RecordConflict once an outcome is saved."""
        await self._change(_SAVE_DRAFT, consultation_id, {"notes": notes}, audit, check)

    async def set_rating(
        self,
        consultation_id: str,
        rating: int,
        *,
        audit: AuditEvent,
        check: "Check | None" = None,
    ) -> None:
        """As ``set_outcome``; a rating is given once (RecordConflict after that)."""
        await self._change(_SET_RATING, consultation_id, {"rating": rating}, audit, check)

    async def set_grade(
        self,
        consultation_id: str,
        grade: Grade,
        reason: GradeReason | None,
        comment: str | None,
        *,
        audit: AuditEvent,
        at: float,
        follow_up_days: float,
        check: "Check | None" = None,
    ) -> None:
        """The citizen's 好差评 grade, with its 1-5 score in ``rating`` (so that the
        averages read as before), given once (RecordConflict after that). A bad grade
        opens its follow-up, due ``follow_up_days`` after ``at``, in the same unit of
        work: a bad grade is never kept without the follow-up that answers it."""

        def unit(conn: Connection) -> None:
            row = conn.execute(_RECORD_BY_ID, {"b_id": consultation_id}).first()
            record = None if row is None else _record(row)
            if check is not None:
                check(record)
            if record is None:
                raise RecordNotFound("no consultation with this id")
            changed = conn.execute(
                update(consultations)
                .where(
                    consultations.c.id == consultation_id,
                    consultations.c.rating.is_(None),
                    consultations.c.grade.is_(None),
                )
                .values(
                    grade=grade.value,
                    rating=RATING_OF_GRADE[grade],
                    grade_reason=None if reason is None else reason.value,
                    grade_comment=comment,
                )
            ).rowcount
            if changed == 0:
                raise RecordConflict("this consultation has already been rated")
            append_audit(conn, audit)
            if grade in BAD_GRADES:
                open_follow_up(
                    conn,
                    record,
                    grade,
                    reason,
                    comment,
                    at=at,
                    due_at=at + follow_up_days * DAY,
                    actor=audit.actor,
                    remote=audit.remote,
                )

        await self._db.write(unit)

    async def link_case(self, consultation_id: str, case_number: str, *, audit: AuditEvent) -> None:
        """Give a consultation that had none a case number (clerk)."""
        await self._change(_LINK_CASE, consultation_id, {"case_number": case_number}, audit)

    async def get(self, consultation_id: str) -> ConsultationRecord:
        row = await self._db.read(
            lambda conn: conn.execute(_RECORDS.where(consultations.c.id == consultation_id)).first()
        )
        if row is None:
            raise RecordNotFound("no such consultation")
        return _record(row)

    async def _select(self, query: Any) -> list[ConsultationRecord]:
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [_record(row) for row in rows]

    async def open_consultations(self) -> list[ConsultationRecord]:
        """Every consultation not yet ended (to settle after a restart)."""
        return await self._select(
            _RECORDS.where(consultations.c.state != ConsultationState.ENDED.value)
        )

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
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [float(r.ended_at - r.active_at) for r in rows]

    async def find(
        self,
        *,
        case_number: str | None = None,
        department: str | None = None,
        expert_id: str | None = None,
        limit: int = 100,
    ) -> list[ConsultationRecord]:
        """Newest first."""
        query = _RECORDS.order_by(consultations.c.waiting_at.desc()).limit(limit)
        if case_number is not None:
            query = query.where(consultations.c.case_number == case_number)
        if department is not None:
            query = query.where(consultations.c.department == department)
        if expert_id is not None:
            query = query.where(consultations.c.expert_id == expert_id)
        return await self._select(query)

    async def of_expert(
        self, expert_id: str, *, unfinished: bool = False, limit: int = 50
    ) -> list[ConsultationRecord]:
        """The consultations this expert took part in (answered, joined, took over after
        a transfer), newest first, each with this expert's own outcome and notes (their
        leg's); ``unfinished``: only those whose part ended without an outcome, the
        records still to complete."""
        latest = (
            select(
                consultation_legs.c.consultation_id,
                func.max(consultation_legs.c.seq).label("seq"),
            )
            .where(
                consultation_legs.c.account_id == expert_id,
                consultation_legs.c.role == Role.EXPERT.value,
            )
            .group_by(consultation_legs.c.consultation_id)
            .subquery()
        )
        leg = consultation_legs.alias("own_leg")
        columns = [c for c in consultations.c if c.name not in ("outcome", "notes")]
        query = (
            select(
                *columns,
                leg.c.outcome.label("outcome"),
                leg.c.notes.label("notes"),
                _experts.c.display_name.label("expert_name"),
            )
            .select_from(
                latest.join(
                    leg,
                    and_(
                        leg.c.consultation_id == latest.c.consultation_id,
                        leg.c.seq == latest.c.seq,
                    ),
                )
                .join(consultations, consultations.c.id == leg.c.consultation_id)
                .outerjoin(_experts, _experts.c.id == consultations.c.expert_id)
            )
            .limit(limit)
        )
        if unfinished:
            query = query.where(leg.c.left_at.is_not(None), leg.c.outcome.is_(None)).order_by(
                leg.c.left_at.desc()
            )
        else:
            query = query.order_by(leg.c.joined_at.desc())
        return await self._select(query)

    async def of_halls(
        self,
        halls: Sequence[str] | None,
        *,
        since: float,
        until: float,
        department: str | None = None,
        reference: str | None = None,
        limit: int = 200,
    ) -> list[ConsultationRecord]:
        """Consultations of these halls (None: every hall) that joined the queue in
        [since, until), newest first; only the one ``reference`` if given."""
        query = (
            _RECORDS.where(consultations.c.waiting_at >= since, consultations.c.waiting_at < until)
            .order_by(consultations.c.waiting_at.desc())
            .limit(limit)
        )
        if halls is not None:
            query = query.where(consultations.c.hall.in_(list(halls)))
        if department is not None:
            query = query.where(consultations.c.department == department)
        if reference is not None:
            query = query.where(consultations.c.reference == reference)
        return await self._select(query)

    async def add_chat(
        self, consultation_id: str, sender_id: str, sender_role: Role, text: str
    ) -> ChatMessage:
        message = ChatMessage(new_id(), consultation_id, sender_id, sender_role, text, time.time())
        await self._db.write(
            lambda conn: conn.execute(chat_messages.insert().values(**message.__dict__))
        )
        return message

    async def chat(self, consultation_id: str) -> list[ChatMessage]:
        query = (
            select(chat_messages)
            .where(chat_messages.c.consultation_id == consultation_id)
            .order_by(chat_messages.c.sent_at)
        )
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [
            ChatMessage(**{**row._asdict(), "sender_role": Role(row.sender_role)}) for row in rows
        ]
