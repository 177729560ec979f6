"""A department's settings for call-backs and appointments, as the admin sets them.

- Weekly availability for appointments: spans in the same words as a department's
  usual hours (``storage.opening_hours``: "1-5 09:00-12:00", ISO weekdays from-to and a
  time span, the deployment's local time), several of them (a lunch break is two).
- A slot length (minutes) and how many citizens one slot takes (one per expert who
  keeps appointments).
- The wait (seconds) beyond which the kiosk offers a call-back or a booking.
- Call-backs: how many attempts to call, and how long a request stays open (at most
  3 days: a citizen who asked to be called back a week ago no longer expects it).

A department without a row has the defaults (``DEFAULT``): its usual hours are its
availability, so that every department can take bookings once it exists.
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from storage.audit import append_audit_if
from storage.database import Database
from storage.errors import RecordNotFound
from storage.opening_hours import UsualHours, parse_hours
from storage.records import AuditEvent
from storage.schema import booking_settings, departments

MAX_CALLBACK_EXPIRY = 3 * 86400.0
"""Seconds a call-back may stay open at most (issue 22: 3 days)."""
MAX_CALLBACK_ATTEMPTS = 10
SLOT_MINUTES = (5, 120)
"""Shortest and longest slot, in minutes."""
MAX_SLOT_CAPACITY = 50
MAX_WAIT_LIMIT = 8 * 3600.0


@dataclass(frozen=True)
class BookingSettings:
    availability: tuple[str, ...]
    """Spans of the week appointments are kept in ("1-5 09:00-12:00"); empty: the
    department's usual hours."""
    slot_minutes: int = 15
    slot_capacity: int = 1
    """Citizens one slot takes."""
    wait_limit: float = 900.0
    """Seconds of estimated wait beyond which the kiosk offers a call-back or a booking."""
    callback_attempts: int = 3
    callback_expiry: float = 86400.0
    """Seconds a call-back request stays open (at most ``MAX_CALLBACK_EXPIRY``)."""


DEFAULT = BookingSettings(availability=())


def settings_problem(settings: BookingSettings) -> str | None:
    """What is wrong with ``settings`` (a sentence for the admin), or None."""
    for span in settings.availability:
        if parse_hours(span) is None:
            return f"availability {span!r} is not like '1-5 09:00-12:00'"
    low, high = SLOT_MINUTES
    if not low <= settings.slot_minutes <= high:
        return f"slot_minutes must be {low} to {high}"
    if not 1 <= settings.slot_capacity <= MAX_SLOT_CAPACITY:
        return f"slot_capacity must be 1 to {MAX_SLOT_CAPACITY}"
    if not 0 <= settings.wait_limit <= MAX_WAIT_LIMIT:
        return f"wait_limit must be 0 to {MAX_WAIT_LIMIT:.0f} seconds"
    if not 1 <= settings.callback_attempts <= MAX_CALLBACK_ATTEMPTS:
        return f"callback_attempts must be 1 to {MAX_CALLBACK_ATTEMPTS}"
    if not 3600 <= settings.callback_expiry <= MAX_CALLBACK_EXPIRY:
        return "callback_expiry must be 1 hour to 3 days (3600 to 259200 seconds)"
    return None


def availability_of(settings: BookingSettings, usual_hours: str) -> tuple[UsualHours, ...]:
    """The parsed spans appointments are kept in (the usual hours when none are set)."""
    spans = settings.availability or (usual_hours,)
    return tuple(hours for hours in (parse_hours(span) for span in spans) if hours is not None)


def _settings_of(row: object) -> BookingSettings:
    values = dict(row._asdict())  # type: ignore[attr-defined]
    return BookingSettings(
        availability=tuple(str(v) for v in json.loads(values["availability"])),
        slot_minutes=int(values["slot_minutes"]),
        slot_capacity=int(values["slot_capacity"]),
        wait_limit=float(values["wait_limit"]),
        callback_attempts=int(values["callback_attempts"]),
        callback_expiry=float(values["callback_expiry"]),
    )


def _columns(settings: BookingSettings) -> dict[str, object]:
    return {
        "availability": json.dumps(list(settings.availability)),
        "slot_minutes": settings.slot_minutes,
        "slot_capacity": settings.slot_capacity,
        "wait_limit": settings.wait_limit,
        "callback_attempts": settings.callback_attempts,
        "callback_expiry": settings.callback_expiry,
    }


def read_settings(conn: Connection, department: str) -> BookingSettings:
    """Within a unit of work: the department's settings (the defaults without a row)."""
    row = conn.execute(
        select(booking_settings).where(booking_settings.c.department == department)
    ).first()
    return DEFAULT if row is None else _settings_of(row)


class BookingSettingsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, department: str) -> BookingSettings:
        return await self._db.read(lambda conn: read_settings(conn, department))

    async def all(self, codes: Sequence[str]) -> dict[str, BookingSettings]:
        """The settings of each of ``codes`` (the defaults where none are set)."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                select(booking_settings).where(booking_settings.c.department.in_(list(codes)))
            ).all()
        )
        found = {str(row.department): _settings_of(row) for row in rows}
        return {code: found.get(code, DEFAULT) for code in codes}

    async def put(
        self, department: str, settings: BookingSettings, *, audit: AuditEvent | None = None
    ) -> BookingSettings:
        """Set the department's settings (checked by ``settings_problem`` first:
        ValueError with its sentence); RecordNotFound for no such department."""
        problem = settings_problem(settings)
        if problem is not None:
            raise ValueError(problem)
        columns = {**_columns(settings), "updated_at": time.time()}

        def unit(conn: Connection) -> None:
            known = conn.execute(
                select(departments.c.code).where(departments.c.code == department)
            ).first()
            if known is None:
                raise RecordNotFound(f"no department {department!r}")
            changed = conn.execute(
                update(booking_settings)
                .where(booking_settings.c.department == department)
                .values(**columns)
            ).rowcount
            if not changed:
                conn.execute(insert(booking_settings).values(department=department, **columns))
            append_audit_if(conn, audit)

        await self._db.write(unit)
        return settings
