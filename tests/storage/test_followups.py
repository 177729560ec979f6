"""好差评 and follow-ups: what a note does to a follow-up, as a table; a bad grade
opening its follow-up with the grade (and a good one none), its life to closed with
an audit entry for each change, overdue by the clock passed in, supervisors' scopes,
the board's counts, and migration 17 mapping the old 1-5 ratings; against SQLite and
PostgreSQL."""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage.accounts import Accounts
from storage.audit import AuditLog
from storage.audit_keys import directory_audit_keys
from storage.consultations import ConsultationRecords
from storage.database import Database
from storage.departments import Departments
from storage.errors import RecordConflict, RecordNotFound
from storage.filecrypt import Suite
from storage.followups import DAY, FollowUpClosed, FollowUps, next_state
from storage.halls import Halls
from storage.migrations import MIGRATIONS, migrate
from storage.records import (
    AuditEvent,
    EndReason,
    FollowUpNoteKind,
    FollowUpState,
    Grade,
    GradeReason,
    Role,
    Scope,
)
from storage.scopes import SupervisorScopes
from tests.storage.test_migrations import database_url_for

T = 1_000_000.0
OPEN, CONTACTED, CLOSED = FollowUpState.OPEN, FollowUpState.CONTACTED, FollowUpState.CLOSED
K = FollowUpNoteKind


@pytest.mark.parametrize(
    ("state", "kind", "after"),
    [
        (OPEN, K.CONTACT, CONTACTED),
        (OPEN, K.FINDING, OPEN),
        (OPEN, K.REMEDY, OPEN),
        (OPEN, K.NOTE, OPEN),
        # A citizen who left no way to reach them: closed without a contact.
        (OPEN, K.CLOSE, CLOSED),
        (CONTACTED, K.CONTACT, CONTACTED),
        (CONTACTED, K.FINDING, CONTACTED),
        (CONTACTED, K.REMEDY, CONTACTED),
        (CONTACTED, K.CLOSE, CLOSED),
    ],
)
def test_what_a_note_does_to_a_follow_up(
    state: FollowUpState, kind: FollowUpNoteKind, after: FollowUpState
) -> None:
    assert next_state(state, kind) is after


@pytest.mark.parametrize("kind", list(FollowUpNoteKind))
def test_a_closed_follow_up_takes_nothing(kind: FollowUpNoteKind) -> None:
    with pytest.raises(FollowUpClosed):
        next_state(CLOSED, kind)


@pytest.fixture
async def db(tmp_path: Path, database_url: str | None) -> AsyncIterator[Database]:
    keys = directory_audit_keys(tmp_path / "keys", Suite.AES_256_GCM, create=True)
    db = await Database.open(database_url_for(tmp_path, database_url), keys)
    await Departments(db).create("market", "市场监管", "Market")
    await Departments(db).create("tax", "税务", "Tax")
    await Halls(db).create("city", "市民中心", "Citizen Service Centre")
    await Halls(db).create("east", "东城分中心", "East Branch")
    await Accounts(db).create("kiosk1", "x", Role.KIOSK, hall="city", password_hash="x")
    try:
        yield db
    finally:
        await db.close()


async def ended(db: Database, name: str, department: str = "market", hall: str = "city") -> str:
    """An ended consultation of kiosk1's, id ``name``."""
    kiosk = (await Accounts(db).get_by_username("kiosk1")).id
    records = ConsultationRecords(db)
    audit = AuditEvent("kiosk1", "consultation.request", "", {})
    await records.create(kiosk, hall, department, None, audit=audit, consultation_id=name, at=T)
    await records.mark_ended(name, EndReason.COMPLETED, "kiosk1", T + 60, audit=audit)
    return name


async def grade(
    db: Database,
    consultation_id: str,
    value: Grade,
    reason: GradeReason | None = None,
    comment: str | None = None,
    at: float = T + 100,
) -> None:
    await ConsultationRecords(db).set_grade(
        consultation_id,
        value,
        reason,
        comment,
        audit=AuditEvent("kiosk1", "consultation.rate", consultation_id, {"grade": value.value}),
        at=at,
        follow_up_days=7,
    )


