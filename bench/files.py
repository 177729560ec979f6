"""Document store benchmark: upload and download throughput of documents of the
sizes a hall really sees (10 MiB, and the 50 MiB maximum), through the product's
resumable API with encryption, on the local store and on an S3-compatible store
(moto's server, a process of its own), against two minimal aiohttp handlers in
the same run, each streaming the body to disk, fsyncing it and serving it back:

- the same-protocol reference: the product's upload protocol (create, parts with
  their SHA-256 checksum, which it verifies, finish), served back by sendfile:
  the yardstick of the targets;
- the bare reference: one PUT of the whole document written to disk as it
  arrives, no parts and no hashing: the floor of what aiohttp on this machine
  can do. Its download is not sendfile but what the product does short of
  decrypting: the file read in 1 MiB batches, each written through aiohttp's
  response (``download_ratio_to_bare`` is then the cost of the decryption).

    python bench/files.py --sizes-mib 10,50 --samples 5

The client's own work is kept out of the timed windows: the parts and their
checksums are prepared before the upload begins (the pages' part sizes on a
fast link: 1, 2, 4, then 8 MiB, the rule of web/static/js/files.js; a part slow
enough to change the rule is counted in ``off_schedule``), and a download is
compared with the document after it was timed. Each server's CPU (all its
threads, from /proc's schedstat) is read around every transfer and printed per
MiB moved. Every throughput is the median of ``--samples`` transfers; the
servers alternate, so they see the same machine. The product's peak RSS growth
over its idle size is reported. The data directories are removed at the end.
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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Part:
    offset: int
    size: int
    """The part size the rule chose (the last part may carry less)."""
    data: bytes
    headers: dict[str, str]


def plan(content: bytes) -> list[Part]:
    """The parts the pages send on a fast link, with their headers (and so their
    checksums) made before any clock starts."""
    parts, offset, size = [], 0, PART_MIN
    while offset < len(content):
        data = content[offset : offset + size]
        parts.append(Part(offset, size, data, part_headers(offset, data)))
        size = next_part_size(size, len(data), 0.0)
        offset += len(data)
    return parts


@dataclass
class Sample:
    """One transfer: seconds and the server's CPU seconds, each way."""

    upload: float
    download: float
    upload_cpu: float
    download_cpu: float
    off_schedule: int = 0


Transfer = Callable[[bytes, list[Part]], Awaitable[Sample]]


def emit(record: dict[str, Any]) -> None:
    measure.emit("files", record)


def server_cpu(pid: int) -> float:
    """CPU seconds of a server and every process below it, summed over all their
    threads at nanosecond resolution (/proc/<pid>/task/<tid>/schedstat: the clock
    ticks of /proc/<pid>/stat are 10 ms, as long as a small transfer)."""
    total = 0
    for process in measure.process_tree(pid):
        for schedstat in Path(f"/proc/{process}/task").glob("*/schedstat"):
            try:
                total += int(schedstat.read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    return total / 1e9


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

    async def bare(request: web.Request) -> web.Response:
        # The floor: the body to disk as it arrives and flushed, nothing else.
        upload_id = os.urandom(8).hex()
        with (directory / upload_id).open("wb") as out:
            async for data in request.content.iter_chunked(256 * 1024):
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return web.json_response({"url": f"/f/{upload_id}"}, status=201)

    async def get(request: web.Request) -> web.FileResponse:
        return web.FileResponse(directory / request.match_info["id"])

    async def streamed(request: web.Request) -> web.StreamResponse:
        # What the product does with a document's plaintext, without decrypting
        # it: 1 MiB batches read and written through aiohttp's response.
        path = directory / request.match_info["id"]
        response = web.StreamResponse(headers={"Content-Length": str(path.stat().st_size)})
        await response.prepare(request)
        with path.open("rb", buffering=0) as source:
            while batch := source.read(MiB):
                await response.write(batch)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=2 * PART_MAX)
    app.router.add_post("/uploads", create)
    app.router.add_patch("/u/{id}", patch)
    app.router.add_post("/u/{id}/finish", finish)
    app.router.add_put("/bare", bare)
    app.router.add_get("/f/{id}", get)
    app.router.add_get("/s/{id}", streamed)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ---- the client: the pages' upload protocol -----------------------------------------


async def download(
    http: aiohttp.ClientSession, url: str, content: bytes, pid: int
) -> tuple[float, float]:
    """Seconds and server CPU seconds to download ``content`` from ``url``; the
    bytes are compared once the clock has stopped."""
    pieces: list[bytes] = []
    cpu = server_cpu(pid)
    started = time.perf_counter()
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        async for piece in response.content.iter_chunked(MiB):
            pieces.append(piece)
    seconds = time.perf_counter() - started
    cpu = server_cpu(pid) - cpu
    assert b"".join(pieces) == content, "download differs"
    return seconds, cpu


