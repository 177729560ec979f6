"""Health, metrics, the OpenAPI document, JSON errors and page headers."""

import aiohttp

from tests.conftest import ClientFactory, RunningServer, login_session
from web.app import API_TABLES


async def test_healthz(sqlite_server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sqlite_server.url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def test_openapi_describes_every_route(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sqlite_server.url}/api/v1/openapi.json") as response:
        doc = await response.json()
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    app = sqlite_server.app
    routed = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method == "*" or path is None or path.startswith("/socket.io"):
            continue
        routed.add((route.method, path))
    # aiohttp answers HEAD for every GET by itself; only HEAD routes of their own count.
    routed = {(m, p) for m, p in routed if m != "HEAD" or ("GET", p) not in routed}
    assert routed == documented
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"], path
            assert op["responses"], path
    login = doc["paths"]["/api/v1/login"]["post"]
    assert "429" in login["responses"] and "requestBody" in login
    ref = login["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[-1] in doc["components"]["schemas"]
    assert sum(len(t.endpoints) for t in API_TABLES) == len(documented)
    for endpoint in (e for t in API_TABLES for e in t.endpoints):
        op = doc["paths"][endpoint.path][endpoint.method.lower()]
        # Every answer the declaration implies or names is stated, and nothing else.
        statuses = endpoint.success_statuses | endpoint.error_statuses
        assert {int(s) for s in op["responses"]} == statuses, endpoint.path
        if endpoint.roles is not None:
            assert "401" in op["responses"] and op["security"] == [{"session": []}]
        # Every parameter says what its values look like.
        for param in op.get("parameters", []):
            schema = param["schema"]
            if param["in"] == "path":
                assert "pattern" in schema or "enum" in schema, (endpoint.path, param)
                assert "404" in op["responses"], endpoint.path
    audit = {p["name"]: p for p in doc["paths"]["/api/v1/audit"]["get"]["parameters"]}
    assert audit["limit"]["schema"]["anyOf"][0]["maximum"] == 200
    assert "416" in doc["paths"]["/api/v1/files/{file_id}"]["get"]["responses"]
    media = doc["paths"]["/api/v1/media/{consultation_id}"]["post"]
    assert media["security"] == [{"mediaToken": []}]
    assert "application/sdp" in media["requestBody"]["content"]


async def test_errors_are_json_with_code_and_message(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    for method, path, status in [
        ("GET", "/api/v1/nothing-here", 404),
        ("DELETE", "/api/v1/me", 405),
        ("GET", "/nothing-here", 404),
    ]:
        async with http.request(method, sqlite_server.url + path) as response:
            assert response.status == status
            error = (await response.json())["error"]
            assert error["code"] and error["message"]


async def test_pages_carry_the_login_form_and_a_strict_policy(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    for page in ("kiosk", "expert", "clerk", "admin"):
        async with http.get(f"{sqlite_server.url}/{page}") as response:
            assert response.status == 200
            html = await response.text()
            policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        for test_id in ("login-username", "login-password", "login-submit"):
            assert f'data-testid="{test_id}"' in html, (page, test_id)
        assert "<script>" not in html and " onclick=" not in html


async def test_clerk_finds_consultations_by_case_number_and_experts_only_their_own(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk = await connect(sqlite_server, "kiosk01")
    view = await kiosk.request("market", case_number="SL-9")
    await kiosk.cancel(view.consultation_id)
    clerk = await login_session(sqlite_server, "clerk")
    async with (
        clerk,
        clerk.get(
            f"{sqlite_server.url}/api/v1/consultations", params={"case_number": "SL-9"}
        ) as response,
    ):
        found = (await response.json())["consultations"]
    assert [c["id"] for c in found] == [view.consultation_id]
    other = await login_session(sqlite_server, "expert_housing")
    async with other:
        async with other.get(
            f"{sqlite_server.url}/api/v1/consultations", params={"case_number": "SL-9"}
        ) as response:
            assert (await response.json())["consultations"] == []
        async with other.get(
            f"{sqlite_server.url}/api/v1/consultations/{view.consultation_id}"
        ) as response:
            assert response.status == 404
        async with other.get(
            f"{sqlite_server.url}/api/v1/consultations", params={"case_number": "../x"}
        ) as response:
            assert response.status == 400
    # The kiosk's own consultation is closed to it once it has ended.
    own = await login_session(sqlite_server, "kiosk01")
    async with (
        own,
        own.get(f"{sqlite_server.url}/api/v1/consultations/{view.consultation_id}") as response,
    ):
        assert response.status == 404


def test_api_tables_have_unique_routes() -> None:
    seen = [(e.method, e.path) for t in API_TABLES for e in t.endpoints]
    assert len(seen) == len(set(seen))
