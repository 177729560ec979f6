"""Photos from the citizen's own phone into their call: the kiosk asks for a
one-time link (shown as a QR code), the phone opens the small page it names,
claims the link once for the files it is about to send and sends them; each
arrives in the call as the kiosk's document, through the same FileStore as every
upload (the same types, sizes and limits), and both sides see it at once.

The link is the credential (storage.phone_links): no login on the phone, and
nothing of the consultation is shown or answered to it, only whether the link
can still be used. Links end with their few minutes, with their one use, and
with the call.
"""

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

import segno
from aiohttp import web
from pydantic import Field, StringConstraints

from storage.errors import RecordNotFound
from storage.filestore import Upload
from storage.filetypes import ALLOWED, FileRejected, check_name
from storage.phone_links import LinkState, PhoneLink, PhoneLinks, link_state, token_hash
from storage.records import Account, AuditEvent, Role
from web.api import Api, account_of, read_body, reply
from web.auth import public_origin, remote_address
from web.body_pacing import BodyTooSlow, Pace, paced
from web.errors import (
    BadRequest,
    Gone,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from web.files_api import file_view
from web.keys import FILES, METRICS, SIGNALING, STORAGE
from web.schemas import Body, View

api = Api()
log = logging.getLogger(__name__)

LINK_VALID_FOR = 300.0
"""Seconds a link may wait for its phone: scanning and choosing photos takes a
minute or two; a code left on screen goes stale soon after."""
SEND_FOR = 600.0
"""Seconds a phone that claimed a link has to send what it announced."""
MAX_FILES = 10
"""Files one link carries (a few pages photographed one by one)."""
PART = 1024 * 1024
"""Bytes of a phone's file held in memory at a time: each becomes one checked part."""
PACE = Pace()
PAGE = (Path(__file__).parent / "pages" / "phone.html").read_bytes()


class QrView(View):
    size: int
    """Modules per side (without the quiet zone, which the drawer adds)."""
    rows: list[str]
    """Each row of modules, "1" dark and "0" light, top to bottom."""


class PhoneLinkView(View):
    url: str
    """What the QR code says: this service's address the phone opens."""
    expires_at: float
    valid_for_s: float
    qr: QrView


class PhoneLinkStatus(View):
    state: Literal["ready", "claimed", "used", "expired"]
    max_files: int
    max_file_size: int
    extensions: list[str]


class AnnouncedFile(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    size: Annotated[int, Field(ge=1)]


class PhoneClaim(Body):
    files: Annotated[list[AnnouncedFile], Field(min_length=1, max_length=MAX_FILES)]


class PhoneClaimView(View):
    claim: str
    """Send each announced file with ``Authorization: Bearer <claim>``."""
    send_within_s: float


class PhoneFileView(View):
    name: str
    size: int


def qr_of(url: str) -> QrView:
    """The QR code of ``url`` (error correction M: a kiosk's screen may glare)."""
    code = segno.make(url, error="m", micro=False)
    rows = ["".join("1" if module else "0" for module in row) for row in code.matrix]
    return QrView(size=len(rows), rows=rows)


def _links(request: web.Request) -> PhoneLinks:
    return PhoneLinks(request.app[STORAGE].db)


async def _in_call(request: web.Request, account: Account, consultation_id: str) -> bool:
    return await request.app[SIGNALING].kiosk_in_call(account, consultation_id)


async def _usable(request: web.Request, token: str) -> tuple[PhoneLink, LinkState, Account]:
    """The link, what it allows now (expired once its call is over) and its kiosk."""
    try:
        link = await _links(request).get(token)
        kiosk = await request.app[STORAGE].accounts.get(link.kiosk_id)
    except RecordNotFound:
        raise NotFound("no such link") from None
    state = link_state(link, time.time())
    if state in (LinkState.READY, LinkState.CLAIMED) and not await _in_call(
        request, kiosk, link.consultation_id
    ):
        state = LinkState.USED if state is LinkState.CLAIMED else LinkState.EXPIRED
    return link, state, kiosk


def _gone(state: LinkState) -> Gone:
    if state is LinkState.EXPIRED:
        return Gone("this link has expired; show a new code on the kiosk", code="link_expired")
    return Gone("this link has been used; show a new code on the kiosk", code="link_used")


@api.route(
    "POST",
    "/api/v1/consultations/{consultation_id}/phone-link",
    summary="A one-time link (and its QR code) with which the citizen sends photos "
    "from their own phone into this call; the call's unclaimed links are withdrawn.",
    roles=frozenset({Role.KIOSK}),
    response=PhoneLinkView,
    status=201,
    tag="files",
)
async def create_link(request: web.Request) -> web.StreamResponse:
    account = account_of(request)
    consultation_id = request.match_info["consultation_id"]
    if not await _in_call(request, account, consultation_id):
        raise NotFound("no active consultation with this id for you")
    token, link = await _links(request).create(consultation_id, account.id, LINK_VALID_FOR)
    url = f"{public_origin(request)}/phone/{token}"
    view = PhoneLinkView(
        url=url, expires_at=link.expires_at, valid_for_s=LINK_VALID_FOR, qr=qr_of(url)
    )
    return reply(view, status=201)


@api.route(
    "GET",
    "/api/v1/phone-links/{token}",
    summary="Whether a phone link can still be used (nothing of its consultation), "
    "and what it accepts.",
    roles=None,
    response=PhoneLinkStatus,
    tag="files",
)
async def link_status(request: web.Request) -> web.StreamResponse:
    _link, state, _kiosk = await _usable(request, request.match_info["token"])
    return reply(
        PhoneLinkStatus(
            state=state.value,
            max_files=MAX_FILES,
            max_file_size=request.app[FILES].max_size,
            extensions=[ext for kind in ALLOWED for ext in kind.extensions],
        )
    )


@api.route(
    "POST",
    "/api/v1/phone-links/{token}/claim",
    summary="Use the link, once: announce the files (names, sizes) this phone is "
    "about to send; the answer's claim opens their uploads.",
    roles=None,
    body=PhoneClaim,
    response=PhoneClaimView,
    status=201,
    tag="files",
    # 410 link_used / link_expired; 413 too_large; 400 bad_name; 415 unsupported_type.
    errors=(410,),
)
async def claim_link(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    link, state, kiosk = await _usable(request, token)
    if state is not LinkState.READY:
        raise _gone(state)
    body = await read_body(request, PhoneClaim)
    max_size = request.app[FILES].max_size
    files = [(_check_announced(f.name, f.size, max_size), f.size) for f in body.files]
    claim = await _links(request).claim(
        token,
        files,
        SEND_FOR,
        audit=AuditEvent(
            kiosk.username,
            "phone_link.claim",
            link.consultation_id,
            {"files": len(body.files)},
            remote_address(request),
        ),
    )
    if claim is None:
        # Another phone claimed it a moment before, or its minutes ran out.
        _link, state, _kiosk = await _usable(request, token)
        raise _gone(state if state is not LinkState.READY else LinkState.USED)
    return reply(PhoneClaimView(claim=claim, send_within_s=SEND_FOR), status=201)


def _check_announced(name: str, size: int, max_size: int) -> str:
    """The checks a kiosk's own upload gets at its start: a usable name with an
    allowed extension, a size within the limit (the content is checked on arrival).
    The name as it is kept (what a file sent under the claim must be called)."""
    try:
        clean = check_name(name)
    except FileRejected as exc:
        raise BadRequest(str(exc), code=exc.code) from None
    if not any(clean.lower().endswith(ext) for kind in ALLOWED for ext in kind.extensions):
        raise UnsupportedMediaType(
            "only PDF, JPEG, PNG and OFD documents are accepted", code="unsupported_type"
        )
    if size > max_size:
        raise PayloadTooLarge(f"files may be at most {max_size} bytes", code="too_large")
    return clean


@api.route(
    "POST",
    "/api/v1/phone-links/{token}/files",
    summary="Send one announced file: the raw bytes as the body (Content-Length "
    "required: the announced size), its announced name in ?name=, Authorization: "
    "Bearer <claim>. It arrives in the call as the kiosk's document.",
    roles=None,
    response=PhoneFileView,
    status=201,
    tag="files",
    request_type="application/octet-stream",
    query=(("name", "the file's name, as announced"),),
    # 401 no or wrong claim; 410 link used up, expired or its call over; 408 too_slow;
    # 400 no Content-Length, or not_announced (another name or size than announced);
    # 413 too_large; 415 unsupported_type/type_mismatch; 429/503 upload limits.
    errors=(400, 401, 408, 410, 413, 415, 429, 503),
)
async def send_file(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    link, state, kiosk = await _usable(request, token)
    if state is not LinkState.CLAIMED:
        raise _gone(state)
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise _unauthorized()
    length = request.content_length
    if length is None:
        raise BadRequest("send the file with a Content-Length", code="length_required")
    store = request.app[FILES]
    name = _check_announced(request.query.get("name", ""), length, store.max_size)
    if length == 0:
        raise BadRequest("the file is empty", code="empty")
    links = _links(request)
    if not await links.take_file(token, secret, name, length):
        # A wrong claim, everything announced sent, or a file never announced.
        current, state, _kiosk = await _usable(request, token)
        if not hmac.compare_digest(current.claim_hash or "", token_hash(secret)):
            raise _unauthorized()
        if state is not LinkState.CLAIMED:
            raise _gone(LinkState.USED)
        raise BadRequest(
            "send only the files announced in the claim, by their names and sizes",
            code="not_announced",
        )
    upload: Upload | None = None
    try:
        upload = await store.begin(link.consultation_id, kiosk, name, length)
        offset = 0
        async for part in _parts(paced(request.content.iter_chunked(64 * 1024), PACE)):
            offset = await store.append(
                upload, offset, _once(part), hashlib.sha256(part).digest(), len(part)
            )
        # A file joins only a call still going on (it may have ended while this arrived).
        if not await _in_call(request, kiosk, link.consultation_id):
            raise _gone(LinkState.EXPIRED)
        record = await store.finish(upload, kiosk, remote_address(request))
    except BaseException as exc:
        if upload is not None:
            await _discard(request, upload)
        await links.give_back_file(token, secret, name, length)
        if isinstance(exc, BodyTooSlow):
            raise RequestTimeout(f"{exc}; send the file again") from None
        raise
    view = file_view(record)
    metrics = request.app[METRICS]
    metrics.uploads.labels(record.uploader_role).inc()
    metrics.upload_bytes.inc(record.size)
    await request.app[SIGNALING].announce_file(record.consultation_id, view)
    return reply(PhoneFileView(name=record.name, size=record.size), status=201)


def _unauthorized() -> Unauthorized:
    return Unauthorized("send the claim as Authorization: Bearer <claim>")


async def _discard(request: web.Request, upload: Upload) -> None:
    try:
        await request.app[FILES].discard(upload)
    except Exception:
        # The upload sweeper removes it later anyway.
        log.warning("phone upload %s not discarded now; the sweeper will", upload.id)


async def _parts(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body in parts of up to PART bytes, each checked on its own."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= PART:
            yield bytes(buffer[:PART])
            del buffer[:PART]
    if buffer:
        yield bytes(buffer)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@api.route(
    "GET",
    "/phone/{token}",
    summary="The phone's page for a one-time link (HTML; the link in its path).",
    roles=None,
    tag="pages",
    content_type="text/html",
)
async def phone_page(_request: web.Request) -> web.StreamResponse:
    # The same page whatever the link: it asks the API what the link allows, so
    # that nothing here tells a link that exists from one that does not.
    return web.Response(
        body=PAGE, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
    )