async def test_a_bad_grade_opens_its_follow_up_with_the_grade(db: Database) -> None:
    bad = await ended(db, "c1")
    await grade(db, bad, Grade.VERY_DISSATISFIED, GradeReason.NOT_SOLVED, "材料被退回三次")
    record = await ConsultationRecords(db).get(bad)
    assert (record.grade, record.rating) == (Grade.VERY_DISSATISFIED, 1)
    assert (record.grade_reason, record.grade_comment) == ("not_solved", "材料被退回三次")
    follow_up = await FollowUps(db).get(bad)
    assert follow_up.state is OPEN and follow_up.grade is Grade.VERY_DISSATISFIED
    assert (follow_up.department, follow_up.hall) == ("market", "city")
    assert follow_up.reason is GradeReason.NOT_SOLVED and follow_up.comment == "材料被退回三次"
    assert (follow_up.opened_at, follow_up.due_at) == (T + 100, T + 100 + 7 * DAY)
    assert follow_up.reference == record.reference
    opened = await AuditLog(db).search(action="follow_up", subject=bad)
    assert [e.action for e in opened] == ["follow_up.open"]
    # Graded once: the second grade changes nothing and opens nothing more.
    with pytest.raises(RecordConflict):
        await grade(db, bad, Grade.DISSATISFIED)
    assert (await ConsultationRecords(db).get(bad)).grade is Grade.VERY_DISSATISFIED


@pytest.mark.parametrize(
    ("value", "rating", "opens"),
    [
        (Grade.VERY_SATISFIED, 5, False),
        (Grade.SATISFIED, 4, False),
        (Grade.BASICALLY_SATISFIED, 3, False),
        (Grade.DISSATISFIED, 2, True),
        (Grade.VERY_DISSATISFIED, 1, True),
    ],
)
async def test_only_the_two_bad_grades_open_a_follow_up(
    db: Database, value: Grade, rating: int, opens: bool
) -> None:
    consultation = await ended(db, "c1")
    await grade(db, consultation, value)
    assert (await ConsultationRecords(db).get(consultation)).rating == rating
    found = [f.consultation_id for f in await FollowUps(db).list(None)]
    assert found == ([consultation] if opens else [])


async def test_a_follow_up_goes_from_open_to_contacted_to_closed_with_its_audit(
    db: Database,
) -> None:
    consultation = await ended(db, "c1")
    await grade(db, consultation, Grade.DISSATISFIED, GradeReason.WAITED_TOO_LONG)
    follow_ups = FollowUps(db)
    noted = await follow_ups.add_note(
        consultation, K.FINDING, "排队高峰只有一名专家", author="sup", now=T + 200
    )
    assert noted.state is OPEN and [n.kind for n in noted.notes] == [K.FINDING]
    contacted = await follow_ups.add_note(
        consultation, K.CONTACT, "电话联系市民，已致歉", author="sup", now=T + 300
    )
    assert contacted.state is CONTACTED and contacted.contacted_at == T + 300
    closed = await follow_ups.add_note(
        consultation, K.CLOSE, "高峰时段增派专家", author="sup2", now=T + 400
    )
    assert closed.state is CLOSED
    assert (closed.closed_at, closed.closed_by, closed.contacted_at) == (T + 400, "sup2", T + 300)
    assert [(n.seq, n.kind, n.author) for n in closed.notes] == [
        (1, K.FINDING, "sup"),
        (2, K.CONTACT, "sup"),
        (3, K.CLOSE, "sup2"),
    ]
    with pytest.raises(FollowUpClosed):
        await follow_ups.add_note(consultation, K.NOTE, "再补一句", author="sup", now=T + 500)
    entries = await AuditLog(db).search(action="follow_up", subject=consultation)
    assert [e.action for e in reversed(entries)] == [
        "follow_up.open",
        "follow_up.note",
        "follow_up.contact",
        "follow_up.close",
    ]
    # The audit log says who did what; the supervisor's words stay on the follow-up.
    assert all("已致歉" not in e.detail for e in entries)
    assert json.loads(entries[0].detail) == {"kind": "close", "from": "contacted", "to": "closed"}
    assert [f.state for f in await follow_ups.list(None, include_closed=True)] == [CLOSED]
    assert await follow_ups.list(None) == []


async def test_a_follow_up_is_overdue_after_its_deadline_by_the_clock_given(
    db: Database,
) -> None:
    consultation = await ended(db, "c1")
    await grade(db, consultation, Grade.DISSATISFIED)
    (follow_up,) = await FollowUps(db).list(None)
    assert not follow_up.overdue(T + 100 + 7 * DAY)
    assert follow_up.overdue(T + 100 + 7 * DAY + 1)
    board = await FollowUps(db).board(now=T + 100 + 8 * DAY, since=T)
    assert board.follow_ups_by_department["market"].overdue == 1
    assert board.follow_ups_by_hall["city"].open == 1
    closed = await FollowUps(db).add_note(
        consultation, K.CLOSE, "已处理", author="sup", now=T + 9 * DAY
    )
    assert not closed.overdue(T + 10 * DAY)
    board = await FollowUps(db).board(now=T + 10 * DAY, since=T)
    assert board.follow_ups_by_department == {}


