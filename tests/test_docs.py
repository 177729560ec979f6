"""The documents that others rely on name everything the code serves."""

import re
from pathlib import Path

from signaling.client import SERVER_EVENTS
from tests.conftest import RunningServer
from web.app import API_TABLES
from web.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


async def test_protocol_doc_names_every_event(sqlite_server: RunningServer) -> None:
    text = read("docs/PROTOCOL.md")
    client_events = [spec.name for spec in sqlite_server.hub.gateway.events]
    assert client_events
    for name in [*client_events, *SERVER_EVENTS]:
        assert f"`{name}`" in text, name


def test_api_doc_names_every_path() -> None:
    text = read("docs/API.md")
    for table in API_TABLES:
        for endpoint in table.endpoints:
            assert f"`{endpoint.path}" in text, endpoint.path


def test_readme_documents_every_setting_and_ci_runs_its_test_command() -> None:
    readme = read("README.md")
    for name in Settings.__dataclass_fields__:
        flag = "--" + name.replace("_", "-")
        if name in ("extra_hosts", "ice_servers"):
            flag = flag.removesuffix("s")  # repeatable: one value per flag
        assert f"`{flag}`" in readme or f"`{flag}," in readme, flag
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    assert len(commands) == 2
    assert "python3 -m venv .venv" in commands[0] and "server.py --demo" in commands[0]
    # The second sets up what the tests need and runs them all, as CI does.
    assert commands[1] == "bash .ci/run"
    last = read(".ci/run").rstrip().splitlines()[-1]
    assert (
        last == "python -m pip install -q -e '.[test]' && ruff check . && mypy && python -m pytest"
    )
    assert f"`{last}`" in readme
