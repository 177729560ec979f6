"""Call-backs: a citizen who finds nobody online, or a wait beyond the department's
limit, leaves a phone number and a note; an expert of the department calls back.

- The phone number is kept only as its lookup HMAC and its sealed value
  (``storage.sensitive``); lists show it masked, and the expert who takes the request
  is the one who sees it in full (the caller audits that).
- A request keeps the citizen's place: it is listed by ``queued_at``, when the citizen
  first queued (their waiting consultation's start, or the request itself when they
  never queued), so that one who waited an hour is called before one who just came.
- Taking one is a compare-and-set (open -> taken): of two experts at once, one wins.
- Each attempt to call is recorded with its result: ``reached`` closes the request
  (done), ``wrong_number`` closes it (unreached); ``no_answer`` gives it back to the
  department's list until its attempts are used up (then unreached).
- A request open past ``expires_at`` (at most 3 days after it was made) closes itself
  (expired): on every read of the list, and in the periodic task.

Decisions are pure (``state_at``, ``after_attempt``); ``Callbacks`` does the I/O.
"""

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from storage.audit import append_audit_if
from storage.booking_settings import read_settings
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.ids import new_id
from storage.records import AuditEvent
from storage.schema import callback_attempts, callbacks, consultations, departments

MAX_NOTE = 500


class CallbackState(StrEnum):
    OPEN = "open"
    TAKEN = "taken"
    DONE = "done"
    """The citizen was reached."""
    UNREACHED = "unreached"
    """Every attempt failed, or the number was wrong."""
    EXPIRED = "expired"


OPEN_STATES = (CallbackState.OPEN, CallbackState.TAKEN)


