"""The operator's first admin: ``server.py accounts create`` on a fresh installation,
then a login on a server started on the same data without ``--demo`` (real
processes, SQLite and PostgreSQL)."""

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from harness.ports import free_port
from storage.accounts import Accounts
from storage.audit import AuditLog
from storage.database import Database, database_url
from storage.records import Role
from tests.test_server import ROOT, start, stop, wait_healthy

pytestmark = pytest.mark.slow

PASSWORD = "Harbour-Lights-2026"


def accounts_create(
    data_dir: Path, database: str | None, username: str, stdin: str, role: str = "admin"
) -> subprocess.CompletedProcess[str]:
    flags = ["--data-dir", str(data_dir), *(["--database-url", database] if database else [])]
    command = ["accounts", "create", "--role", role, "--username", username]
    return subprocess.run(
        [sys.executable, "server.py", *flags, *command],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def login(url: str, username: str, password: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/v1/login", json={"username": username, "password": password}) as r,
    ):
        return r.status, dict(await r.json())


async def test_the_first_admin_is_made_by_a_command_and_logs_in_without_demo(
    tmp_path: Path, database_url: str | None
) -> None:
    data = tmp_path / "data"
    made = await asyncio.to_thread(accounts_create, data, database_url, "chief", PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert "account chief (admin) created" in made.stdout
    assert PASSWORD not in made.stdout + made.stderr
    # Once only: the same name again is refused.
    again = await asyncio.to_thread(accounts_create, data, database_url, "chief", PASSWORD + "\n")
    assert again.returncode == 1 and "already exists" in again.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flags = ["--data-dir", str(data), *(["--database-url", database_url] if database_url else [])]
    process = await start(["--port", str(port), "--media-workers", "0", *flags])
    try:
        await wait_healthy(url, False)
        status, me = await login(url, "chief", PASSWORD)
        assert status == 200, me
        assert (me["username"], me["role"]) == ("chief", "admin")
        # No demo data on this installation.
        assert (await login(url, "admin", "demo1234"))[0] == 401
    finally:
        await stop(process)
    db = await Database.open(database_url_of(data, database_url))
    try:
        entries = await AuditLog(db).search(action="account.create")
    finally:
        await db.close()
    assert [(e.actor, e.subject, e.detail) for e in entries] == [
        ("operator", "chief", '{"role":"admin","via":"command"}')
    ]


def database_url_of(data: Path, database: str | None) -> str:
    return database_url(database, data)


async def test_a_weak_password_is_refused_with_the_policys_reason_and_nothing_is_made(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    for stdin, reason in (
        ("12345678\n", "the password cannot be only digits"),
        ("chief-2026\n", "the password cannot contain the username"),
        ("short\n", "the password needs at least 8 characters"),
        ("", "give the password on standard input"),
    ):
        refused = await asyncio.to_thread(accounts_create, data, None, "chief", stdin)
        assert refused.returncode != 0, stdin
        assert reason in refused.stderr, refused.stderr
    # Only the first line counts: a second line is not part of the password.
    made = await asyncio.to_thread(
        accounts_create, data, None, "chief", f"{PASSWORD}\nsomething else\n"
    )
    assert made.returncode == 0, made.stderr
    db = await Database.open(database_url_of(data, None))
    try:
        accounts = Accounts(db)
        assert [(a.username, a.role) for a in await accounts.list()] == [("chief", Role.ADMIN)]
        assert await accounts.authenticate("chief", PASSWORD) is not None
    finally:
        await db.close()


async def test_an_account_of_another_role_names_what_it_needs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    expert = await asyncio.to_thread(
        accounts_create, data, None, "expert9", PASSWORD + "\n", role="expert"
    )
    assert expert.returncode == 2 and "--department" in expert.stderr
    bad_name = await asyncio.to_thread(accounts_create, data, None, "../root", PASSWORD + "\n")
    assert bad_name.returncode == 2 and "not a user name" in bad_name.stderr
