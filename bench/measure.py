"""What the benchmarks share: JSON-line output, percentiles, ports, process CPU."""

import json
import os
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