async def transfer(
    base: str,
    create_url: str,
    content: bytes,
    parts: list[Part],
    upload_http: aiohttp.ClientSession,
    download_http: aiohttp.ClientSession,
    pid: int,
) -> Sample:
    """Upload ``content`` as the pages do (create, the planned parts, finish) and
    download it."""
    off_schedule = 0
    cpu = server_cpu(pid)
    started = time.perf_counter()
    async with upload_http.post(
        create_url, json={"name": "scan.pdf", "size": len(content)}
    ) as response:
        assert response.status == 201, await response.text()
        url = base + (await response.json())["url"]
    for number, part in enumerate(parts):
        sent_at = time.perf_counter()
        async with upload_http.patch(url, data=part.data, headers=part.headers) as r:
            assert r.status == 204, await r.text()
        if number + 1 < len(parts):
            wanted = next_part_size(part.size, len(part.data), time.perf_counter() - sent_at)
            off_schedule += wanted != parts[number + 1].size
    async with upload_http.post(f"{url}/finish") as response:
        assert response.status == 201, await response.text()
        file_url = base + (await response.json())["url"]
    upload_seconds = time.perf_counter() - started
    upload_cpu = server_cpu(pid) - cpu
    download_seconds, download_cpu = await download(download_http, file_url, content, pid)
    return Sample(upload_seconds, download_seconds, upload_cpu, download_cpu, off_schedule)


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
async def reference(directory: Path) -> AsyncIterator[tuple[Transfer, Transfer]]:
    """The same-protocol reference and the bare one (one server, both routes)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [sys.executable, __file__, "--reference-server", str(directory), "--port", str(port)]
    async with process(args, f"{base}/f/none") as server, aiohttp.ClientSession() as http:

        async def same_protocol(content: bytes, parts: list[Part]) -> Sample:
            return await transfer(base, f"{base}/uploads", content, parts, http, http, server.pid)

        async def bare(content: bytes, _parts: list[Part]) -> Sample:
            cpu = server_cpu(server.pid)
            started = time.perf_counter()
            async with http.put(f"{base}/bare", data=content) as response:
                assert response.status == 201, await response.text()
                url = base + (await response.json())["url"].replace("/f/", "/s/")
            seconds = time.perf_counter() - started
            cpu = server_cpu(server.pid) - cpu
            down, down_cpu = await download(http, url, content, server.pid)
            return Sample(seconds, down, cpu, down_cpu)

        yield same_protocol, bare


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

        async def run(content: bytes, parts: list[Part]) -> Sample:
            return await transfer(base, create, content, parts, up, down, server.pid)

        yield run, server


def document(size: int) -> bytes:
    """A scan-like PDF: incompressible bytes behind a PDF header."""
    return b"%PDF-1.7\n" + os.urandom(size - 16) + b"\n%%EOF\n"


def summary(runs: dict[str, list[Sample]], size: int) -> dict[str, Any]:
    """Medians of throughput, and server CPU per MiB over all samples, for each
    server; the product's ratios to both references."""
    mib = size / MiB
    figures: dict[str, Any] = {"samples": len(runs["product"])}
    for name, samples in runs.items():
        for way in ("upload", "download"):
            rate = statistics.median(mib / getattr(s, way) for s in samples)
            cpu = sum(getattr(s, f"{way}_cpu") for s in samples) / (mib * len(samples))
            figures[f"{name}_{way}_mib_s"] = round(rate, 1)
            figures[f"{name}_{way}_cpu_ms_per_mib"] = round(cpu * 1000, 2)
    for way in ("upload", "download"):
        mine = figures[f"product_{way}_mib_s"]
        figures[f"{way}_ratio"] = round(mine / figures[f"reference_{way}_mib_s"], 3)
        figures[f"{way}_ratio_to_bare"] = round(mine / figures[f"bare_{way}_mib_s"], 3)
        figures[f"{way}_cpu_ratio"] = round(
            figures[f"product_{way}_cpu_ms_per_mib"]
            / max(figures[f"reference_{way}_cpu_ms_per_mib"], 0.001),
            2,
        )
    figures["off_schedule"] = sum(s.off_schedule for s in runs["product"] + runs["reference"])
    return figures


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
            floor, bare = await stack.enter_async_context(reference(root / "reference"))
            for store in stores:
                run, server = await stack.enter_async_context(
                    product(root / store, environment[store], max(sizes) + MiB)
                )
                idle = rss(server.pid, "VmRSS:")
                for size in sizes:
                    content = document(size)
                    parts = plan(content)
                    runs: dict[str, list[Sample]] = {"product": [], "reference": [], "bare": []}
                    for _ in range(samples):
                        runs["bare"].append(await bare(content, parts))
                        runs["reference"].append(await floor(content, parts))
                        runs["product"].append(await run(content, parts))
                    emit({"store": store, "size_mib": round(size / MiB), **summary(runs, size)})
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
