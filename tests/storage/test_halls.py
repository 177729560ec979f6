"""Halls as records: the free-text halls of older data become records, and nothing
names a hall that does not exist."""

from pathlib import Path

import pytest
from sqlalchemy import Connection, select, text

from storage.accounts import Accounts
from storage.database import Database
from storage.errors import RecordConflict, RecordNotFound
from storage.halls import Halls
from storage.migrations import MIGRATIONS, migrate
from storage.records import HallLevel, Role
from storage.references import ALPHABET, LENGTH, reference_of, typed_reference
from storage.schema import accounts, consultations
from tests.storage.test_migrations import database_url_for

BEFORE_HALLS = 10
"""The last schema version whose halls were free text."""


def migrate_to(conn: Connection, version: int) -> None:
    """The schema as a release of that version left it."""
    conn.execute(text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
    for migration in MIGRATIONS:
        if migration.version > version:
            break
        for statement in migration.statements:
            conn.execute(text(statement))
        conn.execute(text("INSERT INTO schema_version VALUES (:v)"), {"v": migration.version})


def older_data(conn: Connection) -> None:
    """Kiosks in halls 'east' and 'city', one kiosk without a hall, and a consultation
    of a hall ('old-branch') whose kiosk has since moved to 'east'."""
    conn.execute(
        text(
            "INSERT INTO departments (code, name_zh, name_en, disabled, created_at) "
            "VALUES ('tax', '税务', 'Tax', FALSE, 1.0)"
        )
    )
    for account_id, username, hall, created in (
        ("k1", "kiosk_east", "east", 300.0),
        ("k2", "kiosk_city", "city", 200.0),
        ("k3", "kiosk_none", None, 100.0),
        ("k4", "kiosk_east2", "east", 250.0),
    ):
        conn.execute(
            accounts.insert().values(
                id=account_id,
                username=username,
                password_hash="x",
                role="kiosk",
                department=None,
                hall=hall,
                display_name=username,
                disabled=False,
                created_at=created,
            )
        )
    conn.execute(
        text(
            "INSERT INTO consultations (id, kiosk_id, hall, department, state, waiting_at) "
            "VALUES ('c1', 'k1', 'old-branch', 'tax', 'ended', 50.0)"
        )
    )


@pytest.mark.empty_database
async def test_each_free_text_hall_becomes_one_record_when_migrated(
    tmp_path: Path, database_url: str | None
) -> None:
    db = Database(database_url_for(tmp_path, database_url))
    try:
        await db.write(lambda conn: migrate_to(conn, BEFORE_HALLS))
        await db.write(older_data)
        await db.write(migrate)
        found = await Halls(db).list()
        # One record per distinct value, named by it, street level, no file chooser
        # until an admin says so; created when the value was first seen.
        assert [(h.code, h.name_zh, h.name_en, h.level) for h in found] == [
            ("city", "city", "city", HallLevel.STREET),
            ("east", "east", "east", HallLevel.STREET),
            ("old-branch", "old-branch", "old-branch", HallLevel.STREET),
        ]
        assert not any(h.allow_file_chooser for h in found)
        assert {h.code: h.created_at for h in found} == {
            "city": 200.0,
            "east": 250.0,
            "old-branch": 50.0,
        }
        # The kiosks keep their halls, now records; older consultations have no reference.
        kiosk = await Accounts(db).get_by_username("kiosk_east")
        assert kiosk.hall == "east"
        rows = await db.read(
            lambda conn: conn.execute(select(consultations.c.reference)).scalars().all()
        )
        assert rows == [None]
    finally:
        await db.close()


async def test_a_kiosk_or_clerk_names_only_halls_that_exist(
    tmp_path: Path, database_url: str | None
) -> None:
    db = await Database.open(database_url_for(tmp_path, database_url))
    try:
        halls = Halls(db)
        accounts_ = Accounts(db)
        await halls.create("city", "市民中心", "Citizen Centre", level=HallLevel.CITY)
        with pytest.raises(RecordNotFound, match="no hall 'nowhere'"):
            await accounts_.create("kiosk9", "x", Role.KIOSK, hall="nowhere", password_hash="x")
        with pytest.raises(RecordNotFound, match="no hall 'nowhere'"):
            await accounts_.create(
                "clerk9", "x", Role.CLERK, halls=["city", "nowhere"], password_hash="x"
            )
        # Nothing of a refused account was written.
        assert [a.username for a in await accounts_.list()] == []
        with pytest.raises(RecordConflict):
            await accounts_.create("admin9", "x", Role.ADMIN, halls=["city"], password_hash="x")
        clerk = await accounts_.create("clerk9", "x", Role.CLERK, halls=["city"], password_hash="x")
        assert [h.code for h in await halls.of_clerk(clerk.id)] == ["city"]
        with pytest.raises(RecordNotFound):
            await halls.set_clerk_halls("clerk9", ["nowhere"])
        assert [h.code for h in await halls.of_clerk(clerk.id)] == ["city"]
        with pytest.raises(RecordConflict):
            await halls.create("city", "重复", "Again")
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("K7M4XP", "K7M4XP"),
        ("k7m 4xp", "K7M4XP"),
        ("K7M-4XP", "K7M4XP"),
        (" k7m-4xp ", "K7M4XP"),
        ("K7M4X", None),  # too short
        ("K7M4XPP", None),  # too long
        ("K7M4X0", None),  # 0 is not in the alphabet (it looks like O)
        ("K7M4XO", None),
        ("K7M4X1", None),
        ("K7M4XI", None),
        ("市民中心一二", None),
        ("", None),
    ],
)
def test_a_typed_reference_ignores_case_spaces_and_dashes_and_refuses_look_alikes(
    typed: str, expected: str | None
) -> None:
    assert typed_reference(typed) == expected


def test_a_reference_is_six_characters_without_look_alikes_and_fixed_by_the_id() -> None:
    ids = [f"{n:016x}" for n in range(2000)]
    references = [reference_of(i) for i in ids]
    assert all(len(r) == LENGTH and set(r) <= set(ALPHABET) for r in references)
    assert not set(ALPHABET) & set("01BGILOQSUVZ")
    assert [reference_of(i) for i in ids] == references
    # Spread over the alphabet: 2,000 ids give (nearly) 2,000 references.
    assert len(set(references)) >= 1999
