"""Real ``python server.py`` processes for the cluster tests, and what they share.

A ``Deployment`` is one service: a PostgreSQL database of its own (created on
127.0.0.1:5432, trust auth, and dropped after), a Redis key prefix of its own
(``test-<random>:`` on the machine's Redis, db 0, shared with CI: every key
under it is deleted after; or a test's own ``PrivateRedis``), one data
directory, one ``--master-key-file`` (nodes sharing records and documents refuse
to start without one) and one ``--cluster-secret``. ``Deployment.start`` runs a
``server.py`` with those flags on a port of its own or a given one. Every
process leads a session of its own, so that its whole group (relay workers,
``--processes`` children) can be killed whatever state a failing test leaves
it in.

Also here: the /proc look-ups the tests need (a process's children, whether one
is gone, which process holds a TCP connection), the per-process samples of
prometheus-client's multiprocess files, extra accounts, SQL, and polling.
"""

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import RedisError

from harness.ports import free_port
from signaling.client import ExpertClient, KioskClient, WindowlinkClient
from storage.audit_keys import master_audit_keys
from storage.demo import seed_demo
from storage.filecrypt import Suite
from storage.keyring import read_master_key
from storage.passwords import hash_password
from storage.records import Role
from storage.sessions import SessionPolicy
from storage.store import Storage
from tests.conftest import DEMO_PASSWORD, drop_database
from tests.conftest import create_database as create_test_database

ROOT = Path(__file__).resolve().parents[2]
SHARED_REDIS = "redis://127.0.0.1:6379/0"
STARTUP = 120.0
"""Seconds a server may take to answer /healthz (migrations, demo seeding, relay
workers; the machine is shared)."""

ClientT = TypeVar("ClientT", bound=WindowlinkClient)


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not so within {within:.0f} s: {what}")
        await asyncio.sleep(0.1)


# ---- server processes ----------------------------------------------------------------


