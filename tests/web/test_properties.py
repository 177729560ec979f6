"""Every REST route and every socket.io event, fed boundary and arbitrary input by
hypothesis, against one real server for the whole module.

The routes come from ``web.app.API_TABLES`` and the events from the gateway's event
table, so that a new route or event is covered without touching this file. Input:
deep nesting (within the 256 KiB body and 64 KiB frame limits), numbers beyond
4,300 digits, 1e308, -0, NaN and its look-alikes, wrong types, long and odd Unicode
(lone combining marks, RTL overrides, NUL, U+FFFF), extra fields, and valid ids of
other people's consultations, files and uploads.

Properties:
- HTTP never answers 5xx; socket.io never acks ``internal``, and the connection stays
  usable (or, for a packet that does not decode, is closed on purpose);
- the server keeps serving (``/healthz`` 200) and logs no error;
- a rejected request or event changes nothing: every table, the live state (queues,
  presence, open calls), the unfinished uploads and the audit log are as before.
"""

import asyncio
import base64
import contextlib
import hashlib
import inspect
import itertools
import json
import logging
import math
import secrets
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
import socketio
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import select

from signaling.client import Documents, ExpertClient, KioskClient, WindowlinkClient
from signaling.config import SignalingConfig
from signaling.gateway import EventSpec, SignalingGateway
from signaling.live import OpenCall, Phase, call_key, experts_set, open_key, presence_key
from signaling.messages import ConsultationView, OfferView
from storage import schema
from storage.records import Role
from tests.conftest import RunningServer, login_session
from web.api import Endpoint
from web.app import API_TABLES, create_app
from web.keys import FILES, HUB, STORAGE
from web.settings import Settings

# A failing example makes hypothesis load libcst (to suggest a patch), which trips a
# DeprecationWarning of mypy_extensions; as an error it would hide the failure.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)
# The fuzzing (every route, event and raw frame: some 1,750 examples against the live
# server, about a fifth of the fast tier's CPU) is a slow-tier run, in CI as before;
# the regressions at the end of this module stay in the fast tier.
FUZZING = pytest.mark.slow
T = TypeVar("T")
PASSWORD = "demo1234"
PDF = b"%PDF-1.7\n" + b"1" * 3000 + b"\n%%EOF\n"
ROUTE_EXAMPLES = 15
EVENT_EXAMPLES = 25
FRAME_EXAMPLES = 30
# Accounts whose sessions and calls the module keeps: bodies may name them (a login,
# a duplicate account), paths never do, so no valid change disables or resets them.
KEPT_ACCOUNTS = ("kiosk01", "kiosk02", "kiosk03", "expert_market", "expert_housing")
# Within the 64 KiB socket.io frame limit.
FRAME_LIMIT = 60 * 1024
ROLE_ACCOUNTS = {
    "kiosk": "kiosk01",
    "expert": "expert_market",
    "clerk": "clerk",
    "admin": "admin",
}


# ---- one server for the module ------------------------------------------------------


class ServerThread:
    """The real app on 127.0.0.1, in a thread with its own event loop, so that one
    server outlives the tests' function-scoped loops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="server", daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.url = ""

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run ``coro`` on the server's loop from a thread that has no loop running."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop from a test's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        try:
            if self._runner is not None:
                self.run(self._stop(self._runner))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()

    async def _stop(self, runner: web.AppRunner) -> None:
        await runner.cleanup()
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, or carrying a traceback, that the server logs
    (in its thread; not the clients', which log a dropped connection as an error)."""

    def __init__(self, server: "ServerThread") -> None:
        super().__init__(logging.DEBUG)
        self.server = server
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR and not record.exc_info:
            return
        if record.thread != self.server.thread_id or record.name.startswith(
            ("engineio.client", "socketio.client")
        ):
            return
        if record.name == "aiohttp.server" and isinstance(
            record.exc_info[1] if record.exc_info else None, BadHttpMessage
        ):
            # aiohttp's parser refusing a malformed request line or header (a 400
            # before any handler runs) logs a traceback of its own: noise, not ours.
            return
        self.records.append(f"{record.name}: {record.getMessage()}")

    def take(self) -> list[str]:
        taken, self.records = self.records, []
        return taken


