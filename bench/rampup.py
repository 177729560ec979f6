"""How fast a kiosk's camera reaches its full bitrate through the relay, against
the same camera in a direct call, in the same run: the real server (its
defaults, two relay workers), the real pages in headless Chromium fed a
camera-like picture (bench/camera.py: 1280x720 at 30 fps, which the pages take
at 640x480 and VP8 encodes at 1.5-2.5 Mbit/s), a kiosk and an expert in a call
on loopback; ``direct``: two plain pages with one RTCPeerConnection each, the
same getUserMedia constraints as the product's pages. Every 250 ms the kiosk's
outgoing video (getStats ``bytesSent`` of its camera's stream: the bitrate
actually sent) is read, over one-second windows; a call's settled rate is the
median of its last five seconds. The camera's bitrate is the highest rate a
call of the bench settled at (a call held back settles lower); the time from
the first encoded frame over a connected transport to 90 % of it is the figure
(target: 2 s; issues 12 and 24), beside the time to 90 % of the call's own
settled rate. Each run: a fresh server, a fresh browser per call, the modes'
order alternating. A call that never connects is a row marked failed, with
why; the bench goes on.

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
from bench.camera import camera_file, launch_with_camera  # noqa: E402
from bench.congestion import direct_call  # noqa: E402
from bench.measure import wait_for_http  # noqa: E402
from harness.chromium import (  # noqa: E402
    KEEP_CONNECTIONS,
    choose_department,
    open_logged_in,
    wait_for_js,
)
from harness.ports import free_port  # noqa: E402

TARGET_SECONDS = 2.0
CAMERA_KBIT_S = (1500, 2500)
"""What the camera-like source must make Chromium send on a clean link."""
VIDEO_SENT = """
(async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  if (!pc) return null;
  // The relay's pages also send a shared screen's slot (empty here): the camera's
  // stream is the one that carries most.
  let video = null;
  for (const report of (await pc.getStats()).values()) {
    if (report.type === "outbound-rtp" && report.kind === "video"
        && (!video || report.bytesSent > video.bytesSent)) {
      video = report;
    }
  }
  if (!video) return [0, 0, 0, 0, 0, null, pc.connectionState];
  return [video.bytesSent, video.framesEncoded || 0, video.frameWidth || 0,
          video.frameHeight || 0, video.framesPerSecond || 0,
          video.qualityLimitationReason || null, pc.connectionState];
})()
"""
CONNECTED_WITHIN_S = 30.0


class CallFailed(Exception):
    """The call never carried video; the message says how far it got."""


async def relay_call(browser: Any, url: str) -> tuple[Any, Any]:
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
    return kiosk, expert


async def sample(kiosk: Any, seconds: float) -> list[tuple[float, int, list[Any]]]:
    """(seconds since the first encoded frame, video bytes sent, the rest) every 250 ms."""
    await wait_for_js(kiosk, "window.__pcs.length > 0", timeout=20000)
    samples: list[tuple[float, int, list[Any]]] = []
    first_frame: float | None = None
    state = "new"
    connect_by = time.monotonic() + CONNECTED_WITHIN_S
    while True:
        value = await kiosk.evaluate(VIDEO_SENT)
        now = time.monotonic()
        if value is not None:
            state = value[6]
            if value[1] > 0 and state == "connected":
                if first_frame is None:
                    first_frame = now
                samples.append((now - first_frame, int(value[0]), value[2:6]))
                if now - first_frame > seconds:
                    return samples
        if first_frame is None and now > connect_by:
            raise CallFailed(
                f"no encoded video over a connected transport within {CONNECTED_WITHIN_S:.0f} s"
                f" (connection state {state})"
            )
        if state in ("failed", "closed"):
            when = f"{samples[-1][0]:.1f} s after the first frame" if samples else "before video"
            raise CallFailed(f"the connection went {state} {when}")
        await asyncio.sleep(0.25)


def figures(samples: list[tuple[float, int, list[Any]]], seconds: float) -> dict[str, Any]:
    # Rates over one-second windows, ending at each sample.
    rates: list[tuple[float, float]] = []
    for index, (at, sent, _) in enumerate(samples):
        earlier = next((s for s in samples[:index] if at - s[0] <= 1.0), None)
        if earlier is not None and at - earlier[0] > 0.5:
            rates.append((at, (sent - earlier[1]) * 8 / (at - earlier[0]) / 1000))
    last = [r for at, r in rates if at >= seconds - 5]
    if not last:
        raise CallFailed("too few samples to settle on a rate")
    settled = statistics.median(last)
    reached = next((at for at, r in rates if r >= 0.9 * settled), None)

    def rate_at(second: float) -> float | None:
        return next((round(r) for t, r in rates if t >= second), None)

    width, height, fps, limitation = samples[-1][2]
    return {
        "video_sent_kbit_s": round(settled),
        "seconds_to_90_percent": None if reached is None else round(reached, 2),
        "kbit_s_at_1s": rate_at(1),
        "kbit_s_at_2s": rate_at(2),
        "kbit_s_at_5s": rate_at(5),
        "frame": f"{width}x{height}",
        "fps": round(fps, 1),
        "limitation": limitation,
        "_rates": rates,
    }


async def one_call(
    playwright: Any, camera: Path, mode: str, url: str, seconds: float
) -> dict[str, Any]:
    """One call in a fresh browser (nothing a previous call held carries over)."""
    browser = await launch_with_camera(playwright, camera)
    try:
        if mode == "relay":
            kiosk, _ = await relay_call(browser, url)
        else:
            kiosk, _ = await direct_call(browser, browser)
        return figures(await sample(kiosk, seconds), seconds)
    finally:
        await browser.close()


async def with_server(
    playwright: Any, camera: Path, modes: list[str], seconds: float
) -> list[dict[str, Any]]:
    """The modes' calls, in order, beside a fresh server (and data directory)."""
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
    results = []
    try:
        await wait_for_http(f"{url}/healthz")
        for mode in modes:
            try:
                result = await asyncio.wait_for(
                    one_call(playwright, camera, mode, url, seconds), timeout=seconds + 120
                )
            except Exception as exc:  # any failure is this call's row
                why = str(exc) or type(exc).__name__
                result = {"failed": True, "why": why.splitlines()[0][:300]}
            results.append({"mode": mode, **result})
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data, ignore_errors=True)
    return results


