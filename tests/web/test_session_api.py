"""Login, logout, /me, cookies and throttling over real HTTP."""

import asyncio
import time

import aiohttp
from sqlalchemy import text

from storage.records import Role
from tests.conftest import RunningServer, ServerFactory
from web.errors import TooManyRequests
from web.login_gate import PasswordCheckGate


async def post_login(
    http: aiohttp.ClientSession, server: RunningServer, username: str, password: str
) -> tuple[int, dict[str, object], aiohttp.ClientResponse]:
    async with http.post(
        f"{server.url}/api/v1/login", json={"username": username, "password": password}
    ) as response:
        return response.status, await response.json(), response


async def test_me_needs_a_session(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.url}/api/v1/me") as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"


async def test_login_sets_an_httponly_strict_cookie_and_me_answers(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    status, body, response = await post_login(http, server, "expert_market", "demo1234")
    assert status == 200
    assert body["username"] == "expert_market" and body["role"] == "expert"
    cookie = response.cookies["wl_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert len(cookie.value) >= 40
    async with http.get(f"{server.url}/api/v1/me") as me:
        data = await me.json()
    assert (data["username"], data["role"], data["department"]) == (
        "expert_market",
        "expert",
        "market",
    )
    # The server keeps only a hash of the token.
    stored = await server.storage.db.read(
        lambda conn: [r[0] for r in conn.execute(text("SELECT token_hash FROM sessions"))]
    )
    assert cookie.value not in stored


async def test_each_login_issues_a_new_token_and_drops_the_old_one(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    _, _, first = await post_login(http, sqlite_server, "clerk", "demo1234")
    old = first.cookies["wl_session"].value
    _, _, second = await post_login(http, sqlite_server, "clerk", "demo1234")
    new = second.cookies["wl_session"].value
    assert new != old
    async with (
        aiohttp.ClientSession() as stale,
        stale.get(
            f"{sqlite_server.url}/api/v1/me", headers={"Cookie": f"wl_session={old}"}
        ) as response,
    ):
        assert response.status == 401


async def test_wrong_credentials_are_refused_the_same_way(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    wrong_password = await post_login(http, server, "clerk", "nope-nope")
    no_account = await post_login(http, server, "nobody", "nope-nope")
    for status, body, _ in (wrong_password, no_account):
        assert status == 401
        assert body["error"] == {
            "code": "invalid_credentials",
            "message": "wrong username or password",
        }
    entries = await server.storage.audit.entries(action="login.failed")
    assert [e.subject for e in entries] == ["clerk", "nobody"]


async def test_disabled_account_cannot_log_in(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    await sqlite_server.storage.accounts.create("kiosk09", "password123", Role.KIOSK, hall="city")
    await sqlite_server.storage.accounts.set_disabled("kiosk09", True)
    status, _, _ = await post_login(http, sqlite_server, "kiosk09", "password123")
    assert status == 401


async def test_repeated_failures_are_throttled_with_429(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(login_attempts=3)
    statuses = [(await post_login(http, server, "admin", "wrong-pass"))[0] for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    # Even the right password is refused while throttled, and says when to retry.
    async with http.post(
        f"{server.url}/api/v1/login", json={"username": "admin", "password": "demo1234"}
    ) as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) > 0
        assert (await response.json())["error"]["code"] == "too_many_requests"
    # Another account from the same address is not locked out by it.
    assert (await post_login(http, server, "clerk", "demo1234"))[0] == 200


async def test_concurrent_guesses_are_counted_before_the_password_is_checked(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """100 guesses at once used to be all checked (the count was read before the hash
    and written after it): now only the first ``login_attempts`` reach the hash."""
    server = await start_server(login_attempts=5)
    guesses = [f"wrong-{i:03d}" for i in range(99)] + ["demo1234"]
    results = await asyncio.gather(*(post_login(http, server, "admin", p) for p in guesses))
    statuses = [status for status, _, _ in results]
    assert statuses.count(429) >= 95
    checked = [s for s in statuses if s != 429]
    assert len(checked) <= 5
    failed = [e for e in await server.storage.audit.entries() if e.action == "login.failed"]
    assert len(failed) == statuses.count(401) <= 5


async def test_password_checks_run_one_per_account_and_a_few_overall() -> None:
    gate = PasswordCheckGate(concurrent=2, max_waiting=6)
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    overall_peak = 0

    async def check(username: str) -> None:
        nonlocal overall_peak
        async with gate.admit(username):
            running[username] = running.get(username, 0) + 1
            peak[username] = max(peak.get(username, 0), running[username])
            overall_peak = max(overall_peak, sum(running.values()))
            await asyncio.sleep(0.01)
            running[username] -= 1

    await asyncio.gather(*(check(u) for u in ["a", "a", "a", "b", "c", "c"]))
    assert peak == {"a": 1, "b": 1, "c": 1} and overall_peak == 2
    # More waiting than allowed: refused at once rather than queued.
    outcomes = await asyncio.gather(*(check(f"user{i}") for i in range(12)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, TooManyRequests)]
    assert refused and all(o is None or isinstance(o, TooManyRequests) for o in outcomes)


async def test_logout_ends_the_session(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    await post_login(http, sqlite_server, "admin", "demo1234")
    async with http.post(f"{sqlite_server.url}/api/v1/logout") as response:
        assert response.status == 204
    async with http.get(f"{sqlite_server.url}/api/v1/me") as response:
        assert response.status == 401
    actions = [e.action for e in await sqlite_server.storage.audit.entries()]
    assert actions[-2:] == ["login", "logout"]


async def test_malformed_login_bodies_are_400_or_415(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    url = f"{sqlite_server.url}/api/v1/login"
    cases = [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"json": ["admin"]}, 400),
        ({"json": {"username": "admin"}}, 400),
        ({"json": {"username": "admin", "password": 1234}}, 400),
        ({"json": {"username": "a" * 100, "password": "x"}}, 400),
        ({"data": "username=admin", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"data": b"x" * (300 * 1024), "headers": {"Content-Type": "application/json"}}, 413),
    ]
    for kwargs, expected in cases:
        async with http.post(url, **kwargs) as response:  # type: ignore[arg-type]
            assert response.status == expected, kwargs
            body = await response.json()
            assert set(body["error"]) == {"code", "message"}


async def test_a_kiosk_stays_logged_in_past_the_staff_limits(server: RunningServer) -> None:
    day = 86400
    sessions = {}
    for username in ("kiosk01", "expert_market"):
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        status, _, response = await post_login(session, server, username, "demo1234")
        assert status == 200
        sessions[username] = (session, response.cookies["wl_session"])
    assert sessions["kiosk01"][1]["max-age"] == str(30 * day)
    assert sessions["expert_market"][1]["max-age"] == str(day)

    async def age_all(created_days: float, seen_days: float) -> None:
        await server.storage.db.write(
            lambda conn: conn.execute(
                text("UPDATE sessions SET created_at = :c, last_seen = :s"),
                {"c": time.time() - created_days * day, "s": time.time() - seen_days * day},
            )
        )

    async def me(username: str) -> int:
        async with sessions[username][0].get(f"{server.url}/api/v1/me") as response:
            return response.status

    try:
        # Two days old, idle for one: the expert must log in again, the kiosk not.
        await age_all(2, 1)
        assert await server.storage.sessions.purge_expired() == 1
        assert await me("kiosk01") == 200
        assert await me("expert_market") == 401
        await age_all(31, 0)
        assert await me("kiosk01") == 401
    finally:
        for session, _ in sessions.values():
            await session.close()