# ---- the world the examples act on ----------------------------------------------------


@dataclass
class Call:
    """An active consultation with a finished document and an unfinished upload."""

    kiosk: KioskClient
    expert: ExpertClient
    department: str
    consultation_id: str = ""
    file_id: str = ""
    upload_id: str = ""
    media_tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    server: ServerThread
    tokens: dict[str, str]
    calls: list[Call]
    ended_id: str
    """A consultation of a third kiosk, ended."""

    @property
    def ids(self) -> list[str]:
        return [c.consultation_id for c in self.calls] + [self.ended_id]

    @property
    def file_ids(self) -> list[str]:
        return [c.file_id for c in self.calls]

    @property
    def upload_ids(self) -> list[str]:
        return [c.upload_id for c in self.calls]

    @property
    def media_tokens(self) -> list[str]:
        return [t for c in self.calls for t in c.media_tokens.values()]


async def _login(url: str, username: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/api/v1/login", json={"username": username, "password": PASSWORD}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return response.cookies["wl_session"].value


async def _upload(url: str, token: str, consultation_id: str, finish: bool) -> str:
    """A document uploaded (and finished, or left unfinished) by ``token``'s account:
    the file's id, or the unfinished upload's."""
    async with aiohttp.ClientSession() as http:
        documents = Documents(http, url, headers={"Cookie": f"wl_session={token}"})
        ticket = await documents.begin(consultation_id, "doc.pdf", len(PDF))
        if not finish:
            return ticket.id
        await documents.send(ticket, PDF)
        return (await documents.finish(ticket)).id


async def _open_call(url: str, call: Call) -> None:
    """Take ``call``'s kiosk and expert into a new active consultation (runs on the
    server's loop, where the two clients live)."""
    current = (await call.kiosk.state()).consultation
    if current is not None:
        await call.kiosk.end(current.consultation_id)
    expert_state = await call.expert.state()
    if expert_state.consultation is not None:
        with contextlib.suppress(Exception):
            await call.expert.end(expert_state.consultation.consultation_id)
    with contextlib.suppress(Exception):
        # Away first: it ends the wrap-up of a call an example ended (its record
        # waits among the unfinished), which offers would otherwise wait for.
        await call.expert.set_presence("away")
        await call.expert.set_presence("available")
    call.expert.drain("offer")
    call.kiosk.drain("consultation")
    await call.kiosk.request(call.department, case_number=f"P-{call.department}")
    offer = await call.expert.next_event("offer", OfferView)
    expert_view = await call.expert.accept(offer.consultation_id)
    kiosk_view = await call.kiosk.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "active"
    )
    assert expert_view.media is not None and kiosk_view.media is not None
    call.consultation_id = offer.consultation_id
    call.media_tokens = {"kiosk": kiosk_view.media.token, "expert": expert_view.media.token}
    call.file_id = await _upload(url, call.kiosk.session_cookie, call.consultation_id, True)
    call.upload_id = await _upload(url, call.kiosk.session_cookie, call.consultation_id, False)


async def _build_world(server: ServerThread) -> World:
    url = server.url
    app = _app(server)
    await app[STORAGE].accounts.create("kiosk03", "password123", Role.KIOSK, hall="city")
    tokens = {role: await _login(url, name) for role, name in ROLE_ACCOUNTS.items()}
    calls = []
    for kiosk_name, expert_name, department in (
        ("kiosk01", "expert_market", "market"),
        ("kiosk02", "expert_housing", "housing"),
    ):
        expert = ExpertClient(url)
        await expert.login(expert_name, PASSWORD)
        await expert.connect()
        kiosk = KioskClient(url)
        await kiosk.login(kiosk_name, PASSWORD)
        await kiosk.connect()
        call = Call(kiosk, expert, department)
        await _open_call(url, call)
        calls.append(call)
    third = KioskClient(url)
    await third.login("kiosk03", "password123")
    await third.connect()
    ended = await third.request("social")
    await third.cancel(ended.consultation_id)
    await third.close()
    return World(server, tokens, calls, ended.consultation_id)


