"""What the benchmarks share: JSON-line output, percentiles, ports, process CPU."""

import json
import os
from pathlib import Path
from typing import Any


def emit(bench: str, record: dict[str, Any]) -> None:
    print(json.dumps({"bench": bench, **record}), flush=True)


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile, None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of a process (and its direct children) from /proc."""
    pids = [pid]
    listing = Path(f"/proc/{pid}/task/{pid}/children")
    if children and listing.exists():
        pids += [int(p) for p in listing.read_text().split()]
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def wait_for_http(url: str, attempts: int = 150) -> None:
    """Until something answers HTTP at ``url`` (any status)."""
    import asyncio

    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(attempts):
            try:
                async with http.get(url):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url}")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (None if it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (children of each of its threads), from /proc."""
    found = [pid]
    for parent in found:
        for listing in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                found += [int(p) for p in listing.read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with the pid, names one process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants, including
    children they have already reaped (so that a worker that exits is not lost)."""
    total = 0
    for root in pids:
        for p in process_tree(root):
            fields = _stat_fields(p)
            if fields:
                total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent on anything but idle and I/O wait since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
