"""``--log-format json``: every line a real server process (and its relay workers)
writes is one JSON object, and no line ever holds a case number, an identity
number, chat text, a token or a password, however much it logs."""

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from harness.peers import CallPeer, wait_until
from harness.ports import free_port
from media.aiortc_private import restrict_host_addresses
from signaling.client import ExpertClient, KioskClient
from signaling.messages import ConsultationView, OfferView
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CASE_NUMBER = "CASE-7731-QZ"
IDENTITY_NUMBER = "11010119900307451X"
CHAT_TEXT = f"我的身份证号 {IDENTITY_NUMBER}"
NOTES = f"citizen {IDENTITY_NUMBER} needs form B"
PASSWORD = "demo1234"
PDF = b"%PDF-1.7\n" + IDENTITY_NUMBER.encode() * 1000 + b"\n%%EOF\n"


async def read_lines(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode("utf-8", "replace").rstrip("\n"))


async def test_json_logs_of_a_whole_journey_hold_no_personal_data_or_secrets(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        "--demo",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--media-workers",
        "1",
        "--media-address",
        "127.0.0.1",
        "--log-format",
        "json",
        "--log-level",
        "debug",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    out: list[str] = []
    err: list[str] = []
    readers = [
        asyncio.create_task(read_lines(process.stdout, out)),
        asyncio.create_task(read_lines(process.stderr, err)),
    ]
    secrets: list[str] = [CASE_NUMBER, IDENTITY_NUMBER, CHAT_TEXT, PASSWORD]
    # Our aiortc clients offer loopback candidates, like the relay (another process).
    restrict_host_addresses(["127.0.0.1"])
    peers: list[CallPeer] = []
    clients: list[KioskClient | ExpertClient] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            # A failed login with a password-like username, and a wrong password.
            async with http.post(
                f"{url}/api/v1/login", json={"username": "clerk", "password": "wrong-Pass-77"}
            ) as response:
                assert response.status == 401
        secrets.append("wrong-Pass-77")
        expert = ExpertClient(url)
        kiosk = KioskClient(url)
        clients += [expert, kiosk]
        await expert.login("expert_market", PASSWORD)
        await expert.connect()
        await expert.set_presence("available")
        await kiosk.login("kiosk01", PASSWORD)
        await kiosk.connect()
        secrets += [expert.session_cookie, kiosk.session_cookie]
        view = await kiosk.request("market", case_number=CASE_NUMBER)
        call_id = view.consultation_id
        await expert.accept((await expert.next_event("offer", OfferView)).consultation_id)
        for client in (kiosk, expert):
            state = await client.state()
            assert state.consultation is not None and state.consultation.media is not None
            media = state.consultation.media
            secrets.append(media.token)
            peer = CallPeer()
            peers.append(peer)
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    url + media.url,
                    data=await peer.offer(),
                    headers={
                        "Content-Type": "application/sdp",
                        "Authorization": f"Bearer {media.token}",
                    },
                ) as response,
            ):
                assert response.status == 201
                await peer.accept(await response.text())
        assert await wait_until(lambda: all(len(p.received.counters) > 10 for p in peers), 30)
        await kiosk.chat(call_id, CHAT_TEXT)
        file_url = (await kiosk.upload(call_id, f"{IDENTITY_NUMBER}.pdf", PDF)).url
        await expert.end(call_id)
        await kiosk.next_event("consultation", ConsultationView)
        await expert.save_outcome(call_id, "answered", NOTES)
        await kiosk.rate(call_id, 5)
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{url}/api/v1/login", json={"username": "clerk", "password": PASSWORD}
            ) as response:
                clerk_cookie = response.cookies["wl_session"].value
            secrets.append(clerk_cookie)
            headers = {"Cookie": f"wl_session={clerk_cookie}"}
            async with http.get(
                f"{url}/api/v1/consultations", params={"case_number": CASE_NUMBER}, headers=headers
            ) as response:
                assert response.status == 200
            async with http.get(url + file_url, headers=headers) as response:
                assert await response.read() == PDF
            async with http.post(
                f"{url}/api/v1/cases/{CASE_NUMBER}/attachments",
                json={"file_id": file_url.rsplit("/", 1)[1], "category": "application"},
                headers=headers,
            ) as response:
                assert response.status == 201
            # Bad input that gets logged on the way to its 4xx.
            async with http.post(
                f"{url}/api/v1/login",
                data=b'{"username": "' + CASE_NUMBER.encode() + b'", "password": [' * 50,
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status == 400
    finally:
        for peer in peers:
            await peer.close()
        for client in clients:
            await client.close()
        restrict_host_addresses([])
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        await asyncio.gather(*readers)
    lines = out + err
    assert out, "no start-up banner"
    assert json.loads(out[0])["message"].startswith("windowlink serving")
    assert len(err) > 20, "debug logging said almost nothing: the test would prove little"
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict) and {"ts", "level", "logger", "message"} <= set(entry)
    leaks = [(secret, line) for line in lines for secret in secrets if secret and secret in line]
    assert leaks == []
    # Where known, lines say which request, account and consultation they are about.
    entries = [json.loads(line) for line in lines]
    assert any("request_id" in e for e in entries)


