"""The periodic upkeep of call-backs and appointments, one task per process (started
and stopped with the app): expired call-back requests close, and the day before an
appointment its citizen is reminded.

The reminder goes from ``REMINDER_HOUR`` (the server's local time) the day before, to
bookings made before that day (one made the day before just had its confirmation).
Each reminder is claimed in the database first (``mark_reminded``, a compare-and-set),
so that of several processes or nodes one sends it; one that fails to go out is not
tried again (the log and the audit say so).
"""

import asyncio
import logging
import time
from datetime import datetime, timedelta

from storage.records import Department
from storage.sensitive import Kind, SensitiveValues
from storage.store import Storage
from web.notices import Notice, Notices, NoticeType, local_date_time

log = logging.getLogger(__name__)

EVERY = 60.0
"""Seconds between rounds."""
REMINDER_HOUR = 10


async def send_reminders(
    storage: Storage, sensitive: SensitiveValues, notices: Notices, now: float
) -> int:
    """Remind the citizens booked for the day after ``now`` (local), once each, if it is
    ``REMINDER_HOUR`` or later; how many reminders went out. Also callable on demand."""
    local = datetime.fromtimestamp(now).astimezone()
    if local.hour < REMINDER_HOUR:
        return 0
    tomorrow = (local.date() + timedelta(days=1)).isoformat()
    today_began = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    departments: dict[str, Department] = {}
    sent = 0
    for booking in await storage.appointments.due_reminders(tomorrow):
        if booking.created_at >= today_began or booking.phone_sealed is None:
            continue
        if not await storage.appointments.mark_reminded(booking.id, now):
            continue
        if booking.department not in departments:
            departments[booking.department] = await storage.departments.get(booking.department)
        department = departments[booking.department]
        day, clock = local_date_time(booking.slot_at)
        notice = Notice(
            NoticeType.REMINDER,
            await sensitive.reveal(Kind.PHONE, booking.phone_sealed),
            booking.id,
            booking.department,
            {
                "department": department.name_zh,
                "department_en": department.name_en,
                "date": day,
                "time": clock,
            },
        )
        sent += await notices.send(notice, actor="system")
    return sent


async def run_booking_upkeep(
    storage: Storage, sensitive: SensitiveValues, notices: Notices, every: float = EVERY
) -> None:
    while True:
        try:
            now = time.time()
            expired = await storage.callbacks.expire(now)
            if expired:
                log.info("%d call-back requests expired", expired)
            await send_reminders(storage, sensitive, notices, now)
        except Exception as exc:
            log.warning("call-back and appointment upkeep failed: %s", type(exc).__name__)
        await asyncio.sleep(every)
