"""Two throw-away network namespaces joined by a veth pair: a "server host" and a
"client host" with addresses of their own, so that a test sees what a browser on
another machine sees (no loopback shortcut, a real scheme and origin).

The addresses exist only inside the namespaces; nothing is configured on this
machine's own interfaces and no traffic leaves the pair. Names are unique per
run, so parallel or leftover runs do not clash; everything is removed on exit,
failures included. Needs root and iproute2's ``ip``.
"""

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass

from harness.debian_tools import debian_tool

IP = "ip"
COMMAND_TIMEOUT = 10.0
LINK_UP_TIMEOUT = 10.0


class NetnsUnavailable(RuntimeError):
    """This machine cannot make network namespaces for us (not root, no ``ip``)."""


@dataclass(frozen=True)
class Host:
    """One namespace: its name, its interface and its only address."""

    namespace: str
    interface: str
    address: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this namespace."""
        return [IP, "netns", "exec", self.namespace, *argv]

    def pids(self) -> list[int]:
        """Processes living in this namespace."""
        out = _ip("netns", "pids", self.namespace, check=False)
        return [int(p) for p in out.split() if p.isdigit()]


@dataclass(frozen=True)
class HostPair:
    server: Host
    client: Host


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    # A missing program fails the test (naming its package); only root is a reason.
    debian_tool(IP)
    return None


def _ip(*argv: str, check: bool = True) -> str:
    done = subprocess.run(
        [IP, *argv], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def kill_everything_in(host: Host, grace: float = 5.0, *, matching: str | None = None) -> None:
    """Stop what still runs in ``host``'s namespace (only our own processes can be
    there: the namespace was made by this run), or only those whose command line
    contains ``matching``: SIGTERM, then SIGKILL."""

    def targets() -> list[int]:
        return [p for p in host.pids() if matching is None or matching in _command_line(p)]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = targets()
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and targets():
            time.sleep(0.1)


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_carrier(host: Host) -> None:
    deadline = time.monotonic() + LINK_UP_TIMEOUT
    while True:
        links = json.loads(_ip("-n", host.namespace, "-j", "link", "show", "dev", host.interface))
        if links and links[0].get("operstate") == "UP":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.interface} in {host.namespace} never came up: {links}")
        time.sleep(0.05)


@contextmanager
def host_pair(subnet: str | None = None) -> Iterator[HostPair]:
    """A server and a client namespace on one /24 of 10.213.0.0/16 (random unless
    given as ``"10.213.N"``), torn down on exit after killing what still runs there."""
    reason = unavailable_reason()
    if reason:
        raise NetnsUnavailable(reason)
    tag = secrets.token_hex(3)
    prefix = subnet or f"10.213.{secrets.randbelow(254) + 1}"
    server = Host(f"wl-{tag}-srv", f"wl{tag}s", f"{prefix}.1")
    client = Host(f"wl-{tag}-cli", f"wl{tag}c", f"{prefix}.2")
    with ExitStack() as undo:
        for host in (server, client):
            _ip("netns", "add", host.namespace)
            undo.callback(_ip, "netns", "del", host.namespace, check=False)
        # Made inside the namespaces: the pair never exists on this machine's side.
        _ip(
            "link", "add", server.interface, "netns", server.namespace, "type", "veth",
            "peer", "name", client.interface, "netns", client.namespace,
        )  # fmt: skip
        undo.callback(_ip, "-n", server.namespace, "link", "del", server.interface, check=False)
        for host in (server, client):
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.interface)
            _ip("-n", host.namespace, "link", "set", "lo", "up")
            _ip("-n", host.namespace, "link", "set", host.interface, "up")
        # Run first on exit: nothing may outlive the namespaces.
        undo.callback(kill_everything_in, client)
        undo.callback(kill_everything_in, server)
        for host in (server, client):
            _wait_carrier(host)
        yield HostPair(server, client)
