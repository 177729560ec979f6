"""Follow-ups of bad 好差评 grades: every 不满意 / 非常不满意 opens one for the
consultation's department, which its supervisors take from open to contacted
(the citizen reached) to closed, writing what they found and put right.

Whether a note moves a follow-up is decided by ``next_state``, a pure function of
the state and the note's kind (tested as a table); the store applies it with the
note and its audit entry in one unit of work. Nothing here reads a clock: callers
pass ``now`` (the web layer's injectable clock), so that a test can stand after a
deadline.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Integer, and_, func, select, update

from storage.audit import append_audit
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.records import (
    AuditEvent,
    ConsultationRecord,
    FollowUp,
    FollowUpNote,
    FollowUpNoteKind,
    FollowUpState,
    Grade,
    GradeReason,
    Scope,
)
from storage.schema import consultations, follow_up_notes, follow_ups

DAY = 86400.0


class FollowUpClosed(RecordConflict):
    """The follow-up is closed: nothing more is written on it."""


def next_state(state: FollowUpState, kind: FollowUpNoteKind) -> FollowUpState:
    """The state after a note of ``kind``: a contact moves an open follow-up to
    contacted, the closing word closes it from either (a citizen who left no way to
    reach them cannot be contacted, and the follow-up must still end), anything else
    leaves it; a closed one takes nothing (FollowUpClosed)."""
    if state is FollowUpState.CLOSED:
        raise FollowUpClosed("this follow-up is closed")
    if kind is FollowUpNoteKind.CLOSE:
        return FollowUpState.CLOSED
    if kind is FollowUpNoteKind.CONTACT:
        return FollowUpState.CONTACTED
    return state


def open_follow_up(
    conn: Connection,
    record: ConsultationRecord,
    grade: Grade,
    reason: GradeReason | None,
    comment: str | None,
    *,
    at: float,
    due_at: float,
    actor: str,
    remote: str = "",
) -> None:
    """Open the follow-up of a consultation's bad grade inside the caller's unit of
    work (the one that records the grade), with its audit entry."""
    conn.execute(
        follow_ups.insert().values(
            consultation_id=record.id,
            department=record.department,
            hall=record.hall,
            grade=grade.value,
            reason=None if reason is None else reason.value,
            comment=comment,
            state=FollowUpState.OPEN.value,
            opened_at=at,
            due_at=due_at,
            contacted_at=None,
            closed_at=None,
            closed_by=None,
        )
    )
    append_audit(
        conn,
        AuditEvent(
            actor,
            "follow_up.open",
            record.id,
            {"department": record.department, "grade": grade.value, "due_at": due_at},
            remote,
        ),
    )


_READ = select(follow_ups, consultations.c.reference).select_from(
    follow_ups.join(consultations, consultations.c.id == follow_ups.c.consultation_id)
)


def _in_scope(scope: Scope | None) -> Any:
    """The WHERE clause of a scope (None: the admin's, everything)."""
    conditions = []
    if scope is not None and scope.departments:
        conditions.append(follow_ups.c.department.in_(scope.departments))
    if scope is not None and scope.halls:
        conditions.append(follow_ups.c.hall.in_(scope.halls))
    return and_(True, *conditions)


def _follow_up(row: Any, notes: Sequence[FollowUpNote] = ()) -> FollowUp:
    return FollowUp(
        consultation_id=row.consultation_id,
        department=row.department,
        hall=row.hall,
        grade=Grade(row.grade),
        reason=GradeReason(row.reason) if row.reason else None,
        comment=row.comment,
        state=FollowUpState(row.state),
        opened_at=row.opened_at,
        due_at=row.due_at,
        contacted_at=row.contacted_at,
        closed_at=row.closed_at,
        closed_by=row.closed_by,
        reference=row.reference,
        notes=tuple(notes),
    )


def _notes_of(conn: Connection, ids: Sequence[str]) -> dict[str, list[FollowUpNote]]:
    found: dict[str, list[FollowUpNote]] = {}
    if not ids:
        return found
    rows = conn.execute(
        select(follow_up_notes)
        .where(follow_up_notes.c.consultation_id.in_(ids))
        .order_by(follow_up_notes.c.consultation_id, follow_up_notes.c.seq)
    )
    for row in rows:
        found.setdefault(row.consultation_id, []).append(
            FollowUpNote(row.seq, FollowUpNoteKind(row.kind), row.text, row.author, row.at)
        )
    return found


def _get(conn: Connection, consultation_id: str) -> FollowUp | None:
    row = conn.execute(_READ.where(follow_ups.c.consultation_id == consultation_id)).first()
    if row is None:
        return None
    return _follow_up(row, _notes_of(conn, [consultation_id]).get(consultation_id, []))


# Called with the follow-up inside the unit of work; raises to refuse (a scope that
# does not cover it answers as if it did not exist).
Check = Callable[[FollowUp], None]


@dataclass(frozen=True)
class FollowUpCounts:
    """Open (not closed) and overdue follow-ups of one department or hall."""

    open: int = 0
    overdue: int = 0


@dataclass(frozen=True)
class GradeBoard:
    """What the admin board shows of 好差评: grades given per department and per hall,
    and the follow-ups still open and overdue per department and per hall."""

    grades_by_department: dict[str, dict[str, int]]
    grades_by_hall: dict[str, dict[str, int]]
    follow_ups_by_department: dict[str, FollowUpCounts]
    follow_ups_by_hall: dict[str, FollowUpCounts]


class FollowUps:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(
        self,
        scope: Scope | None,
        *,
        include_closed: bool = False,
        limit: int = 200,
    ) -> list[FollowUp]:
        """The follow-ups ``scope`` covers (None: all), the oldest deadline first,
        with their notes; closed ones only when asked (then newest first after the
        open ones)."""
        query = _READ.where(_in_scope(scope))
        if not include_closed:
            query = query.where(follow_ups.c.state != FollowUpState.CLOSED.value)
        query = query.order_by(
            (follow_ups.c.state == FollowUpState.CLOSED.value), follow_ups.c.due_at
        ).limit(limit)

        def unit(conn: Connection) -> list[FollowUp]:
            rows = conn.execute(query).all()
            notes = _notes_of(conn, [r.consultation_id for r in rows])
            return [_follow_up(r, notes.get(r.consultation_id, [])) for r in rows]

        return await self._db.read(unit)

    async def get(self, consultation_id: str) -> FollowUp:
        found = await self._db.read(lambda conn: _get(conn, consultation_id))
        if found is None:
            raise RecordNotFound("no follow-up of this consultation")
        return found

    async def add_note(
        self,
        consultation_id: str,
        kind: FollowUpNoteKind,
        text: str,
        *,
        author: str,
        now: float,
        remote: str = "",
        check: Check | None = None,
    ) -> FollowUp:
        """Write a note (and the state it leads to, ``next_state``) with its audit
        entry; the follow-up as it then is. RecordNotFound when there is none (or
        ``check`` says so), FollowUpClosed when it is closed."""

        def unit(conn: Connection) -> FollowUp:
            found = _get(conn, consultation_id)
            if found is None:
                raise RecordNotFound("no follow-up of this consultation")
            if check is not None:
                check(found)
            state = next_state(found.state, kind)
            values: dict[str, object] = {"state": state.value}
            if state is FollowUpState.CONTACTED and found.contacted_at is None:
                values["contacted_at"] = now
            if state is FollowUpState.CLOSED:
                values |= {"closed_at": now, "closed_by": author}
            # The UPDATE takes the row's lock first (two supervisors at once: the
            # second waits, then finds the state it expected or is refused), so the
            # notes' next seq below is read by one writer at a time.
            changed = conn.execute(
                update(follow_ups)
                .where(
                    follow_ups.c.consultation_id == consultation_id,
                    follow_ups.c.state == found.state.value,
                )
                .values(**values)
            ).rowcount
            if changed == 0:
                raise RecordConflict("the follow-up changed meanwhile; read it again")
            seq = conn.execute(
                select(func.coalesce(func.max(follow_up_notes.c.seq), 0)).where(
                    follow_up_notes.c.consultation_id == consultation_id
                )
            ).scalar_one()
            conn.execute(
                follow_up_notes.insert().values(
                    consultation_id=consultation_id,
                    seq=int(seq) + 1,
                    kind=kind.value,
                    text=text,
                    author=author,
                    at=now,
                )
            )
            # The note's words stay on the follow-up (the citizen's matters may be in
            # them); the audit log, kept for ever, says who did what and when.
            if state is FollowUpState.CLOSED:
                action = "follow_up.close"
            elif kind is FollowUpNoteKind.CONTACT:
                action = "follow_up.contact"
            else:
                action = "follow_up.note"
            append_audit(
                conn,
                AuditEvent(
                    author,
                    action,
                    consultation_id,
                    {"kind": kind.value, "from": found.state.value, "to": state.value},
                    remote,
                ),
            )
            after = _get(conn, consultation_id)
            assert after is not None
            return after

        return await self._db.write(unit)

    async def board(self, now: float, since: float) -> GradeBoard:
        """Grades given since ``since`` per department and hall; follow-ups not closed
        (and those of them past their deadline at ``now``) per department and hall."""
        graded = consultations.c.grade.is_not(None)
        recent = consultations.c.ended_at >= since

        def unit(conn: Connection) -> GradeBoard:
            by_department: dict[str, dict[str, int]] = {}
            by_hall: dict[str, dict[str, int]] = {}
            for column, target in (
                (consultations.c.department, by_department),
                (consultations.c.hall, by_hall),
            ):
                rows = conn.execute(
                    select(column.label("key"), consultations.c.grade, func.count().label("n"))
                    .where(graded, recent, column.is_not(None))
                    .group_by(column, consultations.c.grade)
                )
                for row in rows:
                    target.setdefault(str(row.key), {})[str(row.grade)] = int(row.n)
            counts_department: dict[str, FollowUpCounts] = {}
            counts_hall: dict[str, FollowUpCounts] = {}
            not_closed = follow_ups.c.state != FollowUpState.CLOSED.value
            for column, counts in (
                (follow_ups.c.department, counts_department),
                (follow_ups.c.hall, counts_hall),
            ):
                rows = conn.execute(
                    select(
                        column.label("key"),
                        func.count().label("open"),
                        func.sum((follow_ups.c.due_at < now).cast(Integer)).label("overdue"),
                    )
                    .where(not_closed, column.is_not(None))
                    .group_by(column)
                )
                for row in rows:
                    counts[str(row.key)] = FollowUpCounts(int(row.open), int(row.overdue or 0))
            return GradeBoard(by_department, by_hall, counts_department, counts_hall)

        return await self._db.read(unit)
