"""Unfinished uploads cannot take the server down: capped per account and in bytes,
no file held open between parts, gone with their call, gone when idle, and a
body that crawls is cut off."""

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select, update

from signaling.client import part_headers
from storage.demo import DEMO_PASSWORD
from storage.passwords import hash_password
from storage.records import Role
from storage.schema import uploads
from storage.uploads import Held, UploadLimits, part_refusal
from tests.conftest import (
    ClientFactory,
    ServerFactory,
    active_call,
    login_session,
    upload_file,
)
from web import errors, files_api
from web.body_pacing import BodyTooSlow, Pace, paced
from web.keys import FILES

PDF_HEAD = b"%PDF-1.7\n"


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


async def send_part(
    http: aiohttp.ClientSession, url: str, offset: int, part: bytes
) -> tuple[int, dict[str, object]]:
    async with http.patch(url, data=part, headers=part_headers(offset, part)) as response:
        return response.status, (await response.json() if response.status != 204 else {})


async def refused_part(
    http: aiohttp.ClientSession, url: str, offset: int, part: bytes
) -> tuple[int, str, str | None]:
    """A part's refusal: status, error code and Retry-After."""
    async with http.patch(url, data=part, headers=part_headers(offset, part)) as response:
        body = await response.json()
        return response.status, body["error"]["code"], response.headers.get("Retry-After")


@pytest.mark.parametrize(
    ("held", "incoming", "declared", "code"),
    [
        (Held(0, 0, 0), 50, 50, None),
        # All unfinished uploads together.
        (Held(950, 0, 0), 50, 50, None),
        (Held(951, 0, 0), 50, 50, "uploads_busy"),
        # One account: beyond its limit, unless this upload is all it holds.
        (Held(300, 150, 150), 50, 100, None),
        (Held(300, 151, 151), 50, 100, "account_upload_limit"),
        (Held(300, 0, 0), 300, 300, None),
        (Held(300, 10, 10), 300, 300, "account_upload_limit"),
        # One call: both participants' uploads.
        (Held(300, 100, 250), 50, 100, None),
        (Held(300, 100, 251), 50, 100, "call_upload_limit"),
    ],
)
def test_which_parts_the_upload_limits_refuse(
    held: Held, incoming: int, declared: int, code: str | None
) -> None:
    limits = UploadLimits(pending_bytes=1000, per_account_bytes=200, per_call_bytes=300)
    refused = part_refusal(limits, held, incoming, declared)
    assert (refused.code if refused else None) == code


