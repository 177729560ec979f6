"""Seed a windowlink data directory for the comparator: start the server on 127.0.0.1 with --demo, then create,
through the admin API, departments bench0..bench{N-1} with one expert bexp{i} and one kiosk bkio{i} each
(password BENCH_PASSWORD: new accounts must pass the product's password policy), and stop it.   python seed_windowlink.py PROJECT_DIR DATA_DIR [N]"""
import asyncio
import signal
import socket
import subprocess
import sys
import time

import aiohttp

PROJECT, DATA = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BENCH_PASSWORD = "Relay-bench-2026"
PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"


async def seed() -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{BASE}/api/v1/login", json={"username": "admin", "password": "demo1234"}) as r:
            assert r.status == 200, await r.text()
            cookie = r.cookies["wl_session"].value
        headers = {"Cookie": f"wl_session={cookie}"}
        for i in range(N):
            for path, body in (("departments", {"code": f"bench{i}", "name_zh": f"测试{i}", "name_en": f"Bench {i}"}),
                               ("accounts", {"username": f"bexp{i}", "password": BENCH_PASSWORD, "role": "expert",
                                             "department": f"bench{i}"}),
                               ("accounts", {"username": f"bkio{i}", "password": BENCH_PASSWORD, "role": "kiosk",
                                             "hall": "city"})):
                async with http.post(f"{BASE}/api/v1/{path}", json=body, headers=headers) as r:
                    if r.status >= 300:
                        sys.exit(f"seed: {path} {body} -> {r.status} {(await r.text())[:200]}")


server = subprocess.Popen([sys.executable, "server.py", "--demo", "--host", "127.0.0.1", "--port", str(PORT),
                           "--data-dir", DATA, "--media-workers", "0", "--media-address", "127.0.0.1"],
                          cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
try:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", PORT), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    asyncio.run(seed())
    print(f"seeded {DATA}: {N} departments, experts and kiosks")
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(15)
