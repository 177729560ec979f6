"""Input that used to answer 500 (or log a traceback) gets a fitting 4xx and one quiet
line: deep JSON, huge numbers, absurd ranges, wrong content types, dropped clients."""

import asyncio
import logging

import aiohttp
import pytest
from yarl import URL

from tests.conftest import (
    ClientFactory,
    RunningServer,
    ServerFactory,
    active_call,
    login_session,
    upload_file,
)

PDF = b"%PDF-1.7\n" + b"x" * 200_000 + b"\n%%EOF\n"


async def test_deep_json_and_huge_integers_at_login_are_400(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    url = f"{sqlite_server.url}/api/v1/login"
    bodies = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"username": "admin", "password": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"username": "admin", "password": ' + b"9" * 5000 + b"}",
        b'{"username": ' + b"1" * 4301 + b', "password": "x"}',
    ]
    for body in bodies:
        async with http.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 400, body[:40]
            assert (await response.json())["error"]["code"] == "invalid_json"


async def test_absurd_audit_paging_is_400(sqlite_server: RunningServer) -> None:
    admin = await login_session(sqlite_server, "admin")
    async with admin:
        for before in ("1e23", "9" * 5000, "99999999999999999999", "-1", "0x10"):
            async with admin.get(
                f"{sqlite_server.url}/api/v1/audit", params={"before": before}
            ) as response:
                assert response.status == 400, before
        async with admin.get(
            f"{sqlite_server.url}/api/v1/audit", params={"before": str(2**63 - 1)}
        ) as response:
            assert response.status == 200


async def test_ranges_and_part_headers_that_do_not_fit_get_4xx_with_their_headers(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    _kiosk, _expert, call_id = await active_call(sqlite_server, connect)
    session = await login_session(sqlite_server, "kiosk01")
    async with session:
        status, view = await upload_file(sqlite_server, session, call_id, "a.pdf", PDF)
        assert status == 201
        url = sqlite_server.url + view["url"]
        # Numbers longer than int() reads (4,300 digits): past the end, not a 500.
        for header in (f"bytes={'9' * 5000}-", f"bytes={'9' * 4000}-{'9' * 4001}"):
            async with session.get(url, headers={"Range": header}) as response:
                assert response.status == 416, header[:40]
                assert response.headers["Content-Range"] == f"bytes */{len(PDF)}"
                assert (await response.json())["error"]["code"] == "range_not_satisfiable"
        async with session.get(url, headers={"Range": f"bytes=0-{'9' * 5000}"}) as response:
            assert response.status == 206 and await response.read() == PDF
        # What RFC 9110 lets a server ignore gets the whole document.
        for header in ("bytes=9-3", "lines=1-2"):
            async with session.get(url, headers={"Range": header}) as response:
                assert response.status == 200 and await response.read() == PDF, header
        async with session.get(url, headers={"Range": "bytes=-5"}) as response:
            assert response.status == 206 and await response.read() == PDF[-5:]
        # A part sent with the wrong type: 415, not 500.
        async with session.post(
            f"{sqlite_server.url}/api/v1/consultations/{call_id}/uploads",
            json={"name": "b.pdf", "size": len(PDF)},
        ) as response:
            upload = await response.json()
        part_url = sqlite_server.url + upload["url"]
        async with session.patch(
            part_url,
            data=b"x",
            headers={
                "Upload-Offset": "0",
                "Upload-Checksum": "sha256 " + "A" * 43 + "=",
                "Content-Type": "text/plain",
            },
        ) as response:
            assert response.status == 415
        for offset in ("9" * 5000, "١٢", "-1", " 0"):
            async with session.patch(
                part_url,
                data=b"x",
                headers={
                    "Upload-Offset": offset,
                    "Upload-Checksum": "sha256 " + "A" * 43 + "=",
                    "Content-Type": "application/offset+octet-stream",
                },
            ) as response:
                assert response.status == 400, offset


async def test_405_says_what_is_allowed(
    sqlite_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.put(f"{sqlite_server.url}/api/v1/login", json={}) as response:
        assert response.status == 405
        assert "POST" in response.headers["Allow"]
        assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_a_client_dropping_mid_body_is_one_quiet_line(
    sqlite_server: RunningServer, connect: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """256 dropped uploads used to write 256 ERROR tracebacks: anyone could flood the log."""
    _kiosk, _expert, call_id = await active_call(sqlite_server, connect)
    session = await login_session(sqlite_server, "kiosk01")
    async with session:
        async with session.post(
            f"{sqlite_server.url}/api/v1/consultations/{call_id}/uploads",
            json={"name": "c.pdf", "size": len(PDF)},
        ) as response:
            upload = await response.json()
        cookie = session.cookie_jar.filter_cookies(URL(sqlite_server.url))["wl_session"].value
    host, port = sqlite_server.url.removeprefix("http://").split(":")
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                f"PATCH {upload['url']} HTTP/1.1\r\nHost: {host}\r\n"
                f"Cookie: wl_session={cookie}\r\nUpload-Offset: 0\r\n"
                f"Upload-Checksum: sha256 {'A' * 43}=\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(PDF)}\r\n\r\n"
            ).encode()
            + PDF[:50_000]
        )
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.5)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert not any(r.exc_info for r in caplog.records)
    # The upload is where it was: nothing of the cut part counted.
    again = await login_session(sqlite_server, "kiosk01")
    async with again, again.head(sqlite_server.url + upload["url"]) as response:
        assert response.headers["Upload-Offset"] == "0"


async def test_a_client_that_trickles_its_headers_is_closed(start_server: ServerFactory) -> None:
    server = await start_server(header_timeout=2.0)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    closed = False
    # A header line every half second: never a complete request.
    for i in range(20):
        try:
            writer.write(f"X-Slow-{i}: x\r\n".encode())
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if reader.at_eof():
            closed = True
            break
        try:
            await asyncio.wait_for(reader.read(1), 0.5)
        except TimeoutError:
            continue
        closed = reader.at_eof()
        if closed:
            break
    writer.close()
    assert closed
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as response:
        assert response.status == 200


async def test_requests_aiohttp_cannot_parse_are_one_quiet_line(
    sqlite_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp logged a traceback at ERROR for each: anyone could flood the log."""
    host, port = sqlite_server.url.removeprefix("http://").split(":")
    caplog.set_level(logging.DEBUG)
    for raw in (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        await writer.drain()
        assert (await reader.read(100)).split(b" ")[1].startswith(b"4")
        writer.close()
        await writer.wait_closed()
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]
