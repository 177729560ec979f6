"""Pages benchmark: how fast the pages are ready in headless Chromium and what
they transfer, and what the admin board costs with a week of records.

    python bench/pages.py --loads 10 --records 0,10000,50000 --requests 50 \
        --sizes 1280x720,1080x1920,1366x768,1920x1080

For each window size and page (logged in, cold cache: a new browser context
per load, of that size): time from navigation to ``body[data-ready]`` and the
bytes and requests it took, against the index page (no login, no API) at the
same size in the same run. 1280x720 (the default) is Playwright's own window,
the size the figures before the per-screen layouts were taken at. For the board:
GET /api/v1/board latency and server CPU per request with N consultations
over the last 7 days (a seventh of them today), the first request (which reads
the earlier days) and the following ones, against GET /api/v1/departments/status
(live figures only) in the same run.
"""

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402
from sqlalchemy import Connection  # noqa: E402

from bench import measure  # noqa: E402
from bench.measure import cpu_seconds, percentile, wait_for_http  # noqa: E402
from harness.chromium import launch_chromium  # noqa: E402
from harness.ports import free_port  # noqa: E402
from storage.demo import DEMO_PASSWORD, seed_demo  # noqa: E402
from storage.ids import new_id  # noqa: E402
from storage.schema import consultations  # noqa: E402
from storage.sessions import SessionPolicy  # noqa: E402
from storage.store import Storage  # noqa: E402

PAGES = (
    ("index", None),
    ("kiosk", "kiosk01"),
    ("expert", "expert_market"),
    ("clerk", "clerk"),
    ("admin", "admin"),
)
WEEK = 7 * 24 * 3600


def emit(record: dict[str, Any]) -> None:
    measure.emit("pages", record)


async def seed(data_dir: Path, count: int) -> None:
    """The demo data and ``count`` ended consultations over the last week."""
    storage = await Storage.open(None, data_dir, SessionPolicy(28800, 86400))
    try:
        await seed_demo(storage)
        kiosk = await storage.accounts.get_by_username("kiosk01")
        expert = await storage.accounts.get_by_username("expert_market")
        now = time.time()
        midnight = (
            datetime.fromtimestamp(now)
            .astimezone()
            .replace(hour=0, minute=0, second=0, microsecond=0)
            .timestamp()
        )
        rng = random.Random(7)
        rows = []
        for index in range(count):
            # A seventh of the week is today (as at the end of a working day),
            # however early today it is.
            if index % 7 == 0:
                waiting = rng.uniform(midnight, now - 60)
            else:
                waiting = midnight - rng.uniform(60, WEEK - 86400)
            answered = rng.random() < 0.9
            active = waiting + rng.expovariate(1 / 90) if answered else None
            ended = (active or waiting) + (rng.expovariate(1 / 400) if answered else 60)
            rows.append(
                {
                    "id": new_id(),
                    "kiosk_id": kiosk.id,
                    "hall": "city",
                    "department": rng.choice(["market", "housing", "social"]),
                    "expert_id": expert.id if answered else None,
                    "case_number": None,
                    "state": "ended",
                    "waiting_at": waiting,
                    "offered_at": None,
                    "active_at": active,
                    "ended_at": ended,
                    "end_reason": "completed" if answered else "abandoned",
                    "ended_by": "system",
                    "outcome": "answered" if answered else None,
                    "notes": None,
                    "rating": rng.randint(1, 5) if answered and rng.random() < 0.6 else None,
                }
            )

        def insert(conn: Connection) -> None:
            conn.execute(consultations.insert(), rows)

        if rows:
            await storage.db.write(insert)
    finally:
        await storage.close()


async def start_server(data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "server.py"),
        "--demo",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--media-address",
        "127.0.0.1",
        "--media-workers",
        "0",
        "--log-level",
        "warning",
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    await wait_for_http(f"{url}/healthz")
    return process, url


async def timed_gets(
    http: aiohttp.ClientSession, url: str, requests: int, pid: int
) -> tuple[list[float], float]:
    """Latencies (ms) of ``requests`` sequential GETs, and server CPU-ms per request."""
    latencies = []
    cpu_before = cpu_seconds(pid)
    for _ in range(requests):
        started = time.perf_counter()
        async with http.get(url) as response:
            await response.read()
            assert response.status == 200, response.status
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, (cpu_seconds(pid) - cpu_before) * 1000 / requests


