"""The access matrix: every role x every route and event x every relation to the
object, driven through the real server, against the one declarative table in
``tests/access_table.py``; and docs/SECURITY.md shows that same table.

"allow" cells must succeed, so each probe sets up an object in a state where the
action works (a fresh waiting consultation to cancel, an offer ringing to accept, a
complete upload to finish); "deny" cells must answer exactly their status (events:
their error code). Every disagreement is listed at once.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from harness.peers import CallPeer
from signaling.client import (
    ClientError,
    Documents,
    ExpertClient,
    KioskClient,
    WindowlinkClient,
    part_headers,
)
from signaling.messages import ConsultationView, OfferView
from storage.records import AuditEvent, EndReason, Grade, Role, Scope
from tests.access_table import (
    ACCESS,
    EVENT_CODES,
    RELATIONS,
    ROLES,
    Outcome,
    Relation,
    Rule,
    Subject,
)
from tests.conftest import DEMO_PASSWORD, RunningServer, ServerFactory
from web.app import API_TABLES
from web.keys import SIGNALING
from web.staff_call_api import staff_call_key

ROOT = Path(__file__).resolve().parents[2]
PDF = b"%PDF-1.7\n" + b"2" * 2000 + b"\n%%EOF\n"
PART_HEADERS = part_headers(0, PDF)
EXTRA_ACCOUNTS = {
    "kiosk03": Role.KIOSK,
    "expert_market2": Role.EXPERT,
    "expert_social2": Role.EXPERT,
    "interpreter02": Role.INTERPRETER,
    "supervisor_market": Role.SUPERVISOR,
}
EXTRA_PASSWORD = "Matrix-Pass-2026"


# ---- the world the cells act on -----------------------------------------------------


@dataclass
class Call:
    consultation_id: str
    file_id: str
    kiosk_upload: str
    expert_upload: str
    media_tokens: dict[str, str]
    shared_file_id: str = ""
    """A document shared with the call's interpreters (call A's)."""


@dataclass
class Matrix:
    server: RunningServer
    tokens: dict[str, str] = field(default_factory=dict)
    sockets: dict[str, WindowlinkClient] = field(default_factory=dict)
    calls: dict[str, Call] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    unattached: list[str] = field(default_factory=list)
    """Documents of call A (case MX-A) for the attach probe: one per cell, since a
    document joins its case once."""

    @property
    def url(self) -> str:
        return self.server.url

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    async def login(self, username: str) -> str:
        password = EXTRA_PASSWORD if username in EXTRA_ACCOUNTS else DEMO_PASSWORD
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.url}/api/v1/login", json={"username": username, "password": password}
            ) as response,
        ):
            assert response.status == 200, await response.text()
            return response.cookies["wl_session"].value

    async def request(
        self,
        method: str,
        path: str,
        username: str | None,
        *,
        token: str | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """Status and JSON body (None if not JSON) of one request as ``username``."""
        headers = dict(kwargs.pop("headers", {}))
        cookie = token or (self.tokens[username] if username else None)
        if cookie is not None:
            headers["Cookie"] = f"wl_session={cookie}"
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, headers=headers, **kwargs) as response,
        ):
            is_json = response.content_type == "application/json" and method != "HEAD"
            return response.status, await response.json() if is_json else None

    def socket(self, username: str) -> WindowlinkClient:
        return self.sockets[username]


async def _connect(m: Matrix, username: str) -> WindowlinkClient:
    kind: type[WindowlinkClient] = KioskClient if username.startswith("kiosk") else ExpertClient
    client = kind(m.url)
    client.session_cookie = m.tokens[username] = await m.login(username)
    await client.connect()
    m.sockets[username] = client
    return client


async def _upload(m: Matrix, username: str, consultation_id: str, *, complete: bool) -> str:
    """An upload of ``username``'s, complete (every byte sent, not finished) or not; its id."""
    async with aiohttp.ClientSession() as http:
        documents = Documents(http, m.url, headers={"Cookie": f"wl_session={m.tokens[username]}"})
        ticket = await documents.begin(consultation_id, "m.pdf", len(PDF))
        if complete:
            await documents.send(ticket, PDF)
    return ticket.id


async def _open_call(m: Matrix, kiosk: str, expert: str, department: str, case: str) -> Call:
    expert_client = m.socket(expert)
    assert isinstance(expert_client, ExpertClient)
    await expert_client.set_presence("available")
    kiosk_client = m.socket(kiosk)
    assert isinstance(kiosk_client, KioskClient)
    await kiosk_client.request(department, case_number=case)
    offer = await expert_client.next_event("offer", OfferView)
    expert_view = await expert_client.accept(offer.consultation_id)
    kiosk_view = await kiosk_client.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "active"
    )
    assert expert_view.media is not None and kiosk_view.media is not None
    call_id = offer.consultation_id
    upload = await _upload(m, kiosk, call_id, complete=True)
    status, body = await m.request("POST", f"/api/v1/uploads/{upload}/finish", kiosk)
    assert status == 201, body
    return Call(
        call_id,
        str(body["id"]),
        await _upload(m, kiosk, call_id, complete=False),
        await _upload(m, expert, call_id, complete=False),
        {"kiosk": kiosk_view.media.token, "expert": expert_view.media.token},
    )


async def _interpreter_joins(m: Matrix, call: Call) -> None:
    """interpreter01 joins call A (position 2), invited by its expert, who shares one
    of the call's documents with it."""
    interpreter = m.socket("interpreter01")
    assert isinstance(interpreter, ExpertClient)
    await interpreter.set_presence("available")
    market = m.socket("expert_market")
    assert isinstance(market, ExpertClient)
    invitation = await market.invite(call.consultation_id, "interpret", "")
    offer = await interpreter.next_event(
        "offer", OfferView, where=lambda o: o.invitation_id == invitation.invitation_id
    )
    view = await interpreter.accept_offer(offer)
    assert view.media is not None and view.you == 2
    call.media_tokens[side("interpreter")] = view.media.token
    upload = await _upload(m, "kiosk01", call.consultation_id, complete=True)
    status, body = await m.request("POST", f"/api/v1/uploads/{upload}/finish", "kiosk01")
    assert status == 201, body
    call.shared_file_id = str(body["id"])
    await market.share_document(call.consultation_id, call.shared_file_id)


