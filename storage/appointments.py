"""Appointments: a citizen books a slot of a department at a kiosk and comes back
with a booking code, at any hall.

- Slots: each department's weekly availability (``storage.booking_settings``) cut
  into slots of its length, in the deployment's local time, for the next
  ``BOOKING_DAYS`` days (today included), without the days the department cancelled;
  a slot takes ``slot_capacity`` citizens, each on a seat of its own.
- Of two bookings of a slot's last seat one wins: (department, slot, seat) is unique,
  and a cancelled booking gives its seat back (NULL).
- A citizen (by the lookup HMAC of their identity number or phone number) holds at
  most ``MAX_OPEN_PER_CITIZEN`` open bookings.
- The booking code is ``CODE_LENGTH`` characters from the alphabet of references
  (no 0/O/1/I/L look-alikes), made with ``secrets``; only its hash is kept, so a copy
  of the database admits nobody.
- Typed at a kiosk from ``EARLY`` seconds before the slot to ``LATE`` seconds after it,
  the code is admitted at that kiosk (``admit``); the kiosk's next request for the
  booking's department then takes it (``take_admitted``) and waits at the head of the
  department's queue.

What a slot, a booking and a code allow at a time is decided by pure functions
(``slot_starts``, ``free_slots``, ``admission``, ``is_open``); ``Appointments`` is the
one place that reads and writes them.
"""

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from storage.audit import append_audit_if
from storage.booking_settings import availability_of, read_settings
from storage.database import Database, deadlocked
from storage.errors import RecordConflict, RecordNotFound
from storage.ids import new_id
from storage.opening_hours import UsualHours
from storage.records import AuditEvent
from storage.references import ALPHABET
from storage.schema import appointment_closures, appointments, departments

BOOKING_DAYS = 14
CODE_LENGTH = 8
"""24^8 (1.1e11) codes: with attempts throttled per kiosk, guessing one of the few
thousand open bookings takes years."""
EARLY = 10 * 60.0
"""Seconds before its slot a booking code is admitted."""
LATE = 15 * 60.0
"""Seconds after its slot's start a booking code is still admitted."""
MAX_OPEN_PER_CITIZEN = 2


def code_hash(code: str) -> str:
    return hashlib.sha256(
        b"windowlink booking code\x00" + code.encode("ascii", "replace")
    ).hexdigest()


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def typed_code(text: str) -> str | None:
    """What someone typed, as a booking code (case, spaces and dashes ignored), or
    None when it cannot be one."""
    value = "".join(c for c in text.upper() if c not in " -")
    if len(value) == CODE_LENGTH and all(c in ALPHABET for c in value):
        return value
    return None


def _local(day: date, minutes: int, tz: tzinfo | None) -> datetime:
    moment = datetime.combine(day, time()) + timedelta(minutes=minutes)
    # Naive local time made aware by the system's zone (its offset on that date), or
    # the zone given (tests, and a deployment whose zone is set explicitly).
    return moment.astimezone() if tz is None else moment.replace(tzinfo=tz)


def slot_starts(
    day: date, spans: Sequence[UsualHours], slot_minutes: int, tz: tzinfo | None = None
) -> list[datetime]:
    """The starts of the slots of ``day``: each span of that weekday cut into whole
    slots (a remainder shorter than a slot is not offered), in order, without repeats
    where spans overlap."""
    starts: set[int] = set()
    for span in spans:
        if day.isoweekday() not in span.days:
            continue
        minute = span.opens
        while minute + slot_minutes <= span.closes:
            starts.add(minute)
            minute += slot_minutes
    return [_local(day, minute, tz) for minute in sorted(starts)]


@dataclass(frozen=True)
class FreeSlot:
    at: datetime
    free: int
    """Seats still free."""


