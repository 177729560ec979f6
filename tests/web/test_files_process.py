"""Documents against a real server process: a 200 MiB upload and download with
the server's memory watched, and a kill -9 in the middle of an upload."""

import asyncio
import hashlib
import io
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from harness.ports import free_port
from signaling.client import ExpertClient, KioskClient, part_headers
from signaling.messages import OfferView

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def start(data_dir: Path, port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        "--demo",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--media-workers",
        "0",
        "--max-file-size",
        str(300 * MiB),
        "--log-level",
        "warning",
        cwd=ROOT,
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError("server did not start")


async def open_call(url: str) -> tuple[KioskClient, ExpertClient, str]:
    expert = ExpertClient(url)
    await expert.login("expert_market", "demo1234")
    await expert.connect()
    await expert.set_presence("available")
    kiosk = KioskClient(url)
    await kiosk.login("kiosk01", "demo1234")
    await kiosk.connect()
    view = await kiosk.request("market")
    await expert.accept((await expert.next_event("offer", OfferView)).consultation_id)
    return kiosk, expert, view.consultation_id


async def session_of(client: KioskClient | ExpertClient) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Cookie": f"wl_session={client.session_cookie}"})


def pseudo_random(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return b"%PDF-1.7\n" + (block * (size // len(block) + 1))[: size - 9]


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    process = await start(tmp_path / "data", port)
    yield f"http://127.0.0.1:{port}", process
    if process.returncode is None:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_200_mib_round_trip_keeps_the_servers_memory_flat(
    server_process: tuple[str, asyncio.subprocess.Process],
) -> None:
    url, process = server_process
    kiosk, expert, call_id = await open_call(url)
    size = 200 * MiB
    part_size = 8 * MiB
    content_digest = hashlib.sha256()
    samples = [rss_bytes(process.pid)]
    try:
        async with await session_of(kiosk) as http:
            async with http.post(
                f"{url}/api/v1/consultations/{call_id}/uploads",
                json={"name": "big.pdf", "size": size},
            ) as response:
                upload = url + (await response.json())["url"]
            block = pseudo_random(part_size, 1)
            for offset in range(0, size, part_size):
                part = block
                content_digest.update(part)
                async with http.patch(
                    upload, data=io.BytesIO(part), headers=part_headers(offset, part)
                ) as response:
                    assert response.status == 204, await response.text()
                samples.append(rss_bytes(process.pid))
            async with http.post(f"{upload}/finish") as response:
                record = await response.json()
                assert response.status == 201, record
        assert record["digest"] == content_digest.hexdigest()
        async with await session_of(expert) as http, http.get(url + record["url"]) as response:
            received = hashlib.sha256()
            count = 0
            async for piece in response.content.iter_chunked(MiB):
                received.update(piece)
                count += len(piece)
                if count % (16 * MiB) < MiB:
                    samples.append(rss_bytes(process.pid))
        assert count == size and received.hexdigest() == content_digest.hexdigest()
    finally:
        await kiosk.close()
        await expert.close()
    growth = max(samples) - samples[0]
    # Streaming: the server never holds the file; a few parts' worth at most.
    assert growth < 64 * MiB, [s // MiB for s in samples]


async def test_kill_9_mid_upload_leaves_nothing_listed_and_no_leftovers(tmp_path: Path) -> None:
    started: list[asyncio.subprocess.Process] = []
    try:
        await kill_9_mid_upload(tmp_path, started)
    finally:
        # Whatever failed, no server outlives the test.
        for process in started:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def kill_9_mid_upload(tmp_path: Path, started: list[asyncio.subprocess.Process]) -> None:
    port = free_port()
    data = tmp_path / "data"
    process = await start(data, port)
    started.append(process)
    url = f"http://127.0.0.1:{port}"
    kiosk, expert, call_id = await open_call(url)
    try:
        async with await session_of(kiosk) as http:
            async with http.post(
                f"{url}/api/v1/consultations/{call_id}/uploads",
                json={"name": "half.pdf", "size": 4 * MiB},
            ) as response:
                upload = url + (await response.json())["url"]
            part = pseudo_random(2 * MiB, 2)
            async with http.patch(
                upload, data=io.BytesIO(part), headers=part_headers(0, part)
            ) as response:
                assert response.status == 204
        # The verified part is kept as a segment beside the documents.
        assert list((data / "files").glob("*.wlp"))
    finally:
        await kiosk.close()
        await expert.close()
    process.send_signal(signal.SIGKILL)
    await process.wait()
    process = await start(data, port)
    started.append(process)
    try:
        assert not any((data / "tmp").iterdir())
        assert not any((data / "files").glob("*.wl[fp]"))
        clerk = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with clerk:
            async with clerk.post(
                f"{url}/api/v1/login", json={"username": "clerk", "password": "demo1234"}
            ) as r:
                assert r.status == 200
            async with clerk.get(f"{url}/api/v1/consultations/{call_id}/files") as r:
                assert (await r.json())["files"] == []
            # The interrupted consultation was closed as dropped at the restart.
            async with clerk.get(f"{url}/api/v1/consultations/{call_id}") as r:
                assert (await r.json())["end_reason"] == "dropped"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
    assert os.path.isdir(data / "keys")
