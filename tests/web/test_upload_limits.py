"""Unfinished uploads cannot take the server down: capped per account and in bytes,
no file held open between parts, gone with their call, gone when idle, and a
body that crawls is cut off."""

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import update

from storage.schema import uploads
from tests.conftest import ClientFactory, ServerFactory, active_call, login_session
from web import files_api
from web.body_pacing import BodyTooSlow, Pace, paced
from web.keys import FILES

PDF_HEAD = b"%PDF-1.7\n"


def part_headers(offset: int, part: bytes) -> dict[str, str]:
    digest = base64.b64encode(hashlib.sha256(part).digest()).decode()
    return {
        "Upload-Offset": str(offset),
        "Upload-Checksum": f"sha256 {digest}",
        "Content-Type": "application/offset+octet-stream",
    }


async def begin(
    http: aiohttp.ClientSession, base: str, call_id: str, size: int, name: str = "a.pdf"
) -> tuple[int, dict[str, object]]:
    async with http.post(
        f"{base}/api/v1/consultations/{call_id}/uploads", json={"name": name, "size": size}
    ) as response:
        return response.status, await response.json()


def open_files_under(folder: Path) -> list[str]:
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


async def test_a_burst_of_unfinished_uploads_is_capped_and_holds_no_files(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    """239 unfinished uploads from one kiosk used to hold 239 open files until restart."""
    server = await start_server(max_open_uploads=4, max_pending_upload_bytes=300_000_000)
    _kiosk, _expert, call_id = await active_call(server, connect)
    http = await login_session(server, "kiosk01")
    async with http:
        results = await asyncio.gather(
            *(begin(http, server.url, call_id, 1_000_000, f"f{i}.pdf") for i in range(40))
        )
        statuses = [status for status, _ in results]
        assert statuses.count(201) == 4 and statuses.count(429) == 36
        assert {b["error"]["code"] for s, b in results if s == 429} == {"too_many_uploads"}  # type: ignore[index]
        # A part into each, then: no file of theirs is open in the server.
        for status, body in results:
            if status == 201:
                part = PDF_HEAD + os.urandom(1000)
                async with http.patch(
                    server.url + str(body["url"]), data=part, headers=part_headers(0, part)
                ) as response:
                    assert response.status == 204
        assert open_files_under(server.settings.data_dir / "tmp") == []
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 200


async def test_all_unfinished_uploads_together_are_capped_in_bytes(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(max_pending_upload_bytes=60_000_000)
    _kiosk, _expert, call_id = await active_call(server, connect)
    kiosk = await login_session(server, "kiosk01")
    expert = await login_session(server, "expert_market")
    async with kiosk, expert:
        assert (await begin(kiosk, server.url, call_id, 50_000_000))[0] == 201
        status, body = await begin(expert, server.url, call_id, 20_000_000)
        assert status == 503 and body["error"]["code"] == "uploads_busy"  # type: ignore[index]
        assert (await begin(expert, server.url, call_id, 10_000_000))[0] == 201


async def test_uploads_end_with_their_call(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    """An upload started during the call could be finished after it, adding a file to
    a closed consultation."""
    server = await start_server()
    kiosk_client, _expert, call_id = await active_call(server, connect)
    http = await login_session(server, "kiosk01")
    async with http:
        # More than a chunk (64 KiB), so that the part leaves sealed bytes behind.
        content = PDF_HEAD + os.urandom(200_000)
        status, body = await begin(http, server.url, call_id, len(content))
        assert status == 201
        url = server.url + str(body["url"])
        async with http.patch(url, data=content, headers=part_headers(0, content)) as response:
            assert response.status == 204
        # The verified part is kept as a segment beside the documents.
        assert list((server.settings.data_dir / "files").glob("*.wlp"))
        await kiosk_client.end(call_id)
        async with http.post(f"{url}/finish") as response:
            assert response.status == 404
        async with http.head(url) as response:
            assert response.status == 404
        assert list((server.settings.data_dir / "tmp").iterdir()) == []
        assert list((server.settings.data_dir / "files").glob("*.wl[fp]")) == []
        assert await server.app[FILES].of_consultation(call_id) == []
        assert await server.app[FILES].unfinished() == (0, 0)


async def test_idle_uploads_are_discarded(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(upload_idle_timeout=30.0)
    _kiosk, _expert, call_id = await active_call(server, connect)
    http = await login_session(server, "kiosk01")
    store = server.app[FILES]
    async with http:
        status, body = await begin(http, server.url, call_id, 5000)
        fresh_status, _fresh = await begin(http, server.url, call_id, 5000, "b.pdf")
        assert status == fresh_status == 201
        # The first one has received nothing for 31 s: only it goes.
        idle = (
            update(uploads)
            .where(uploads.c.id == str(body["upload_id"]))
            .values(last_activity=uploads.c.last_activity - 31)
        )
        await server.storage.db.write(lambda conn: conn.execute(idle))
        assert await store.discard_idle() == 1
        async with http.head(server.url + str(body["url"])) as response:
            assert response.status == 404
        assert (await store.unfinished())[0] == 1


async def trickle(pieces: list[bytes], gap: float, clock: list[float]) -> AsyncIterator[bytes]:
    for piece in pieces:
        clock[0] += gap
        yield piece


async def test_paced_cuts_off_a_crawling_or_stalled_body() -> None:
    clock = [0.0]
    pace = Pace(idle=5.0, min_rate=100.0, grace=10.0)
    fine = [p async for p in paced(trickle([b"x" * 200] * 20, 1.0, clock), pace, lambda: clock[0])]
    assert len(fine) == 20
    clock[0] = 0.0
    with pytest.raises(BodyTooSlow):
        async for _ in paced(trickle([b"x"] * 60, 1.0, clock), pace, lambda: clock[0]):
            pass
    assert clock[0] < 15

    async def stalled() -> AsyncIterator[bytes]:
        yield b"x"
        await asyncio.sleep(10)
        yield b"y"

    with pytest.raises(BodyTooSlow):
        async for _ in paced(stalled(), Pace(idle=0.2, min_rate=1.0, grace=100.0)):
            pass


async def test_a_one_byte_a_second_part_is_cut_off_and_the_upload_stays_resumable(
    start_server: ServerFactory, connect: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_api, "PART_PACE", Pace(idle=5.0, min_rate=1000.0, grace=1.0))
    server = await start_server()
    _kiosk, _expert, call_id = await active_call(server, connect)
    http = await login_session(server, "kiosk01")
    async with http:
        content = PDF_HEAD + os.urandom(1000)
        status, body = await begin(http, server.url, call_id, len(content))
        assert status == 201

        async def slow() -> AsyncIterator[bytes]:
            for i in range(10):
                yield content[i : i + 1]
                await asyncio.sleep(0.5)

        async with http.patch(
            server.url + str(body["url"]), data=slow(), headers=part_headers(0, content)
        ) as response:
            assert response.status == 408
            assert (await response.json())["error"]["code"] == "too_slow"
        async with http.patch(
            server.url + str(body["url"]), data=content, headers=part_headers(0, content)
        ) as response:
            assert response.status == 204