def free_slots(
    spans: Sequence[UsualHours],
    slot_minutes: int,
    capacity: int,
    now: datetime,
    booked: Mapping[float, int],
    closed_days: Iterable[str] = (),
    days: int = BOOKING_DAYS,
) -> list[FreeSlot]:
    """Slots starting after ``now`` (aware, local) within ``days`` days (today
    included) with a seat free: ``booked`` counts the seats taken by slot start (UNIX
    seconds); a day in ``closed_days`` (YYYY-MM-DD) offers none."""
    closed = set(closed_days)
    found: list[FreeSlot] = []
    for offset in range(days):
        day = now.date() + timedelta(days=offset)
        if day.isoformat() in closed:
            continue
        for start in slot_starts(day, spans, slot_minutes, now.tzinfo):
            if start <= now:
                continue
            free = capacity - booked.get(start.timestamp(), 0)
            if free > 0:
                found.append(FreeSlot(start, free))
    return found


def is_slot(
    spans: Sequence[UsualHours], slot_minutes: int, at: datetime, now: datetime, days: int
) -> bool:
    """Whether ``at`` starts a slot offered at ``now`` (seats aside)."""
    if at <= now or (at.date() - now.date()).days >= days:
        return False
    return any(
        start.timestamp() == at.timestamp()
        for start in slot_starts(at.date(), spans, slot_minutes, at.tzinfo)
    )


class BookingState(StrEnum):
    BOOKED = "booked"
    ADMITTED = "admitted"
    """Its code was typed at a kiosk in its window; that kiosk's request takes it."""
    QUEUED = "queued"
    """A consultation of its citizen waits (or waited) at the head of the queue."""
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Appointment:
    id: str
    department: str
    slot_at: float
    slot_minutes: int
    day: str
    state: BookingState
    kiosk_id: str
    hall: str | None
    phone_lookup: str | None
    phone_sealed: str | None
    id_lookup: str | None
    id_sealed: str | None
    created_at: float
    admitted_by: str | None = None
    admitted_at: float | None = None
    consultation_id: str | None = None
    cancelled_at: float | None = None
    reminded_at: float | None = None


class Admission(StrEnum):
    ADMITTED = "admitted"
    TOO_EARLY = "too_early"
    TOO_LATE = "too_late"
    USED = "used"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


def admission(booking: Appointment | None, now: float) -> Admission:
    """Whether the booking's code, typed at ``now``, admits its citizen. Typed again
    (at the same kiosk or another) before the consultation begins, it still does."""
    if booking is None:
        return Admission.UNKNOWN
    if booking.state is BookingState.CANCELLED:
        return Admission.CANCELLED
    if booking.state is BookingState.QUEUED:
        return Admission.USED
    if now < booking.slot_at - EARLY:
        return Admission.TOO_EARLY
    if now > booking.slot_at + LATE:
        return Admission.TOO_LATE
    return Admission.ADMITTED


def is_open(booking: Appointment, now: float) -> bool:
    """Whether the booking still counts against its citizen's limit: not used, not
    cancelled, its window not over."""
    return (
        booking.state in (BookingState.BOOKED, BookingState.ADMITTED)
        and now <= booking.slot_at + LATE
    )


def _appointment(row: Any) -> Appointment:
    values = dict(row._asdict())
    values.pop("code_hash", None)
    values.pop("seat", None)
    values["state"] = BookingState(values["state"])
    return Appointment(**values)


def _open_clause(now: float) -> Any:
    return and_(
        appointments.c.state.in_([BookingState.BOOKED.value, BookingState.ADMITTED.value]),
        appointments.c.slot_at >= now - LATE,
    )


@dataclass(frozen=True)
class Citizen:
    """Who books: the lookup HMACs and sealed values of their phone number and
    identity number (at least one)."""

    phone_lookup: str | None = None
    phone_sealed: str | None = None
    id_lookup: str | None = None
    id_sealed: str | None = None


DEADLOCK_TRIES = 3
"""Times a booking is written before a deadlock PostgreSQL broke by failing it is
its answer (each costs the server's deadlock_timeout, 1 s by default)."""