async def _build(server: RunningServer) -> Matrix:
    m = Matrix(server)
    accounts = server.storage.accounts
    await accounts.create("kiosk03", EXTRA_PASSWORD, Role.KIOSK, hall="city")
    await accounts.create("expert_market2", EXTRA_PASSWORD, Role.EXPERT, department="market")
    await accounts.create("expert_social2", EXTRA_PASSWORD, Role.EXPERT, department="social")
    await accounts.create("interpreter02", EXTRA_PASSWORD, Role.INTERPRETER, department="interpret")
    # Oversees market (call A's department), not housing (call B's).
    await accounts.create(
        "supervisor_market", EXTRA_PASSWORD, Role.SUPERVISOR, scope=Scope(("market",))
    )
    # Graded consultations of its own, so that follow-ups never touch the calls' kiosks.
    await accounts.create("kiosk04", EXTRA_PASSWORD, Role.KIOSK, hall="city")
    for username in (
        "kiosk01",
        "kiosk02",
        "kiosk03",
        "expert_market",
        "expert_market2",
        "expert_housing",
        "expert_social",
        "expert_social2",
        "interpreter01",
        "interpreter02",
        "clerk",
        "admin",
        "supervisor_market",
    ):
        await _connect(m, username)
    m.calls["A"] = await _open_call(m, "kiosk01", "expert_market", "market", "MX-A")
    m.calls["B"] = await _open_call(m, "kiosk02", "expert_housing", "housing", "MX-B")
    await _interpreter_joins(m, m.calls["A"])
    for _ in ROLES:
        upload = await _upload(m, "kiosk01", m.calls["A"].consultation_id, complete=True)
        status, body = await m.request("POST", f"/api/v1/uploads/{upload}/finish", "kiosk01")
        assert status == 201, body
        m.unattached.append(str(body["id"]))
    return m


# ---- who acts on what, for a cell ---------------------------------------------------

ROLE_ACCOUNT = {
    "kiosk": "kiosk01",
    "expert": "expert_market",
    "interpreter": "interpreter01",
    "clerk": "clerk",
    "admin": "admin",
    "supervisor": "supervisor_market",
}


def actor(role: str, relation: Relation) -> str | None:
    """The account acting in a cell: a kiosk or expert of call A; the colleague for
    ``dept``; nobody for anonymous."""
    if role == "anonymous":
        return None
    if role == "expert" and relation is Relation.DEPT:
        return "expert_market2"
    return ROLE_ACCOUNT[role]


def target(m: Matrix, relation: Relation) -> Call:
    """Call A (the actor's, or its department's), or call B for ``other``."""
    return m.calls["B" if relation is Relation.OTHER else "A"]


def side(role: str) -> str:
    """The media leg of ``role``'s account in call A (by the names the DELETE takes)."""
    return {"expert": "expert", "interpreter": "p2"}.get(role, "kiosk")


def upload_of(m: Matrix, role: str, relation: Relation) -> str:
    """An unfinished upload: the peer's in call A, or the kiosk's in call B."""
    a = m.calls["A"]
    if relation is Relation.PEER:
        return a.expert_upload if side(role) == "kiosk" else a.kiosk_upload
    if relation is Relation.OTHER:
        return m.calls["B"].kiosk_upload
    return a.kiosk_upload


async def waiting_consultation(m: Matrix, department: str = "social") -> str:
    """A fresh waiting consultation of kiosk03 (nobody of ``department`` available)."""
    client = m.socket("kiosk03")
    assert isinstance(client, KioskClient)
    return (await client.request(department)).consultation_id


async def ended_consultation(m: Matrix) -> str:
    client = m.socket("kiosk03")
    assert isinstance(client, KioskClient)
    consultation_id = await waiting_consultation(m)
    await client.cancel(consultation_id)
    return consultation_id


async def leave(m: Matrix, consultation_id: str) -> None:
    """kiosk03 leaves its consultation, whatever state it is in."""
    try:
        await m.socket("kiosk03").end(consultation_id)
    except ClientError as error:
        # Already ended: no longer open (not_found), or not endable (invalid_state).
        assert error.code in ("not_found", "invalid_state"), error


async def ringing(m: Matrix) -> str:
    """kiosk03's consultation ringing for expert_social (the only one available)."""
    expert = m.socket("expert_social")
    assert isinstance(expert, ExpertClient)
    await expert.set_presence("available")
    expert.drain("offer")
    consultation_id = await waiting_consultation(m)
    await expert.next_event(
        "offer", OfferView, where=lambda o: o.consultation_id == consultation_id
    )
    return consultation_id


async def social_call(m: Matrix) -> str:
    consultation_id = await ringing(m)
    expert = m.socket("expert_social")
    assert isinstance(expert, ExpertClient)
    await expert.accept(consultation_id)
    return consultation_id


async def social_done(m: Matrix, consultation_id: str) -> None:
    await leave(m, consultation_id)
    expert = m.socket("expert_social")
    assert isinstance(expert, ExpertClient)
    await expert.set_presence("away")


# ---- probes: one per route or event, each returning the answer of one cell ----------

Probe = Callable[[Matrix, str, Relation], Awaitable[int | str]]
PROBES: dict[str, Probe] = {}


def probe(*surfaces: str) -> Callable[[Probe], Probe]:
    def register(function: Probe) -> Probe:
        for surface in surfaces:
            PROBES[surface] = function
        return function

    return register


def _get(path: str) -> Probe:
    async def run(m: Matrix, role: str, relation: Relation) -> int:
        return (await m.request("GET", path, actor(role, relation)))[0]

    return run


