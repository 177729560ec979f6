"""Retention: documents of consultations that ended more than N days ago are
crypto-shredded (key destroyed, then file deleted); the record stays."""

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select, update

from signaling.client import ExpertClient, KioskClient
from signaling.messages import OfferView
from storage.blobs import LocalBlobStore
from storage.filestore import FileStore
from storage.retention import DAY, is_due, retention_cutoff, shred_expired
from storage.schema import consultations, files
from tests.conftest import (
    ClientFactory,
    RunningServer,
    login_session,
    upload_file,
)
from web.app import create_app
from web.keys import FILES
from web.settings import Settings


def document_path(store: FileStore, file_id: str) -> Path:
    assert isinstance(store.blobs, LocalBlobStore)
    return store.blobs.path_of(file_id)


N = 30.0
NOW = 1_900_000_000.0


@pytest.mark.parametrize(
    ("state", "ended_days_ago", "days", "due"),
    [
        ("ended", N + 1, N, True),
        ("ended", N + 0.01, N, True),
        ("ended", N, N, False),  # "more than N days": exactly N is kept
        ("ended", N - 1, N, False),
        ("ended", 0, N, False),
        ("ended", 10 * 365, 0, False),  # 0 = keep forever
        ("ended", N + 1, 0.5, True),  # fractional periods work
        ("ended", None, N, False),  # no end time recorded: never guess
        ("active", None, N, False),
        ("waiting", None, N, False),
        ("offered", None, N, False),
        ("active", N + 1, N, False),  # only an ENDED consultation is due
    ],
)
def test_which_consultations_are_due(
    state: str, ended_days_ago: float | None, days: float, due: bool
) -> None:
    ended_at = None if ended_days_ago is None else NOW - ended_days_ago * DAY
    assert is_due(state, ended_at, NOW, days) is due


@pytest.mark.parametrize(
    ("days", "cutoff"), [(0, None), (-1, None), (1, NOW - DAY), (N, NOW - N * DAY)]
)
def test_retention_cutoff(days: float, cutoff: float | None) -> None:
    assert retention_cutoff(NOW, days) == cutoff


def pdf(seed: int) -> bytes:
    return b"%PDF-1.7\n" + os.urandom(40_000 + seed) + b"\n%%EOF\n"


async def call_with_document(
    server: RunningServer,
    kiosk: KioskClient,
    expert: ExpertClient,
    department: str,
    content: bytes,
    *,
    case_number: str | None = None,
) -> tuple[str, str]:
    """Take a consultation to active and upload one document; (consultation, file) ids."""
    view = await kiosk.request(department, case_number=case_number)
    offer = await expert.next_event("offer", OfferView)
    await expert.accept(offer.consultation_id)
    session = await login_session(server, kiosk.username)
    async with session:
        status, record = await upload_file(server, session, view.consultation_id, "a.pdf", content)
    assert status == 201, record
    return view.consultation_id, str(record["id"])


async def file_row(server: RunningServer, file_id: str) -> Any:
    return await server.storage.db.read(
        lambda conn: conn.execute(select(files).where(files.c.id == file_id)).one()
    )


async def set_ended_at(server: RunningServer, consultation_id: str, ended_at: float) -> None:
    """Place an ended consultation in the past (the fake clock's past)."""
    statement = (
        update(consultations).where(consultations.c.id == consultation_id).values(ended_at=ended_at)
    )
    await server.storage.db.write(lambda conn: conn.execute(statement))


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with session.get(url) as response:
        return response.status, await response.read(), response.content_type


