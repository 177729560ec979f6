"""Admin routes: each role against each route, and what an admin can change."""

import asyncio

import aiohttp
import pytest

from signaling.client import ClientError, ExpertClient
from tests.conftest import ClientFactory, RunningServer, login_session

ADMIN_ROUTES = [
    ("POST", "/api/v1/departments", {"code": "tax", "name_zh": "税务局", "name_en": "Tax"}),
    ("PATCH", "/api/v1/departments/market", {"disabled": True}),
    ("GET", "/api/v1/accounts", None),
    (
        "POST",
        "/api/v1/accounts",
        {
            "username": "expert_tax",
            "password": "Hall-desk-2026",
            "role": "expert",
            "department": "market",
        },
    ),
    ("PATCH", "/api/v1/accounts/clerk", {"disabled": True}),
    ("POST", "/api/v1/consultations/0123456789abcdef/withdraw", None),
]


@pytest.mark.parametrize("username", ["kiosk01", "expert_market", "clerk"])
async def test_non_admins_get_403_on_every_admin_route(
    sqlite_server: RunningServer, username: str
) -> None:
    session = await login_session(sqlite_server, username)
    async with session:
        for method, path, body in ADMIN_ROUTES:
            async with session.request(method, sqlite_server.url + path, json=body) as response:
                assert response.status == 403, (method, path)
                assert (await response.json())["error"]["code"] == "forbidden"
    # The demo's three departments and its interpreting pool.
    assert [d.disabled for d in await sqlite_server.storage.departments.list()] == [False] * 4