for _path in (
    "/",
    "/kiosk",
    "/expert",
    "/clerk",
    "/admin",
    "/supervisor",
    "/healthz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/me",
    "/api/v1/departments",
    "/api/v1/departments/status",
    "/api/v1/accounts",
    "/api/v1/board",
    "/api/v1/halls",
    "/api/v1/hall-consultations",
    "/api/v1/me/consultations",
    "/api/v1/audit",
    "/api/v1/audit/verify",
    "/api/v1/consultations?case_number=MX-A",
    "/api/v1/cases/MX-A/attachments",
    "/api/v1/ice-servers",
    "/api/v1/live-calls",
    "/api/v1/follow-ups",
    "/api/v1/recordings",
):
    PROBES[f"GET {_path.split('?')[0].replace('MX-A', '{case_number}')}"] = _get(_path)


async def _phone_link(m: Matrix) -> str:
    """A fresh phone link of call A (kiosk01's); its token."""
    path = f"/api/v1/consultations/{m.calls['A'].consultation_id}/phone-link"
    status, body = await m.request("POST", path, "kiosk01")
    assert status == 201, body
    return str(body["url"]).rsplit("/", 1)[1]


@probe("POST /api/v1/consultations/{consultation_id}/phone-link")
async def _create_phone_link(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/consultations/{target(m, relation).consultation_id}/phone-link"
    return (await m.request("POST", path, actor(role, relation)))[0]


@probe("GET /api/v1/phone-links/{token}", "GET /phone/{token}")
async def _read_phone_link(m: Matrix, role: str, relation: Relation) -> int:
    token = await _phone_link(m)
    status, _ = await m.request("GET", f"/api/v1/phone-links/{token}", actor(role, relation))
    if status != 200:
        return status
    return (await m.request("GET", f"/phone/{token}", actor(role, relation)))[0]


PHONE_FILE = {"files": [{"name": "photo.pdf", "size": len(PDF)}]}


@probe("POST /api/v1/phone-links/{token}/claim")
async def _claim_phone_link(m: Matrix, role: str, relation: Relation) -> int:
    token = await _phone_link(m)
    path = f"/api/v1/phone-links/{token}/claim"
    return (await m.request("POST", path, actor(role, relation), json=PHONE_FILE))[0]


@probe("POST /api/v1/phone-links/{token}/files")
async def _send_phone_file(m: Matrix, role: str, relation: Relation) -> int:
    token = await _phone_link(m)
    status, body = await m.request(
        "POST", f"/api/v1/phone-links/{token}/claim", None, json=PHONE_FILE
    )
    assert status == 201, body
    return (
        await m.request(
            "POST",
            f"/api/v1/phone-links/{token}/files?name=photo.pdf",
            actor(role, relation),
            data=PDF,
            headers={
                "Authorization": f"Bearer {body['claim']}",
                "Content-Type": "application/octet-stream",
            },
        )
    )[0]


@probe("POST /api/v1/staff-calls")
async def _call_staff(m: Matrix, role: str, relation: Relation) -> int:
    return (await m.request("POST", "/api/v1/staff-calls", actor(role, relation)))[0]


@probe("POST /api/v1/staff-calls/answer")
async def _answer_staff_call(m: Matrix, role: str, relation: Relation) -> int:
    # An open call of kiosk01 for each cell (a kiosk may call once a minute): as the
    # kiosk's POST /api/v1/staff-calls opens it.
    call_id = f"{next(m.counter):016x}"
    kiosk = await m.server.storage.accounts.get_by_username("kiosk01")
    assert await m.server.app[SIGNALING].hold(staff_call_key(kiosk.id, call_id), 60.0)
    body = {"id": call_id, "kiosk": "kiosk01"}
    return (
        await m.request("POST", "/api/v1/staff-calls/answer", actor(role, relation), json=body)
    )[0]


@probe("POST /api/v1/login")
async def _login(m: Matrix, role: str, relation: Relation) -> int:
    username = actor(role, relation)
    # A session of its own: logging in again ends the session the cookie named.
    token = await m.login(username) if username else None
    who = username or "kiosk02"
    password = EXTRA_PASSWORD if who in EXTRA_ACCOUNTS else DEMO_PASSWORD
    body = {"username": who, "password": password}
    return (await m.request("POST", "/api/v1/login", None, token=token, json=body))[0]


@probe("POST /api/v1/logout")
async def _logout(m: Matrix, role: str, relation: Relation) -> int:
    username = actor(role, relation)
    token = await m.login(username) if username else None
    return (await m.request("POST", "/api/v1/logout", None, token=token))[0]


@probe("POST /api/v1/departments")
async def _create_department(m: Matrix, role: str, relation: Relation) -> int:
    body = {"code": m.unique("mx"), "name_zh": "矩阵", "name_en": "Matrix"}
    return (await m.request("POST", "/api/v1/departments", actor(role, relation), json=body))[0]


@probe("PATCH /api/v1/departments/{code}")
async def _patch_department(m: Matrix, role: str, relation: Relation) -> int:
    body = {"hours": "1-5 09:00-17:00"}
    path = "/api/v1/departments/social"
    return (await m.request("PATCH", path, actor(role, relation), json=body))[0]


@probe("POST /api/v1/accounts")
async def _create_account(m: Matrix, role: str, relation: Relation) -> int:
    body = {"username": m.unique("mx_user"), "password": "Wide-Open-Matrix-26", "role": "clerk"}
    return (await m.request("POST", "/api/v1/accounts", actor(role, relation), json=body))[0]


@probe("POST /api/v1/halls")
async def _create_hall(m: Matrix, role: str, relation: Relation) -> int:
    body = {"code": m.unique("mx"), "name_zh": "矩阵", "name_en": "Matrix", "level": "street"}
    return (await m.request("POST", "/api/v1/halls", actor(role, relation), json=body))[0]


@probe("PATCH /api/v1/halls/{hall}")
async def _patch_hall(m: Matrix, role: str, relation: Relation) -> int:
    body = {"district": "东城区"}
    return (await m.request("PATCH", "/api/v1/halls/district", actor(role, relation), json=body))[0]


@probe("PATCH /api/v1/accounts/{username}")
async def _patch_account(m: Matrix, role: str, relation: Relation) -> int:
    path = "/api/v1/accounts/expert_housing"
    return (await m.request("PATCH", path, actor(role, relation), json={"disabled": False}))[0]


@probe("GET /api/v1/consultations/{consultation_id}")
async def _get_consultation(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/consultations/{target(m, relation).consultation_id}"
    return (await m.request("GET", path, actor(role, relation)))[0]


@probe("POST /api/v1/consultations/{consultation_id}/withdraw")
async def _withdraw(m: Matrix, role: str, relation: Relation) -> int:
    consultation_id = await waiting_consultation(m)
    path = f"/api/v1/consultations/{consultation_id}/withdraw"
    status = (await m.request("POST", path, actor(role, relation)))[0]
    await leave(m, consultation_id)
    return status


VALID_ID_NUMBER = "11010519491231002X"


@probe("POST /api/v1/consultations/{consultation_id}/identity")
async def _give_identity(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/consultations/{target(m, relation).consultation_id}/identity"
    body = {"id_number": VALID_ID_NUMBER, "history_consent": True}
    return (await m.request("POST", path, actor(role, relation), json=body))[0]


def _call_get(suffix: str) -> Probe:
    async def run(m: Matrix, role: str, relation: Relation) -> int:
        call = target(m, relation).consultation_id
        path = f"/api/v1/consultations/{call}/{suffix}"
        return (await m.request("GET", path, actor(role, relation)))[0]

    return run


PROBES["GET /api/v1/consultations/{consultation_id}/identity"] = _call_get("identity")
PROBES["GET /api/v1/consultations/{consultation_id}/history"] = _call_get("history")


@probe("POST /api/v1/consultations/{consultation_id}/identity/reveal")
async def _reveal_identity(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/consultations/{target(m, relation).consultation_id}/identity/reveal"
    return (await m.request("POST", path, actor(role, relation), json={"reason": "matrix"}))[0]


@probe("POST /api/v1/identity/search")
async def _search_identity(m: Matrix, role: str, relation: Relation) -> int:
    body = {"id_number": VALID_ID_NUMBER}
    return (await m.request("POST", "/api/v1/identity/search", actor(role, relation), json=body))[0]


@probe("GET /api/v1/consultations/{consultation_id}/slip")
async def _slip(m: Matrix, role: str, relation: Relation) -> int:
    """kiosk03's ended consultation: its own slip, or another kiosk's (kiosk01)."""
    path = f"/api/v1/consultations/{await ended_consultation(m)}/slip"
    username = "kiosk03" if role == "kiosk" and relation is Relation.OWN else actor(role, relation)
    return (await m.request("GET", path, username))[0]


@probe("POST /api/v1/consultations/{consultation_id}/case")
async def _link_case(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/consultations/{await ended_consultation(m)}/case"
    body = {"case_number": m.unique("MX-LINK-"), "reason": "matrix"}
    return (await m.request("POST", path, actor(role, relation), json=body))[0]


async def _post_offer(m: Matrix, role: str, relation: Relation, peer: CallPeer) -> int:
    """``role`` presents its own call's media token (if it has one) for call A or B."""
    call = target(m, relation)
    headers = {**_media_headers_of(m, role), "Content-Type": "application/sdp"}
    status, _ = await m.request(
        "POST",
        f"/api/v1/media/{call.consultation_id}",
        actor(role, relation),
        data=await peer.offer(),
        headers=headers,
    )
    return status


async def _delete_media(m: Matrix, role: str, relation: Relation) -> int:
    call = target(m, relation)
    path = f"/api/v1/media/{call.consultation_id}/{side(role)}"
    return (
        await m.request("DELETE", path, actor(role, relation), headers=_media_headers_of(m, role))
    )[0]


def _media_headers_of(m: Matrix, role: str) -> dict[str, str]:
    if role in ("kiosk", "expert", "interpreter"):
        return {"Authorization": f"Bearer {m.calls['A'].media_tokens[side(role)]}"}
    return {}


@probe("POST /api/v1/media/{consultation_id}")
async def _media_post(m: Matrix, role: str, relation: Relation) -> int:
    peer = CallPeer()
    try:
        status = await _post_offer(m, role, relation, peer)
        if status == 201:
            await _delete_media(m, role, relation)
    finally:
        await peer.close()
    return status


@probe("DELETE /api/v1/media/{consultation_id}/{side}")
async def _media_delete(m: Matrix, role: str, relation: Relation) -> int:
    peer = CallPeer()
    try:
        # Connected first where the token opens it, so that there is a session to close.
        await _post_offer(m, role, relation, peer)
        return await _delete_media(m, role, relation)
    finally:
        await peer.close()


@probe("POST /api/v1/consultations/{consultation_id}/uploads")
async def _create_upload(m: Matrix, role: str, relation: Relation) -> int:
    username = actor(role, relation)
    path = f"/api/v1/consultations/{target(m, relation).consultation_id}/uploads"
    status, body = await m.request("POST", path, username, json={"name": "n.pdf", "size": len(PDF)})
    if status == 201:
        await m.request("DELETE", f"/api/v1/uploads/{body['upload_id']}", username)
    return status


def _upload_probe(method: str, suffix: str, *, complete: bool, **kwargs: Any) -> Probe:
    async def run(m: Matrix, role: str, relation: Relation) -> int:
        username = actor(role, relation)
        if relation is Relation.OWN and username is not None:
            upload_id = await _upload(m, username, m.calls["A"].consultation_id, complete=complete)
        else:
            upload_id = upload_of(m, role, relation)
        path = f"/api/v1/uploads/{upload_id}{suffix}"
        status = (await m.request(method, path, username, **kwargs))[0]
        if relation is Relation.OWN and method != "DELETE" and username is not None:
            await m.request("DELETE", f"/api/v1/uploads/{upload_id}", username)
        return status

    return run


PROBES["HEAD /api/v1/uploads/{upload_id}"] = _upload_probe("HEAD", "", complete=False)
PROBES["PATCH /api/v1/uploads/{upload_id}"] = _upload_probe(
    "PATCH", "", complete=False, data=PDF, headers=PART_HEADERS
)
PROBES["POST /api/v1/uploads/{upload_id}/finish"] = _upload_probe("POST", "/finish", complete=True)
PROBES["DELETE /api/v1/uploads/{upload_id}"] = _upload_probe("DELETE", "", complete=False)


@probe("GET /api/v1/consultations/{consultation_id}/files")
async def _files(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/consultations/{target(m, relation).consultation_id}/files"
    return (await m.request("GET", path, actor(role, relation)))[0]


@probe("GET /api/v1/consultations/{consultation_id}/chat")
async def _chat_history(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/consultations/{target(m, relation).consultation_id}/chat"
    return (await m.request("GET", path, actor(role, relation)))[0]


@probe("GET /api/v1/files/{file_id}")
async def _download(m: Matrix, role: str, relation: Relation) -> int:
    call = target(m, relation)
    file_id = call.shared_file_id if relation is Relation.SHARED else call.file_id
    return (await m.request("GET", f"/api/v1/files/{file_id}", actor(role, relation)))[0]


@probe("POST /api/v1/cases/{case_number}/attachments")
async def _attach(m: Matrix, role: str, relation: Relation) -> int:
    # A document joins only its own consultation's case (MX-A), and only once.
    path = "/api/v1/cases/MX-A/attachments"
    body = {"file_id": m.unattached.pop(), "category": "application"}
    return (await m.request("POST", path, actor(role, relation), json=body))[0]


# ---- events -------------------------------------------------------------------------


async def emit(m: Matrix, username: str | None, event: str, payload: dict[str, Any]) -> str:
    """``ok`` or the error code of the ack; anonymous: the refused connection's code."""
    if username is None:
        client = socketio.AsyncClient(reconnection=False)
        refusals: list[Any] = []
        client.on("connect_error", handler=refusals.append)
        try:
            await client.connect(m.url, transports=["websocket"], wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            return str(refusals[0]["data"]["code"])
        await client.disconnect()
        return "connected"
    try:
        await m.socket(username).emit(event, payload)
    except ClientError as error:
        return error.code
    return "ok"


def _ref(call_id: str) -> dict[str, str]:
    return {"consultation_id": call_id}


@probe("event request_consultation")
async def _request(m: Matrix, role: str, relation: Relation) -> str:
    # Any kiosk: one with no open consultation.
    username = "kiosk03" if role == "kiosk" else actor(role, relation)
    answer = await emit(m, username, "request_consultation", {"department": "social"})
    if answer == "ok":
        state = await m.socket("kiosk03").state()
        assert state.consultation is not None
        await leave(m, state.consultation.consultation_id)
    return answer


def _kiosk_waiting_probe(event: str, *, end_first: bool, extra: dict[str, Any]) -> Probe:
    """Kiosk events on kiosk03's consultation: sent by kiosk03 itself (own) or by
    kiosk01 (other); everyone else sends it for call A."""

    async def run(m: Matrix, role: str, relation: Relation) -> str:
        if role != "kiosk":
            payload = {**_ref(target(m, relation).consultation_id), **extra}
            return await emit(m, actor(role, relation), event, payload)
        consultation_id = await waiting_consultation(m)
        if end_first:
            await leave(m, consultation_id)
        sender = "kiosk03" if relation is Relation.OWN else "kiosk01"
        answer = await emit(m, sender, event, {**_ref(consultation_id), **extra})
        await leave(m, consultation_id)
        return answer

    return run


PROBES["event cancel_request"] = _kiosk_waiting_probe("cancel_request", end_first=False, extra={})
PROBES["event rate_consultation"] = _kiosk_waiting_probe(
    "rate_consultation", end_first=True, extra={"rating": 5}
)
PROBES["event end_consultation"] = _kiosk_waiting_probe(
    "end_consultation", end_first=False, extra={}
)


@probe("event set_presence")
async def _presence(m: Matrix, role: str, relation: Relation) -> str:
    username = "expert_market2" if role == "expert" else actor(role, relation)
    return await emit(m, username, "set_presence", {"status": "away"})


@probe("event get_queue")
async def _queue(m: Matrix, role: str, relation: Relation) -> str:
    return await emit(m, actor(role, relation), "get_queue", {})


@probe("event get_state")
async def _get_state(m: Matrix, role: str, relation: Relation) -> str:
    return await emit(m, actor(role, relation), "get_state", {})


def _offer_probe(event: str) -> Probe:
    """An offer ringing for expert_social: answered by it (own), by its colleague
    expert_social2 (dept), by expert_market (other); others send it for call A."""

    async def run(m: Matrix, role: str, relation: Relation) -> str:
        if role != "expert":
            call = target(m, relation)
            return await emit(m, actor(role, relation), event, _ref(call.consultation_id))
        consultation_id = await ringing(m)
        sender = {
            Relation.OWN: "expert_social",
            Relation.DEPT: "expert_social2",
            Relation.OTHER: "expert_market",
        }[relation]
        answer = await emit(m, sender, event, _ref(consultation_id))
        await social_done(m, consultation_id)
        return answer

    return run


PROBES["event accept_offer"] = _offer_probe("accept_offer")
PROBES["event decline_offer"] = _offer_probe("decline_offer")


@probe("event save_outcome")
async def _outcome(m: Matrix, role: str, relation: Relation) -> str:
    payload = {**_ref(target(m, relation).consultation_id), "outcome": "answered"}
    return await emit(m, actor(role, relation), "save_outcome", payload)


@probe("event defer_outcome")
async def _defer_outcome(m: Matrix, role: str, relation: Relation) -> str:
    """Experts put off the record of kiosk03's ended call with expert_social: it
    (own), its colleague (dept), expert_market (other); others send it for call A."""
    if role != "expert":
        payload = {**_ref(target(m, relation).consultation_id), "notes": "矩阵"}
        return await emit(m, actor(role, relation), "defer_outcome", payload)
    consultation_id = await social_call(m)
    await leave(m, consultation_id)
    sender = {
        Relation.OWN: "expert_social",
        Relation.DEPT: "expert_social2",
        Relation.OTHER: "expert_market",
    }[relation]
    answer = await emit(m, sender, "defer_outcome", {**_ref(consultation_id), "notes": "矩阵"})
    await social_done(m, consultation_id)
    return answer


@probe("event send_chat")
async def _chat(m: Matrix, role: str, relation: Relation) -> str:
    payload = {**_ref(target(m, relation).consultation_id), "text": "矩阵"}
    return await emit(m, actor(role, relation), "send_chat", payload)


async def _end_call(m: Matrix, role: str, relation: Relation) -> int | str:
    """Experts end kiosk03's call with expert_social: it (own), its colleague (dept),
    expert_market (other); kiosks and the rest as for the waiting kiosk events."""
    if role != "expert":
        return await _kiosk_end(m, role, relation)
    consultation_id = await social_call(m)
    sender = {
        Relation.OWN: "expert_social",
        Relation.DEPT: "expert_social2",
        Relation.OTHER: "expert_market",
    }[relation]
    answer = await emit(m, sender, "end_consultation", _ref(consultation_id))
    await social_done(m, consultation_id)
    return answer


_kiosk_end = PROBES["event end_consultation"]
PROBES["event end_consultation"] = _end_call


# ---- calls of more than two ----------------------------------------------------------

SOCIAL_SENDERS = {
    Relation.OWN: "expert_social",
    Relation.DEPT: "expert_social2",
    Relation.OTHER: "expert_market",
}
"""Experts acting on kiosk03's call with expert_social: it, its colleague, another
department's."""


@probe("event invite")
async def _invite(m: Matrix, role: str, relation: Relation) -> str:
    """Call A invites social (three take part: one invitation fits); taken back."""
    username = actor(role, relation)
    payload = {**_ref(target(m, relation).consultation_id), "department": "social", "note": "矩阵"}
    if username is None:
        return await emit(m, None, "invite", payload)
    try:
        invitation = await m.socket(username).emit("invite", payload)
    except ClientError as error:
        return error.code
    market = m.socket("expert_market")
    await market.emit("cancel_invite", {"invitation_id": invitation["invitation_id"]})
    return "ok"


@probe("event cancel_invite")
async def _cancel_invite(m: Matrix, role: str, relation: Relation) -> str:
    """expert_market's invitation from call A, taken back by it (own), its colleague
    (dept), call B's expert (other), or another role."""
    market = m.socket("expert_market")
    assert isinstance(market, ExpertClient)
    invitation = await market.invite(m.calls["A"].consultation_id, "social", "")
    senders = {
        Relation.OWN: "expert_market",
        Relation.DEPT: "expert_market2",
        Relation.OTHER: "expert_housing",
    }
    sender = senders[relation] if role == "expert" else actor(role, relation)
    answer = await emit(m, sender, "cancel_invite", {"invitation_id": invitation.invitation_id})
    if answer != "ok":
        await market.cancel_invite(invitation.invitation_id)
    return answer


@probe("event transfer")
async def _transfer(m: Matrix, role: str, relation: Relation) -> str:
    """Experts transfer kiosk03's call with expert_social to market (which nobody
    answers: kiosk03 then leaves); the other roles send it for call A or B."""
    reason = {"department": "market", "reason": "矩阵"}
    if role != "expert":
        payload = {**_ref(target(m, relation).consultation_id), **reason}
        return await emit(m, actor(role, relation), "transfer", payload)
    consultation_id = await social_call(m)
    answer = await emit(
        m, SOCIAL_SENDERS[relation], "transfer", {**_ref(consultation_id), **reason}
    )
    await social_done(m, consultation_id)
    return answer


@probe("event leave_call")
async def _leave_call(m: Matrix, role: str, relation: Relation) -> str:
    """Experts leave kiosk03's call with expert_social (its last expert: it ends);
    an interpreter (interpreter02) leaves that call after joining it; others send it for
    call A or B."""
    if role == "expert":
        consultation_id = await social_call(m)
        answer = await emit(m, SOCIAL_SENDERS[relation], "leave_call", _ref(consultation_id))
        await social_done(m, consultation_id)
        return answer
    if role == "interpreter" and relation is Relation.OWN:
        consultation_id = await social_call(m)
        interpreter = m.socket("interpreter02")
        social = m.socket("expert_social")
        assert isinstance(interpreter, ExpertClient) and isinstance(social, ExpertClient)
        await interpreter.set_presence("available")
        invitation = await social.invite(consultation_id, "interpret", "")
        offer = await interpreter.next_event(
            "offer", OfferView, where=lambda o: o.invitation_id == invitation.invitation_id
        )
        await interpreter.accept_offer(offer)
        answer = await emit(m, "interpreter02", "leave_call", _ref(consultation_id))
        await interpreter.set_presence("away")
        await social_done(m, consultation_id)
        return answer
    call = target(m, relation)
    return await emit(m, actor(role, relation), "leave_call", _ref(call.consultation_id))


@probe("event share_screen")
async def _share_screen(m: Matrix, role: str, relation: Relation) -> str:
    username = actor(role, relation)
    payload = {**_ref(target(m, relation).consultation_id), "sharing": True}
    answer = await emit(m, username, "share_screen", payload)
    if answer == "ok":
        await emit(m, username, "share_screen", {**payload, "sharing": False})
    return answer


async def _recording_state(m: Matrix, state: str) -> None:
    """Call A's recording brought to ``state`` ("off" or "asked") by its own parties."""
    call = m.calls["A"].consultation_id
    await m.server.storage.departments.change("market", {"recording": True})
    view = await m.socket("expert_market").emit("stop_recording", _ref(call))
    if state == "asked" and view["recording"] == "off":
        await m.socket("expert_market").emit("request_recording", _ref(call))


@probe("event request_recording")
async def _request_recording(m: Matrix, role: str, relation: Relation) -> str:
    await _recording_state(m, "off")
    call = target(m, relation).consultation_id
    return await emit(m, actor(role, relation), "request_recording", _ref(call))


@probe("event answer_recording")
async def _answer_recording(m: Matrix, role: str, relation: Relation) -> str:
    await _recording_state(m, "asked")
    payload = {**_ref(target(m, relation).consultation_id), "accept": False, "text_version": "v1"}
    return await emit(m, actor(role, relation), "answer_recording", payload)


@probe("event stop_recording")
async def _stop_recording(m: Matrix, role: str, relation: Relation) -> str:
    await _recording_state(m, "asked")
    call = target(m, relation).consultation_id
    return await emit(m, actor(role, relation), "stop_recording", _ref(call))


@probe("event share_document")
async def _share_document(m: Matrix, role: str, relation: Relation) -> str:
    """Call A's shared document (shared again: no change), or call B's document."""
    call = target(m, relation)
    payload = {**_ref(call.consultation_id), "file_id": call.shared_file_id or call.file_id}
    return await emit(m, actor(role, relation), "share_document", payload)


# ---- call-backs and appointments ------------------------------------------------------

BOOK_ALWAYS = {"availability": ["1-7 00:00-24:00"], "slot_minutes": 5, "slot_capacity": 50}


async def _bookable(m: Matrix) -> None:
    """Market takes bookings around the clock, many a slot (idempotent)."""
    path = "/api/v1/departments/market/booking-settings"
    status, body = await m.request("PUT", path, "admin", json=BOOK_ALWAYS)
    assert status == 200, body


def _phone(m: Matrix) -> str:
    """A citizen of their own (2 open bookings each)."""
    return f"138{next(m.counter):08d}"


async def _booking_code(m: Matrix, *, first_slot: bool) -> str:
    await _bookable(m)
    status, body = await m.request("GET", "/api/v1/departments/market/slots", "kiosk01")
    assert status == 200, body
    # Not a slot about to begin: a booking arriving after its start is refused (409).
    later = [s["at"] for s in body["slots"] if s["at"] > time.time() + 60]
    slot = later[0 if first_slot else -1]
    booking = {"department": "market", "slot_at": slot, "phone": _phone(m)}
    status, body = await m.request("POST", "/api/v1/appointments", "kiosk01", json=booking)
    assert status == 201, body
    return str(body["booking_code"])


async def _callback(m: Matrix) -> str:
    body = {"department": "market", "phone": _phone(m), "note": "matrix"}
    status, made = await m.request("POST", "/api/v1/callbacks", "kiosk01", json=body)
    assert status == 201, made
    return str(made["id"])


@probe("PUT /api/v1/departments/{code}/booking-settings")
async def _put_booking_settings(m: Matrix, role: str, relation: Relation) -> int:
    path = "/api/v1/departments/market/booking-settings"
    return (await m.request("PUT", path, actor(role, relation), json=BOOK_ALWAYS))[0]


for _path in (
    "/api/v1/departments/market/booking-settings",
    "/api/v1/departments/market/slots",
    "/api/v1/appointments/today",
    "/api/v1/callbacks",
):
    PROBES[f"GET {_path.replace('/market/', '/{code}/')}"] = _get(_path)


@probe("POST /api/v1/appointments")
async def _book(m: Matrix, role: str, relation: Relation) -> int:
    await _bookable(m)
    status, body = await m.request("GET", "/api/v1/departments/market/slots", "kiosk01")
    assert status == 200, body
    booking = {"department": "market", "slot_at": body["slots"][-1]["at"], "phone": _phone(m)}
    return (await m.request("POST", "/api/v1/appointments", actor(role, relation), json=booking))[0]


@probe("POST /api/v1/appointments/admit")
async def _admit(m: Matrix, role: str, relation: Relation) -> int:
    code = await _booking_code(m, first_slot=True)
    path = "/api/v1/appointments/admit"
    return (await m.request("POST", path, actor(role, relation), json={"code": code}))[0]


@probe("POST /api/v1/departments/{code}/closures")
async def _close_day(m: Matrix, role: str, relation: Relation) -> int:
    body = {"day": "2030-01-02", "reason": "matrix"}
    path = "/api/v1/departments/market/closures"
    return (await m.request("POST", path, actor(role, relation), json=body))[0]


@probe("POST /api/v1/callbacks")
async def _request_callback(m: Matrix, role: str, relation: Relation) -> int:
    body = {"department": "market", "phone": _phone(m), "note": "matrix"}
    return (await m.request("POST", "/api/v1/callbacks", actor(role, relation), json=body))[0]


@probe("POST /api/v1/callbacks/{callback_id}/take")
async def _take_callback(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/callbacks/{await _callback(m)}/take"
    return (await m.request("POST", path, actor(role, relation)))[0]


@probe("POST /api/v1/callbacks/{callback_id}/attempts")
async def _callback_attempt(m: Matrix, role: str, relation: Relation) -> int:
    callback_id = await _callback(m)
    status, body = await m.request("POST", f"/api/v1/callbacks/{callback_id}/take", "expert_market")
    assert status == 200, body
    path = f"/api/v1/callbacks/{callback_id}/attempts"
    attempt = {"result": "reached", "note": ""}
    return (await m.request("POST", path, actor(role, relation), json=attempt))[0]


async def _follow_up(m: Matrix, relation: Relation) -> str:
    """A fresh follow-up: of a very dissatisfied market consultation (in
    supervisor_market's scope), or a housing one for ``other``; its consultation id."""
    storage = m.server.storage
    consultation_id = f"{next(m.counter):016x}"
    kiosk = await storage.accounts.get_by_username("kiosk04")
    department = "housing" if relation is Relation.OTHER else "market"
    audit = AuditEvent("kiosk04", "consultation.request", "", {})
    now = time.time()
    records = storage.consultations
    await records.create(
        kiosk.id, "city", department, None, audit=audit, consultation_id=consultation_id
    )
    await records.mark_ended(consultation_id, EndReason.COMPLETED, "kiosk04", now, audit=audit)
    await records.set_grade(
        consultation_id,
        Grade.VERY_DISSATISFIED,
        None,
        None,
        audit=AuditEvent("kiosk04", "consultation.rate", consultation_id, {}),
        at=now,
        follow_up_days=7,
    )
    return consultation_id


@probe("POST /api/v1/follow-ups/{consultation_id}/notes")
async def _note_follow_up(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/follow-ups/{await _follow_up(m, relation)}/notes"
    body = {"kind": "contact", "text": "matrix"}
    return (await m.request("POST", path, actor(role, relation), json=body))[0]


@probe("POST /api/v1/follow-ups/{consultation_id}/close")
async def _close_follow_up(m: Matrix, role: str, relation: Relation) -> int:
    path = f"/api/v1/follow-ups/{await _follow_up(m, relation)}/close"
    return (await m.request("POST", path, actor(role, relation), json={"text": "matrix"}))[0]


def _listen_path(m: Matrix, relation: Relation) -> str:
    return f"/api/v1/supervision/{target(m, relation).consultation_id}/listen"


async def _stop_listening(m: Matrix, path: str) -> None:
    """Whatever a probe started ends with it: the calls stay free of a listener."""
    status, body = await m.request("DELETE", path, "supervisor_market")
    assert status == 204, body


@probe("POST /api/v1/supervision/{consultation_id}/listen")
async def _listen(m: Matrix, role: str, relation: Relation) -> int:
    path = _listen_path(m, relation)
    status = (await m.request("POST", path, actor(role, relation)))[0]
    if status == 201:
        await _stop_listening(m, path)
    return status


@probe("GET /api/v1/supervision/{consultation_id}/listen")
async def _read_listening(m: Matrix, role: str, relation: Relation) -> int:
    path = _listen_path(m, relation)
    if relation is not Relation.OTHER:
        status, body = await m.request("POST", path, "supervisor_market")
        assert status == 201, body
    try:
        return (await m.request("GET", path, actor(role, relation)))[0]
    finally:
        if relation is not Relation.OTHER:
            await _stop_listening(m, path)


@probe("DELETE /api/v1/supervision/{consultation_id}/listen")
async def _end_listening(m: Matrix, role: str, relation: Relation) -> int:
    return (await m.request("DELETE", _listen_path(m, relation), actor(role, relation)))[0]


def _join_path(m: Matrix, relation: Relation) -> str:
    return f"/api/v1/supervision/{target(m, relation).consultation_id}/join"


async def _step_in_first(m: Matrix, relation: Relation) -> str:
    """supervisor_market in call A (for ``own``); the path either way."""
    path = _join_path(m, relation)
    if relation is not Relation.OTHER:
        status, body = await m.request("POST", path, "supervisor_market")
        assert status == 201, body
    return path


async def _step_out(m: Matrix, path: str) -> None:
    """Whatever a probe started ends with it: call A goes on without the supervisor."""
    status, body = await m.request("DELETE", path, "supervisor_market")
    assert status in (204, 404), body


@probe("POST /api/v1/supervision/{consultation_id}/join")
async def _step_in(m: Matrix, role: str, relation: Relation) -> int:
    path = _join_path(m, relation)
    status = (await m.request("POST", path, actor(role, relation)))[0]
    if status == 201:
        await _step_out(m, path)
    return status


@probe("GET /api/v1/supervision/{consultation_id}/join")
async def _read_step_in(m: Matrix, role: str, relation: Relation) -> int:
    path = await _step_in_first(m, relation)
    try:
        return (await m.request("GET", path, actor(role, relation)))[0]
    finally:
        if relation is not Relation.OTHER:
            await _step_out(m, path)


@probe("DELETE /api/v1/supervision/{consultation_id}/join")
async def _leave_step_in(m: Matrix, role: str, relation: Relation) -> int:
    path = await _step_in_first(m, relation)
    try:
        return (await m.request("DELETE", path, actor(role, relation)))[0]
    finally:
        if relation is not Relation.OTHER:
            await _step_out(m, path)


# ---- the matrix ---------------------------------------------------------------------


def seen(answer: int | str, rule: Rule) -> str:
    """The table's word for an answer."""
    if isinstance(answer, int):
        if 200 <= answer < 300:
            return Outcome.ALLOW.value
        return f"deny-{answer}" if answer in (401, 403, 404, 409) else f"status {answer}"
    if answer == "ok":
        return Outcome.ALLOW.value
    codes = {code: outcome.value for outcome, code in EVENT_CODES.items()}
    return codes.get(answer, f"code {answer}")


def surfaces_served(events: list[str]) -> set[str]:
    routes = {f"{e.method} {e.path}" for table in API_TABLES for e in table.endpoints}
    return routes | {f"event {name}" for name in events}


async def test_the_table_names_every_route_and_event_and_every_cell_has_a_probe(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    events = [spec.name for spec in server.hub.gateway.events]
    assert {rule.surface for rule in ACCESS} == surfaces_served(events)
    assert len({rule.surface for rule in ACCESS}) == len(ACCESS)
    assert set(PROBES) == {rule.surface for rule in ACCESS}
    for rule in ACCESS:
        assert set(rule.expected) == set(ROLES), rule.surface
        for role in ROLES:
            expected = rule.expected[role]
            if not isinstance(expected, Outcome):
                assert set(expected) == set(RELATIONS[rule.subject][role]), (rule.surface, role)
        if rule.is_event:
            # No session, no socket: every event is refused to anonymous callers.
            assert rule.expected["anonymous"] is Outcome.DENY_401


async def test_every_cell_of_the_access_matrix_answers_as_the_table_says(
    start_server: ServerFactory,
) -> None:
    # Nothing times out meanwhile, and the probes' many logins and events stay under
    # the limits (tested on their own elsewhere).
    server = await start_server(
        ring_timeout=600.0,
        grace_period=600.0,
        no_expert_wait=600.0,
        login_attempts=10_000,
        events_per_second=10_000.0,
        chat_per_minute=10_000,
    )
    m = await _build(server)
    disagreements = []
    try:
        for rule in ACCESS:
            for role, relation, expected in rule.cells():
                answer = await PROBES[rule.surface](m, role, relation)
                if seen(answer, rule) != expected.value:
                    disagreements.append(
                        f"{rule.surface} as {role}/{relation.value}: table {expected.value}, "
                        f"server {seen(answer, rule)} ({answer})"
                    )
    finally:
        for client in m.sockets.values():
            await client.close()
    assert not disagreements, "\n".join(disagreements)


def test_security_doc_shows_the_table() -> None:
    """docs/SECURITY.md holds what ``python docs/security_matrix.py`` prints."""
    printed = subprocess.run(
        [sys.executable, "docs/security_matrix.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert printed.returncode == 0, printed.stdout + printed.stderr


def test_the_matrix_covers_every_subject_relation() -> None:
    used = {rule.subject for rule in ACCESS}
    assert used <= set(Subject)
    assert set(RELATIONS) == set(Subject)
