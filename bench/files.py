"""Document store benchmark: upload and download throughput of a large file
through the API with encryption, against the same resumable-upload handling
writing plaintext to disk; the server's peak memory for a small and a large
file; and SM4-GCM throughput.

    python bench/files.py --size-mib 1024 --small-mib 10 --sm4-mib 256
"""

import argparse
import asyncio
import base64
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench import measure  # noqa: E402
from bench.measure import free_port, wait_for_http  # noqa: E402
from signaling.client import ExpertClient, KioskClient  # noqa: E402
from signaling.messages import OfferView  # noqa: E402

MiB = 1024 * 1024
PART = 8 * MiB


def emit(record: dict[str, Any]) -> None:
    measure.emit("files", record)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# ---- the plaintext baseline: the same protocol, no encryption ---------------------


def plaintext_server(directory: Path, port: int) -> None:
    """PATCH parts with checksums into a plaintext file, GET streams it back."""
    uploads: dict[str, Any] = {}

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        upload_id = os.urandom(8).hex()
        uploads[upload_id] = {
            "handle": (directory / upload_id).open("wb"),
            "offset": 0,
            "size": body["size"],
        }
        return web.json_response({"url": f"/u/{upload_id}"}, status=201)

    async def patch(request: web.Request) -> web.Response:
        upload = uploads[request.match_info["id"]]
        expected = base64.b64decode(request.headers["Upload-Checksum"].split(" ", 1)[1])
        checksum = hashlib.sha256()
        start = upload["handle"].tell()
        async for data in request.content.iter_chunked(64 * 1024):
            checksum.update(data)
            upload["handle"].write(data)
        if checksum.digest() != expected:
            upload["handle"].seek(start)
            upload["handle"].truncate()
            return web.json_response({"error": "checksum"}, status=400)
        upload["offset"] = upload["handle"].tell()
        return web.Response(status=204, headers={"Upload-Offset": str(upload["offset"])})

    async def finish(request: web.Request) -> web.Response:
        upload = uploads[request.match_info["id"]]
        upload["handle"].flush()
        os.fsync(upload["handle"].fileno())
        upload["handle"].close()
        return web.json_response({"url": f"/f/{request.match_info['id']}"}, status=201)

    async def get(request: web.Request) -> web.StreamResponse:
        path = directory / request.match_info["id"]
        response = web.StreamResponse(headers={"Content-Length": str(path.stat().st_size)})
        await response.prepare(request)
        with path.open("rb") as source:
            while chunk := source.read(64 * 1024):
                await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/uploads", create)
    app.router.add_patch("/u/{id}", patch)
    app.router.add_post("/u/{id}/finish", finish)
    app.router.add_get("/f/{id}", get)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ---- a client that uploads and downloads ------------------------------------------


def part_headers(offset: int, part: bytes) -> dict[str, str]:
    digest = base64.b64encode(hashlib.sha256(part).digest()).decode()
    return {
        "Upload-Offset": str(offset),
        "Upload-Checksum": f"sha256 {digest}",
        "Content-Type": "application/offset+octet-stream",
    }


async def transfer(
    base: str,
    create_url: str,
    size: int,
    upload_http: aiohttp.ClientSession,
    download_http: aiohttp.ClientSession,
) -> tuple[float, float]:
    """Seconds to upload and to download ``size`` bytes."""
    block = b"%PDF-1.7\n" + os.urandom(PART - 9)
    started = time.perf_counter()
    async with upload_http.post(create_url, json={"name": "big.pdf", "size": size}) as response:
        url = base + (await response.json())["url"]
    for offset in range(0, size, PART):
        part = block[: min(PART, size - offset)]
        async with upload_http.patch(
            url, data=io.BytesIO(part), headers=part_headers(offset, part)
        ) as r:
            assert r.status == 204, await r.text()
    async with upload_http.post(f"{url}/finish") as response:
        file_url = base + (await response.json())["url"]
    upload_seconds = time.perf_counter() - started
    started = time.perf_counter()
    received = 0
    async with download_http.get(file_url) as response:
        async for piece in response.content.iter_chunked(MiB):
            received += len(piece)
    assert received == size, (received, size)
    return upload_seconds, time.perf_counter() - started