class ServerProcess:
    """One ``python server.py ...``, its output in a log file."""

    def __init__(self, args: Sequence[str], port: int, log: Path) -> None:
        self.args = list(args)
        self.port = port
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("WINDOWLINK_", "PROMETHEUS_MULTIPROC"))
        }
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "server.py",
                *self.args,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    async def health(self) -> tuple[int, dict[str, Any]]:
        """/healthz's status and JSON body (raises ClientError if nobody answers)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as response:
            return response.status, dict(await response.json())

    async def wait_healthy(self, within: float = STARTUP) -> None:
        async def healthy() -> bool:
            if not self.running:
                raise AssertionError(f"server on port {self.port} exited:\n{self.log_tail()}")
            try:
                return (await self.health())[0] == 200
            except aiohttp.ClientError:
                return False

        await eventually(healthy, within, f"server on port {self.port} answers /healthz")

    def send(self, signum: int) -> None:
        """A signal to the server process only (not its group)."""
        os.kill(self.pid, signum)

    async def wait_exit(self, within: float = 60.0) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), within)

    async def stop(self, within: float = 30.0) -> None:
        """SIGTERM and wait; then SIGKILL whatever of its process group is left."""
        if self.process is None:
            return
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), within)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        await self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Deployment:
    """What the processes of one service share, and the processes started."""

    root: Path
    database_url: str
    redis_url: str
    redis_prefix: str
    cluster_secret: str
    processes: list[ServerProcess] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def master_key_file(self) -> Path:
        """The deployment's master key (made by ``open_deployment``)."""
        return self.root / "master.key"

    def flags(self, port: int) -> list[str]:
        return [
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--demo",
            "--data-dir",
            str(self.data_dir),
            "--database-url",
            self.database_url,
            "--redis-url",
            self.redis_url,
            "--redis-prefix",
            self.redis_prefix,
            "--master-key-file",
            str(self.master_key_file),
            "--cluster-secret",
            self.cluster_secret,
            "--media-address",
            "127.0.0.1",
            "--media-workers",
            "1",
            "--log-level",
            "warning",
        ]

    async def start(
        self, *extra: str, port: int | None = None, healthy: bool = True
    ) -> ServerProcess:
        """A ``server.py`` with the shared flags (``extra`` ones win) on ``port``
        (a free one by default)."""
        port = port or free_port()
        log = self.root / f"server-{len(self.processes)}-{port}.log"
        server = ServerProcess([*self.flags(port), *extra], port, log)
        self.processes.append(server)
        await server.start()
        if healthy:
            await server.wait_healthy()
        return server

    async def start_nodes(self, count: int, *extra: str) -> list[ServerProcess]:
        """``count`` processes on ports of their own. The others start once the first
        has made the key-encryption key (in the database, under the master key), so
        that the deployment has one from the start."""
        first = await self.start(*extra, healthy=False)

        async def key_made() -> bool:
            if not first.running:
                raise AssertionError(f"first server exited:\n{first.log_tail()}")
            try:
                return bool(await self.query("SELECT id FROM keks"))
            except asyncpg.PostgresError:
                return False  # not migrated yet

        await eventually(key_made, STARTUP, "the first server made its key")
        rest = [await self.start(*extra, healthy=False) for _ in range(count - 1)]
        nodes = [first, *rest]
        await asyncio.gather(*(node.wait_healthy() for node in nodes))
        return nodes

    async def stop_all(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.log_tail()}" for p in self.processes)

    async def create_accounts(
        self,
        kiosks: Iterable[str] = (),
        experts: Iterable[tuple[str, str]] = (),
        password: str = DEMO_PASSWORD,
    ) -> None:
        """More kiosks (hall ``city``) and experts (username, department) than the
        demo has, straight into the database (one password hash for all)."""
        policy = SessionPolicy(idle_timeout=3600.0, max_age=3600.0)
        keys = master_audit_keys(
            read_master_key(self.master_key_file), Suite.AES_256_GCM, self.root / "seeding"
        )
        storage = await Storage.open(self.database_url, self.root / "seeding", policy, keys)
        try:
            # Kiosks stand in a hall that must exist (halls are records): the demo's,
            # which the nodes (--demo) would seed anyway.
            await seed_demo(storage)
            encoded = await asyncio.to_thread(hash_password, password)
            for username in kiosks:
                await storage.accounts.create(
                    username, password, Role.KIOSK, hall="city", password_hash=encoded
                )
            for username, department in experts:
                await storage.accounts.create(
                    username, password, Role.EXPERT, department=department, password_hash=encoded
                )
        finally:
            await storage.close()

    async def query(self, sql: str, *args: Any) -> list[Any]:
        """Rows of a SQL query on the deployment's database."""
        connection = await asyncpg.connect(self.database_url)
        try:
            rows: list[Any] = await connection.fetch(sql, *args)
            return rows
        finally:
            await connection.close()

    async def verify_audit(self) -> tuple[int, str]:
        """``server.py audit verify`` on the deployment's records: exit code, output."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "server.py",
            "--data-dir",
            str(self.data_dir),
            "--database-url",
            self.database_url,
            "--master-key-file",
            str(self.master_key_file),
            "audit",
            "verify",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        return await process.wait(), output.decode(errors="replace")


async def create_database() -> str:
    return await create_test_database("wl_cluster")


async def delete_redis_keys(url: str, prefix: str) -> None:
    redis = Redis.from_url(url)
    try:
        doomed = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(doomed), 500):
            await redis.delete(*doomed[start : start + 500])
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def open_deployment(root: Path, redis_url: str = SHARED_REDIS) -> AsyncIterator[Deployment]:
    """A deployment's database, key prefix, data directory and secret; afterwards
    every process stopped (SIGTERM, then SIGKILL of its group), the database
    dropped and the keys deleted. The servers' logs are printed at the end (pytest
    shows them when the test failed)."""
    root.mkdir(parents=True, exist_ok=True)
    deployment = Deployment(
        root,
        await create_database(),
        redis_url,
        f"test-{secrets.token_hex(6)}:",
        secrets.token_hex(24),  # never starts with "-", which argparse would take for a flag
    )
    deployment.master_key_file.write_text(os.urandom(32).hex())
    deployment.master_key_file.chmod(0o600)
    try:
        yield deployment
    finally:
        try:
            await deployment.stop_all()
            print(deployment.log_tails())
        finally:
            await drop_database(deployment.database_url)
            with contextlib.suppress(OSError, RedisError):
                await delete_redis_keys(redis_url, deployment.redis_prefix)


# ---- a Redis server of a test's own -------------------------------------------------


# ---- clients -------------------------------------------------------------------------


class Clients:
    """Kiosk and expert clients logged in to a server; all closed at the end."""

    def __init__(self) -> None:
        self._all: list[WindowlinkClient] = []

    async def open(
        self,
        kind: type[ClientT],
        url: str,
        username: str,
        password: str = DEMO_PASSWORD,
        *,
        reconnect: bool = False,
    ) -> ClientT:
        client = kind(url, reconnect=reconnect)
        self._all.append(client)
        await client.login(username, password)
        await client.connect()
        return client

    async def kiosk(self, url: str, username: str, *, reconnect: bool = False) -> KioskClient:
        return await self.open(KioskClient, url, username, reconnect=reconnect)

    async def expert(self, url: str, username: str, *, reconnect: bool = False) -> ExpertClient:
        return await self.open(ExpertClient, url, username, reconnect=reconnect)

    async def close(self) -> None:
        for client in self._all:
            await client.close()
        self._all.clear()

    async def __aenter__(self) -> "Clients":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


def sid_of(client: WindowlinkClient) -> str | None:
    sid: str | None = client.sio.get_sid()
    return sid


async def reconnected(client: WindowlinkClient, old_sid: str | None, within: float = 60) -> None:
    """Until the client (``reconnect=True``) holds a new socket and answers get_state."""

    async def back() -> bool:
        if not client.sio.connected or sid_of(client) in (None, old_sid):
            return False
        try:
            await client.state()
        except Exception:
            return False
        return True

    await eventually(back, within, f"{client.username} reconnected")


def local_port_of(client: WindowlinkClient) -> int:
    """The client-side port of the client's websocket (engine.io's connection)."""
    ws = client.sio.eio.ws
    port: int = ws.get_extra_info("sockname")[1]
    return port


# ---- /proc ---------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the state on (the name may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


@dataclass(frozen=True)
class ProcessId:
    """A pid and its start time, so that a reused pid is not taken for the same process."""

    pid: int
    started: str

    @classmethod
    def of(cls, pid: int) -> "ProcessId | None":
        fields = _stat(pid)
        return cls(pid, fields[19]) if fields is not None else None

    @property
    def gone(self) -> bool:
        """Exited (a zombie nobody reaped counts as exited)."""
        fields = _stat(self.pid)
        return fields is None or fields[0] in ("Z", "X") or fields[19] != self.started


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return sorted(found)


def descendants_of(pid: int) -> list[int]:
    out: list[int] = []
    pending = [pid]
    while pending:
        for child in children_of(pending.pop()):
            out.append(child)
            pending.append(child)
    return out


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def connection_holder(server_port: int, client_port: int, candidates: Iterable[int]) -> int | None:
    """Which of ``candidates`` holds the server side of the loopback TCP connection
    from ``client_port`` to ``server_port`` (IPv4), by its socket's inode."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (
            int(local.rsplit(":", 1)[1], 16) == server_port
            and int(remote.rsplit(":", 1)[1], 16) == client_port
            and fields[9] != "0"  # an earlier connection in TIME_WAIT has no socket
        ):
            inode = fields[9]
            break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in candidates:
        try:
            links = []
            with os.scandir(f"/proc/{pid}/fd") as fds:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        links.append(os.readlink(fd.path))
        except OSError:
            continue
        if target in links:
            return pid
    return None


# ---- metrics -------------------------------------------------------------------------


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples called ``name`` whose labels include ``labels``."""
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


def samples_of_process(metrics_dir: Path, pid: int, name: str, **labels: str) -> list[float]:
    """What one process of ``--processes`` wrote in prometheus-client's multiprocess
    directory (its own ``*_<pid>.db`` files, read alone)."""
    with tempfile.TemporaryDirectory() as alone:
        for path in metrics_dir.glob(f"*_{pid}.db"):
            shutil.copy(path, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=alone)  # type: ignore[no-untyped-call]
        return [
            sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        ]


async def relay_reports(deployment: Deployment) -> list[dict[str, Any]]:
    """What the nodes last reported of their relay workers (live-state store)."""
    redis = Redis.from_url(deployment.redis_url, decode_responses=True)
    try:
        keys = [k async for k in redis.scan_iter(f"{deployment.redis_prefix}beat:6:relays:*")]
        return [json.loads(v) for v in await redis.mget(keys) if v] if keys else []
    finally:
        await redis.aclose()