LEAK_USERNAME = "leakcheck_7731"
LEAK_NAME = "泄露检查员"
LEAK_PASSWORD = "Leak-Check-Pass-2026"


@pytest.mark.postgres
async def test_json_logs_of_a_database_fault_hold_no_sql_parameters(tmp_path: Path) -> None:
    """An account created while PostgreSQL drops the server's connection mid-INSERT
    (the statement waits on a lock, then its backend is terminated) answers 503
    with Retry-After; no line names the username, the display name, the password
    or its Argon2id hash (SQLAlchemy's errors quoted the statement's parameters),
    and the account is created when asked again."""
    database = await create_database()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "server.py", "--demo", "--port", str(port),
        "--data-dir", str(tmp_path / "data"), "--database-url", database,
        "--media-workers", "0", "--log-format", "json", "--log-level", "debug",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    readers = [
        asyncio.create_task(read_lines(process.stdout, lines)),
        asyncio.create_task(read_lines(process.stderr, lines)),
    ]
    holder = await asyncpg.connect(database)
    body = {
        "username": LEAK_USERNAME,
        "password": LEAK_PASSWORD,
        "role": "clerk",
        "display_name": LEAK_NAME,
    }
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
            login = {"username": "admin", "password": PASSWORD}
            async with http.post(f"{url}/api/v1/login", json=login) as response:
                assert response.status == 200

            async def create() -> tuple[int, str, str | None]:
                async with http.post(f"{url}/api/v1/accounts", json=body) as response:
                    code = (
                        (await response.json())["error"]["code"] if response.status >= 400 else ""
                    )
                    return response.status, code, response.headers.get("Retry-After")

            async with holder.transaction():
                # An administrator's open transaction: the INSERT waits for it.
                await holder.execute("LOCK TABLE accounts IN SHARE MODE")
                creating = asyncio.create_task(create())
                waiting = (
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                for _ in range(300):
                    if pids := [r["pid"] for r in await holder.fetch(waiting)]:
                        break
                    await asyncio.sleep(0.05)
                assert pids, "the INSERT never waited on the lock"
                for pid in pids:
                    await holder.execute("SELECT pg_terminate_backend($1)", pid)
                status, code, retry_after = await creating
            assert (status, code) == (503, "unavailable")
            assert retry_after is not None and int(retry_after) >= 1
            assert (await create())[0] == 201
    finally:
        await holder.close()
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        await asyncio.gather(*readers)
        await drop_database(database)
    assert any("a store is unavailable" in line for line in lines), lines[-20:]
    leaks = [
        line
        for line in lines
        for secret in (LEAK_USERNAME, LEAK_NAME, LEAK_PASSWORD, "$argon2id$")
        if secret in line
    ]
    assert leaks == []
