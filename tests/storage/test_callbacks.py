"""Call-backs: what an attempt does to a request, as a table; the place a request
keeps, taking one (two experts at once: one wins), attempts and expiry, against
SQLite and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.accounts import Accounts
from storage.audit_keys import directory_audit_keys
from storage.booking_settings import BookingSettings, BookingSettingsStore
from storage.callbacks import (
    AttemptResult,
    Callback,
    Callbacks,
    CallbackState,
    after_attempt,
    state_at,
)
from storage.consultations import ConsultationRecords
from storage.database import Database
from storage.departments import Departments
from storage.errors import RecordConflict, RecordNotFound
from storage.filecrypt import Suite
from storage.records import AuditEvent, Role
from tests.storage.test_migrations import database_url_for

T = 1_000_000.0


def request(
    attempts: int = 0, max_attempts: int = 3, state: CallbackState = CallbackState.TAKEN
) -> Callback:
    return Callback(
        "cb1", "market", "k1", None, None, None, "", "l", "s", T, T, T + 3600,
        max_attempts, attempts, state, "e1", T,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("before", "result", "state", "attempts", "taken_by"),
    [
        (request(), AttemptResult.REACHED, CallbackState.DONE, 1, "e1"),
        (request(), AttemptResult.WRONG_NUMBER, CallbackState.UNREACHED, 1, "e1"),
        # Not answered: back on the list for anyone, until the attempts are used up.
        (request(), AttemptResult.NO_ANSWER, CallbackState.OPEN, 1, None),
        (request(attempts=1), AttemptResult.NO_ANSWER, CallbackState.OPEN, 2, None),
        (request(attempts=2), AttemptResult.NO_ANSWER, CallbackState.UNREACHED, 3, "e1"),
        (request(max_attempts=1), AttemptResult.NO_ANSWER, CallbackState.UNREACHED, 1, "e1"),
    ],
)  # fmt: skip
def test_what_an_attempt_does(
    before: Callback,
    result: AttemptResult,
    state: CallbackState,
    attempts: int,
    taken_by: str | None,
) -> None:
    after = after_attempt(before, result, T + 10)
    assert (after.state, after.attempts, after.taken_by) == (state, attempts, taken_by)
    assert (after.closed_at is not None) == (state is not CallbackState.OPEN)


@pytest.mark.parametrize(
    ("state", "now", "seen"),
    [
        (CallbackState.OPEN, T + 3599, CallbackState.OPEN),
        (CallbackState.OPEN, T + 3600, CallbackState.EXPIRED),
        (CallbackState.TAKEN, T + 3600, CallbackState.EXPIRED),
        (CallbackState.DONE, T + 3600, CallbackState.DONE),
    ],
)
def test_a_request_expires_open_or_taken(
    state: CallbackState, now: float, seen: CallbackState
) -> None:
    assert state_at(request(state=state), now) is seen


@pytest.fixture
async def db(tmp_path: Path, database_url: str | None) -> AsyncIterator[Database]:
    keys = directory_audit_keys(tmp_path / "keys", Suite.AES_256_GCM, create=True)
    db = await Database.open(database_url_for(tmp_path, database_url), keys)
    await Departments(db).create("market", "市场监管", "Market")
    await Departments(db).create("tax", "税务", "Tax")
    accounts = Accounts(db)
    await accounts.create("kiosk1", "x", Role.KIOSK, password_hash="x")
    for name, department in (("e1", "market"), ("e2", "market"), ("e3", "tax")):
        await accounts.create(name, "x", Role.EXPERT, department=department, password_hash="x")
    await BookingSettingsStore(db).put(
        "market", BookingSettings(availability=(), callback_attempts=2, callback_expiry=7200)
    )
    try:
        yield db
    finally:
        await db.close()


async def ids(db: Database, *names: str) -> list[str]:
    return [(await Accounts(db).get_by_username(n)).id for n in names]


async def leave(
    calls: Callbacks, kiosk: str, now: float, consultation: str | None = None
) -> Callback:
    return await calls.request(
        "market",
        kiosk_id=kiosk,
        hall=None,
        phone_lookup=f"lookup-{now}",
        phone_sealed="sealed",
        note="营业执照变更",
        case_number=None,
        consultation_id=consultation,
        now=now,
    )


async def test_a_request_keeps_the_place_of_the_citizen_s_first_queueing(db: Database) -> None:
    calls = Callbacks(db)
    (kiosk,) = await ids(db, "kiosk1")
    records = ConsultationRecords(db)
    await records.create(
        kiosk,
        None,
        "market",
        "CASE-1",
        audit=AuditEvent("kiosk1", "consultation.request", "", {}),
        consultation_id="c1",
        at=T - 600,
    )
    late = await leave(calls, kiosk, T)
    early = await leave(calls, kiosk, T + 10, consultation="c1")
    assert early.queued_at == T - 600 and early.case_number == "CASE-1"
    assert [c.id for c in await calls.open_of("market", T + 20)] == [early.id, late.id]
    assert early.expires_at == T + 10 + 7200 and early.max_attempts == 2
    with pytest.raises(RecordNotFound):
        await leave(calls, kiosk, T, consultation="missing")


async def test_of_two_experts_taking_one_request_at_once_one_wins(db: Database) -> None:
    calls = Callbacks(db)
    kiosk, e1, e2, e3 = await ids(db, "kiosk1", "e1", "e2", "e3")
    record = await leave(calls, kiosk, T)
    results = await asyncio.gather(
        calls.take(record.id, "market", e1, T + 1),
        calls.take(record.id, "market", e2, T + 1),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Callback", "RecordConflict"]
    winner = next(r for r in results if isinstance(r, Callback))
    assert winner.state is CallbackState.TAKEN
    # Another department's expert does not see it at all.
    with pytest.raises(RecordNotFound):
        await calls.take(record.id, "tax", e3, T + 1)


async def test_attempts_are_recorded_until_reached(db: Database) -> None:
    calls = Callbacks(db)
    kiosk, e1, e2 = await ids(db, "kiosk1", "e1", "e2")
    record = await leave(calls, kiosk, T)
    with pytest.raises(RecordConflict):
        await calls.record_attempt(record.id, e1, AttemptResult.REACHED, "", T + 1)
    await calls.take(record.id, "market", e1, T + 1)
    after = await calls.record_attempt(record.id, e1, AttemptResult.NO_ANSWER, "无人接听", T + 2)
    assert after.state is CallbackState.OPEN
    # Back on the list; a colleague takes it and reaches the citizen.
    await calls.take(record.id, "market", e2, T + 3)
    done = await calls.record_attempt(record.id, e2, AttemptResult.REACHED, "已告知", T + 4)
    assert done.state is CallbackState.DONE and done.attempts == 2
    assert await calls.open_of("market", T + 5) == []
    assert [(r, n) for _, _, r, n in await calls.attempts_of(record.id)] == [
        ("no_answer", "无人接听"),
        ("reached", "已告知"),
    ]


async def test_an_expired_request_closes_itself(db: Database) -> None:
    calls = Callbacks(db)
    kiosk, e1 = await ids(db, "kiosk1", "e1")
    first = await leave(calls, kiosk, T)
    second = await leave(calls, kiosk, T + 100)
    # On reading the list.
    assert [c.id for c in await calls.open_of("market", T + 7200)] == [second.id]
    assert (await calls.get(first.id)).state is CallbackState.EXPIRED
    with pytest.raises(RecordConflict):
        await calls.take(first.id, "market", e1, T + 7200)
    # And in the periodic task.
    assert await calls.expire(T + 7300) == 1
    assert (await calls.get(second.id)).state is CallbackState.EXPIRED
