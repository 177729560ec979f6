"""Server processes as tests and benchmarks run them outside the test's own loop:
demo accounts seeded before a server that may not use --demo starts, and a stop as
an init system gives it."""

import asyncio
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

from storage.demo import seed_demo
from web.settings import Settings
from web.stores import open_storage

STOP_TIMEOUT = 15.0
"""Seconds a server gets after SIGTERM (it promises 10), and its process group after
SIGKILL."""


def seed_demo_accounts(data_dir: Path) -> None:
    """--demo is refused off loopback: seed the same accounts before the server starts
    (in a thread of its own, away from the test's event loop)."""

    async def seed() -> None:
        storage = await open_storage(Settings(data_dir=data_dir))
        try:
            await seed_demo(storage)
        finally:
            await storage.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed()).result()


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server, as an init system sends it; SIGKILL to its whole process
    group (the relay workers too) after a bounded wait."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