async def test_anonymous_gets_401_on_every_admin_route(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    for method, path, body in [*ADMIN_ROUTES, ("GET", "/api/v1/departments", None)]:
        async with http.request(method, sqlite_server.url + path, json=body) as response:
            assert response.status == 401, (method, path)


async def test_admin_creates_a_department_and_an_expert_who_can_work(
    server: RunningServer, connect: ClientFactory
) -> None:
    admin = await login_session(server, "admin")
    async with admin:
        async with admin.post(
            f"{server.url}/api/v1/departments",
            json={"code": "tax", "name_zh": "税务局", "name_en": "Tax Bureau"},
        ) as response:
            assert response.status == 201
            assert (await response.json())["code"] == "tax"
        async with admin.post(
            f"{server.url}/api/v1/accounts",
            json={
                "username": "expert_tax",
                "password": "Hall-desk-2026",
                "role": "expert",
                "department": "tax",
                "display_name": "税务专家",
            },
        ) as response:
            assert response.status == 201
            assert (await response.json())["department"] == "tax"
        async with admin.get(f"{server.url}/api/v1/accounts") as response:
            names = [a["username"] for a in (await response.json())["accounts"]]
        assert "expert_tax" in names
    expert = await connect(server, "expert_tax", "Hall-desk-2026", kind=ExpertClient)
    assert (await expert.set_presence("available")).status == "available"
    kiosk = await connect(server, "kiosk01")
    await kiosk.request("tax")
    queue = await expert.queue()
    assert queue.department == "tax" and len(queue.entries) == 1


async def test_bad_admin_bodies_are_refused_and_nothing_changes(
    sqlite_server: RunningServer,
) -> None:
    admin = await login_session(sqlite_server, "admin")
    bad = [
        ("POST", "/api/v1/departments", {"code": "Tax!", "name_zh": "x", "name_en": "x"}, 400),
        ("POST", "/api/v1/departments", {"code": "market", "name_zh": "x", "name_en": "x"}, 409),
        ("POST", "/api/v1/departments", {"code": "tax", "name_zh": "", "name_en": "x"}, 400),
        (
            "POST",
            "/api/v1/accounts",
            {"username": "e1x", "password": "short", "role": "expert", "department": "market"},
            400,
        ),
        (
            "POST",
            "/api/v1/accounts",
            {"username": "e1x", "password": "Hall-desk-2026", "role": "expert"},
            400,
        ),
        (
            "POST",
            "/api/v1/accounts",
            {
                "username": "e1x",
                "password": "Hall-desk-2026",
                "role": "expert",
                "department": "nosuch",
            },
            404,
        ),
        (
            "POST",
            "/api/v1/accounts",
            {"username": "e1x", "password": "Hall-desk-2026", "role": "clerk", "hall": "city"},
            400,
        ),
        (
            "POST",
            "/api/v1/accounts",
            {"username": "clerk", "password": "Hall-desk-2026", "role": "clerk"},
            409,
        ),
        (
            "POST",
            "/api/v1/accounts",
            {"username": "../x", "password": "Hall-desk-2026", "role": "clerk"},
            400,
        ),
        (
            "POST",
            "/api/v1/accounts",
            {"username": "e1x", "password": "Hall-desk-2026", "role": "root"},
            400,
        ),
        ("PATCH", "/api/v1/accounts/nobody", {"disabled": True}, 404),
        ("PATCH", "/api/v1/accounts/clerk", {}, 400),
        ("PATCH", "/api/v1/departments/nosuch", {"disabled": True}, 404),
    ]
    async with admin:
        for method, path, body, status in bad:
            async with admin.request(method, sqlite_server.url + path, json=body) as response:
                assert response.status == status, (path, body, await response.text())
    names = {a.username for a in await sqlite_server.storage.accounts.list()}
    assert "e1x" not in names
    assert {d.code for d in await sqlite_server.storage.departments.list()} == {
        "market",
        "housing",
        "social",
        "interpret",
    }


async def test_disabling_an_account_ends_its_sessions_and_sockets(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    expert: ExpertClient = await connect(sqlite_server, "expert_market")
    admin = await login_session(sqlite_server, "admin")
    async with (
        admin,
        admin.patch(
            f"{sqlite_server.url}/api/v1/accounts/expert_market", json={"disabled": True}
        ) as response,
    ):
        assert response.status == 200
        assert (await response.json())["disabled"] is True
    for _ in range(50):
        if not expert.sio.connected:
            break
        await __import__("asyncio").sleep(0.05)
    assert not expert.sio.connected
    with pytest.raises(ClientError) as info:
        await expert.login("expert_market", "demo1234")
    assert info.value.status == 401


async def test_disabled_department_cannot_be_requested_and_is_hidden_from_kiosks(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    admin = await login_session(sqlite_server, "admin")
    async with (
        admin,
        admin.patch(
            f"{sqlite_server.url}/api/v1/departments/social", json={"disabled": True}
        ) as response,
    ):
        assert response.status == 200
    kiosk = await connect(sqlite_server, "kiosk01")
    with pytest.raises(ClientError) as info:
        await kiosk.request("social")
    assert info.value.code == "not_found"
    session = await login_session(sqlite_server, "kiosk01")
    async with session, session.get(f"{sqlite_server.url}/api/v1/departments") as response:
        codes = [d["code"] for d in (await response.json())["departments"]]
    assert codes == ["housing", "interpret", "market"]


async def test_admin_withdraws_an_open_consultation_as_cancelled(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk = await connect(sqlite_server, "kiosk01")
    view = await kiosk.request("market", case_number="W-1")
    admin = await login_session(sqlite_server, "admin")
    async with (
        admin,
        admin.post(
            f"{sqlite_server.url}/api/v1/consultations/{view.consultation_id}/withdraw"
        ) as response,
    ):
        assert response.status == 200
        assert (await response.json())["end_reason"] == "cancelled"
    record = await sqlite_server.storage.consultations.get(view.consultation_id)
    assert record.end_reason is not None and record.end_reason.value == "cancelled"


async def test_the_last_enabled_admin_cannot_be_disabled(server: RunningServer) -> None:
    admin = await login_session(server, "admin")
    async with admin:
        url = f"{server.url}/api/v1/accounts"
        async with admin.patch(f"{url}/admin", json={"disabled": True}) as response:
            assert response.status == 409
            assert "admin" in (await response.json())["error"]["message"]
        # With a second admin, either may go, but not both at once.
        second = {"username": "admin2", "password": "Hall-desk-2026", "role": "admin"}
        async with admin.post(url, json=second) as response:
            assert response.status == 201
        other = await login_session(server, "admin2", "Hall-desk-2026")
        async with other:
            first, second_try = await asyncio.gather(
                admin.patch(f"{url}/admin2", json={"disabled": True}),
                other.patch(f"{url}/admin", json={"disabled": True}),
            )
            statuses = sorted([first.status, second_try.status])
            first.release()
            second_try.release()
    assert statuses in ([200, 409], [200, 401])
    admins = [
        a
        for a in await server.storage.accounts.list()
        if a.role.value == "admin" and not a.disabled
    ]
    assert len(admins) == 1


@pytest.mark.parametrize(
    ("password", "role"),
    [
        ("        ", "clerk"),
        ("\x00" * 8, "expert"),
        ("12345678", "admin"),
        ("admin123", "clerk"),
        ("Password2026!", "clerk"),
        ("zzzzzzzzzz", "expert"),
        ("qwertyui", "clerk"),
        ("abcdabcd", "admin"),
        ("1qaz2wsx", "expert"),
        ("newclerk-2026", "clerk"),
        ("tab\there-ok-2026", "clerk"),
        ("        ", "kiosk"),
    ],
)
async def test_weak_staff_passwords_are_refused_on_create_and_reset(
    sqlite_server: RunningServer, password: str, role: str
) -> None:
    admin = await login_session(sqlite_server, "admin")
    async with admin:
        body = {"username": "newclerk", "password": password, "role": role}
        if role == "expert":
            body["department"] = "market"
        if role == "kiosk":
            body["hall"] = "city"
        async with admin.post(f"{sqlite_server.url}/api/v1/accounts", json=body) as response:
            assert response.status == 400
            # NUL never reaches the password rule: no text field may hold one.
            expected = "invalid_body" if "\x00" in password else "weak_password"
            assert (await response.json())["error"]["code"] == expected
        target = "kiosk01" if role == "kiosk" else "clerk"
        async with admin.patch(
            f"{sqlite_server.url}/api/v1/accounts/{target}", json={"password": password}
        ) as response:
            assert response.status == 400
    # Nothing changed: the old password still opens the account.
    other = await login_session(sqlite_server, target)
    await other.close()


async def test_a_kiosk_password_needs_only_the_structural_rules(
    sqlite_server: RunningServer,
) -> None:
    admin = await login_session(sqlite_server, "admin")
    async with (
        admin,
        admin.post(
            f"{sqlite_server.url}/api/v1/accounts",
            json={"username": "kiosk77", "password": "12345678", "role": "kiosk", "hall": "city"},
        ) as response,
    ):
        assert response.status == 201


async def test_admin_sets_transfers_and_interpreting_pools_and_the_rules_hold(
    sqlite_server: RunningServer,
) -> None:
    """Issue 21: where a department's experts may transfer to, and interpreting pools
    with their languages and interpreters; what cannot be is refused, nothing changed."""
    server = sqlite_server
    admin = await login_session(server, "admin")
    departments = f"{server.url}/api/v1/departments"
    async with admin:
        async with admin.patch(
            f"{departments}/market", json={"transfers_to": ["housing"]}
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["transfers_to"] == ["housing"]
        refusals = [
            ({"transfers_to": ["nowhere"]}, 404),  # no such department
            ({"transfers_to": ["interpret"]}, 409),  # a pool is invited, not transferred to
            ({"transfers_to": ["market"]}, 409),  # itself
            ({"transfers_to": ["housing"], "kind": "interpreter"}, 400),
            ({"languages": ["x" * 61]}, 400),
        ]
        for body, status in refusals:
            async with admin.patch(f"{departments}/market", json=body) as response:
                assert response.status == status, (body, await response.text())
        # A department others transfer to stays a service department.
        async with admin.patch(f"{departments}/housing", json={"kind": "interpreter"}) as response:
            assert response.status == 409
        async with admin.post(
            departments,
            json={
                "code": "signs",
                "name_zh": "手语服务",
                "name_en": "Sign language",
                "kind": "interpreter",
                "languages": ["手语 / sign language"],
            },
        ) as response:
            assert response.status == 201, await response.text()
            created = await response.json()
        assert (created["kind"], created["languages"]) == ("interpreter", ["手语 / sign language"])
        accounts = f"{server.url}/api/v1/accounts"
        person = {"password": "Hall-desk-2026", "display_name": "译员"}
        for body, status in (
            ({"username": "signer1", "role": "interpreter", "department": "signs"}, 201),
            ({"username": "signer2", "role": "interpreter", "department": "market"}, 409),
            ({"username": "expert_signs", "role": "expert", "department": "signs"}, 409),
            ({"username": "signer3", "role": "interpreter"}, 400),
        ):
            async with admin.post(accounts, json={**person, **body}) as response:
                assert response.status == status, (body, await response.text())
        async with admin.get(departments) as response:
            listed = {d["code"]: d for d in (await response.json())["departments"]}
    assert listed["market"]["transfers_to"] == ["housing"]
    assert listed["housing"]["kind"] == "service"
    assert (await server.storage.departments.get("market")).transfers_to == ("housing",)
    by_admin = [e.action for e in await server.storage.audit.entries() if e.actor == "admin"]
    assert by_admin.count("department.transfers") == 1
    assert "signer2" not in {a.username for a in await server.storage.accounts.list()}
