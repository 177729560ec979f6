"""PostgreSQL's client tools (pg_dump, pg_restore) as the backup runs them: the
version matching the server, libpq's environment for the connection (the
password in the environment, never on a command line), errors as BackupError."""

import asyncio
import os
import re
import shutil
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from storage.errors import BackupError


def libpq_environment(url: str) -> tuple[URL, dict[str, str]]:
    """The URL for SQLAlchemy, and libpq's environment for pg_dump/pg_restore
    (the password goes there, never onto a command line)."""
    parsed = make_url(url)
    env = dict(os.environ)
    for name, value in (
        ("PGHOST", parsed.host),
        ("PGPORT", str(parsed.port) if parsed.port else None),
        ("PGUSER", parsed.username),
        ("PGPASSWORD", parsed.password),
        ("PGDATABASE", parsed.database),
    ):
        if value:
            env[name] = str(value)
    sslmode = parsed.query.get("sslmode") or parsed.query.get("ssl")
    if isinstance(sslmode, str):
        env["PGSSLMODE"] = sslmode
    return parsed.set(drivername="postgresql+asyncpg"), env


def _tool_path(name: str, server_major: int) -> str:
    """The client tool of the server's major version (Debian keeps each under
    /usr/lib/postgresql/<major>/bin), else the one on PATH."""
    exact = Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")
    if exact.is_file() and os.access(exact, os.X_OK):
        return str(exact)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL {server_major} client tools")
    return found


async def run_tool(argv: list[str], env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await process.communicate()
    if process.returncode != 0:
        detail = errors.decode(errors="replace").strip().splitlines()[-5:]
        raise BackupError(f"{Path(argv[0]).name} failed: {' / '.join(detail)}")


async def _tool_major(tool: str, env: dict[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(
        tool, "--version", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    match = re.search(rb"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


async def client_tool(name: str, server_major: int, env: dict[str, str]) -> str:
    tool = _tool_path(name, server_major)
    major = await _tool_major(tool, env)
    if major < server_major:
        raise BackupError(
            f"{tool} is PostgreSQL {major}, older than the server ({server_major}): "
            f"install the PostgreSQL {server_major} client tools"
        )
    return tool
