"""Forwarded headers from a client that is not the proxy: ``python server.py
--behind-proxy --trusted-proxies <the proxy>`` on a non-loopback address of one
network namespace, and a client host with two addresses in another, one of them
the proxy's. What a peer writes into ``X-Forwarded-For`` counts only when that
peer is the proxy: reaching the node's port directly, a client is its own
address (it once opened /metrics with ``X-Forwarded-For: 127.0.0.1`` and escaped
the login throttle with a fresh value per guess)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path

import pytest

from harness.netns import HostPair, host_pair, kill_everything_in, unavailable_reason

REPO = Path(__file__).resolve().parents[2]
PORT = 8080
START_TIMEOUT = 60.0
LOGIN_ATTEMPTS = 3

# Runs on the client host: each request from a chosen source address (the direct
# client's, or the proxy's), with the headers given; prints the statuses as JSON.
PROBE = """
import http.client, json, sys
server, requests = sys.argv[1], json.loads(sys.argv[2])
statuses = []
for source, method, path, headers, body in requests:
    conn = http.client.HTTPConnection(server, 8080, timeout=10, source_address=(source, 0))
    try:
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        statuses.append(conn.getresponse().status)
    except OSError as exc:
        statuses.append(repr(exc))
    finally:
        conn.close()
print(json.dumps(statuses))
"""


@pytest.fixture
def hosts() -> Iterator[HostPair]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with host_pair() as pair:
        yield pair


def proxy_address(hosts: HostPair) -> str:
    """A second address of the client host: requests from it come "from the proxy"."""
    return hosts.client.address.rsplit(".", 1)[0] + ".3"


Request = tuple[str, str, str, dict[str, str], object]
"""(source address, method, path, headers, JSON body or None)."""


def probe(hosts: HostPair, requests: Sequence[Request]) -> list[int | str]:
    done = subprocess.run(
        hosts.client.command(
            sys.executable, "-c", PROBE, hosts.server.address, json.dumps(requests)
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(done.stdout))


@pytest.fixture
def node_behind_proxy(hosts: HostPair, tmp_path: Path) -> Iterator[Path]:
    """server.py trusting only the proxy's address; yields its data directory."""
    proxy = proxy_address(hosts)
    add = ["addr", "add", f"{proxy}/24", "dev", hosts.client.interface]
    subprocess.run(["ip", "-n", hosts.client.namespace, *add], check=True, timeout=10)
    data_dir = tmp_path / "data"
    log = tmp_path / "server.log"
    command = hosts.server.command(
        sys.executable, "server.py",
        "--host", hosts.server.address, "--port", str(PORT),
        "--behind-proxy", "--trusted-proxies", proxy,
        "--login-attempts", str(LOGIN_ATTEMPTS),
        "--media-workers", "0", "--data-dir", str(data_dir),
    )  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while probe(hosts, [(hosts.client.address, "GET", "/healthz", {}, None)]) != [200]:
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.3)
        yield data_dir
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)
        kill_everything_in(hosts.server)


def test_a_direct_peer_is_its_own_address_whatever_it_forwards(
    hosts: HostPair, node_behind_proxy: Path
) -> None:
    direct, proxy = hosts.client.address, proxy_address(hosts)
    lying = {"X-Forwarded-For": "127.0.0.1"}
    # /metrics is for loopback clients: a forwarded 127.0.0.1 from a non-proxy is no key.
    assert probe(hosts, [(direct, "GET", "/metrics", lying, None)]) == [404]
    # A fresh forwarded address per guess does not reset the throttle either.
    guesses = [
        (
            direct,
            "POST",
            "/api/v1/login",
            {"X-Forwarded-For": f"198.51.100.{i}, 127.0.0.1"},
            {"username": "admin", "password": f"guess-{i}-pass"},
        )
        for i in range(LOGIN_ATTEMPTS + 2)
    ]
    assert probe(hosts, guesses) == [401] * LOGIN_ATTEMPTS + [429, 429]
    # The proxy itself is believed: the client it names is another address, with
    # attempts of its own (and no /metrics: the client it names is not loopback).
    from_proxy = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
    login = {"username": "admin", "password": "guess-via-proxy"}
    assert probe(
        hosts,
        [
            (proxy, "POST", "/api/v1/login", from_proxy, login),
            (proxy, "GET", "/metrics", from_proxy, None),
        ],
    ) == [401, 404]
    with sqlite3.connect(node_behind_proxy / "windowlink.db") as db:
        remotes = [
            r for (r,) in db.execute("SELECT remote FROM audit_log WHERE action = 'login.failed'")
        ]
    assert sorted(remotes) == sorted([direct] * LOGIN_ATTEMPTS + ["203.0.113.7"])


def test_hop_counting_on_a_reachable_address_refuses_to_start(
    hosts: HostPair, tmp_path: Path
) -> None:
    """The set-up that believed anyone (a hop count on an address others reach) stops
    at start with what to do, instead of serving /metrics to a forged 127.0.0.1."""
    command = hosts.server.command(
        sys.executable, "server.py",
        "--host", hosts.server.address, "--port", str(PORT),
        "--behind-proxy", "--trusted-proxies", "1",
        "--media-workers", "0", "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None:
            lying = {"X-Forwarded-For": "127.0.0.1"}
            answers = probe(hosts, [(hosts.client.address, "GET", "/metrics", lying, None)])
            assert answers[0] != 200, "a forged X-Forwarded-For opened /metrics"
            assert time.monotonic() < deadline, f"still serving: {answers}"
            time.sleep(0.3)
        output = process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(15)
        if process.stdout:
            process.stdout.close()
        kill_everything_in(hosts.server)
    assert process.returncode == 2, output
    assert "name the proxies instead (--trusted-proxies 10.0.0.5" in output