def summary(mode: str, results: list[dict[str, Any]], camera: float | None) -> dict[str, Any]:
    """One mode's calls over all runs, timed against the camera's bitrate."""
    done = [r for r in results if r["mode"] == mode and not r.get("failed")]
    failed = sum(1 for r in results if r["mode"] == mode and r.get("failed"))
    times = [
        next((round(at, 2) for at, rate in r["_rates"] if rate >= 0.9 * camera), None)
        if camera
        else None
        for r in done
    ]
    own = [r["seconds_to_90_percent"] for r in done]
    rates = [r["video_sent_kbit_s"] for r in done]
    return {
        "summary": True,
        "mode": mode,
        "calls": len(done) + failed,
        "failed": failed,
        "video_sent_kbit_s": rates,
        "camera_kbit_s": camera,
        "camera_in_range": camera is not None and CAMERA_KBIT_S[0] <= camera <= CAMERA_KBIT_S[1],
        "seconds_to_90_percent_of_camera": times,
        "seconds_to_90_percent_of_own": own,
        "target_met": (
            not failed and bool(times) and all(t is not None and t <= TARGET_SECONDS for t in times)
        ),
    }


async def bench(seconds: float, runs: int, modes: list[str]) -> None:
    from playwright.async_api import async_playwright

    camera = camera_file()
    measure.emit("rampup", {"camera": str(camera), "camera_mb": round(camera.stat().st_size / 1e6)})
    results: list[dict[str, Any]] = []
    async with async_playwright() as playwright:
        for run in range(runs):
            order = modes if run % 2 == 0 else modes[::-1]
            for result in await with_server(playwright, camera, order, seconds):
                results.append(result)
                shown = {k: v for k, v in result.items() if k[0] != "_"}
                measure.emit("rampup", {"run": run + 1, **shown})
    # The camera's bitrate: the highest rate a call of the bench settled at. A
    # call held back (by the relay, or by an estimate that a busy machine's
    # jitter misled) settles lower; the camera's own ceiling is the highest.
    settled = [r["video_sent_kbit_s"] for r in results if not r.get("failed")]
    top = max(settled, default=None)
    for mode in modes:
        measure.emit("rampup", summary(mode, results, top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="relay,direct")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if set(modes) - {"relay", "direct"} or not modes:
        parser.error("--modes: relay, direct or both")
    if args.seconds < 6:
        parser.error("--seconds: at least 6 (the settled rate is the last five seconds')")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(bench(args.seconds, args.runs, modes))


if __name__ == "__main__":
    main()
