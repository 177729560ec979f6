"""Appointments: slots as a table of availability, length and bookings; the code's
window as a table; booking, the limit per citizen, the last seat taken twice at
once, and a cancelled day, against SQLite and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.accounts import Accounts
from storage.appointments import (
    CODE_LENGTH,
    EARLY,
    LATE,
    Admission,
    Appointment,
    Appointments,
    BookingState,
    Citizen,
    admission,
    free_slots,
    slot_starts,
    typed_code,
)
from storage.audit_keys import directory_audit_keys
from storage.booking_settings import BookingSettings, BookingSettingsStore
from storage.database import Database
from storage.departments import Departments
from storage.errors import RecordConflict
from storage.filecrypt import Suite
from storage.opening_hours import UsualHours, parse_hours
from storage.records import Role
from storage.references import ALPHABET
from storage.schema import appointments
from tests.storage.test_migrations import database_url_for

CST = timezone(timedelta(hours=8))
MONDAY = date(2026, 12, 7)


def spans(*texts: str) -> list[UsualHours]:
    found = [parse_hours(t) for t in texts]
    return [hours for hours in found if hours is not None]


def at(day: date, hhmm: str) -> datetime:
    hours, minutes = (int(p) for p in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=CST)


@pytest.mark.parametrize(
    ("availability", "minutes", "day", "starts"),
    [
        (("1-5 09:00-10:00",), 15, MONDAY, ["09:00", "09:15", "09:30", "09:45"]),
        # A remainder shorter than a slot is not offered.
        (("1-5 09:00-10:00",), 25, MONDAY, ["09:00", "09:25"]),
        # Saturday is not in Monday to Friday.
        (("1-5 09:00-10:00",), 30, MONDAY + timedelta(days=5), []),
        # A lunch break: two spans.
        (("1-5 09:00-10:00", "1-5 14:00-15:00"), 30, MONDAY, ["09:00", "09:30", "14:00", "14:30"]),
        # Overlapping spans give each start once.
        (("1-5 09:00-10:00", "1-1 09:30-10:30"), 30, MONDAY, ["09:00", "09:30", "10:00"]),
        # A week that wraps: Saturday to Monday.
        (("6-1 10:00-11:00",), 60, MONDAY, ["10:00"]),
        (("1-5 09:00-09:10",), 15, MONDAY, []),
    ],
)
def test_slots_of_a_day(
    availability: tuple[str, ...], minutes: int, day: date, starts: list[str]
) -> None:
    assert slot_starts(day, spans(*availability), minutes, CST) == [at(day, s) for s in starts]


@pytest.mark.parametrize(
    ("now", "capacity", "booked", "closed", "days", "expected"),
    [
        # Slots already begun or past are not offered.
        (at(MONDAY, "09:20"), 1, {}, (), 1, [("09:30", 1), ("09:45", 1)]),
        (at(MONDAY, "09:30"), 1, {}, (), 1, [("09:45", 1)]),
        # A full slot is left out; one with a seat left shows how many.
        (
            at(MONDAY, "08:00"),
            2,
            {"09:00": 2, "09:15": 1},
            (),
            1,
            [("09:15", 1), ("09:30", 2), ("09:45", 2)],
        ),
        # A cancelled day offers nothing.
        (at(MONDAY, "08:00"), 1, {}, (MONDAY.isoformat(),), 1, []),
    ],
)
def test_free_slots_as_a_table(
    now: datetime,
    capacity: int,
    booked: dict[str, int],
    closed: tuple[str, ...],
    days: int,
    expected: list[tuple[str, int]],
) -> None:
    found = free_slots(
        spans("1-5 09:00-10:00"),
        15,
        capacity,
        now,
        {at(MONDAY, k).timestamp(): v for k, v in booked.items()},
        closed,
        days,
    )
    assert [(s.at, s.free) for s in found] == [(at(MONDAY, t), n) for t, n in expected]


def test_the_next_fourteen_days_are_offered_and_no_more() -> None:
    found = free_slots(spans("1-7 09:00-10:00"), 60, 1, at(MONDAY, "08:00"), {})
    assert len(found) == 14
    assert found[-1].at == at(MONDAY + timedelta(days=13), "09:00")


def booking(slot_at: float, state: BookingState = BookingState.BOOKED) -> Appointment:
    return Appointment(
        "a1", "market", slot_at, 15, "2026-12-07", state, "k1", None, "p", "s", None, None, 0.0
    )


SLOT = at(MONDAY, "10:00").timestamp()


@pytest.mark.parametrize(
    ("record", "now", "verdict"),
    [
        (None, SLOT, Admission.UNKNOWN),
        (booking(SLOT), SLOT - EARLY - 1, Admission.TOO_EARLY),
        (booking(SLOT), SLOT - EARLY, Admission.ADMITTED),
        (booking(SLOT), SLOT, Admission.ADMITTED),
        (booking(SLOT), SLOT + LATE, Admission.ADMITTED),
        (booking(SLOT), SLOT + LATE + 1, Admission.TOO_LATE),
        (booking(SLOT, BookingState.ADMITTED), SLOT, Admission.ADMITTED),
        (booking(SLOT, BookingState.QUEUED), SLOT, Admission.USED),
        (booking(SLOT, BookingState.CANCELLED), SLOT, Admission.CANCELLED),
    ],
)
def test_when_a_code_admits(record: Appointment | None, now: float, verdict: Admission) -> None:
    assert admission(record, now) is verdict


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("ac34-7kmn", "AC347KMN"),
        (" AC34 7KMN ", "AC347KMN"),
        ("AC347KM", None),
        ("AC347KM0", None),  # 0 is not in the alphabet
        ("AC347KMO", None),
        ("AC347KML", None),
        ("AC347KMI", None),
    ],
)
def test_a_typed_code(typed: str, code: str | None) -> None:
    assert typed_code(typed) == code


def test_codes_use_the_alphabet_without_look_alikes() -> None:
    from storage.appointments import new_code

    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == CODE_LENGTH and set(c) <= set(ALPHABET) for c in codes)
    assert not set("0O1IL") & set(ALPHABET)


@pytest.fixture
async def db(tmp_path: Path, database_url: str | None) -> AsyncIterator[Database]:
    keys = directory_audit_keys(tmp_path / "keys", Suite.AES_256_GCM, create=True)
    db = await Database.open(database_url_for(tmp_path, database_url), keys)
    await Departments(db).create("market", "市场监管", "Market", hours="1-5 09:00-17:00")
    for name in ("kiosk1", "kiosk2"):
        await Accounts(db).create(name, "x", Role.KIOSK, password_hash="x")
    await BookingSettingsStore(db).put(
        "market", BookingSettings(availability=("1-5 09:00-10:00",), slot_minutes=30)
    )
    try:
        yield db
    finally:
        await db.close()


async def kiosk_id(db: Database, name: str) -> str:
    return (await Accounts(db).get_by_username(name)).id


NOW = at(MONDAY, "08:00").timestamp()
PHONE_A = Citizen(phone_lookup="lookup-a", phone_sealed="sealed-a")


async def test_a_booking_takes_a_seat_and_gives_a_code_kept_only_as_a_hash(db: Database) -> None:
    book = Appointments(db, CST)
    k1 = await kiosk_id(db, "kiosk1")
    assert [s.at for s in await book.free_slots("market", NOW)][:2] == [
        at(MONDAY, "09:00"),
        at(MONDAY, "09:30"),
    ]
    code, record = await book.book(
        "market", at(MONDAY, "09:00").timestamp(), PHONE_A, kiosk_id=k1, hall=None, now=NOW
    )
    assert typed_code(code) == code
    assert record.state is BookingState.BOOKED and record.day == "2026-12-07"
    assert at(MONDAY, "09:00") not in [s.at for s in await book.free_slots("market", NOW)]
    stored = await db.read(lambda conn: conn.execute(select(appointments)).all())
    assert code not in repr(stored)
    assert (await book.by_code(code)) == record


async def test_a_time_that_is_not_a_slot_is_refused(db: Database) -> None:
    book = Appointments(db, CST)
    k1 = await kiosk_id(db, "kiosk1")
    for when in (at(MONDAY, "09:10"), at(MONDAY, "11:00"), at(MONDAY - timedelta(days=7), "09:00")):
        with pytest.raises(RecordConflict):
            await book.book("market", when.timestamp(), PHONE_A, kiosk_id=k1, hall=None, now=NOW)
    with pytest.raises(RecordConflict):
        later = at(MONDAY + timedelta(days=14), "09:00").timestamp()
        await book.book("market", later, PHONE_A, kiosk_id=k1, hall=None, now=NOW)


async def test_a_citizen_holds_two_open_bookings_at_most(db: Database) -> None:
    book = Appointments(db, CST)
    k1 = await kiosk_id(db, "kiosk1")
    slots = [s.at.timestamp() for s in await book.free_slots("market", NOW)]
    for slot in slots[:2]:
        await book.book("market", slot, PHONE_A, kiosk_id=k1, hall=None, now=NOW)
    with pytest.raises(RecordConflict, match="2 open bookings"):
        await book.book("market", slots[2], PHONE_A, kiosk_id=k1, hall=None, now=NOW)
    # The same citizen by identity number, with the phone given too: still them.
    both = Citizen("lookup-a", "sealed-a", "id-a", "sealed-id-a")
    with pytest.raises(RecordConflict):
        await book.book("market", slots[2], both, kiosk_id=k1, hall=None, now=NOW)
    # Another citizen books freely; once the first bookings' windows are over, so
    # does the first citizen.
    await book.book("market", slots[2], Citizen("lookup-b", "b"), kiosk_id=k1, hall=None, now=NOW)
    later = slots[1] + LATE + 1
    fresh = [s.at.timestamp() for s in await book.free_slots("market", later)]
    await book.book("market", fresh[0], PHONE_A, kiosk_id=k1, hall=None, now=later)


@pytest.fixture
async def two_nodes(
    db: Database, tmp_path: Path, database_url: str | None
) -> AsyncIterator[list[Appointments]]:
    """Appointments through two nodes' databases (each its own write grouping)
    on the same records."""
    keys = directory_audit_keys(tmp_path / "keys", Suite.AES_256_GCM, create=False)
    other = await Database.open(database_url_for(tmp_path, database_url), keys)
    try:
        yield [Appointments(db, CST), Appointments(other, CST)]
    finally:
        await other.close()


async def test_one_citizen_booking_through_two_nodes_at_once_holds_two_at_most(
    db: Database, two_nodes: list[Appointments]
) -> None:
    """Each node counts the citizen's open bookings and inserts in one unit; on
    PostgreSQL, without a lock per citizen, two nodes each count before the
    other's insert is committed and both insert: a third open booking."""
    nodes = two_nodes
    # Seats enough for every round: only the limit per citizen may refuse.
    await BookingSettingsStore(db).put(
        "market",
        BookingSettings(availability=("1-5 09:00-11:00",), slot_minutes=30, slot_capacity=5),
    )
    k1 = await kiosk_id(db, "kiosk1")
    slots = [s.at.timestamp() for s in await nodes[0].free_slots("market", NOW)]
    assert len(slots) >= 4
    for round_ in range(5):
        citizen = Citizen(f"lookup-{round_}", "sealed")
        results = await asyncio.gather(
            *(
                nodes[n % 2].book("market", slots[n], citizen, kiosk_id=k1, hall=None, now=NOW)
                for n in range(4)
            ),
            return_exceptions=True,
        )
        booked = [r for r in results if isinstance(r, tuple)]
        assert len(booked) == 2, results
        assert all(isinstance(r, (tuple, RecordConflict)) for r in results), results