async def test_documents_of_consultations_ended_more_than_n_days_ago_are_shredded(
    server: RunningServer, connect: ClientFactory
) -> None:
    store = server.app[FILES]
    kiosk: KioskClient = await connect(server, "kiosk01")
    other_kiosk: KioskClient = await connect(server, "kiosk02")
    expert: ExpertClient = await connect(server, "expert_market")
    housing: ExpertClient = await connect(server, "expert_housing")
    for desk in (expert, housing):
        await desk.set_presence("available")
    old_doc, recent_doc, open_doc = pdf(1), pdf(2), pdf(3)
    old_call, old_file = await call_with_document(
        server, kiosk, expert, "market", old_doc, case_number="RT-1"
    )
    await kiosk.end(old_call)
    # Its record done, the expert takes the next call (none is offered during a wrap-up).
    await expert.save_outcome(old_call, "answered")
    recent_call, recent_file = await call_with_document(server, kiosk, expert, "market", recent_doc)
    await kiosk.end(recent_call)
    _, open_file = await call_with_document(server, other_kiosk, housing, "housing", open_doc)
    await set_ended_at(server, old_call, NOW - (N + 1) * DAY)
    await set_ended_at(server, recent_call, NOW - (N - 1) * DAY)
    clerk = await login_session(server, "clerk")
    admin = await login_session(server, "admin")
    async with clerk, admin:
        async with clerk.post(
            f"{server.url}/api/v1/cases/RT-1/attachments",
            json={"file_id": old_file, "category": "application"},
        ) as response:
            assert response.status == 201

        assert await shred_expired(server.storage.db, store, days=N, now=NOW) == [old_file]

        # The key is gone from the row; the row (the record that it existed) stays.
        row = await file_row(server, old_file)
        assert (row.wrapped_key, row.kek_id, row.shredded_at) == ("", "", NOW)
        assert (row.name, row.size, row.consultation_id) == ("a.pdf", len(old_doc), old_call)
        assert row.digest and row.uploader_id
        assert not document_path(store, old_file).exists()
        for kept in (recent_file, open_file):
            assert (await file_row(server, kept)).shredded_at is None
            assert document_path(store, kept).exists()

        # Still listed (in the consultation and on the case record); downloads are gone.
        url = f"{server.url}/api/v1/consultations/{old_call}/files"
        async with clerk.get(url) as response:
            assert [f["id"] for f in (await response.json())["files"]] == [old_file]
        async with clerk.get(f"{server.url}/api/v1/cases/RT-1/attachments") as response:
            assert [a["file"]["id"] for a in (await response.json())["attachments"]] == [old_file]
        async with clerk.get(f"{server.url}/api/v1/files/{old_file}") as response:
            assert response.status == 410
            assert (await response.json())["error"]["code"] == "shredded"
        # Every answer about a shredded document says so the same way (it was 409
        # conflict when attaching, and for a key found destroyed while reading).
        async with clerk.post(
            f"{server.url}/api/v1/cases/RT-1/attachments",
            json={"file_id": old_file, "category": "reply"},
        ) as response:
            assert response.status == 410
            assert (await response.json())["error"]["code"] == "shredded"
        assert await fetch(clerk, f"{server.url}/api/v1/files/{recent_file}") == (
            200,
            recent_doc,
            "application/pdf",
        )

        # One audit entry per document, by the system; the chain still holds.
        async with admin.get(f"{server.url}/api/v1/audit?action=file.shred") as response:
            entries = (await response.json())["entries"]
        assert [(e["actor"], e["subject"]) for e in entries] == [("system", old_file)]
        assert entries[0]["detail"]["consultation"] == old_call
        await server.storage.audit.verify()

        # Idempotent; much later, the recent one is due, the open one never.
        assert await shred_expired(server.storage.db, store, days=N, now=NOW) == []
        later = NOW + 10 * 365 * DAY
        assert await shred_expired(server.storage.db, store, days=N, now=later) == [recent_file]
        assert (await file_row(server, open_file)).shredded_at is None
        assert document_path(store, open_file).exists()
        async with admin.get(f"{server.url}/api/v1/audit?action=file.shred") as response:
            assert len((await response.json())["entries"]) == 2
        await server.storage.audit.verify()


async def test_zero_days_keeps_everything_forever(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk: KioskClient = await connect(server, "kiosk01")
    expert: ExpertClient = await connect(server, "expert_market")
    await expert.set_presence("available")
    call, file_id = await call_with_document(server, kiosk, expert, "market", pdf(4))
    await kiosk.end(call)
    await set_ended_at(server, call, NOW - 1000 * DAY)
    for now in (NOW, NOW + 100 * 365 * DAY):
        assert await shred_expired(server.storage.db, server.app[FILES], days=0, now=now) == []
    assert (await file_row(server, file_id)).shredded_at is None
    assert document_path(server.app[FILES], file_id).exists()


@pytest.fixture
async def app_runners() -> AsyncIterator[list[web.AppRunner]]:
    runners: list[web.AppRunner] = []
    yield runners
    for runner in reversed(runners):
        await runner.cleanup()


async def serve(settings: Settings, runners: list[web.AppRunner]) -> RunningServer:
    """The app on 127.0.0.1 (stopped by the fixture, or earlier with ``stop``)."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return RunningServer(f"http://127.0.0.1:{runner.addresses[0][1]}", app, settings)


async def stop(server: RunningServer, runners: list[web.AppRunner]) -> None:
    runner = next(r for r in runners if r.app is server.app)
    runners.remove(runner)
    await runner.cleanup()


async def test_the_server_sweeps_at_start_when_retention_is_set(
    connect: ClientFactory, app_runners: list[web.AppRunner], tmp_path: Path
) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "served",
        demo=True,
        media_workers=0,
        media_address=("127.0.0.1",),
    )
    first = await serve(settings, app_runners)
    kiosk: KioskClient = await connect(first, "kiosk01")
    expert: ExpertClient = await connect(first, "expert_market")
    await expert.set_presence("available")
    call, file_id = await call_with_document(first, kiosk, expert, "market", pdf(5))
    await kiosk.end(call)
    # Ended longer ago (by the real clock) than the period the next start is given.
    await set_ended_at(first, call, time.time() - 3 * DAY)
    await kiosk.close()
    await expert.close()
    await stop(first, app_runners)

    second = await serve(dataclasses.replace(settings, retention_days=2), app_runners)
    path = document_path(second.app[FILES], file_id)
    for _ in range(200):
        row = await file_row(second, file_id)
        if row.shredded_at is not None and not path.exists():
            break
        await asyncio.sleep(0.05)
    assert row.shredded_at is not None and row.wrapped_key == ""
    assert not path.exists()
    await second.storage.audit.verify()
