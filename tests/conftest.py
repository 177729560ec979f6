"""Shared fixtures: a real server on 127.0.0.1 over SQLite or PostgreSQL, and clients."""

import asyncio
import dataclasses
import gc
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from harness.chromium import launch_chromium
from harness.object_store import ObjectStore, running_object_store
from harness.redis import PrivateRedis
from server import SHUTDOWN_SECONDS
from signaling.client import ClientError, Documents, ExpertClient, KioskClient
from web.app import create_app
from web.keys import HUB, MEDIA, STORAGE
from web.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get(
    "WINDOWLINK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
DEMO_PASSWORD = "demo1234"
T = TypeVar("T")


HEAVY = ("browser", "cluster", "netns", "slow")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto`` (pyproject.toml's addopts). The fast tier (``-m fast``:
    no browser, no namespace, no cluster) is CPU work and waits on loopback: a third
    worker on two cores fills the waits (125 s instead of 149 here). With browsers,
    one worker per core: three at once starved their cameras' media."""
    cores = os.cpu_count() or 1
    if config.option.markexpr.strip() == "fast":
        return cores + 1
    return cores


def pytest_configure(config: pytest.Config) -> None:
    """Playwright's ``expect`` waits 15 s instead of its 5 s: a page in a call of
    three on two loaded cores (three browsers' cameras, the relay in the test's own
    process) may take longer than 5 s to show what the server sent it. A wait bound,
    not a timing claim: no test asserts how fast anything is."""
    from playwright.async_api import expect

    expect.set_options(timeout=15_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by place (tests/cluster: cluster; *_netns.py: netns), and ``fast`` for
    every test with none of the heavy markers: the tier a developer runs between edits."""
    for item in items:
        if "cluster" in item.path.parts:
            item.add_marker(pytest.mark.cluster)
        if item.path.stem.endswith("_netns"):
            item.add_marker(pytest.mark.netns)
        if not any(item.get_closest_marker(name) for name in HEAVY):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Collect after every test, so that a leaked socket or transport fails the test
    that leaked it (warnings are errors) instead of the end of the run. What survives
    is frozen (never scanned again): a collection then looks only at what the test
    made, not at every module, hypothesis strategy and schema loaded so far (over a
    second per test on a busy machine, most of the fast tier's time)."""
    yield
    gc.collect()
    gc.freeze()


@dataclasses.dataclass
class RunningServer:
    url: str
    app: web.Application
    settings: Settings

    @property
    def storage(self) -> Any:
        return self.app[STORAGE]

    @property
    def hub(self) -> Any:
        return self.app[HUB]

    @property
    def media(self) -> Any:
        return self.app[MEDIA]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None for the embedded SQLite; a fresh PostgreSQL database, dropped after:
    a copy of one already migrated (``migrated_template``), or empty for a test
    marked ``empty_database`` (one that migrates from an older schema itself)."""
    if request.param == "sqlite":
        yield None
        return
    if request.node.get_closest_marker("empty_database") is not None:
        url = await create_database()
    else:
        url = await create_database(template=request.getfixturevalue("migrated_template"))
    yield url
    await drop_database(url)


@pytest.fixture(scope="session")
def migrated_template() -> Iterator[str]:
    """A PostgreSQL database migrated to the latest schema, nothing else in it, made
    once per test process (each xdist worker its own: a template nobody else
    connects to can be copied by several at once) and dropped at the end. Copying
    it (CREATE DATABASE ... TEMPLATE, 0.02 s here) instead of migrating each test's
    new database took the fast tier's PostgreSQL set-ups from 39.8 s to 25.9 s."""
    from concurrent.futures import ThreadPoolExecutor

    from storage.database import Database, database_url

    async def migrate(url: str) -> None:
        db = await Database.open(database_url(url, Path()))
        await db.close()

    def run(work: Coroutine[Any, Any, T]) -> T:
        # A thread of its own: this runs inside the event loop of the test asking.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, work).result()

    url = run(create_database("wl_template"))
    try:
        run(migrate(url))
        yield url.rsplit("/", 1)[1]
    finally:
        run(drop_database(url))


async def create_database(prefix: str = "wl_test", template: str | None = None) -> str:
    """A fresh PostgreSQL database, empty or a copy of ``template``; its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await admin.close()
    return f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A redis-server of the test's own (harness.redis), stopped after the test."""
    redis = PrivateRedis(tmp_path / "redis")
    await redis.start()
    try:
        yield redis
    finally:
        await redis.stop()


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    """moto's S3-compatible server, one per test session."""
    with running_object_store() as store:
        yield store


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start the real app on 127.0.0.1 (port chosen by the OS) with test-sized timeouts."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> RunningServer:
        # Not a setting: a test's own clock (web.keys.CLOCK), e.g. past a deadline.
        clock = overrides.pop("clock", time.time)
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": tmp_path / f"data{len(runners)}",
            "demo": True,
            "ring_timeout": 1.0,
            "grace_period": 1.0,
            "no_expert_wait": 60.0,
            "media_address": ("127.0.0.1",),
            "media_workers": 0,
        }
        values.update(overrides)
        settings = Settings(**values)
        app = create_app(settings, clock=clock)
        # As server.py does (SHUTDOWN_SECONDS): a stop waits 3 s for open sockets.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return RunningServer(f"http://127.0.0.1:{port}", app, settings)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def server(start_server: ServerFactory, database_url: str | None) -> RunningServer:
    return await start_server(database_url=database_url)


@pytest.fixture
async def sqlite_server(start_server: ServerFactory) -> RunningServer:
    return await start_server()


ClientFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """Log in and connect a client of the account's role; everything is closed after."""
    clients: list[KioskClient | ExpertClient] = []

    async def make(
        server: RunningServer,
        username: str,
        password: str = DEMO_PASSWORD,
        *,
        kind: type[KioskClient] | type[ExpertClient] | None = None,
    ) -> Any:
        desk = username.startswith(("expert", "interpreter"))
        cls = kind or (ExpertClient if desk else KioskClient)
        client = cls(server.url)
        clients.append(client)
        await client.login(username, password)
        await client.connect()
        return client

    yield make
    for client in clients:
        await client.close()


async def active_call(
    server: RunningServer,
    connect: "ClientFactory",
    *,
    kiosk: str = "kiosk01",
    expert: str = "expert_market",
    department: str = "market",
    case_number: str | None = None,
) -> tuple[KioskClient, ExpertClient, str]:
    """Connect a kiosk and an available expert and take a consultation to active."""
    from signaling.messages import OfferView

    expert_client: ExpertClient = await connect(server, expert)
    await expert_client.set_presence("available")
    kiosk_client: KioskClient = await connect(server, kiosk)
    view = await kiosk_client.request(department, case_number=case_number)
    offer = await expert_client.next_event("offer", OfferView)
    await expert_client.accept(offer.consultation_id)
    return kiosk_client, expert_client, view.consultation_id


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def login_session(
    server: RunningServer, username: str, password: str = DEMO_PASSWORD
) -> aiohttp.ClientSession:
    """A new HTTP session logged in as ``username`` (caller closes it)."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(
        f"{server.url}/api/v1/login", json={"username": username, "password": password}
    ) as response:
        assert response.status == 200, await response.text()
    return session


async def call_json(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    """One JSON request under ``session``'s login: the status and the JSON answer."""
    async with session.request(method, url, json=body) as response:
        return response.status, await response.json()


async def call_route(
    session: aiohttp.ClientSession,
    server: RunningServer,
    method: str,
    path: str,
    body: Any = None,
) -> tuple[int, Any]:
    """``call_json`` on one of ``server``'s routes (``path``: /api/v1/...)."""
    return await call_json(session, method, server.url + path, body)


@pytest.fixture
async def browser(start_server: ServerFactory) -> AsyncIterator[Any]:
    """Debian's headless Chromium with fake camera and microphone (never a downloaded one).

    It asks for ``start_server`` so that it is closed before the servers stop: a
    server stopping under open pages waits for their sockets (seconds per test)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def upload_file(
    server: RunningServer,
    session: aiohttp.ClientSession,
    consultation_id: str,
    name: str,
    content: bytes,
    *,
    part_size: int = 256 * 1024,
) -> tuple[int, dict[str, Any]]:
    """Upload through the resumable API (the typed client's ``Documents``); the status
    and JSON of the last step, so that a test can check a refusal's code."""
    try:
        view = await Documents(session, server.url).upload(
            consultation_id, name, content, part_size=part_size
        )
    except ClientError as exc:
        assert exc.status is not None, exc
        return exc.status, {"error": {"code": exc.code, "message": exc.message}}
    return 201, view.model_dump()