async def _heal(world: World) -> None:
    """Open a new call where an example ended one (events may end calls; admins may
    withdraw them), so that each test starts with two active calls."""
    consultations = _app(world.server)[HUB].consultations
    for call in world.calls:
        live = await consultations.call(call.consultation_id)
        if live is None or live.phase is not Phase.ACTIVE:
            await _open_call(world.server.url, call)


def _app(server: ServerThread) -> web.Application:
    assert server.app is not None
    return server.app


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path_factory.mktemp("properties"),
        demo=True,
        media_address=("127.0.0.1",),
        media_workers=0,
        # Nothing may change by itself between an example's two snapshots.
        ring_timeout=3600.0,
        grace_period=3600.0,
        no_expert_wait=3600.0,
        # The world's upload has received nothing: past the first-byte timeout (30 s,
        # reached on a busy machine) the sweeper would discard it between snapshots.
        upload_first_byte_timeout=3600.0,
        upload_idle_timeout=3600.0,
        # The examples are many and fast: the limits on them are tested elsewhere.
        login_attempts=100_000,
        events_per_second=100_000.0,
        chat_per_minute=100_000,
    )
    server = ServerThread(settings)
    errors = ErrorLog(server)
    logging.getLogger().addHandler(errors)
    server.start()
    built: World | None = None
    try:
        built = server.run(_build_world(server))
        yield built
    finally:
        try:
            if built is not None:
                server.run(_close_clients(built))
        finally:
            server.stop()
            logging.getLogger().removeHandler(errors)
    assert errors.take() == []


async def _close_clients(world: World) -> None:
    for call in world.calls:
        await call.kiosk.close()
        await call.expert.close()


@pytest.fixture
def error_log(world: World) -> Iterator[ErrorLog]:
    handler = ErrorLog(world.server)
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture
async def healed(world: World, error_log: ErrorLog) -> AsyncIterator[World]:
    await world.server.call(_heal(world))
    yield world
    async with aiohttp.ClientSession() as http, http.get(f"{world.server.url}/healthz") as r:
        assert r.status == 200
    assert error_log.take() == []


# ---- what "nothing changed" means --------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, frozenset[tuple[Any, ...]]]
    audit: tuple[tuple[Any, ...], ...]
    live: tuple[Any, ...]
    uploads: tuple[int, int]


# Columns that every authenticated request or event touches on purpose.
VOLATILE = {"sessions": {"last_seen"}}


async def _snapshot(app: web.Application) -> Snapshot:
    storage = app[STORAGE]
    store = app[HUB].store

    def read(conn: Any) -> tuple[dict[str, frozenset[tuple[Any, ...]]], list[Any]]:
        tables = {}
        for table in schema.metadata.sorted_tables:
            if table.name == "audit_log":
                continue
            columns = [c for c in table.columns if c.name not in VOLATILE.get(table.name, ())]
            rows = conn.execute(select(*columns)).all()
            tables[table.name] = frozenset(tuple(r) for r in rows)
        audit = conn.execute(select(schema.audit_log).order_by(schema.audit_log.c.seq)).all()
        return tables, audit

    tables, audit = await storage.db.read(read)
    live: list[Any] = []
    call_ids: set[str] = set()
    for department in sorted(row[0] for row in tables["departments"]):
        queue = await store.queue(department)
        call_ids.update(queue)
        experts = await store.members(experts_set(department))
        presence = sorted(
            (k, v.to_json(), v.version)
            for k, v in (await store.read(presence_key(e) for e in experts)).items()
        )
        live.append((department, tuple(queue), tuple(presence)))
    for account_id in sorted(row[0] for row in tables["accounts"]):
        own = (await store.read([open_key(account_id)])).get(open_key(account_id))
        open_call = own.call_id if isinstance(own, OpenCall) else None
        live.append((account_id, open_call, own.version if own else 0))
        if open_call:
            call_ids.add(open_call)
    for call_id in sorted(call_ids):
        call = (await store.read([call_key(call_id)])).get(call_key(call_id))
        live.append((call_id, call.to_json() if call else None, call.version if call else 0))
    files = app[FILES]
    return Snapshot(tables, tuple(tuple(r) for r in audit), tuple(live), await files.unfinished())


