"""Migrations: applied once, recorded, and matching the table definitions used by queries."""

from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect, text

from storage.database import Database, database_url
from storage.errors import MigrationError
from storage.migrations import LATEST_VERSION, migrate
from storage.schema import metadata


@pytest.mark.empty_database
async def test_migrated_schema_matches_the_table_definitions(
    tmp_path: Path, database_url: str | None
) -> None:
    url = database_url_for(tmp_path, database_url)
    db = await Database.open(url)
    assert await db.read(migrate) == LATEST_VERSION  # a second run changes nothing

    def columns(sync_conn: Connection) -> dict[str, set[str]]:
        inspector = inspect(sync_conn)
        return {
            name: {c["name"] for c in inspector.get_columns(name)}
            for name in inspector.get_table_names()
        }

    found = await db.read(columns)
    expected = {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
    assert found == expected
    await db.close()


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    db = await Database.open(database_url_for(tmp_path, None))
    await db.write(lambda conn: conn.execute(text("INSERT INTO schema_version VALUES (999)")))
    with pytest.raises(MigrationError, match="newer than this code"):
        await db.read(migrate)
    await db.close()


def database_url_for(tmp_path: Path, url: str | None) -> str:
    return database_url(url, tmp_path)
