"""Signaling benchmark: N kiosks and M experts in separate client processes
against a real server process (SQLite), each kiosk looping request -> accept -> end.

Prints JSON lines: round-trip (emit -> ack) percentiles at idle and under load,
and completed consultations per second at each offered rate, stepping the rate
up to find the highest one the server sustains.

    python bench/signaling.py --kiosks 900 --experts 100 --rates 100,150,200,250,300
"""

import argparse
import asyncio
import multiprocessing as mp
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import socketio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402
from bench.measure import cpu_seconds, free_port, percentile  # noqa: E402
from signaling.client import ClientError, ExpertClient, KioskClient  # noqa: E402
from signaling.messages import ConsultationView, OfferView  # noqa: E402
from storage.passwords import hash_password  # noqa: E402
from storage.records import AuditEvent, Role  # noqa: E402
from storage.sessions import SessionPolicy  # noqa: E402
from storage.store import Storage  # noqa: E402

DEPARTMENTS = 10


def departments_for(experts: int) -> int:
    """Up to 10 departments, each with at least one expert."""
    return max(1, min(DEPARTMENTS, experts))


def emit(record: dict[str, Any]) -> None:
    measure.emit("signaling", record)


def ms(values: list[float], q: float) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value * 1000, 2)


async def seed(data_dir: Path, kiosks: int, experts: int) -> tuple[list[str], list[str]]:
    """Accounts and ready sessions straight into the database (login cost is not measured)."""
    storage = await Storage.open(None, data_dir, SessionPolicy(86400, 86400))
    encoded = hash_password("bench-password")
    for d in range(departments_for(experts)):
        await storage.departments.create(f"dept{d}", f"部门{d}", f"Department {d}")
    kiosk_tokens: list[str] = []
    expert_tokens: list[str] = []
    for i in range(kiosks):
        account = await storage.accounts.create(
            f"kiosk{i:04d}", "", Role.KIOSK, hall="city", password_hash=encoded
        )
        kiosk_tokens.append(await storage.sessions.create(account, "127.0.0.1", audit=None))
    for i in range(experts):
        account = await storage.accounts.create(
            f"expert{i:04d}",
            "",
            Role.EXPERT,
            department=f"dept{i % departments_for(experts)}",
            password_hash=encoded,
        )
        expert_tokens.append(await storage.sessions.create(account, "127.0.0.1", audit=None))
    await storage.audit.append(AuditEvent("bench", "bench.seed", "", {}))
    await storage.close()
    return kiosk_tokens, expert_tokens


@dataclass
class WorkerPlan:
    url: str
    kiosk_tokens: list[str]
    expert_tokens: list[str]
    rates: list[float]
    """Consultations per second this worker starts, one entry per phase."""
    phase_seconds: float
    seed: int
    departments: int


def worker(plan: WorkerPlan, ready: Any, go: Any, results: Any) -> None:
    asyncio.run(_worker(plan, ready, go, results))


async def _connect(cls: type[Any], url: str, token: str) -> Any:
    client = cls(url)
    client.session_cookie = token
    await client.connect()
    return client


async def _worker(plan: WorkerPlan, ready: Any, go: Any, results: Any) -> None:
    rng = random.Random(plan.seed)
    experts: list[ExpertClient] = []
    for token in plan.expert_tokens:
        experts.append(await _connect(ExpertClient, plan.url, token))
    kiosks: list[KioskClient] = []
    for token in plan.kiosk_tokens:
        kiosks.append(await _connect(KioskClient, plan.url, token))

    async def answer(expert: ExpertClient) -> None:
        while True:
            offer = await expert.next_event("offer", OfferView, timeout=3600)
            try:
                await expert.accept(offer.consultation_id)
            except ClientError:
                continue

    for expert in experts:
        await expert.set_presence("available")
    answering = [asyncio.create_task(answer(e)) for e in experts]
    ready.put(len(kiosks) + len(experts))
    await asyncio.get_running_loop().run_in_executor(None, go.wait)

    idle = list(kiosks)
    for phase, rate in enumerate(plan.rates):
        completed = 0
        failed = 0
        skipped = 0
        cpu_start = time.process_time()
        request_rtts: list[float] = []
        cycle_times: list[float] = []
        running: set[asyncio.Task[None]] = set()

        async def cycle(
            kiosk: KioskClient, request_rtts: list[float], cycle_times: list[float]
        ) -> None:
            nonlocal completed, failed
            started = time.perf_counter()
            try:
                kiosk.drain("consultation")
                view = await kiosk.request(f"dept{rng.randrange(plan.departments)}")
                request_rtts.append(time.perf_counter() - started)
                await kiosk.next_event(
                    "consultation",
                    ConsultationView,
                    where=lambda v: (
                        v.consultation_id == view.consultation_id and v.state == "active"
                    ),
                    timeout=30,
                )
                await kiosk.end(view.consultation_id)
                completed += 1
                cycle_times.append(time.perf_counter() - started)
            except (ClientError, TimeoutError, socketio.exceptions.TimeoutError) as exc:
                print("cycle failed:", repr(exc), file=sys.stderr)
                failed += 1
            finally:
                idle.append(kiosk)

        interval = 1.0 / rate if rate > 0 else None
        start = time.perf_counter()
        next_at = start
        while time.perf_counter() - start < plan.phase_seconds:
            if interval is None:
                await asyncio.sleep(0.05)
                continue
            now = time.perf_counter()
            if now < next_at:
                await asyncio.sleep(next_at - now)
            next_at += interval
            if not idle:
                skipped += 1
                continue
            kiosk = idle.pop(rng.randrange(len(idle)))
            task = asyncio.create_task(cycle(kiosk, request_rtts, cycle_times))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.wait(running, timeout=30)
        results.put(
            {
                "phase": phase,
                "completed": completed,
                "failed": failed,
                "skipped": skipped,
                "request_rtts": request_rtts,
                "cycle_times": cycle_times,
                "cpu_s": time.process_time() - cpu_start,
            }
        )
    for task in answering:
        task.cancel()
    for client in [*kiosks, *experts]:
        await client.close()