async def test_a_scope_lists_the_follow_ups_it_covers_only(db: Database) -> None:
    await grade(db, await ended(db, "c1", "market", "city"), Grade.DISSATISFIED)
    await grade(db, await ended(db, "c2", "tax", "city"), Grade.DISSATISFIED)
    await grade(db, await ended(db, "c3", "market", "east"), Grade.VERY_DISSATISFIED)
    follow_ups = FollowUps(db)

    async def listed(scope: Scope | None) -> list[str]:
        return sorted(f.consultation_id for f in await follow_ups.list(scope))

    assert await listed(None) == ["c1", "c2", "c3"]
    assert await listed(Scope()) == ["c1", "c2", "c3"]
    assert await listed(Scope(departments=("market",))) == ["c1", "c3"]
    assert await listed(Scope(halls=("city",))) == ["c1", "c2"]
    assert await listed(Scope(("market",), ("east",))) == ["c3"]
    assert await listed(Scope(departments=("tax",), halls=("east",))) == []
    assert Scope(("market",)).covers("market", None)
    assert not Scope(halls=("city",)).covers("market", None)


async def test_a_supervisor_s_scope_is_kept_with_its_account(db: Database) -> None:
    accounts = Accounts(db)
    scopes = SupervisorScopes(db)
    everything = await accounts.create("sup", "x", Role.SUPERVISOR, password_hash="x")
    narrow = await accounts.create(
        "sup_market",
        "x",
        Role.SUPERVISOR,
        password_hash="x",
        scope=Scope(("market",), ("east", "city")),
    )
    assert await scopes.of(everything.id) == Scope()
    assert await scopes.of(narrow.id) == Scope(("market",), ("city", "east"))
    assert await scopes.set("sup_market", Scope(halls=("east",))) == Scope((), ("east",))
    assert await scopes.all() == {narrow.id: Scope((), ("east",))}
    with pytest.raises(RecordNotFound):
        await scopes.set("sup_market", Scope(departments=("nowhere",)))
    with pytest.raises(RecordNotFound):
        await accounts.create(
            "sup_bad", "x", Role.SUPERVISOR, password_hash="x", scope=Scope(halls=("nowhere",))
        )
    # Nothing of a refused account is kept, so no unscoped supervisor appears.
    with pytest.raises(RecordNotFound):
        await accounts.get_by_username("sup_bad")
    with pytest.raises(RecordConflict):
        await scopes.set("kiosk1", Scope())
    with pytest.raises(RecordConflict):
        await accounts.create("k9", "x", Role.KIOSK, password_hash="x", scope=Scope())


async def test_the_board_counts_grades_per_department_and_hall(db: Database) -> None:
    await grade(db, await ended(db, "c1", "market", "city"), Grade.VERY_SATISFIED)
    await grade(db, await ended(db, "c2", "market", "east"), Grade.VERY_SATISFIED)
    await grade(db, await ended(db, "c3", "tax", "city"), Grade.DISSATISFIED)
    board = await FollowUps(db).board(now=T + 200, since=T)
    assert board.grades_by_department == {
        "market": {"very_satisfied": 2},
        "tax": {"dissatisfied": 1},
    }
    assert board.grades_by_hall == {
        "city": {"very_satisfied": 1, "dissatisfied": 1},
        "east": {"very_satisfied": 1},
    }
    assert board.follow_ups_by_department["tax"].open == 1
    assert (await FollowUps(db).board(now=T + 200, since=T + 10_000)).grades_by_hall == {}


def test_migration_17_maps_the_old_ratings_onto_the_grades(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
        for migration in MIGRATIONS:
            if migration.version >= 17:
                break
            for statement in migration.statements:
                conn.execute(text(statement))
            conn.execute(text("INSERT INTO schema_version VALUES (:v)"), {"v": migration.version})
        conn.execute(
            text(
                "INSERT INTO departments (code, name_zh, name_en, disabled, created_at) "
                "VALUES ('market', '市场', 'Market', false, 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO accounts (id, username, password_hash, role, display_name, "
                "disabled, created_at) VALUES ('k', 'kiosk1', 'x', 'kiosk', 'k', false, 0)"
            )
        )
        for rating in (1, 2, 3, 4, 5, None):
            conn.execute(
                text(
                    "INSERT INTO consultations (id, kiosk_id, department, state, waiting_at, "
                    "rating) VALUES (:id, 'k', 'market', 'ended', 0, :rating)"
                ),
                {"id": f"c{rating}", "rating": rating},
            )
        assert migrate(conn) >= 17
        found: dict[int | None, str | None] = dict(
            conn.execute(text("SELECT rating, grade FROM consultations")).all()
        )
        # Old bad ratings open no follow-up: they were never promised one.
        assert conn.execute(text("SELECT count(*) FROM follow_ups")).scalar() == 0
    engine.dispose()
    assert found == {
        5: "very_satisfied",
        4: "satisfied",
        3: "basically_satisfied",
        2: "dissatisfied",
        1: "very_dissatisfied",
        None: None,
    }