async def encrypted_run(size: int, suite: str) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="wl-files-"))
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "server.py",
            "--demo",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--media-workers",
            "0",
            "--max-file-size",
            str(size + MiB),
            "--crypto-suite",
            suite,
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_for_http(f"{base}/healthz")
        idle_rss = peak_rss(server.pid)
        expert = ExpertClient(base)
        await expert.login("expert_market", "demo1234")
        await expert.connect()
        await expert.set_presence("available")
        kiosk = KioskClient(base)
        await kiosk.login("kiosk01", "demo1234")
        await kiosk.connect()
        view = await kiosk.request("market")
        await expert.accept((await expert.next_event("offer", OfferView)).consultation_id)
        async with (
            aiohttp.ClientSession(headers={"Cookie": f"wl_session={kiosk.session_cookie}"}) as up,
            aiohttp.ClientSession(
                headers={"Cookie": f"wl_session={expert.session_cookie}"}
            ) as down,
        ):
            up_s, down_s = await transfer(
                base, f"{base}/api/v1/consultations/{view.consultation_id}/uploads", size, up, down
            )
        await kiosk.close()
        await expert.close()
        return {
            "upload_s": up_s,
            "download_s": down_s,
            "peak_rss": peak_rss(server.pid),
            "idle_rss": idle_rss,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


async def plaintext_run(size: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="wl-plain-"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--plaintext-server", str(directory), "--port", str(port)],
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_for_http(f"{base}/f/none")
        async with aiohttp.ClientSession() as http:
            up_s, down_s = await transfer(base, f"{base}/uploads", size, http, http)
        return {"upload_s": up_s, "download_s": down_s, "peak_rss": peak_rss(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--small-mib", type=int, default=10)
    parser.add_argument("--sm4-mib", type=int, default=256)
    parser.add_argument("--plaintext-server", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plaintext_server:
        plaintext_server(Path(args.plaintext_server), args.port)
        return
    size = args.size_mib * MiB
    plain = asyncio.run(plaintext_run(size))
    encrypted = asyncio.run(encrypted_run(size, "aes-256-gcm"))
    small = asyncio.run(encrypted_run(args.small_mib * MiB, "aes-256-gcm"))
    for name, run in (("plaintext", plain), ("aes-256-gcm", encrypted)):
        emit(
            {
                "mode": name,
                "size_mib": args.size_mib,
                "upload_mib_s": round(args.size_mib / run["upload_s"], 1),
                "download_mib_s": round(args.size_mib / run["download_s"], 1),
            }
        )
    emit(
        {
            "mode": "ratio",
            "size_mib": args.size_mib,
            "upload_encrypted_per_plaintext": round(plain["upload_s"] / encrypted["upload_s"], 3),
            "download_encrypted_per_plaintext": round(
                plain["download_s"] / encrypted["download_s"], 3
            ),
        }
    )
    emit(
        {
            "mode": "memory",
            "small_mib": args.small_mib,
            "large_mib": args.size_mib,
            "peak_rss_small_mib": round(small["peak_rss"] / MiB, 1),
            "peak_rss_large_mib": round(encrypted["peak_rss"] / MiB, 1),
            "growth_mib": round((encrypted["peak_rss"] - small["peak_rss"]) / MiB, 1),
        }
    )
    if args.sm4_mib:
        sm4 = asyncio.run(encrypted_run(args.sm4_mib * MiB, "sm4-gcm"))
        emit(
            {
                "mode": "sm4-gcm",
                "size_mib": args.sm4_mib,
                "upload_mib_s": round(args.sm4_mib / sm4["upload_s"], 1),
                "download_mib_s": round(args.sm4_mib / sm4["download_s"], 1),
            }
        )


if __name__ == "__main__":
    main()