async def board(records: list[int], requests: int) -> None:
    for count in records:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            await seed(data_dir, count)
            process, url = await start_server(data_dir)
            try:
                async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                    login = {"username": "admin", "password": DEMO_PASSWORD}
                    async with http.post(f"{url}/api/v1/login", json=login) as response:
                        assert response.status == 200
                    # The first request reads the earlier days too; later ones keep them.
                    cold, cold_cpu = await timed_gets(http, f"{url}/api/v1/board", 1, process.pid)
                    status, status_cpu = await timed_gets(
                        http, f"{url}/api/v1/departments/status", requests, process.pid
                    )
                    board_ms, board_cpu = await timed_gets(
                        http, f"{url}/api/v1/board", requests, process.pid
                    )
                emit(
                    {
                        "measure": "board",
                        "records": count,
                        "requests": requests,
                        "board_first_ms": round(cold[0], 2),
                        "board_first_cpu_ms": round(cold_cpu, 2),
                        "board_p50_ms": round(percentile(board_ms, 50) or 0, 2),
                        "board_p95_ms": round(percentile(board_ms, 95) or 0, 2),
                        "board_cpu_ms": round(board_cpu, 2),
                        "status_p50_ms": round(percentile(status, 50) or 0, 2),
                        "status_cpu_ms": round(status_cpu, 2),
                        "board_vs_status_p50": round(
                            (percentile(board_ms, 50) or 0) / (percentile(status, 50) or 1), 1
                        ),
                    }
                )
            finally:
                process.terminate()
                await process.wait()


READY_FIGURES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource');
  const size = (entry) => entry.encodedBodySize || 0;
  const bytes = resources.reduce((sum, r) => sum + size(r), size(nav));
  return {ready: window.readyAt, bytes, requests: resources.length + 1};
}"""


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1080x1920,1366x768"`` -> [(1080, 1920), (1366, 768)] (width x height)."""
    sizes = []
    for item in text.split(","):
        width, _, height = item.strip().partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise argparse.ArgumentTypeError(f"not WIDTHxHEIGHT: {item!r}")
        sizes.append((int(width), int(height)))
    return sizes


async def pages(loads: int, viewports: list[tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await seed(Path(tmp), 0)
        process, url = await start_server(Path(tmp))
        try:
            async with async_playwright() as playwright:
                browser = await launch_chromium(playwright)
                cookies: dict[str, Any] = {}
                for name, username in PAGES:
                    if username:
                        context = await browser.new_context()
                        login = {"username": username, "password": DEMO_PASSWORD}
                        await context.request.post(f"{url}/api/v1/login", data=login)
                        cookies[name] = await context.cookies()
                        await context.close()
                for width, height in viewports:
                    viewport = {"width": width, "height": height}
                    results = await page_loads(browser, url, loads, viewport, cookies)
                    base = results["index"]["ready_p50_ms"] or 1
                    for name, figures in results.items():
                        emit(
                            {
                                "measure": "page",
                                "page": name,
                                "size": f"{width}x{height}",
                                "loads": loads,
                                **figures,
                                "ready_vs_index": round(figures["ready_p50_ms"] / base, 2),
                            }
                        )
                await browser.close()
        finally:
            process.terminate()
            await process.wait()


async def page_loads(
    browser: Any, url: str, loads: int, viewport: dict[str, int], cookies: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each page ``loads`` times in a window of ``viewport``: its ready figures."""
    results: dict[str, dict[str, Any]] = {}
    for name, _ in PAGES:
        ready, transferred, counts = [], [], []
        for _ in range(loads):
            context = await browser.new_context(viewport=viewport)
            if name in cookies:
                await context.add_cookies(cookies[name])
            page = await context.new_page()
            # Record when data-ready appears, in the page's own clock.
            await page.add_init_script(
                "new MutationObserver((_, o) => { if (document.body?.dataset.ready)"
                " { window.readyAt = performance.now(); o.disconnect(); } })"
                ".observe(document, {subtree: true, attributes: true});"
            )
            await page.goto(f"{url}/{'' if name == 'index' else name}")
            await page.wait_for_selector("body[data-ready]")
            await page.wait_for_load_state("networkidle")
            figures = await page.evaluate(READY_FIGURES)
            ready.append(figures["ready"])
            transferred.append(figures["bytes"])
            counts.append(figures["requests"])
            await context.close()
        results[name] = {
            "ready_p50_ms": round(percentile(ready, 50) or 0, 1),
            "ready_p95_ms": round(percentile(ready, 95) or 0, 1),
            "bytes": max(transferred),
            "requests": max(counts),
        }
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--records", default="0,10000,50000")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--only", choices=["pages", "board"], help="run one part")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[(1280, 720)],
        help="window sizes WIDTHxHEIGHT, comma-separated (default 1280x720, Playwright's own)",
    )
    args = parser.parse_args()
    if args.only != "board":
        await pages(args.loads, args.sizes)
    if args.only == "pages":
        return
    await board([int(n) for n in args.records.split(",")], args.requests)


if __name__ == "__main__":
    asyncio.run(main())