async def test_two_citizens_booking_crosswise_through_two_nodes_all_get_booked(
    db: Database, two_nodes: list[Appointments]
) -> None:
    """Writes are grouped: bookings made at once on a node share one transaction,
    each in a savepoint, and a citizen's advisory lock is held until that
    transaction ends. Node one booking X then Y while node two books Y then X
    waited for each other: PostgreSQL broke the deadlock by failing one booking
    with a database error (a 500 at the kiosk). The one it failed is tried again."""
    nodes = two_nodes
    await BookingSettingsStore(db).put(
        "market",
        BookingSettings(availability=("1-5 09:00-17:00",), slot_minutes=15, slot_capacity=20),
    )
    k1 = await kiosk_id(db, "kiosk1")
    slots = [s.at.timestamp() for s in await nodes[0].free_slots("market", NOW)]
    for round_ in range(4):
        x, y = Citizen(f"x-{round_}", "sealed"), Citizen(f"y-{round_}", "sealed")
        # Each node's two bookings are queued before its group is written.
        results = await asyncio.gather(
            nodes[0].book("market", slots[0], x, kiosk_id=k1, hall=None, now=NOW),
            nodes[0].book("market", slots[1], y, kiosk_id=k1, hall=None, now=NOW),
            nodes[1].book("market", slots[2], y, kiosk_id=k1, hall=None, now=NOW),
            nodes[1].book("market", slots[3], x, kiosk_id=k1, hall=None, now=NOW),
            return_exceptions=True,
        )
        assert all(isinstance(r, tuple) for r in results), results