class AttemptResult(StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    WRONG_NUMBER = "wrong_number"


@dataclass(frozen=True)
class Callback:
    id: str
    department: str
    kiosk_id: str
    hall: str | None
    consultation_id: str | None
    case_number: str | None
    note: str
    phone_lookup: str
    phone_sealed: str
    queued_at: float
    created_at: float
    expires_at: float
    max_attempts: int
    attempts: int
    state: CallbackState
    taken_by: str | None = None
    taken_at: float | None = None
    closed_at: float | None = None
    outcome: str | None = None


def state_at(callback: Callback, now: float) -> CallbackState:
    """The request's state at ``now``: an open or taken one past its expiry is expired."""
    if callback.state in OPEN_STATES and now >= callback.expires_at:
        return CallbackState.EXPIRED
    return callback.state


def after_attempt(callback: Callback, result: AttemptResult, now: float) -> Callback:
    """The request once an attempt with ``result`` is recorded."""
    attempts = callback.attempts + 1
    if result is AttemptResult.REACHED:
        return replace(
            callback, attempts=attempts, state=CallbackState.DONE, closed_at=now, outcome=result
        )
    if result is AttemptResult.WRONG_NUMBER or attempts >= callback.max_attempts:
        return replace(
            callback,
            attempts=attempts,
            state=CallbackState.UNREACHED,
            closed_at=now,
            outcome=result,
        )
    # Not answered: back on the department's list, in its place, for another try.
    return replace(
        callback,
        attempts=attempts,
        state=CallbackState.OPEN,
        taken_by=None,
        taken_at=None,
        outcome=result,
    )


def _callback(row: Any) -> Callback:
    values = dict(row._asdict())
    values["state"] = CallbackState(values["state"])
    return Callback(**values)


def _expire(conn: Connection, now: float, department: str | None = None) -> int:
    statement = update(callbacks).where(
        callbacks.c.state.in_([s.value for s in OPEN_STATES]), callbacks.c.expires_at <= now
    )
    if department is not None:
        statement = statement.where(callbacks.c.department == department)
    return int(
        conn.execute(statement.values(state=CallbackState.EXPIRED.value, closed_at=now)).rowcount
    )


class Callbacks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def request(
        self,
        department: str,
        *,
        kiosk_id: str,
        hall: str | None,
        phone_lookup: str,
        phone_sealed: str,
        note: str,
        case_number: str | None,
        consultation_id: str | None,
        now: float,
        audit: AuditEvent | None = None,
    ) -> Callback:
        """A new request; its place is the waiting start of ``consultation_id`` when
        that is this kiosk's consultation of the department (else now)."""

        def unit(conn: Connection) -> Callback:
            known = conn.execute(
                select(departments.c.code).where(
                    departments.c.code == department, departments.c.disabled.is_(False)
                )
            ).first()
            if known is None:
                raise RecordNotFound(f"no department {department!r}")
            settings = read_settings(conn, department)
            queued_at = now
            case = case_number
            if consultation_id is not None:
                row = conn.execute(
                    select(consultations.c.waiting_at, consultations.c.case_number).where(
                        consultations.c.id == consultation_id,
                        consultations.c.kiosk_id == kiosk_id,
                        consultations.c.department == department,
                    )
                ).first()
                if row is None:
                    raise RecordNotFound("no such consultation of this kiosk")
                queued_at = min(now, float(row.waiting_at))
                case = case or row.case_number
            record = Callback(
                id=new_id(),
                department=department,
                kiosk_id=kiosk_id,
                hall=hall,
                consultation_id=consultation_id,
                case_number=case,
                note=note[:MAX_NOTE],
                phone_lookup=phone_lookup,
                phone_sealed=phone_sealed,
                queued_at=queued_at,
                created_at=now,
                expires_at=now + settings.callback_expiry,
                max_attempts=settings.callback_attempts,
                attempts=0,
                state=CallbackState.OPEN,
            )
            conn.execute(
                insert(callbacks).values(**{**record.__dict__, "state": record.state.value})
            )
            append_audit_if(conn, audit)
            return record

        return await self._db.write(unit)

    async def open_of(self, department: str, now: float) -> list[Callback]:
        """The department's open and taken requests, by their place; expired ones
        are closed first."""

        def unit(conn: Connection) -> list[Callback]:
            _expire(conn, now, department)
            rows = conn.execute(
                select(callbacks)
                .where(
                    callbacks.c.department == department,
                    callbacks.c.state.in_([s.value for s in OPEN_STATES]),
                )
                .order_by(callbacks.c.queued_at, callbacks.c.created_at)
            ).all()
            return [_callback(row) for row in rows]

        return await self._db.write(unit)

    async def get(self, callback_id: str) -> Callback:
        row = await self._db.read(
            lambda conn: conn.execute(
                select(callbacks).where(callbacks.c.id == callback_id)
            ).first()
        )
        if row is None:
            raise RecordNotFound("no such call-back")
        return _callback(row)

    async def take(
        self,
        callback_id: str,
        department: str,
        expert_id: str,
        now: float,
        *,
        audit: AuditEvent | None = None,
    ) -> Callback:
        """The expert takes an open request of their department (of two at once, one
        wins: RecordConflict for the other). The expert who holds it may take it again
        (a reload of the desk)."""

        def unit(conn: Connection) -> Callback:
            _expire(conn, now, department)
            changed = conn.execute(
                update(callbacks)
                .where(
                    callbacks.c.id == callback_id,
                    callbacks.c.department == department,
                    (callbacks.c.state == CallbackState.OPEN.value)
                    | (
                        (callbacks.c.state == CallbackState.TAKEN.value)
                        & (callbacks.c.taken_by == expert_id)
                    ),
                )
                .values(state=CallbackState.TAKEN.value, taken_by=expert_id, taken_at=now)
            ).rowcount
            row = conn.execute(
                select(callbacks).where(
                    callbacks.c.id == callback_id, callbacks.c.department == department
                )
            ).first()
            if row is None:
                raise RecordNotFound("no such call-back")
            if changed != 1:
                raise RecordConflict(
                    f"this call-back is {row.state}"
                    + (" by a colleague" if row.state == CallbackState.TAKEN.value else "")
                )
            append_audit_if(conn, audit)
            return _callback(row)

        return await self._db.write(unit)

    async def record_attempt(
        self,
        callback_id: str,
        expert_id: str,
        result: AttemptResult,
        note: str,
        now: float,
        *,
        audit: AuditEvent | None = None,
    ) -> Callback:
        """The result of one call by the expert holding the request."""

        def unit(conn: Connection) -> Callback:
            _expire(conn, now)
            row = conn.execute(
                select(callbacks).where(callbacks.c.id == callback_id).with_for_update()
            ).first()
            if row is None:
                raise RecordNotFound("no such call-back")
            current = _callback(row)
            if current.state is not CallbackState.TAKEN or current.taken_by != expert_id:
                raise RecordConflict("take the call-back before recording a call")
            after = after_attempt(current, result, now)
            seq = conn.execute(
                select(func.count())
                .select_from(callback_attempts)
                .where(callback_attempts.c.callback_id == callback_id)
            ).scalar()
            conn.execute(
                insert(callback_attempts).values(
                    callback_id=callback_id,
                    seq=int(seq or 0) + 1,
                    expert_id=expert_id,
                    at=now,
                    result=result.value,
                    note=note[:MAX_NOTE],
                )
            )
            conn.execute(
                update(callbacks)
                .where(callbacks.c.id == callback_id)
                .values(
                    attempts=after.attempts,
                    state=after.state.value,
                    taken_by=after.taken_by,
                    taken_at=after.taken_at,
                    closed_at=after.closed_at,
                    outcome=after.outcome,
                )
            )
            append_audit_if(conn, audit)
            return after

        return await self._db.write(unit)

    async def attempts_of(self, callback_id: str) -> list[tuple[str, float, str, str]]:
        """(expert id, time, result, note) of each recorded call, in order."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(callback_attempts)
                .where(callback_attempts.c.callback_id == callback_id)
                .order_by(callback_attempts.c.seq)
            ).all()
        )
        return [(str(r.expert_id), float(r.at), str(r.result), str(r.note)) for r in rows]

    async def expire(self, now: float) -> int:
        """Close every request past its expiry (the periodic task); how many."""
        return await self._db.write(lambda conn: _expire(conn, now))
