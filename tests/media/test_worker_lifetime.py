"""A relay worker never outlives the process that started it, however that one dies."""

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from harness.ports import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_workers_exit_when_the_server_is_killed(tmp_path: Path) -> None:
    """After kill -9 of the main process its workers kept running (118 MB each)."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path),
        "--media-workers",
        "2",
        "--media-address",
        "127.0.0.1",
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        workers = children_of(process.pid)
        assert len(workers) >= 2
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        for _ in range(200):
            if not any(alive(pid) for pid in workers):
                break
            await asyncio.sleep(0.1)
        assert [pid for pid in workers if alive(pid)] == []
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
