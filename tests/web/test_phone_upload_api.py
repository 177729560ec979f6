"""The phone link's API as an attacker meets it: one claim of two at once, a claim
secret that is not the link's, more files than announced, a link past its minutes,
a file arriving after its call ended, types and sizes refused as for any upload."""

import asyncio
import time
from typing import Any

import aiohttp

from storage.phone_links import PhoneLinks
from tests.conftest import ClientFactory, RunningServer, active_call, login_session
from tests.web.documents import png
from web.keys import FILES

PHOTO = png(64, 48, (10, 20, 30))


async def new_link(server: RunningServer, call_id: str) -> str:
    kiosk = await login_session(server, "kiosk01")
    async with kiosk, kiosk.post(f"{server.url}/api/v1/consultations/{call_id}/phone-link") as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["url"]).rsplit("/", 1)[1]


async def claim(
    http: aiohttp.ClientSession, server: RunningServer, token: str, files: list[dict[str, Any]]
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{server.url}/api/v1/phone-links/{token}/claim", json={"files": files}
    ) as response:
        return response.status, await response.json()


async def send(
    http: aiohttp.ClientSession,
    server: RunningServer,
    token: str,
    secret: str,
    name: str = "photo.png",
    body: bytes = PHOTO,
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{server.url}/api/v1/phone-links/{token}/files",
        params={"name": name},
        data=body,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/octet-stream"},
    ) as response:
        return response.status, await response.json()


ONE = [{"name": "photo.png", "size": len(PHOTO)}]


async def test_of_two_phones_claiming_at_once_one_wins_and_the_other_is_told_it_is_used(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, _expert, call_id = await active_call(server, connect)
    token = await new_link(server, call_id)
    async with aiohttp.ClientSession() as a, aiohttp.ClientSession() as b:
        answers = await asyncio.gather(claim(a, server, token, ONE), claim(b, server, token, ONE))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 410]
    refused = next(body for status, body in answers if status == 410)
    assert refused["error"]["code"] == "link_used"


async def test_only_the_claim_opens_uploads_and_only_for_what_was_announced(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, _expert, call_id = await active_call(server, connect)
    token = await new_link(server, call_id)
    async with aiohttp.ClientSession() as http:
        status, body = await claim(http, server, token, ONE)
        assert status == 201
        secret = body["claim"]
        assert (await send(http, server, token, "not-the-claim"))[0] == 401
        # The content's type is checked as for any upload; the refused file may come again.
        status, body = await send(http, server, token, secret, body=b"GIF89a" + PHOTO[6:])
        assert (status, body["error"]["code"]) == (415, "unsupported_type")
        assert (await send(http, server, token, secret))[0] == 201
        status, body = await send(http, server, token, secret)
        assert (status, body["error"]["code"]) == (410, "link_used")
        async with http.get(f"{server.url}/api/v1/phone-links/{token}") as response:
            assert (await response.json())["state"] == "used"
    files = await server.app[FILES].of_consultation(call_id)
    assert [(f.name, f.uploader_role) for f in files] == [("photo.png", "kiosk")]


async def test_announced_files_are_checked_as_an_uploads_start_is(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, _expert, call_id = await active_call(server, connect)
    token = await new_link(server, call_id)
    too_large = server.app[FILES].max_size + 1
    async with aiohttp.ClientSession() as http:
        for files, expected in [
            ([{"name": "run.exe", "size": 10}], (415, "unsupported_type")),
            ([{"name": "scan.png", "size": too_large}], (413, "too_large")),
            ([{"name": "a/b.png", "size": 10}], (400, "bad_name")),
            ([{"name": "p.png", "size": 10}] * 11, (400, "invalid_body")),
        ]:
            status, body = await claim(http, server, token, files)
            assert (status, body["error"]["code"]) == expected
        # Nothing refused used the link up.
        assert (await claim(http, server, token, ONE))[0] == 201


async def test_a_link_past_its_minutes_or_its_call_opens_nothing(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, expert, call_id = await active_call(server, connect)
    token = await new_link(server, call_id)
    async with aiohttp.ClientSession() as http:
        status, body = await claim(http, server, token, ONE)
        assert status == 201
        secret = body["claim"]
        # (A new link withdraws the call's unclaimed ones: this one comes second.)
        kiosk_account = await server.storage.accounts.get_by_username("kiosk01")
        links = PhoneLinks(server.storage.db)
        stale, _ = await links.create(call_id, kiosk_account.id, 300.0, now=time.time() - 301.0)
        async with http.get(f"{server.url}/api/v1/phone-links/{stale}") as response:
            assert (await response.json())["state"] == "expired"
        status, body = await claim(http, server, stale, ONE)
        assert (status, body["error"]["code"]) == (410, "link_expired")
        async with http.get(f"{server.url}/api/v1/phone-links/{'A' * 22}") as response:
            assert response.status == 404
        async with http.get(f"{server.url}/api/v1/phone-links/short") as response:
            assert response.status == 404
        # Claimed during the call, but the file arrives after it ended: refused, kept nowhere.
        await expert.end(call_id)
        status, body = await send(http, server, token, secret)
        assert status == 410
    assert await server.app[FILES].of_consultation(call_id) == []


async def test_a_file_whose_call_ends_while_it_arrives_joins_nothing(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, expert, call_id = await active_call(server, connect)
    token = await new_link(server, call_id)
    photo = png(900, 900, (120, 130, 140)) + b"\0" * (1024 * 1024)
    half = len(photo) // 2
    ended = asyncio.Event()

    async def body() -> Any:
        yield photo[:half]
        await ended.wait()
        yield photo[half:]

    async with aiohttp.ClientSession() as http:
        status, answer = await claim(http, server, token, [{"name": "p.png", "size": len(photo)}])
        assert status == 201

        async def upload() -> int:
            async with http.post(
                f"{server.url}/api/v1/phone-links/{token}/files",
                params={"name": "p.png"},
                data=body(),
                headers={
                    "Authorization": f"Bearer {answer['claim']}",
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(photo)),
                },
            ) as response:
                return response.status

        sending = asyncio.create_task(upload())
        await asyncio.sleep(0.5)
        await expert.end(call_id)
        ended.set()
        # Its upload went with the call (404 gone), or the call was over before it
        # was let in (410): either way nothing joins the ended consultation.
        assert await sending in (404, 410)
    assert await server.app[FILES].of_consultation(call_id) == []


async def test_a_claim_carries_only_the_files_it_announced_by_name_and_size(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, _expert, call_id = await active_call(server, connect)
    token = await new_link(server, call_id)
    other = png(640, 480, (1, 2, 3))
    async with aiohttp.ClientSession() as http:
        status, body = await claim(http, server, token, ONE)
        assert status == 201
        secret = body["claim"]
        # A phone that announced one small photo sends something else under the claim.
        for name, content in [("other.png", PHOTO), ("photo.png", other)]:
            status, body = await send(http, server, token, secret, name=name, body=content)
            assert (status, body["error"]["code"]) == (400, "not_announced"), name
        # What was announced still arrives, once.
        assert (await send(http, server, token, secret))[0] == 201
    files = await server.app[FILES].of_consultation(call_id)
    assert [(f.name, f.size) for f in files] == [("photo.png", len(PHOTO))]