def assert_unchanged(
    before: Snapshot, after: Snapshot, *, audit_may_add: str | None = None, uploads_may_end: bool
) -> None:
    """Nothing changed, except what a rejection does on purpose: a failed login is
    audited; a stale upload (its call ended) is discarded when its owner asks for it."""
    for name, rows in before.tables.items():
        if name == "audit_head" and audit_may_add:
            continue
        assert after.tables[name] == rows, (name, rows ^ after.tables[name])
    added = after.audit[len(before.audit) :]
    assert after.audit[: len(before.audit)] == before.audit
    assert all(audit_may_add and row[3] == audit_may_add for row in added), added
    assert after.live == before.live
    if uploads_may_end:
        assert after.uploads[0] <= before.uploads[0]
    else:
        assert after.uploads == before.uploads


# ---- input strategies ---------------------------------------------------------------

ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202eevil",
    "\u200f\u202a",
    "\u0301",
    "\u0301\u0301\u0301",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "\u2028",
    "..",
    "../../etc/passwd",
    "%2e%2e%2f",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "null",
    "NaN",
    "-NaN",
    "Infinity",
    "-0",
    "1e308",
    "1e309",
    "1e23",
    "0x10",
    "٣",
    "１２３",
    "\t\n\r",
]
# Long text, built when drawn (a strategy holding it would print 70 kB reprs).
LONG_TEXT = st.sampled_from([("é", 3000), ("𠜎", 2000), ("a", 70_000)]).map(
    lambda piece: piece[0] * piece[1]
)
# Lone surrogates are not JSON text a client can send (the encoder escapes them and
# the server's strict models refuse them), so text is drawn without them.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
ODD_TEXT = st.one_of(TEXT, st.sampled_from(ODD_STRINGS), LONG_TEXT)
HEADER_TEXT = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.sampled_from(["", "-1", "9" * 5000, "1e23", "٣", "bytes=0-", "sha256 ===="]),
)


class Raw:
    """JSON text put into a document verbatim (numbers json.dumps would refuse)."""

    def __init__(self, text: str) -> None:
        self.text = text


