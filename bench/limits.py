"""Other users under attack: a kiosk and an expert in a call (aiortc media) keep
doing event round trips while, on the same server, another account opens many
sockets, floods events, holds 500 half-open connections, uploads at a byte a
second and leaves a burst of uploads unfinished. Reports the victims' round-trip
percentiles and frame rate with and without the attacks (same run), and the
server's most open files and memory.

    python bench/limits.py --seconds 20

The target (hardening issue): victims' round trips under 50 ms at p99, their calls
keep their frame rate, open files and memory under stated ceilings.
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import attacks  # noqa: E402
from bench.measure import emit, percentile, wait_for_http  # noqa: E402
from harness.peers import CallPeer, wait_until  # noqa: E402
from harness.ports import free_port  # noqa: E402
from media.aiortc_private import restrict_host_addresses  # noqa: E402
from signaling.client import ExpertClient, KioskClient  # noqa: E402
from signaling.messages import OfferView  # noqa: E402

HALF_OPEN = 500


async def start_server(data: Path, port: int, header_timeout: float) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        "--demo",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--media-workers",
        "1",
        "--media-address",
        "127.0.0.1",
        "--header-timeout",
        str(header_timeout),
        "--log-level",
        "warning",
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_for_http(f"http://127.0.0.1:{port}/healthz", attempts=300)
    return process


async def open_call(
    url: str, kiosk_name: str, expert_name: str, department: str
) -> tuple[KioskClient, ExpertClient, str]:
    expert = ExpertClient(url)
    await expert.login(expert_name, "demo1234")
    await expert.connect()
    await expert.set_presence("available")
    kiosk = KioskClient(url)
    await kiosk.login(kiosk_name, "demo1234")
    await kiosk.connect()
    view = await kiosk.request(department)
    await expert.accept((await expert.next_event("offer", OfferView)).consultation_id)
    return kiosk, expert, view.consultation_id


async def join_media(url: str, client: KioskClient | ExpertClient) -> CallPeer:
    import aiohttp

    state = await client.state()
    assert state.consultation is not None and state.consultation.media is not None
    media = state.consultation.media
    peer = CallPeer()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + media.url,
            data=await peer.offer(),
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {media.token}"},
        ) as response,
    ):
        await peer.accept(await response.text())
    return peer


async def round_trips(
    client: KioskClient | ExpertClient, stop: asyncio.Event, into: list[float], errors: list[str]
) -> None:
    """get_state every 100 ms (a busy page's pace, within the per-socket event
    budget), timed from when it was due (no coordinated omission)."""
    interval = 0.1
    due = time.perf_counter()
    while not stop.is_set():
        try:
            await client.state()
            into.append(time.perf_counter() - due)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:80])
        due += interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))


async def phase(
    url: str,
    pid: int,
    seconds: float,
    victims: list[KioskClient | ExpertClient],
    peers: list[CallPeer],
    attacker: dict[str, Any] | None,
) -> dict[str, Any]:
    stop = asyncio.Event()
    rtts: list[float] = []
    errors: list[str] = []
    watched: dict[str, int] = {}
    frames_before = [len(p.received.counters) for p in peers]
    tasks = [asyncio.create_task(round_trips(v, stop, rtts, errors)) for v in victims]
    tasks.append(asyncio.create_task(attacks.watch_process(pid, stop, watched)))
    attack_tasks: list[asyncio.Task[attacks.AttackReport]] = []
    if attacker is not None:
        host, port = url.removeprefix("http://").split(":")
        attack_tasks = [
            asyncio.create_task(attacks.many_sockets(url, "kiosk01", 30, stop)),
            asyncio.create_task(attacks.event_flood(url, "expert_social", stop)),
            asyncio.create_task(attacks.half_open(host, int(port), HALF_OPEN, stop)),
            asyncio.create_task(
                attacks.slow_upload(url, attacker["cookie"], attacker["call_id"], stop)
            ),
            asyncio.create_task(
                attacks.unfinished_uploads(url, attacker["cookie"], attacker["call_id"], 40, stop)
            ),
        ]
    started = time.monotonic()
    await asyncio.sleep(seconds)
    stop.set()
    elapsed = time.monotonic() - started
    await asyncio.gather(*tasks)
    reports = await asyncio.gather(*attack_tasks)
    frames = [len(p.received.counters) - b for p, b in zip(peers, frames_before, strict=True)]
    return {
        "round_trips": len(rtts),
        "rtt_p50_ms": round((percentile(rtts, 50) or 0) * 1000, 2),
        "rtt_p99_ms": round((percentile(rtts, 99) or 0) * 1000, 2),
        "rtt_max_ms": round(max(rtts, default=0) * 1000, 2),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:3],
        "fps_received": [round(f / elapsed, 1) for f in frames],
        "max_open_files": watched.get("max_open_files"),
        "max_rss_mb": round(watched.get("max_rss", 0) / 2**20, 1),
        "attacks": {r.name: r.figures for r in reports},
    }


async def scenario(
    seconds: float, header_timeout: float = 5.0, *, quiet_phase: bool = True
) -> dict[str, Any]:
    """Both phases against one fresh server process (or only the attacked one,
    where nothing is compared: the test); everything stopped after."""
    restrict_host_addresses(["127.0.0.1"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    clients: list[KioskClient | ExpertClient] = []
    peers: list[CallPeer] = []
    with tempfile.TemporaryDirectory() as data:
        process = await start_server(Path(data), port, header_timeout)
        try:
            victim_kiosk, victim_expert, _ = await open_call(
                url, "kiosk02", "expert_housing", "housing"
            )
            bad_kiosk, bad_expert, bad_call = await open_call(
                url, "kiosk01", "expert_market", "market"
            )
            clients += [victim_kiosk, victim_expert, bad_kiosk, bad_expert]
            peers = [await join_media(url, victim_kiosk), await join_media(url, victim_expert)]
            await wait_until(lambda: all(len(p.received.counters) > 15 for p in peers), 30)
            rss_start = attacks.rss_bytes(process.pid)
            files_start = attacks.open_files(process.pid)
            victims: list[KioskClient | ExpertClient] = [victim_kiosk, victim_expert]
            quiet = (
                await phase(url, process.pid, seconds, victims, peers, None)
                if quiet_phase
                else None
            )
            attacked = await phase(
                url,
                process.pid,
                seconds,
                victims,
                peers,
                {"cookie": bad_kiosk.session_cookie, "call_id": bad_call},
            )
            # The half-open connections are closed by the header timeout.
            await asyncio.sleep(header_timeout + 1)
            after = {
                "open_files": attacks.open_files(process.pid),
                "rss_mb": round(attacks.rss_bytes(process.pid) / 2**20, 1),
            }
            return {
                "seconds": seconds,
                "start": {"open_files": files_start, "rss_mb": round(rss_start / 2**20, 1)},
                "quiet": quiet,
                "attacked": attacked,
                "after": after,
                "victim_calls_active": all(c.sio.connected for c in clients[:2]),
            }
        finally:
            for peer in peers:
                await peer.close()
            for client in clients:
                await client.close()
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
            restrict_host_addresses([])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    result = asyncio.run(scenario(args.seconds))
    emit("limits", result)


if __name__ == "__main__":
    main()