async def test_all_unfinished_uploads_together_are_capped_in_bytes_received(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(max_pending_upload_bytes=300_000)
    _kiosk, _expert, call_id = await active_call(server, connect)
    kiosk = await login_session(server, "kiosk01")
    expert = await login_session(server, "expert_market")
    async with kiosk, expert:
        # Declaring holds nothing: both may begin more than the whole pool.
        status, first = await begin(kiosk, server.url, call_id, 250_000)
        assert status == 201
        status, second = await begin(expert, server.url, call_id, 250_000)
        assert status == 201
        part = PDF_HEAD + os.urandom(200_000 - len(PDF_HEAD))
        assert (await send_part(kiosk, server.url + str(first["url"]), 0, part))[0] == 204
        # 200,000 received + 150,000 arriving > 300,000: refused before it is read.
        # Room comes back as other uploads finish or expire: worth retrying, and said so.
        assert await refused_part(expert, server.url + str(second["url"]), 0, part[:150_000]) == (
            503,
            "uploads_busy",
            str(errors.UPLOAD_ROOM_RETRY_AFTER),
        )
        assert (await send_part(expert, server.url + str(second["url"]), 0, part[:100_000]))[
            0
        ] == 204
        # The pool is full: nothing new begins until it drains.
        async with expert.post(
            f"{server.url}/api/v1/consultations/{call_id}/uploads",
            json={"name": "c.pdf", "size": 1000},
        ) as response:
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "uploads_busy"
            assert response.headers["Retry-After"] == str(errors.UPLOAD_ROOM_RETRY_AFTER)


async def test_one_account_and_one_call_are_capped_in_bytes_received(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(
        max_file_size=100_000,
        max_upload_bytes_per_account=150_000,
        max_upload_bytes_per_call=240_000,
    )
    _kiosk, _expert, call_id = await active_call(server, connect)
    kiosk = await login_session(server, "kiosk01")
    expert = await login_session(server, "expert_market")
    part = PDF_HEAD + os.urandom(100_000 - len(PDF_HEAD))
    async with kiosk, expert:
        urls = []
        for http, name in ((kiosk, "k1.pdf"), (kiosk, "k2.pdf"), (expert, "e1.pdf")):
            status, body = await begin(http, server.url, call_id, 100_000, name)
            assert status == 201
            urls.append(server.url + str(body["url"]))
        assert (await send_part(kiosk, urls[0], 0, part))[0] == 204
        # The kiosk holds 100,000: 100,000 more would pass its 150,000.
        assert await refused_part(kiosk, urls[1], 0, part) == (
            429,
            "account_upload_limit",
            str(errors.UPLOAD_ROOM_RETRY_AFTER),
        )
        assert (await send_part(kiosk, urls[1], 0, part[:50_000]))[0] == 204
        # The call holds 150,000: the expert's 100,000 would pass its 240,000.
        assert await refused_part(expert, urls[2], 0, part) == (
            429,
            "call_upload_limit",
            str(errors.UPLOAD_ROOM_RETRY_AFTER),
        )
        # Finishing one frees its bytes.
        async with kiosk.post(f"{urls[0]}/finish") as response:
            assert response.status == 201
        assert (await send_part(expert, urls[2], 0, part))[0] == 204


async def test_kiosks_declaring_big_uploads_and_sending_nothing_block_no_other_call(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    """The attack of issue 19: six kiosks declaring 4 x 50 MiB each held the whole
    1 GiB pool (declared bytes), and every other call's upload answered 503
    uploads_busy. Default limits; declared sizes hold nothing now, and uploads that
    never send a byte go after the first-byte timeout."""
    server = await start_server()
    encoded = await asyncio.to_thread(hash_password, DEMO_PASSWORD)
    for n in range(1, 8):
        for name, role, extra in (
            (f"kiosk_attack{n}", Role.KIOSK, {"hall": "city"}),
            (f"expert_attack{n}", Role.EXPERT, {"department": "market"}),
        ):
            await server.storage.accounts.create(
                name, DEMO_PASSWORD, role, password_hash=encoded, **extra
            )
    calls = [
        (await active_call(server, connect, kiosk=f"kiosk_attack{n}", expert=f"expert_attack{n}"))[
            2
        ]
        for n in range(1, 8)
    ]
    sessions = [await login_session(server, f"kiosk_attack{n}") for n in range(1, 8)]
    try:
        for http, call_id in zip(sessions[:6], calls[:6], strict=True):
            for i in range(4):
                status, _ = await begin(http, server.url, call_id, 50 * 1024 * 1024, f"{i}.pdf")
                assert status == 201
        content = PDF_HEAD + os.urandom(300_000)
        status, body = await upload_file(server, sessions[6], calls[6], "申请书.pdf", content)
        assert status == 201, body
        assert body["digest"] == hashlib.sha256(content).hexdigest()
        # Nothing of theirs ever began: gone after the first-byte timeout.
        store = server.app[FILES]
        later = time.time() + server.settings.upload_first_byte_timeout + 1
        assert await store.discard_idle(later) == 24
        assert await store.unfinished() == (0, 0)
    finally:
        for http in sessions:
            await http.close()


async def test_only_uploads_whose_first_part_never_began_go_after_the_first_byte_timeout(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(upload_first_byte_timeout=5.0)
    _kiosk, _expert, call_id = await active_call(server, connect)
    http = await login_session(server, "kiosk01")
    store = server.app[FILES]
    async with http:
        urls = []
        for name in ("never.pdf", "slow.pdf", "sent.pdf"):
            status, body = await begin(http, server.url, call_id, 100_000, name)
            assert status == 201
            urls.append(server.url + str(body["url"]))
        part = PDF_HEAD + os.urandom(1000)
        assert (await send_part(http, urls[2], 0, part))[0] == 204
        # A first part that has begun and not yet arrived whole: the upload started.
        arriving = asyncio.Event()

        async def stalls() -> AsyncIterator[bytes]:
            yield part[:500]
            arriving.set()
            await asyncio.Event().wait()

        slow = asyncio.create_task(
            http.patch(urls[1], data=stalls(), headers=part_headers(0, part))
        )
        try:
            await asyncio.wait_for(arriving.wait(), 20)
            for _ in range(100):
                rows = await server.storage.db.read(
                    lambda conn: conn.execute(
                        select(uploads.c.name).where(
                            uploads.c.last_activity != uploads.c.created_at
                        )
                    ).all()
                )
                if {r.name for r in rows} == {"slow.pdf", "sent.pdf"}:
                    break
                await asyncio.sleep(0.05)
            assert await store.discard_idle(time.time() + 6) == 1
            async with http.head(urls[0]) as response:
                assert response.status == 404
            for url in urls[1:]:
                async with http.head(url) as response:
                    assert response.status == 200
        finally:
            slow.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await slow


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
