"""Document store benchmark: upload and download throughput of documents of the
sizes a hall really sees (10 MiB, and the 50 MiB maximum), through the product's
resumable API with encryption, on the local store and on an S3-compatible store
(moto's server, a process of its own), against a minimal aiohttp handler in the
same run that streams the body to disk and fsyncs it, and serves it back by
sendfile: the floor of what aiohttp on this machine can do.

    python bench/files.py --sizes-mib 10,50 --samples 5

Every figure is the median of ``--samples`` transfers; the product and the
reference alternate, so both see the same machine. Parts are 1 MiB, as the pages
send them. The product's peak RSS growth over its idle size is reported. The
data directories are removed at the end.
"""

import argparse
import asyncio
import base64
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench import measure  # noqa: E402
from bench.measure import wait_for_http  # noqa: E402
from harness.ports import free_port  # noqa: E402
from signaling.client import ExpertClient, KioskClient, part_headers  # noqa: E402
from signaling.messages import OfferView  # noqa: E402

MiB = 1024 * 1024
PART_MIN, PART_MAX, PART_SECONDS = MiB, 8 * MiB, 2.0


def next_part_size(current: int, sent: int, seconds: float) -> int:
    """The pages' rule (nextPartSize in web/static/js/files.js): parts double up to
    8 MiB while each takes under two seconds."""
    fits = sent / max(seconds, 0.001) * PART_SECONDS
    return max(PART_MIN, min(2 * current, PART_MAX, int(fits // PART_MIN) * PART_MIN))


Transfer = Callable[[bytes], Awaitable[tuple[float, float]]]


def emit(record: dict[str, Any]) -> None:
    measure.emit("files", record)


def rss(pid: int, field: str = "VmHWM:") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


# ---- the reference: stream to disk + fsync, GET by sendfile ------------------------


def reference_server(directory: Path, port: int) -> None:
    async def create(request: web.Request) -> web.Response:
        upload_id = os.urandom(8).hex()
        (directory / upload_id).touch()
        return web.json_response({"url": f"/u/{upload_id}"}, status=201)

    async def patch(request: web.Request) -> web.Response:
        path = directory / request.match_info["id"]
        expected = base64.b64decode(request.headers["Upload-Checksum"].split(" ", 1)[1])
        checksum = hashlib.sha256()
        with path.open("ab") as out:
            async for data in request.content.iter_chunked(256 * 1024):
                checksum.update(data)
                out.write(data)
            offset = out.tell()
        if checksum.digest() != expected:
            return web.json_response({"error": "checksum"}, status=400)
        return web.Response(status=204, headers={"Upload-Offset": str(offset)})

    async def finish(request: web.Request) -> web.Response:
        path = directory / request.match_info["id"]
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
        return web.json_response({"url": f"/f/{request.match_info['id']}"}, status=201)

    async def get(request: web.Request) -> web.FileResponse:
        return web.FileResponse(directory / request.match_info["id"])

    app = web.Application(client_max_size=2 * PART_MAX)
    app.router.add_post("/uploads", create)
    app.router.add_patch("/u/{id}", patch)
    app.router.add_post("/u/{id}/finish", finish)
    app.router.add_get("/f/{id}", get)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ---- the client: the pages' upload protocol -----------------------------------------


async def transfer(
    base: str,
    create_url: str,
    content: bytes,
    upload_http: aiohttp.ClientSession,
    download_http: aiohttp.ClientSession,
) -> tuple[float, float]:
    """Seconds to upload (create, 1 MiB parts, finish) and to download ``content``."""
    started = time.perf_counter()
    async with upload_http.post(
        create_url, json={"name": "scan.pdf", "size": len(content)}
    ) as response:
        assert response.status == 201, await response.text()
        url = base + (await response.json())["url"]
    offset, part_size = 0, PART_MIN
    while offset < len(content):
        part = content[offset : offset + part_size]
        sent_at = time.perf_counter()
        async with upload_http.patch(url, data=part, headers=part_headers(offset, part)) as r:
            assert r.status == 204, await r.text()
        part_size = next_part_size(part_size, len(part), time.perf_counter() - sent_at)
        offset += len(part)
    async with upload_http.post(f"{url}/finish") as response:
        assert response.status == 201, await response.text()
        file_url = base + (await response.json())["url"]
    upload_seconds = time.perf_counter() - started
    started = time.perf_counter()
    digest = hashlib.sha256()
    async with download_http.get(file_url) as response:
        async for piece in response.content.iter_chunked(MiB):
            digest.update(piece)
    assert digest.digest() == hashlib.sha256(content).digest(), "download differs"
    return upload_seconds, time.perf_counter() - started


@asynccontextmanager
async def process(args: list[str], health: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    server = subprocess.Popen(args, cwd=ROOT)
    try:
        await wait_for_http(health)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@asynccontextmanager
async def reference(directory: Path) -> AsyncIterator[Transfer]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [sys.executable, __file__, "--reference-server", str(directory), "--port", str(port)]
    async with process(args, f"{base}/f/none"), aiohttp.ClientSession() as http:

        async def run(content: bytes) -> tuple[float, float]:
            return await transfer(base, f"{base}/uploads", content, http, http)

        yield run


@asynccontextmanager
async def product(
    directory: Path, extra: list[str], max_size: int
) -> AsyncIterator[tuple[Transfer, subprocess.Popen[bytes]]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        sys.executable,
        "server.py",
        "--demo",
        "--data-dir",
        str(directory),
        "--port",
        str(port),
        "--media-workers",
        "0",
        "--max-file-size",
        str(max_size),
        "--log-level",
        "warning",
        *extra,
    ]
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(process(args, f"{base}/healthz"))
        expert = ExpertClient(base)
        await expert.login("expert_market", "demo1234")
        await expert.connect()
        await expert.set_presence("available")
        kiosk = KioskClient(base)
        await kiosk.login("kiosk01", "demo1234")
        await kiosk.connect()
        stack.push_async_callback(kiosk.close)
        stack.push_async_callback(expert.close)
        view = await kiosk.request("market")
        await expert.accept((await expert.next_event("offer", OfferView)).consultation_id)
        up = await stack.enter_async_context(
            aiohttp.ClientSession(headers={"Cookie": f"wl_session={kiosk.session_cookie}"})
        )
        down = await stack.enter_async_context(
            aiohttp.ClientSession(headers={"Cookie": f"wl_session={expert.session_cookie}"})
        )
        create = f"{base}/api/v1/consultations/{view.consultation_id}/uploads"

        async def run(content: bytes) -> tuple[float, float]:
            return await transfer(base, create, content, up, down)

        yield run, server


def document(size: int) -> bytes:
    """A scan-like PDF: incompressible bytes behind a PDF header."""
    return b"%PDF-1.7\n" + os.urandom(size - 16) + b"\n%%EOF\n"


async def bench(sizes: list[int], samples: int, stores: list[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="wl-bench-files-"))
    try:
        async with AsyncExitStack() as stack:
            environment: dict[str, list[str]] = {"local": []}
            if "s3" in stores:
                from harness.object_store import running_object_store

                objects = stack.enter_context(running_object_store())
                bucket = objects.new_bucket()
                environment["s3"] = [
                    "--blob-url",
                    f"s3://{bucket}/bench",
                    "--s3-endpoint",
                    objects.endpoint,
                ]
            (root / "reference").mkdir()
            floor = await stack.enter_async_context(reference(root / "reference"))
            for store in stores:
                run, server = await stack.enter_async_context(
                    product(root / store, environment[store], max(sizes) + MiB)
                )
                idle = rss(server.pid, "VmRSS:")
                for size in sizes:
                    content = document(size)
                    mine: list[tuple[float, float]] = []
                    theirs: list[tuple[float, float]] = []
                    for _ in range(samples):
                        theirs.append(await floor(content))
                        mine.append(await run(content))
                    mib = size / MiB
                    up = statistics.median(mib / s[0] for s in mine)
                    down = statistics.median(mib / s[1] for s in mine)
                    ref_up = statistics.median(mib / s[0] for s in theirs)
                    ref_down = statistics.median(mib / s[1] for s in theirs)
                    emit(
                        {
                            "store": store,
                            "size_mib": round(mib),
                            "samples": samples,
                            "upload_mib_s": round(up, 1),
                            "download_mib_s": round(down, 1),
                            "reference_upload_mib_s": round(ref_up, 1),
                            "reference_download_mib_s": round(ref_down, 1),
                            "upload_ratio": round(up / ref_up, 3),
                            "download_ratio": round(down / ref_down, 3),
                        }
                    )
                emit(
                    {
                        "store": store,
                        "memory": True,
                        "idle_rss_mib": round(idle / MiB, 1),
                        "peak_rss_mib": round(rss(server.pid) / MiB, 1),
                        "growth_mib": round((rss(server.pid) - idle) / MiB, 1),
                    }
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mib", default="10,50")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--stores", default="local,s3", help="local, s3 (moto)")
    parser.add_argument("--reference-server", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_server:
        reference_server(Path(args.reference_server), args.port)
        return
    sizes = [int(s) * MiB for s in args.sizes_mib.split(",")]
    asyncio.run(bench(sizes, args.samples, args.stores.split(",")))


if __name__ == "__main__":
    main()