def _hold_citizen(conn: Connection, citizen: Citizen) -> None:
    """Serialise the bookings of one citizen across nodes until this transaction
    ends. On PostgreSQL (READ COMMITTED) two nodes booking for the same citizen at
    once each counted the open bookings before the other's insert was committed,
    and both inserted: a third. One advisory lock per lookup the booking carries,
    taken in one order. SQLite has one writer: nothing to do."""
    if conn.dialect.name != "postgresql":
        return
    names = sorted(
        f"windowlink.booking.{kind}:{lookup}"
        for kind, lookup in (("phone", citizen.phone_lookup), ("id", citizen.id_lookup))
        if lookup is not None
    )
    for name in names:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name}
        )


class Appointments:
    def __init__(self, db: Database, tz: tzinfo | None = None) -> None:
        self._db = db
        self._tz = tz
        """The deployment's zone; None: the system's local time."""

    def local(self, at: float) -> datetime:
        return (
            datetime.fromtimestamp(at, self._tz)
            if self._tz
            else datetime.fromtimestamp(at).astimezone()
        )

    async def free_slots(self, department: str, now: float) -> list[FreeSlot]:
        """The department's free slots of the next ``BOOKING_DAYS`` days."""
        local_now = self.local(now)

        def unit(conn: Connection) -> list[FreeSlot]:
            hours = conn.execute(
                select(departments.c.hours).where(departments.c.code == department)
            ).scalar()
            if hours is None:
                raise RecordNotFound(f"no department {department!r}")
            settings = read_settings(conn, department)
            booked = {
                float(row.slot_at): int(row.taken)
                for row in conn.execute(
                    select(appointments.c.slot_at, func.count().label("taken"))
                    .where(
                        appointments.c.department == department,
                        appointments.c.seat.is_not(None),
                        appointments.c.slot_at > now,
                    )
                    .group_by(appointments.c.slot_at)
                )
            }
            closed = [
                str(day)
                for day in conn.execute(
                    select(appointment_closures.c.day).where(
                        appointment_closures.c.department == department,
                        appointment_closures.c.day >= local_now.date().isoformat(),
                    )
                ).scalars()
            ]
            return free_slots(
                availability_of(settings, str(hours)),
                settings.slot_minutes,
                settings.slot_capacity,
                local_now,
                booked,
                closed,
            )

        return await self._db.read(unit)

    async def book(
        self,
        department: str,
        slot_at: float,
        citizen: Citizen,
        *,
        kiosk_id: str,
        hall: str | None,
        now: float,
        audit: AuditEvent | None = None,
    ) -> tuple[str, Appointment]:
        """Book a seat of the slot starting at ``slot_at``: the booking code (shown
        once) and the record. RecordConflict when the slot is not offered (not a slot,
        past, its day cancelled), full, or the citizen holds the most open bookings."""
        if citizen.phone_lookup is None and citizen.id_lookup is None:
            raise ValueError("a booking needs a phone number or an identity number")
        local_now = self.local(now)
        at = self.local(slot_at)
        code = new_code()

        def unit(conn: Connection) -> Appointment:
            hours = conn.execute(
                select(departments.c.hours).where(
                    departments.c.code == department, departments.c.disabled.is_(False)
                )
            ).scalar()
            if hours is None:
                raise RecordNotFound(f"no department {department!r}")
            settings = read_settings(conn, department)
            spans = availability_of(settings, str(hours))
            if not is_slot(spans, settings.slot_minutes, at, local_now, BOOKING_DAYS):
                raise RecordConflict("that time is not a slot this department offers")
            day = at.date().isoformat()
            closed = conn.execute(
                select(appointment_closures.c.day).where(
                    appointment_closures.c.department == department,
                    appointment_closures.c.day == day,
                )
            ).first()
            if closed is not None:
                raise RecordConflict("the department cancelled its appointments that day")
            _hold_citizen(conn, citizen)
            mine = []
            if citizen.phone_lookup is not None:
                mine.append(appointments.c.phone_lookup == citizen.phone_lookup)
            if citizen.id_lookup is not None:
                mine.append(appointments.c.id_lookup == citizen.id_lookup)
            held = conn.execute(
                select(func.count()).select_from(appointments).where(or_(*mine), _open_clause(now))
            ).scalar()
            if int(held or 0) >= MAX_OPEN_PER_CITIZEN:
                raise RecordConflict(
                    f"a citizen may hold {MAX_OPEN_PER_CITIZEN} open bookings at most"
                )
            taken = set(
                conn.execute(
                    select(appointments.c.seat).where(
                        appointments.c.department == department,
                        appointments.c.slot_at == slot_at,
                        appointments.c.seat.is_not(None),
                    )
                ).scalars()
            )
            seat = next((s for s in range(settings.slot_capacity) if s not in taken), None)
            if seat is None:
                raise RecordConflict("that slot is full")
            record = Appointment(
                id=new_id(),
                department=department,
                slot_at=slot_at,
                slot_minutes=settings.slot_minutes,
                day=day,
                state=BookingState.BOOKED,
                kiosk_id=kiosk_id,
                hall=hall,
                phone_lookup=citizen.phone_lookup,
                phone_sealed=citizen.phone_sealed,
                id_lookup=citizen.id_lookup,
                id_sealed=citizen.id_sealed,
                created_at=now,
            )
            conn.execute(
                insert(appointments).values(
                    **{**record.__dict__, "state": record.state.value},
                    code_hash=code_hash(code),
                    seat=seat,
                )
            )
            append_audit_if(conn, audit)
            return record

        tries = 0
        while True:
            try:
                record = await self._db.write(unit)
            except IntegrityError as exc:
                # Another node booked the same seat between our read and our insert.
                raise RecordConflict("that slot was just taken") from exc
            except DBAPIError as exc:
                # Grouped writes hold each unit's citizen locks (and inserted seats)
                # until the group commits: two nodes' groups can wait for each
                # other, and PostgreSQL fails one unit to break the cycle. Nothing
                # of it was written; the other group goes on, so this one may.
                tries += 1
                if tries >= DEADLOCK_TRIES or not deadlocked(exc):
                    raise
                continue
            return code, record

    async def by_code(self, code: str) -> Appointment | None:
        wanted = code_hash(code)
        row = await self._db.read(
            lambda conn: conn.execute(
                select(appointments).where(appointments.c.code_hash == wanted)
            ).first()
        )
        return None if row is None else _appointment(row)

    async def admit(
        self,
        code: str,
        kiosk_id: str,
        now: float,
        *,
        audit: AuditEvent | None = None,
    ) -> tuple[Admission, Appointment | None]:
        """The code typed at ``kiosk_id``: whether it admits its citizen now, and the
        booking (None when no booking has this code). Admitted, the booking waits for
        that kiosk's request (``take_admitted``). ``audit`` is recorded whatever the
        answer (an attempt that fails is audited too)."""
        wanted = code_hash(code)

        def unit(conn: Connection) -> tuple[Admission, Appointment | None]:
            row = conn.execute(
                select(appointments).where(appointments.c.code_hash == wanted)
            ).first()
            booking = None if row is None else _appointment(row)
            verdict = admission(booking, now)
            if booking is not None and verdict is Admission.ADMITTED:
                changed = conn.execute(
                    update(appointments)
                    .where(
                        appointments.c.id == booking.id,
                        appointments.c.state.in_(
                            [BookingState.BOOKED.value, BookingState.ADMITTED.value]
                        ),
                    )
                    .values(
                        state=BookingState.ADMITTED.value, admitted_by=kiosk_id, admitted_at=now
                    )
                ).rowcount
                if changed != 1:
                    verdict = Admission.USED
            if audit is not None:
                detail = {**audit.detail, "result": verdict.value}
                if booking is not None:
                    detail["department"] = booking.department
                    detail["appointment"] = booking.id
                append_audit_if(
                    conn, AuditEvent(audit.actor, audit.action, audit.subject, detail, audit.remote)
                )
            return verdict, booking

        return await self._db.write(unit)

    async def take_admitted(
        self, kiosk_id: str, department: str, consultation_id: str, now: float
    ) -> Appointment | None:
        """The booking admitted at this kiosk for ``department`` whose window is not
        over, now taken by the consultation (atomically: once); None when there is none."""

        def unit(conn: Connection) -> Appointment | None:
            row = conn.execute(
                select(appointments)
                .where(
                    appointments.c.admitted_by == kiosk_id,
                    appointments.c.department == department,
                    appointments.c.state == BookingState.ADMITTED.value,
                    appointments.c.slot_at >= now - LATE,
                )
                .order_by(appointments.c.admitted_at.desc())
            ).first()
            if row is None:
                return None
            changed = conn.execute(
                update(appointments)
                .where(
                    appointments.c.id == row.id,
                    appointments.c.state == BookingState.ADMITTED.value,
                )
                .values(state=BookingState.QUEUED.value, consultation_id=consultation_id)
            ).rowcount
            if changed != 1:
                return None
            taken = _appointment(row)
            return Appointment(
                **{
                    **taken.__dict__,
                    "state": BookingState.QUEUED,
                    "consultation_id": consultation_id,
                }
            )

        return await self._db.write(unit)

    async def give_back(self, appointment_id: str) -> None:
        """A request that took the booking failed before it queued: admitted again."""

        def unit(conn: Connection) -> None:
            conn.execute(
                update(appointments)
                .where(
                    appointments.c.id == appointment_id,
                    appointments.c.state == BookingState.QUEUED.value,
                )
                .values(state=BookingState.ADMITTED.value, consultation_id=None)
            )

        await self._db.write(unit)

    async def of_day(self, department: str, day: str) -> list[Appointment]:
        """The department's bookings of ``day`` (YYYY-MM-DD, local), cancelled ones
        included, by slot."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(appointments)
                .where(appointments.c.department == department, appointments.c.day == day)
                .order_by(appointments.c.slot_at, appointments.c.created_at)
            ).all()
        )
        return [_appointment(row) for row in rows]

    async def cancel_day(
        self,
        department: str,
        day: str,
        reason: str,
        *,
        by: str,
        now: float,
        audit: AuditEvent | None = None,
    ) -> list[Appointment]:
        """The department keeps no appointments on ``day``: no slots offered, and every
        booking of it not yet used cancelled (returned, for their notices). Cancelling
        a day again changes nothing and returns nothing."""

        def unit(conn: Connection) -> list[Appointment]:
            known = conn.execute(
                select(departments.c.code).where(departments.c.code == department)
            ).first()
            if known is None:
                raise RecordNotFound(f"no department {department!r}")
            already = conn.execute(
                select(appointment_closures.c.day).where(
                    appointment_closures.c.department == department,
                    appointment_closures.c.day == day,
                )
            ).first()
            if already is None:
                conn.execute(
                    insert(appointment_closures).values(
                        department=department, day=day, reason=reason, closed_by=by, closed_at=now
                    )
                )
            rows = conn.execute(
                select(appointments).where(
                    appointments.c.department == department,
                    appointments.c.day == day,
                    appointments.c.state.in_(
                        [BookingState.BOOKED.value, BookingState.ADMITTED.value]
                    ),
                )
            ).all()
            if rows:
                conn.execute(
                    update(appointments)
                    .where(appointments.c.id.in_([row.id for row in rows]))
                    .values(state=BookingState.CANCELLED.value, seat=None, cancelled_at=now)
                )
            append_audit_if(conn, audit)
            return [_appointment(row) for row in rows]

        return await self._db.write(unit)

    async def due_reminders(self, day: str) -> list[Appointment]:
        """Bookings of ``day`` with a phone, still booked, not reminded yet."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(appointments).where(
                    appointments.c.day == day,
                    appointments.c.state == BookingState.BOOKED.value,
                    appointments.c.phone_sealed.is_not(None),
                    appointments.c.reminded_at.is_(None),
                )
            ).all()
        )
        return [_appointment(row) for row in rows]

    async def mark_reminded(self, appointment_id: str, now: float) -> bool:
        """Claim the reminder of a booking (of several nodes, one sends it)."""

        def unit(conn: Connection) -> bool:
            return bool(
                conn.execute(
                    update(appointments)
                    .where(
                        appointments.c.id == appointment_id,
                        appointments.c.reminded_at.is_(None),
                    )
                    .values(reminded_at=now)
                ).rowcount
                == 1
            )

        return await self._db.write(unit)