RAW_NUMBERS = st.sampled_from(
    [
        Raw("9" * 5000),
        Raw("-" + "1" * 4301),
        Raw("1e308"),
        Raw("1e309"),
        Raw("-1e309"),
        Raw("-0"),
        Raw("-0.0"),
        Raw("1e-400"),
        Raw("0." + "0" * 5000 + "1"),
        Raw("NaN"),
        Raw("Infinity"),
        Raw("-Infinity"),
        Raw("123456789012345678901234567890"),
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.floats(allow_nan=True, allow_infinity=True),
    ODD_TEXT,
    RAW_NUMBERS,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def _depth(text: str) -> int:
    """How deep brackets nest in JSON text (an upper bound: strings are not skipped)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def to_json(value: Any) -> str:
    """JSON text of ``value``, with ``Raw`` pieces verbatim."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{to_json(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return json.dumps(value)


DEEP = st.one_of(
    st.integers(100, 60_000).map(lambda n: Raw("[" * n + "]" * n)),
    st.integers(100, 30_000).map(lambda n: Raw('{"a":' * n + "1" + "}" * n)),
)


def plausible(world: World, name: str) -> st.SearchStrategy[Any]:
    """Values a field of this name could well carry: valid, or valid-looking and
    naming what belongs to someone else."""
    hex_id = st.text("0123456789abcdef", min_size=16, max_size=16)
    ids = st.sampled_from(world.ids + world.file_ids + world.upload_ids) | hex_id
    table: dict[str, st.SearchStrategy[Any]] = {
        "consultation_id": ids,
        "file_id": st.sampled_from(world.file_ids) | ids,
        "upload_id": st.sampled_from(world.upload_ids) | ids,
        "username": st.sampled_from(["expert_social", "nobody", "new_user1", *KEPT_ACCOUNTS]),
        "password": st.sampled_from([PASSWORD, "Str0ng-Pass-Phrase!9", "short"]),
        "code": st.sampled_from(["social", "market", "newdept", "x"]),
        "department": st.sampled_from(["market", "housing", "social", "nosuch"]),
        "name_zh": st.sampled_from(["市场", "x"]),
        "name_en": st.sampled_from(["Market", "x"]),
        "hours": st.sampled_from(["1-5 09:00-17:00", "7-1 00:00-24:00", "1-5 25:00-26:00"]),
        "role": st.sampled_from(["kiosk", "expert", "clerk", "admin", "root"]),
        "hall": st.sampled_from(["city", "district", "nohall"]),
        "display_name": TEXT,
        "disabled": st.booleans(),
        "name": st.sampled_from(["a.pdf", "图.png", "x"]),
        "size": st.integers(min_value=-1, max_value=2**40),
        "category": st.sampled_from(["application", "supplementary", "reply", "other"]),
        "case_number": st.sampled_from(["P-market", "P-housing", "CASE-1"]),
        "rating": st.integers(min_value=0, max_value=6),
        "status": st.sampled_from(["available", "away", "busy"]),
        "outcome": st.sampled_from(["answered", "follow_up", "referred", "great"]),
        "text": st.sampled_from(["你好", "hello"]),
        "notes": TEXT,
    }
    return table.get(name, TEXT)


@st.composite
def model_payload(draw: st.DrawFn, world: World, model: type[BaseModel]) -> Any:
    """An object shaped like ``model``: each field plausible, odd, of a wrong type or
    missing, sometimes with fields it does not have."""
    payload: dict[str, Any] = {}
    for name in model.model_fields:
        choice = draw(st.integers(0, 9))
        if choice <= 5:
            payload[name] = draw(plausible(world, name))
        elif choice <= 8:
            payload[name] = draw(VALUES)
        # 9: left out
    extra = draw(st.dictionaries(ODD_TEXT, VALUES, max_size=2))
    return {**payload, **extra}


def any_payload(world: World, model: type[BaseModel] | None) -> st.SearchStrategy[Any]:
    shaped = [model_payload(world, model)] * 3 if model is not None else []
    return st.one_of(*shaped, VALUES, DEEP, st.dictionaries(ODD_TEXT, VALUES, max_size=5))


# ---- REST ---------------------------------------------------------------------------

ROUTES = [e for table in API_TABLES for e in table.endpoints]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/sdp",
    "application/offset+octet-stream",
    "",
]


# Path values that change nothing the module keeps (its accounts, its departments).
PATH_NAMES = {
    "side": st.sampled_from(["kiosk", "expert", "both", "KIOSK"]),
    "username": st.sampled_from(["expert_social", "nobody", "new_user1", "Admin"]),
    "code": st.sampled_from(["social", "newdept", "status", "x"]),
}


def path_values(world: World, name: str) -> st.SearchStrategy[str]:
    candidate = PATH_NAMES[name] if name in PATH_NAMES else plausible(world, name).map(str)
    # Short enough for the request line (aiohttp's parser refuses longer ones itself).
    odd = ODD_TEXT.filter(lambda v: len(quote(v, safe="")) < 2000)
    return st.one_of(candidate, candidate, odd)


def body_bytes(world: World, endpoint: Endpoint) -> st.SearchStrategy[bytes]:
    as_json = any_payload(world, endpoint.body).map(lambda v: to_json(v).encode())
    raw = st.one_of(
        st.binary(max_size=300),
        st.just(PDF),
        st.just(b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"),
        st.just(json.dumps({"username": "admin"}).encode("utf-16")),
        st.just(b"\xef\xbb\xbf{}"),
        st.just(b'{"a": "\xff\xfe"}'),
    )
    return st.one_of(as_json, as_json, raw).filter(lambda b: len(b) <= 250 * 1024)


def headers_for(world: World, endpoint: Endpoint) -> st.SearchStrategy[dict[str, str]]:
    tokens = [f"Bearer {t}" for t in world.media_tokens]
    pieces: dict[str, st.SearchStrategy[str]] = {
        "Content-Type": st.sampled_from(CONTENT_TYPES) | HEADER_TEXT,
        "Range": st.sampled_from(
            ["bytes=0-10", "bytes=-5", "bytes=5-", f"bytes={'9' * 5000}-", "bytes=9-3", "x"]
        )
        | HEADER_TEXT,
        "Upload-Offset": st.sampled_from(["0", "1", "-1", "9" * 20]) | HEADER_TEXT,
        "Upload-Checksum": st.sampled_from(
            ["sha256 " + base64.b64encode(hashlib.sha256(PDF).digest()).decode(), "md5 x"]
        )
        | HEADER_TEXT,
        "Authorization": st.sampled_from([*tokens, "Bearer", "Basic YTpi", ""]) | HEADER_TEXT,
    }
    return st.fixed_dictionaries({}, optional=pieces)


@st.composite
def rest_request(draw: st.DrawFn, world: World, endpoint: Endpoint) -> dict[str, Any]:
    path = endpoint.path
    for name in endpoint.path_params:
        value = draw(path_values(world, name))
        path = path.replace("{" + name + "}", quote(value, safe=""))
    declared = [name for name, _ in endpoint.query]
    query = draw(
        st.dictionaries(
            st.sampled_from(declared) | TEXT if declared else TEXT,
            st.one_of(ODD_TEXT, RAW_NUMBERS.map(lambda r: r.text), st.integers().map(str)),
            max_size=3,
        )
    )
    # Short enough for the request line (aiohttp's parser refuses longer ones itself).
    query = {k: v for k, v in query.items() if len(quote(k)) + len(quote(v)) < 2000}
    sends_body = endpoint.method in ("POST", "PATCH", "PUT") or draw(st.booleans())
    return {
        "role": draw(st.sampled_from(["anonymous", "forged", *ROLE_ACCOUNTS])),
        "path": path,
        "query": query,
        "headers": draw(headers_for(world, endpoint)),
        "body": draw(body_bytes(world, endpoint)) if sends_body else None,
    }


async def _cookie_for(world: World, role: str, endpoint: Endpoint) -> str | None:
    if role == "anonymous":
        return None
    if role == "forged":
        return secrets.token_urlsafe(32)
    if endpoint.path in ("/api/v1/logout", "/api/v1/login"):
        # Logging out (or in again) would end the session the other examples use.
        return await _login(world.server.url, ROLE_ACCOUNTS[role])
    return world.tokens[role]


@FUZZING
@pytest.mark.parametrize("endpoint", ROUTES, ids=[f"{e.method} {e.path}" for e in ROUTES])
@settings(
    max_examples=ROUTE_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
async def test_no_route_answers_5xx_and_rejections_change_nothing(
    healed: World, endpoint: Endpoint, data: st.DataObject
) -> None:
    world = healed
    request = data.draw(rest_request(world, endpoint))
    cookie = await _cookie_for(world, request["role"], endpoint)
    headers = dict(request["headers"])
    if cookie is not None:
        headers["Cookie"] = f"wl_session={cookie}"
    app = _app(world.server)
    before = await world.server.call(_snapshot(app))
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.request(
            endpoint.method,
            world.server.url + request["path"],
            params=request["query"],
            data=request["body"],
            headers=headers,
            skip_auto_headers=["Content-Type"],
        ) as response:
            status = response.status
            body = await response.read()
        async with http.get(f"{world.server.url}/healthz") as health:
            assert health.status == 200
    assert status < 500, (status, body[:500])
    if status >= 400:
        if endpoint.method != "HEAD" and endpoint.path.startswith("/api/"):
            error = json.loads(body)["error"]
            assert error["code"] and error["message"]
        after = await world.server.call(_snapshot(app))
        is_login = endpoint.path == "/api/v1/login"
        assert_unchanged(
            before,
            after,
            audit_may_add="login.failed" if is_login and status == 401 else None,
            uploads_may_end="/uploads/" in endpoint.path and status == 404,
        )


# ---- socket.io events ---------------------------------------------------------------


def _event_table() -> list[EventSpec]:
    """The gateway's event table, read at collection time from a gateway wired to
    nothing (its handlers are never called here; every collaborator is a stand-in)."""
    wiring: Any = SimpleNamespace(config=SignalingConfig())
    parameters = inspect.signature(SignalingGateway).parameters
    arguments: dict[str, Any] = {
        name: SignalingConfig() if name == "config" else wiring
        for name, parameter in parameters.items()
        if name != "sio"
    }
    gateway = SignalingGateway(socketio.AsyncServer(), **arguments)
    return list(gateway.events)


EVENTS = _event_table()
ACTORS = {
    "kiosk": ("kiosk01", KioskClient),
    "other_kiosk": ("kiosk02", KioskClient),
    "expert": ("expert_market", ExpertClient),
    "other_expert": ("expert_housing", ExpertClient),
    "clerk": ("clerk", WindowlinkClient),
    "admin": ("admin", WindowlinkClient),
}


@pytest.fixture
async def actors(healed: World) -> AsyncIterator[dict[str, WindowlinkClient]]:
    """A socket for each actor, on the test's loop (sessions of the module's world)."""
    url = healed.server.url
    clients: dict[str, WindowlinkClient] = {}
    sessions = {call.kiosk.username: call.kiosk.session_cookie for call in healed.calls}
    sessions |= {call.expert.username: call.expert.session_cookie for call in healed.calls}
    sessions |= {ROLE_ACCOUNTS[r]: t for r, t in healed.tokens.items()}
    try:
        for actor, (username, kind) in ACTORS.items():
            client = kind(url)
            client.session_cookie = sessions[username]
            clients[actor] = client
            await client.connect()
        yield clients
    finally:
        for client in clients.values():
            await client.close()


def test_the_event_table_is_the_servers(world: World) -> None:
    served = [spec.name for spec in _app(world.server)[HUB].gateway.events]
    assert served == [spec.name for spec in EVENTS]


@FUZZING
@pytest.mark.parametrize("spec", EVENTS, ids=[spec.name for spec in EVENTS])
@settings(
    max_examples=EVENT_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_no_event_acks_internal_and_rejections_change_nothing(
    healed: World, actors: dict[str, WindowlinkClient], spec: EventSpec, data: st.DataObject
) -> None:
    world = healed
    actor = data.draw(st.sampled_from(sorted(actors)))
    client = actors[actor]
    payload = data.draw(any_payload(world, spec.payload))
    # A few examples send several arguments, or none.
    arguments = data.draw(st.sampled_from(["one", "one", "one", "two", "none"]))
    text = to_json(payload)
    # What the python-socketio client can send: plain JSON values, not too deep for
    # its encoder (numbers past 4,300 digits and deep nesting go as raw frames).
    try:
        payload = json.loads(text) if _depth(text) <= 50 else text[:1000]
    except ValueError:
        payload = text[:1000]
    # The client escapes non-ASCII (6 or 12 bytes a character); a frame past 64 KiB
    # is closed by the server on purpose, so stay within it.
    copies = 2 if arguments == "two" else 1
    if copies * len(json.dumps(payload)) > FRAME_LIMIT:
        payload = text[:1000]
    app = _app(world.server)
    before = await world.server.call(_snapshot(app))
    if arguments == "two":
        ack = await client.sio.call(spec.name, (payload, payload), timeout=10)
    elif arguments == "none":
        ack = await client.sio.call(spec.name, timeout=10)
    else:
        ack = await client.sio.call(spec.name, payload, timeout=10)
    assert isinstance(ack, dict) and ("error" in ack or "result" in ack), ack
    if "error" in ack:
        assert ack["error"]["code"] != "internal", (spec.name, actor, payload)
        after = await world.server.call(_snapshot(app))
        assert_unchanged(before, after, uploads_may_end=False)
    # The connection still works.
    assert (await client.state()).username == ACTORS[actor][0]


# ---- raw socket.io frames -----------------------------------------------------------


# Packets with which a client itself ends or suspends the conversation: engine.io
# open and upgrade, socket.io CONNECT and DISCONNECT, and binary events or acks
# (the server then takes the next frames as their attachments).
SUSPENDING = ("0", "5", "40", "41", "45", "46")


@st.composite
def raw_frame(draw: st.DrawFn, world: World) -> str | bytes:
    """One websocket frame: a socket.io event (with ack id 7) whose JSON is odd or
    broken, another packet type, or bytes."""
    # Event names: the served ones, the library's reserved ones, and odd text.
    reserved = ["connect", "disconnect", "message", "connect_error"]
    name = draw(st.sampled_from([s.name for s in EVENTS] + reserved) | ODD_TEXT)
    payload = draw(any_payload(world, None))
    kind = draw(st.integers(0, 6))
    if kind <= 2:
        frame = f'427["{name}",{to_json(payload)}]' if kind else f"427{to_json(payload)}"
    elif kind == 3:
        frame = "42" + draw(ODD_TEXT)
    elif kind == 4:
        frame = "4" + draw(st.sampled_from("0123456789")) + draw(ODD_TEXT)
    elif kind == 5:
        frame = draw(st.sampled_from("02356")) + draw(ODD_TEXT)
    else:
        return draw(st.binary(max_size=200))
    return frame if len(frame.encode()) <= FRAME_LIMIT else "42[]"


async def _open_socket(
    http: aiohttp.ClientSession, url: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(
        f"{url}/socket.io/?EIO=4&transport=websocket",
        headers={"Cookie": f"wl_session={token}"},
    )
    opening = await ws.receive_str()
    assert opening.startswith("0")
    await ws.send_str("40")
    connected = await ws.receive_str()
    assert connected.startswith("40"), connected
    return ws


async def _acks_until(
    ws: aiohttp.ClientWebSocketResponse, ack_id: str
) -> tuple[dict[str, Any], bool]:
    """Every ack that arrives, by id, up to ``ack_id``'s, or until the server closes
    the session (engine.io CLOSE packet, or the websocket itself): (acks, closed).
    Pings are answered on the way."""
    acks: dict[str, Any] = {}
    for _ in range(100):
        message = await ws.receive(timeout=10)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return acks, True
        if message.type is not aiohttp.WSMsgType.TEXT:
            continue
        text = str(message.data)
        if text == "1":
            return acks, True
        if text == "2":
            await ws.send_str("3")
        elif text.startswith("43"):
            digits = "".join(itertools.takewhile(str.isdigit, text[2:]))
            acks[digits] = json.loads(text[2 + len(digits) :])[0]
            if digits == ack_id:
                return acks, False
    raise AssertionError("no ack among 100 frames")


@FUZZING
@settings(
    max_examples=FRAME_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_raw_frames_never_ack_internal_and_undecodable_ones_close_the_connection(
    healed: World, data: st.DataObject
) -> None:
    world = healed
    frame = data.draw(raw_frame(world))
    async with aiohttp.ClientSession() as http:
        ws = await _open_socket(http, world.server.url, world.tokens["clerk"])
        try:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            acks: dict[str, Any] = {}
            if not ws.closed and not (isinstance(frame, str) and frame.startswith(SUSPENDING)):
                with contextlib.suppress(ConnectionResetError):
                    await ws.send_str('42900["get_state",{}]')
                acks, closed = await _acks_until(ws, "900")
                # Still usable (get_state answered), or closed on purpose.
                assert closed or acks["900"]["result"]["username"] == "clerk", acks
            for ack in acks.values():
                if isinstance(ack, dict) and isinstance(ack.get("error"), dict):
                    assert ack["error"].get("code") != "internal", (frame[:200], ack)
        finally:
            await ws.close()
        # Whatever happened to that connection, a new one works.
        again = await _open_socket(http, world.server.url, world.tokens["clerk"])
        await again.send_str('42901["get_state",{}]')
        acks, _closed = await _acks_until(again, "901")
        assert acks["901"]["result"]["username"] == "clerk"
        await again.close()


# ---- regressions ----------------------------------------------------------------------


async def test_nul_in_text_is_refused_not_a_500_on_every_database(server: RunningServer) -> None:
    """PostgreSQL cannot hold U+0000 in text: a NUL in a login, a name or an audit
    filter answered 500 there (SQLite stored it). Refused at the edge now."""
    admin = await login_session(server, "admin")
    async with admin:
        for path, body in (
            ("/api/v1/login", {"username": "a\x00b", "password": "x"}),
            ("/api/v1/login", {"username": "admin", "password": "demo\x001234"}),
            ("/api/v1/departments", {"code": "nul", "name_zh": "a\x00", "name_en": "x"}),
            (
                "/api/v1/accounts",
                {"username": "nul1", "password": "Hall-desk-2026", "role": "clerk", "x\x00": 1},
            ),
        ):
            async with admin.post(server.url + path, json=body) as response:
                assert response.status == 400, (path, await response.text())
        for name in ("actor", "subject", "action"):
            async with admin.get(f"{server.url}/api/v1/audit", params={name: "a\x00b"}) as response:
                assert response.status == 400, name
        async with admin.get(f"{server.url}/healthz") as response:
            assert response.status == 200
