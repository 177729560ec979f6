"""A redis-server of a test's or benchmark's own, on a free loopback port: to stop,
start again, pause and resume without touching the shared Redis of the machine."""

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from harness.debian_tools import debian_tool
from harness.ports import free_port

START_WITHIN = 30.0
"""Seconds a redis-server may take to answer after it was started (a busy machine)."""


async def redis_answers(port: int, timeout: float = 2.0) -> bool:
    """Whether a redis-server on 127.0.0.1:``port`` answers PING (no client library:
    the callers stop and start the server under it)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        async with asyncio.timeout(timeout):
            return await reader.readline() == b"+PONG\r\n"
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class PrivateRedis:
    """A redis-server on a free port of its own. It saves nothing by itself (``--save
    ''``); ``shutdown_saving`` writes its data to its directory on the way down, and a
    start in the same directory loads it. ``pause`` / ``resume`` freeze it (SIGSTOP /
    SIGCONT): connected, answering nothing."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            debian_tool("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_WITHIN
        while not await self.answers():
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port} does not answer")
            await asyncio.sleep(0.05)

    async def answers(self) -> bool:
        return await redis_answers(self.port, timeout=1)

    async def shutdown_saving(self) -> None:
        """SHUTDOWN SAVE: the data goes to dump.rdb, the server exits."""
        assert self.process is not None
        _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(b"SHUTDOWN SAVE\r\n")
            await writer.drain()
            await asyncio.wait_for(self.process.wait(), 30)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        assert (self.directory / "dump.rdb").exists()

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            if process.returncode is None:
                # A paused server takes SIGKILL as well.
                process.kill()
            await asyncio.wait_for(process.wait(), 30)
