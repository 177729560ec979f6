"""The audit hash chain, and the `audit verify` command naming the first broken entry."""

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.errors import AuditChainBroken
from storage.records import AuditEvent
from storage.sessions import SessionPolicy
from storage.store import Storage

ROOT = Path(__file__).resolve().parents[2]


async def open_storage(data_dir: Path, database_url: str | None) -> Storage:
    return await Storage.open(database_url, data_dir, SessionPolicy(3600, 7200))


async def write_entries(storage: Storage, count: int) -> None:
    for i in range(count):
        await storage.audit.append(
            AuditEvent(f"user{i}", "test.action", f"subject{i}", {"n": i}, "127.0.0.1")
        )


def verify_cli(data_dir: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "server.py", "--data-dir", str(data_dir)]
    if database_url:
        args += ["--database-url", database_url]
    return subprocess.run(
        [*args, "audit", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_intact_chain_verifies(tmp_path: Path, database_url: str | None) -> None:
    storage = await open_storage(tmp_path, database_url)
    await write_entries(storage, 5)
    assert await storage.audit.verify() == 5
    entries = await storage.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    await storage.close()
    result = verify_cli(tmp_path, database_url)
    assert result.returncode == 0, result.stderr
    assert "intact: 5 entries" in result.stdout


@pytest.mark.parametrize(
    ("statement", "broken", "reason"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", 3, "content does not match"),
        ("UPDATE audit_log SET detail = '[]' WHERE seq = 2", 2, "content does not match"),
        ("DELETE FROM audit_log WHERE seq = 4", 4, "entry missing"),
        ("DELETE FROM audit_log WHERE seq = 6", 6, "missing"),
        ("UPDATE audit_log SET prev_hash = 'x' WHERE seq = 5", 5, "does not link"),
    ],
)
async def test_an_edited_entry_breaks_the_chain_and_is_named(
    tmp_path: Path, database_url: str | None, statement: str, broken: int, reason: str
) -> None:
    storage = await open_storage(tmp_path, database_url)
    await write_entries(storage, 6)
    await storage.db.write(lambda conn: conn.execute(text(statement)))
    with pytest.raises(AuditChainBroken) as info:
        await storage.audit.verify()
    assert info.value.seq == broken and reason in info.value.reason
    await storage.close()
    result = verify_cli(tmp_path, database_url)
    assert result.returncode == 1
    assert f"entry {broken}" in result.stderr


async def test_recomputing_one_hash_still_breaks_the_next_link(
    tmp_path: Path,
) -> None:
    """Someone who edits an entry and fixes its own hash is caught by its successor."""
    from storage.audit import entry_hash

    storage = await open_storage(tmp_path, None)
    await write_entries(storage, 3)
    entry = (await storage.audit.entries())[1]
    forged = entry_hash(
        entry.seq,
        entry.at,
        "mallory",
        entry.action,
        entry.subject,
        entry.detail,
        entry.remote,
        entry.prev_hash,
    )
    await storage.db.write(
        lambda conn: conn.execute(
            text("UPDATE audit_log SET actor = 'mallory', hash = :h WHERE seq = 2"), {"h": forged}
        )
    )
    with pytest.raises(AuditChainBroken) as info:
        await storage.audit.verify()
    assert info.value.seq == 3
    await storage.close()