async def test_of_two_bookings_of_the_last_seat_at_once_one_wins(db: Database) -> None:
    book = Appointments(db, CST)
    k1, k2 = await kiosk_id(db, "kiosk1"), await kiosk_id(db, "kiosk2")
    slot = at(MONDAY, "09:30").timestamp()
    results = await asyncio.gather(
        book.book("market", slot, Citizen("x", "x"), kiosk_id=k1, hall=None, now=NOW),
        book.book("market", slot, Citizen("y", "y"), kiosk_id=k2, hall=None, now=NOW),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["RecordConflict", "tuple"]


async def test_the_code_admits_in_its_window_at_any_kiosk_and_is_taken_once(db: Database) -> None:
    book = Appointments(db, CST)
    k1, k2 = await kiosk_id(db, "kiosk1"), await kiosk_id(db, "kiosk2")
    slot = at(MONDAY, "09:30").timestamp()
    code, record = await book.book("market", slot, PHONE_A, kiosk_id=k1, hall=None, now=NOW)
    assert (await book.admit(code, k2, slot - EARLY - 60))[0] is Admission.TOO_EARLY
    assert (await book.admit("ACDEFHJK", k2, slot))[0] is Admission.UNKNOWN
    verdict, found = await book.admit(code, k2, slot - 300)
    assert verdict is Admission.ADMITTED and found is not None and found.id == record.id
    # Only the kiosk where it was admitted, for its department, takes it; once.
    assert await book.take_admitted(k1, "market", "c1", slot) is None
    taken = await book.take_admitted(k2, "market", "c2", slot)
    assert taken is not None and taken.state is BookingState.QUEUED
    assert await book.take_admitted(k2, "market", "c3", slot) is None
    assert (await book.admit(code, k2, slot))[0] is Admission.USED


async def test_a_code_typed_after_its_window_is_refused(db: Database) -> None:
    book = Appointments(db, CST)
    k1 = await kiosk_id(db, "kiosk1")
    slot = at(MONDAY, "09:30").timestamp()
    code, _ = await book.book("market", slot, PHONE_A, kiosk_id=k1, hall=None, now=NOW)
    assert (await book.admit(code, k1, slot + LATE + 1))[0] is Admission.TOO_LATE
    assert await book.take_admitted(k1, "market", "c1", slot + LATE + 1) is None


async def test_a_cancelled_day_cancels_its_bookings_and_offers_no_slot(db: Database) -> None:
    book = Appointments(db, CST)
    k1 = await kiosk_id(db, "kiosk1")
    monday_slot = at(MONDAY, "09:30").timestamp()
    tuesday_slot = at(MONDAY + timedelta(days=1), "09:30").timestamp()
    code, _ = await book.book("market", monday_slot, PHONE_A, kiosk_id=k1, hall=None, now=NOW)
    await book.book("market", tuesday_slot, PHONE_A, kiosk_id=k1, hall=None, now=NOW)
    cancelled = await book.cancel_day("market", "2026-12-07", "staff training", by="admin", now=NOW)
    assert [a.slot_at for a in cancelled] == [monday_slot]
    assert all(s.at.date() != MONDAY for s in await book.free_slots("market", NOW))
    assert (await book.admit(code, k1, monday_slot))[0] is Admission.CANCELLED
    # Again: nothing more to notify.
    assert await book.cancel_day("market", "2026-12-07", "again", by="admin", now=NOW) == []
    with pytest.raises(RecordConflict):
        await book.book("market", monday_slot, PHONE_A, kiosk_id=k1, hall=None, now=NOW)
