"""The audit viewer's API: filters, paging, and the chain's verification."""

import pytest
from sqlalchemy import text

from tests.conftest import RunningServer, login_session


async def test_filters_and_pages_newest_first(sqlite_server: RunningServer) -> None:
    url = sqlite_server.url
    admin = await login_session(sqlite_server, "admin")
    async with admin:
        for name in ("clerk2", "clerk3", "clerk4"):
            async with admin.post(
                f"{url}/api/v1/accounts",
                json={"username": name, "password": "Hall-desk-2026", "role": "clerk"},
            ) as response:
                assert response.status == 201
        async with admin.patch(f"{url}/api/v1/accounts/clerk2", json={"disabled": True}):
            pass
        async with admin.get(f"{url}/api/v1/audit?action=account&actor=admin") as response:
            entries = (await response.json())["entries"]
        assert [(e["action"], e["subject"]) for e in entries] == [
            ("account.disable", "clerk2"),
            ("account.create", "clerk4"),
            ("account.create", "clerk3"),
            ("account.create", "clerk2"),
        ]
        assert entries[-1]["detail"] == {"role": "clerk"}
        async with admin.get(
            f"{url}/api/v1/audit?action=account.create&limit=2&before={entries[1]['seq']}"
        ) as response:
            page = (await response.json())["entries"]
        assert [e["subject"] for e in page] == ["clerk3", "clerk2"]
        async with admin.get(f"{url}/api/v1/audit?subject=clerk2") as response:
            assert len((await response.json())["entries"]) == 2


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=201", "before=x", "action=DROP%20TABLE", "sort=seq"]
)
async def test_bad_filters_are_refused(sqlite_server: RunningServer, query: str) -> None:
    admin = await login_session(sqlite_server, "admin")
    async with admin, admin.get(f"{sqlite_server.url}/api/v1/audit?{query}") as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_query"


async def test_verification_reports_the_first_broken_entry(sqlite_server: RunningServer) -> None:
    url = sqlite_server.url
    admin = await login_session(sqlite_server, "admin")
    async with admin:
        async with admin.get(f"{url}/api/v1/audit/verify") as response:
            good = await response.json()
        assert good["intact"] is True and good["entries"] > 5 and good["broken_seq"] is None
        await sqlite_server.storage.db.write(
            lambda conn: conn.execute(
                text("UPDATE audit_log SET detail = :d WHERE seq = 3"), {"d": '{"demo":0}'}
            )
        )
        async with admin.get(f"{url}/api/v1/audit/verify") as response:
            bad = await response.json()
    assert bad["intact"] is False and bad["broken_seq"] == 3 and bad["entries"] == 2
    # The chain is keyed: an edited entry no longer matches its MAC.
    assert "MAC" in bad["reason"]


@pytest.mark.parametrize("username", ["kiosk01", "expert_market", "clerk"])
async def test_audit_is_for_admins_only(sqlite_server: RunningServer, username: str) -> None:
    session = await login_session(sqlite_server, username)
    async with session:
        for path in ("/api/v1/audit", "/api/v1/audit/verify"):
            async with session.get(sqlite_server.url + path) as response:
                assert response.status == 403
