"""What a hostile or careless client does to a server, each bounded in count and
time, all on loopback; used by bench/limits.py and tests/test_resource_bounds.py.

Each attack runs until ``stop`` is set and returns what the server did to it."""

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from signaling.client import KioskClient, part_headers


@dataclass
class AttackReport:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)


async def many_sockets(url: str, username: str, count: int, stop: asyncio.Event) -> AttackReport:
    """One account opens ``count`` sockets with the same session."""
    first = KioskClient(url)
    await first.login(username, "demo1234")
    opened: list[socketio.AsyncClient] = []
    refused = 0
    for _ in range(count):
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(
                url,
                headers={"Cookie": f"wl_session={first.session_cookie}"},
                transports=["websocket"],
                wait_timeout=5,
            )
            opened.append(client)
        except socketio.exceptions.ConnectionError:
            refused += 1
    await stop.wait()
    for client in opened:
        await client.disconnect()
    await first.close()
    return AttackReport("many_sockets", {"opened": len(opened), "refused": refused})


async def event_flood(url: str, username: str, stop: asyncio.Event) -> AttackReport:
    """One socket sends events as fast as it can, never waiting for an answer."""
    client = KioskClient(url)
    await client.login(username, "demo1234")
    await client.connect()
    sent = 0
    while not stop.is_set() and client.sio.connected:
        for _ in range(50):
            await client.sio.emit("get_state", {})
            sent += 1
        await asyncio.sleep(0.005)
    closed_by_server = not client.sio.connected
    await client.close()
    return AttackReport("event_flood", {"sent": sent, "closed_by_server": closed_by_server})


async def half_open(host: str, port: int, count: int, stop: asyncio.Event) -> AttackReport:
    """``count`` connections that send part of a request's headers and then nothing."""
    connections = []
    refused = 0
    for i in range(count):
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            refused += 1
            continue
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Part-{i}: ".encode())
        connections.append((reader, writer))
    await stop.wait()
    closed_by_server = 0
    for reader, writer in connections:
        if reader.at_eof():
            closed_by_server += 1
        writer.close()
    writers = connections
    return AttackReport(
        "half_open", {"opened": len(writers), "refused": refused, "closed": closed_by_server}
    )


async def slow_upload(url: str, cookie: str, call_id: str, stop: asyncio.Event) -> AttackReport:
    """A part sent at one byte a second."""
    content = b"%PDF-1.7\n" + os.urandom(4000)
    async with aiohttp.ClientSession(headers={"Cookie": f"wl_session={cookie}"}) as http:
        async with http.post(
            f"{url}/api/v1/consultations/{call_id}/uploads",
            json={"name": "slow.pdf", "size": len(content)},
        ) as response:
            if response.status != 201:
                return AttackReport("slow_upload", {"begin_status": response.status})
            target = url + (await response.json())["url"]

        async def trickle() -> Any:
            for i in range(len(content)):
                if stop.is_set():
                    return
                yield content[i : i + 1]
                await asyncio.sleep(1.0)

        started = time.monotonic()
        try:
            async with http.patch(
                target, data=trickle(), headers=part_headers(0, content)
            ) as response:
                status = response.status
        except aiohttp.ClientError:
            status = 0
        return AttackReport(
            "slow_upload", {"status": status, "cut_off_after_s": time.monotonic() - started}
        )


async def unfinished_uploads(
    url: str, cookie: str, call_id: str, count: int, stop: asyncio.Event
) -> AttackReport:
    """``count`` uploads begun, one part each, never finished."""
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(headers={"Cookie": f"wl_session={cookie}"}) as http:
        for i in range(count):
            async with http.post(
                f"{url}/api/v1/consultations/{call_id}/uploads",
                json={"name": f"u{i}.pdf", "size": 1_000_000},
            ) as response:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status != 201:
                    continue
                target = url + (await response.json())["url"]
            part = b"%PDF-1.7\n" + os.urandom(1000)
            async with http.patch(target, data=part, headers=part_headers(0, part)):
                pass
        await stop.wait()
    return AttackReport("unfinished_uploads", {"statuses": statuses})


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def watch_process(pid: int, stop: asyncio.Event, into: dict[str, int]) -> None:
    """The most open files and memory the process had while ``stop`` was unset."""
    while not stop.is_set():
        try:
            into["max_open_files"] = max(into.get("max_open_files", 0), open_files(pid))
            into["max_rss"] = max(into.get("max_rss", 0), rss_bytes(pid))
        except OSError:
            return
        await asyncio.sleep(0.2)