async def probe(url: str, token: str, seconds: float, per_second: float) -> list[float]:
    """emit -> ack of get_state from one extra client, paced."""
    client = await _connect(KioskClient, url, token)
    rtts: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await client.state()
        rtts.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, 1 / per_second - (time.perf_counter() - started)))
    await client.close()
    return rtts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kiosks", type=int, default=900)
    parser.add_argument("--experts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument(
        "--rates",
        default="100,150,200,250,300",
        help="offered consultations per second, one phase each",
    )
    parser.add_argument("--phase-seconds", type=float, default=20)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    data_dir = Path(tempfile.mkdtemp(prefix="wl-bench-"))
    kiosk_tokens, expert_tokens = asyncio.run(seed(data_dir, args.kiosks + 1, args.experts))
    probe_token = kiosk_tokens.pop()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "server.py",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            "--ring-timeout",
            "20",
            # The probe asks 50 times a second on one socket, more than any page
            # does (the default allows 20 events/s per connection).
            "--events-per-second",
            "200",
        ],
        cwd=ROOT,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        ctx = mp.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = []
        for w in range(args.workers):
            plan = WorkerPlan(
                url,
                kiosk_tokens[w :: args.workers],
                expert_tokens[w :: args.workers],
                [0.0] + [r / args.workers for r in rates],
                args.phase_seconds,
                seed=w,
                departments=departments_for(args.experts),
            )
            proc = ctx.Process(target=worker, args=(plan, ready, go, results))
            proc.start()
            procs.append(proc)
        connected = sum(ready.get(timeout=300) for _ in procs) + 1
        go.set()
        # Phase 0: everyone connected, nothing happening.
        cpu0 = cpu_seconds(server.pid)
        idle_rtts = asyncio.run(probe(url, probe_token, args.phase_seconds, 50))
        idle_cpu = (cpu_seconds(server.pid) - cpu0) / args.phase_seconds
        emit(
            {
                "phase": "idle",
                "clients": connected,
                "rtt_p50_ms": ms(idle_rtts, 50),
                "rtt_p99_ms": ms(idle_rtts, 99),
                "samples": len(idle_rtts),
                "server_cpu_s_per_s": round(idle_cpu, 3),
            }
        )
        _ = [results.get(timeout=120) for _ in procs]
        best = 0.0
        for rate in rates:
            cpu0 = cpu_seconds(server.pid)
            rtts = asyncio.run(probe(url, probe_token, args.phase_seconds, 50))
            parts = [results.get(timeout=180) for _ in procs]
            cpu = (cpu_seconds(server.pid) - cpu0) / args.phase_seconds
            completed = sum(p["completed"] for p in parts)
            request_rtts = [x for p in parts for x in p["request_rtts"]]
            cycles = [x for p in parts for x in p["cycle_times"]]
            achieved = completed / args.phase_seconds
            sustained = achieved >= 0.95 * rate and sum(p["failed"] for p in parts) == 0
            if sustained:
                best = max(best, achieved)
            emit(
                {
                    "phase": "load",
                    "clients": connected,
                    "offered_per_s": rate,
                    "completed_per_s": round(achieved, 1),
                    "sustained": sustained,
                    "failed": sum(p["failed"] for p in parts),
                    "skipped": sum(p["skipped"] for p in parts),
                    "rtt_p50_ms": ms(rtts, 50),
                    "rtt_p99_ms": ms(rtts, 99),
                    "request_ack_p50_ms": ms(request_rtts, 50),
                    "request_ack_p99_ms": ms(request_rtts, 99),
                    "cycle_p50_ms": ms(cycles, 50),
                    "cycle_mean_ms": round(statistics.fmean(cycles) * 1000, 2) if cycles else None,
                    "server_cpu_s_per_s": round(cpu, 3),
                    "load_generator_cpu_s_per_s": round(
                        sum(p["cpu_s"] for p in parts) / args.phase_seconds, 3
                    ),
                    "server_cpu_ms_per_consultation": round(cpu / achieved * 1000, 2)
                    if achieved
                    else None,
                }
            )
        for proc in procs:
            proc.join(timeout=60)
        emit(
            {
                "phase": "summary",
                "clients": connected,
                "highest_sustained_per_s": round(best, 1),
                "database": "sqlite",
            }
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
