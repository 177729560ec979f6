"""--recordings-play-only: a recording is served to a page's video or audio player
only (Sec-Fetch-Dest), never as a download; every refusal is audited. Without the
switch a recording downloads as before."""

import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from harness.chromium import open_logged_in
from storage.filetypes import RECORDING
from storage.recordings import Recording
from storage.records import AuditEvent
from tests.conftest import RunningServer, ServerFactory, login_session
from web.keys import FILES

# The EBML magic and a "webm" document type are what the store checks a recording by.
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + os.urandom(100_000)


async def stored_recording(server: RunningServer) -> str:
    """A recording of a new consultation of kiosk01's at the market department, made
    as the call recorder makes one (a WebM document, then its row): its file id."""
    storage = server.storage
    kiosk = await storage.accounts.get_by_username("kiosk01")
    expert = await storage.accounts.get_by_username("expert_market")
    consultation = await storage.consultations.create(
        kiosk.id, kiosk.hall, "market", None, audit=AuditEvent("kiosk01", "test", "", {})
    )
    files = server.app[FILES]
    upload = await files.begin(consultation.id, expert, "录像-test.webm", len(WEBM))

    async def body() -> AsyncIterator[bytes]:
        yield WEBM

    await files.append(upload, 0, body(), hashlib.sha256(WEBM).digest(), len(WEBM))
    stored = await files.finish(upload, expert, "recorder", RECORDING)
    path = str(server.settings.data_dir / "recordings" / "test.dump")
    await storage.recordings.dump_started(path, consultation.id, "kek", "wrapped", 1.0)
    tracks = json.dumps([{"participant": "kiosk", "place": "1", "codec": "VP8", "frames": 1}])
    recording = Recording(stored.id, consultation.id, 1.0, tracks, 2.0)
    assert await storage.recordings.dump_finished(path, recording, 2.0)
    return stored.id


async def get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    async with session.get(url, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


async def refusals(server: RunningServer) -> list[tuple[str, str, dict[str, str]]]:
    return [
        (e.actor, e.subject, json.loads(e.detail))
        for e in await server.storage.audit.entries(action="recording.download_refused")
    ]


async def test_play_only_serves_a_recording_to_the_page_player_and_refuses_the_rest(
    start_server: ServerFactory,
) -> None:
    server = await start_server(recordings_play_only=True)
    file_id = await stored_recording(server)
    url = f"{server.url}/api/v1/files/{file_id}"
    async with await login_session(server, "supervisor") as supervisor:
        async with supervisor.get(f"{server.url}/api/v1/recordings") as response:
            listed = await response.json()
        assert listed["play_only"] is True
        assert [r["url"] for r in listed["recordings"]] == [f"/api/v1/files/{file_id}"]
        # What a <video> element asks for: its ranges, inline, never kept.
        for destination in ("video", "audio"):
            status, content, headers = await get(
                supervisor, url, {"Sec-Fetch-Dest": destination, "Range": "bytes=0-1023"}
            )
            assert status == 206 and content == WEBM[:1024], destination
            assert headers["Content-Range"] == f"bytes 0-1023/{len(WEBM)}"
            assert headers["Content-Disposition"] == "inline"
            assert "no-store" in headers["Cache-Control"].replace(" ", "").split(",")
        # A link opened or saved (document), fetch/XHR (empty), no header at all, and
        # the preview switch: refused, whatever the range.
        asked = [
            ({}, ""),
            ({"Sec-Fetch-Dest": "document"}, ""),
            ({"Sec-Fetch-Dest": "empty", "Range": "bytes=0-1023"}, ""),
            ({"Sec-Fetch-Dest": "document"}, "?inline=1"),
            ({"Sec-Fetch-Dest": "<script>"}, ""),
        ]
        for headers, query in asked:
            status, content, answer = await get(supervisor, url + query, headers)
            assert status == 403, (headers, query)
            error = json.loads(content)["error"]
            assert error["code"] == "play_only" and "page only" in error["message"]
            assert "Content-Disposition" not in answer
    assert await refusals(server) == [
        ("supervisor", file_id, {"destination": destination})
        for destination in ("none", "document", "empty", "document", "other")
    ]
    plays = await server.storage.audit.entries(action="recording.play")
    assert len(plays) == 2  # one per player's first range, none for a refusal


async def test_play_only_tells_nobody_else_that_a_recording_exists(
    start_server: ServerFactory,
) -> None:
    server = await start_server(recordings_play_only=True)
    file_id = await stored_recording(server)
    async with await login_session(server, "kiosk01") as kiosk:
        status, _, _ = await get(
            kiosk, f"{server.url}/api/v1/files/{file_id}", {"Sec-Fetch-Dest": "document"}
        )
    assert status == 404
    assert await refusals(server) == []


async def test_without_the_switch_a_recording_downloads_as_before(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    file_id = await stored_recording(server)
    url = f"{server.url}/api/v1/files/{file_id}"
    async with await login_session(server, "supervisor") as supervisor:
        async with supervisor.get(f"{server.url}/api/v1/recordings") as response:
            assert (await response.json())["play_only"] is False
        for headers in ({}, {"Sec-Fetch-Dest": "document"}, {"Sec-Fetch-Dest": "empty"}):
            status, content, answer = await get(supervisor, url, headers)
            assert status == 200 and content == WEBM, headers
            assert answer["Content-Disposition"].startswith("attachment;")
        status, content, answer = await get(
            supervisor, url, {"Sec-Fetch-Dest": "video", "Range": "bytes=0-1023"}
        )
        assert status == 206 and content == WEBM[:1024]
    assert await refusals(server) == []


@pytest.mark.browser
async def test_chromium_plays_in_the_page_and_is_refused_the_url_on_its_own(
    browser: Any, start_server: ServerFactory
) -> None:
    """What the switch rests on: Chromium's player asks with ``video``; the same
    recording opened in a tab, or fetched by a script, is refused."""
    server = await start_server(recordings_play_only=True)
    file_id = await stored_recording(server)
    supervisor = await open_logged_in(browser, server, "supervisor", "supervisor")
    rows = supervisor.get_by_test_id("recordings").get_by_test_id("recording")
    await expect(rows).to_have_count(1)
    await rows.first.get_by_test_id("play-recording").click()
    for _ in range(100):
        if await server.storage.audit.entries(action="recording.play"):
            break
        await supervisor.wait_for_timeout(100)
    assert await server.storage.audit.entries(action="recording.play")
    assert await refusals(server) == []
    url = f"{server.url}/api/v1/files/{file_id}"
    fetched = await supervisor.evaluate(f"fetch({json.dumps(url)}).then(r => r.status)")
    tab = await supervisor.context.new_page()
    opened = await tab.goto(url)
    assert fetched == 403 and opened is not None and opened.status == 403
    destinations = [detail["destination"] for _, _, detail in await refusals(server)]
    assert destinations == ["empty", "document"]
