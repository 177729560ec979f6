"""How fast a kiosk's camera reaches its full bitrate through the relay: the real
server (its defaults, two relay workers), the real pages in headless Chromium
with its fake camera, a kiosk and an expert in a call on loopback. Every 250 ms
the kiosk's outgoing video bitrate (getStats ``bytesSent``) is read; the settled
rate is the median of the last five seconds, and the time from the first
encoded frame to 90 % of it is reported (target: 2 s; issue 12).

    python bench/rampup.py --seconds 20 --runs 3
"""

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402
from bench.measure import wait_for_http  # noqa: E402
from harness.chromium import (  # noqa: E402
    KEEP_CONNECTIONS,
    choose_department,
    launch_chromium,
    open_logged_in,
    wait_for_js,
)
from harness.ports import free_port  # noqa: E402

VIDEO_SENT = """
(async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  if (!pc) return null;
  for (const report of (await pc.getStats()).values()) {
    if (report.type === "outbound-rtp" && report.kind === "video") {
      return [report.bytesSent, report.framesEncoded || 0, report.frameWidth || 0];
    }
  }
  return null;
})()
"""


async def one_call(browser: Any, url: str, seconds: float) -> dict[str, Any]:
    expert = await open_logged_in(
        browser, url, "expert", "expert_market", init_script=KEEP_CONNECTIONS, timeout_ms=20000
    )
    await expert.wait_for_selector("[data-testid=availability]:not(:empty)")
    await expert.get_by_test_id("availability").click()
    kiosk = await open_logged_in(
        browser, url, "kiosk", "kiosk01", init_script=KEEP_CONNECTIONS, timeout_ms=20000
    )
    await choose_department(kiosk, "market")
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await kiosk.get_by_test_id("device-check-continue").click()
    await expert.get_by_test_id("accept-call").click()
    await wait_for_js(kiosk, "window.__pcs.length > 0", timeout=20000)
    samples: list[tuple[float, int, int]] = []
    first_frame: float | None = None
    deadline = time.monotonic() + seconds + 30
    while time.monotonic() < deadline:
        value = await kiosk.evaluate(VIDEO_SENT)
        now = time.monotonic()
        if value is not None and value[1] > 0:
            if first_frame is None:
                first_frame = now
            samples.append((now - first_frame, int(value[0]), int(value[2])))
            if now - first_frame > seconds:
                break
        await asyncio.sleep(0.25)
    await kiosk.context.close()
    await expert.context.close()
    # Rates over one-second windows, ending at each sample.
    rates: list[tuple[float, float]] = []
    for index, (at, sent, _) in enumerate(samples):
        earlier = next((s for s in samples[:index] if at - s[0] <= 1.0), None)
        if earlier is not None and at - earlier[0] > 0.5:
            rates.append((at, (sent - earlier[1]) * 8 / (at - earlier[0]) / 1000))
    settled = statistics.median(r for at, r in rates if at >= seconds - 5)
    reached = next((at for at, r in rates if r >= 0.9 * settled), None)

    def rate_at(second: float) -> float | None:
        return next((round(r) for t, r in rates if t >= second), None)

    return {
        "settled_kbit_s": round(settled),
        "seconds_to_90_percent": None if reached is None else round(reached, 2),
        "kbit_s_at_1s": rate_at(1),
        "kbit_s_at_2s": rate_at(2),
        "kbit_s_at_5s": rate_at(5),
        "frame_width": samples[-1][2] if samples else None,
    }


async def with_server(seconds: float, playwright: Any) -> dict[str, Any]:
    """One call on a fresh server (and data directory) and a fresh browser."""
    data = Path(tempfile.mkdtemp(prefix="wl-bench-rampup-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "server.py",
            "--demo",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--media-address",
            "127.0.0.1",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    try:
        await wait_for_http(f"{url}/healthz")
        browser = await launch_chromium(playwright)
        try:
            return await one_call(browser, url, seconds)
        finally:
            await browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data, ignore_errors=True)


async def bench(seconds: float, runs: int) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        results = []
        for run in range(runs):
            result = await with_server(seconds, playwright)
            results.append(result)
            measure.emit("rampup", {"run": run + 1, **result})
    times = [r["seconds_to_90_percent"] for r in results]
    measure.emit(
        "rampup",
        {
            "summary": True,
            "median_seconds_to_90_percent": (
                statistics.median(times) if None not in times else None
            ),
            "median_settled_kbit_s": statistics.median(r["settled_kbit_s"] for r in results),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(bench(args.seconds, args.runs))


if __name__ == "__main__":
    main()
