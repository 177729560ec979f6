"""Documents: resumable encrypted uploads during a call, lists, downloads with
Range, and the clerk's case record. Every upload, download and attach is audited."""

import base64
import binascii
import logging
import re
from typing import Annotated, Literal

from aiohttp import web
from pydantic import StringConstraints

from signaling.access import Right, Verdict
from signaling.messages import CaseNumber, FileView
from storage.errors import DocumentDamaged, FileShredded, RecordConflict, RecordNotFound
from storage.filestore import AttachRefused, Download, StoredFile, Upload, UploadError
from storage.filetypes import ALLOWED, WEBM
from storage.records import Account, AuditEvent, Role
from web.api import ANY_ACCOUNT, Api, Header, account_of, audit_of, read_body, reply
from web.auth import remote_address
from web.body_pacing import BodyTooSlow, Pace, paced
from web.byte_ranges import Part, Unsatisfiable, Whole, answer_range
from web.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RequestTimeout,
    UnsupportedMediaType,
    upload_refusal,
)
from web.keys import FILES, METRICS, SETTINGS, SIGNALING, STORAGE
from web.recordings_api import may_play, refused_download
from web.schemas import Body, CaseQuery, View

api = Api()
log = logging.getLogger(__name__)
PART_PACE = Pace()
_OFFSET = re.compile(r"[0-9]{1,15}")
CLERKS = frozenset({Role.CLERK, Role.ADMIN})
PARTICIPANTS = frozenset({Role.KIOSK, Role.EXPERT})


class UploadCreate(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    size: int


class UploadView(View):
    upload_id: str
    url: str
    offset: int
    size: int


class FileList(View):
    files: list[FileView]


class AttachRequest(Body):
    file_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    category: Literal["application", "supplementary", "reply"]


class AttachmentView(View):
    case_number: str
    category: str
    attached_at: float
    file: FileView


class AttachmentList(View):
    attachments: list[AttachmentView]


class CaseLink(Body):
    case_number: CaseNumber
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]
    """Why this consultation belongs to the case (kept in the audit entry)."""


def file_view(record: StoredFile) -> FileView:
    return FileView.of(record)


async def _participant_of_active(request: web.Request, consultation_id: str) -> None:
    """Only those taking part in the active call may upload (signaling.access)."""
    side = await request.app[SIGNALING].active_side(account_of(request), consultation_id)
    if side is None:
        raise NotFound("no active consultation with this id for you")


async def _may_read(
    request: web.Request, account: Account, consultation_id: str, file_id: str | None = None
) -> frozenset[str] | None:
    """The kiosk during its call; the call's experts, the department's experts, clerks
    and admins (signaling.access); an interpreter taking part, the documents shared
    with it (the ids returned; one not shared is 403). Anyone else gets the same 404
    as for a missing file. None: every document of the consultation."""
    try:
        record = await request.app[STORAGE].consultations.get(consultation_id)
    except RecordNotFound:
        raise NotFound("no such file") from None
    signaling = request.app[SIGNALING]
    if await signaling.may(account, record, Right.READ_FILES):
        return None
    if account.role is Role.INTERPRETER and file_id is not None:
        verdict = await signaling.may_read_file(account, record, file_id)
        if verdict is Verdict.NOT_NOW:
            raise Forbidden("this document has not been shared with you")
        if verdict is Verdict.ALLOWED:
            return None
    elif account.role is Role.INTERPRETER and await signaling.may(
        account, record, Right.READ_SHARED_FILES
    ):
        return await signaling.shared_files(consultation_id)
    raise NotFound("no such file")


async def _own_upload(request: web.Request) -> Upload:
    """The caller's own unfinished upload, while its call is still active: an upload
    ends with its call (it used to be finishable afterwards, adding a file to a
    closed consultation)."""
    try:
        upload = await request.app[FILES].upload(request.match_info["upload_id"])
    except RecordNotFound:
        raise NotFound("no such upload") from None
    if upload.uploader_id != account_of(request).id:
        raise NotFound("no such upload")
    try:
        await _participant_of_active(request, upload.consultation_id)
    except NotFound:
        await request.app[FILES].discard(upload)
        raise NotFound("no such upload: its call has ended") from None
    return upload


@api.route(
    "POST",
    "/api/v1/consultations/{consultation_id}/uploads",
    summary="Start an upload (name and size); then PATCH parts, then finish.",
    roles=PARTICIPANTS,
    body=UploadCreate,
    response=UploadView,
    status=201,
    tag="files",
    # 413 too_large, 429 too_many_uploads, 503 uploads_busy.
    errors=(413, 429, 503),
)
async def create_upload(request: web.Request) -> web.StreamResponse:
    consultation_id = request.match_info["consultation_id"]
    await _participant_of_active(request, consultation_id)
    body = await read_body(request, UploadCreate)
    upload = await request.app[FILES].begin(
        consultation_id, account_of(request), body.name, body.size
    )
    view = UploadView(
        upload_id=upload.id, url=f"/api/v1/uploads/{upload.id}", offset=0, size=upload.declared_size
    )
    return reply(view, status=201)


def _offset_headers(declared_size: int, offset: int) -> dict[str, str]:
    return {"Upload-Offset": str(offset), "Upload-Length": str(declared_size)}


@api.route(
    "HEAD",
    "/api/v1/uploads/{upload_id}",
    summary="Where to resume: Upload-Offset (bytes stored) and Upload-Length.",
    roles=PARTICIPANTS,
    tag="files",
)
async def upload_offset(request: web.Request) -> web.StreamResponse:
    upload = await _own_upload(request)
    return web.Response(status=200, headers=_offset_headers(upload.declared_size, upload.offset))


@api.route(
    "PATCH",
    "/api/v1/uploads/{upload_id}",
    summary="Send a part: Upload-Offset (where it starts) and Upload-Checksum "
    "(sha256 <base64>) headers, body application/offset+octet-stream. A part "
    "counts only when complete and matching its checksum.",
    roles=PARTICIPANTS,
    status=204,
    tag="files",
    request_type="application/offset+octet-stream",
    headers=(
        Header("Upload-Offset", "where the part starts: the upload's offset", r"^[0-9]{1,15}$"),
        Header("Upload-Checksum", "sha256 <base64 of the part's digest>", r"^[Ss][Hh][Aa]256 \S+$"),
    ),
    # 400 bad_part/checksum_mismatch, 408 too_slow, 409 wrong_offset (also: the same
    # part sent again, or another part of this upload still arriving), 413 too_large,
    # 415 not application/offset+octet-stream, 429 account_upload_limit/call_upload_limit,
    # 503 uploads_busy (also: the server's storage is full).
    errors=(400, 408, 409, 413, 415, 429, 503),
)
async def upload_part(request: web.Request) -> web.StreamResponse:
    upload = await _own_upload(request)
    try:
        raw_offset = request.headers["Upload-Offset"]
        if not _OFFSET.fullmatch(raw_offset):
            raise ValueError(raw_offset)
        offset = int(raw_offset)
        algorithm, _, encoded = request.headers["Upload-Checksum"].partition(" ")
        checksum = base64.b64decode(encoded, validate=True)
    except (KeyError, ValueError, binascii.Error):
        raise BadRequest(
            "send Upload-Offset and Upload-Checksum: sha256 <base64>", code="bad_part"
        ) from None
    if algorithm.lower() != "sha256" or len(checksum) != 32:
        raise BadRequest("Upload-Checksum must be sha256 <base64>", code="bad_part")
    if request.content_type != "application/offset+octet-stream":
        raise UnsupportedMediaType("send the part as application/offset+octet-stream")
    try:
        stored = await request.app[FILES].append(
            upload,
            offset,
            paced(request.content.iter_chunked(1024 * 1024), PART_PACE),
            checksum,
            request.content_length,
        )
    except BodyTooSlow as exc:
        raise RequestTimeout(f"{exc}; resume from Upload-Offset") from None
    except UploadError as exc:
        # A part at the wrong offset is told where the upload stands.
        at = None if exc.offset is None else _offset_headers(upload.declared_size, exc.offset)
        raise upload_refusal(exc, at) from None
    return web.Response(status=204, headers=_offset_headers(upload.declared_size, stored))


@api.route(
    "POST",
    "/api/v1/uploads/{upload_id}/finish",
    summary="Complete the upload: the content's type is checked, the file is "
    "recorded and the other participant told at once.",
    roles=PARTICIPANTS,
    response=FileView,
    status=201,
    tag="files",
    # 404 gone (discarded, or a part was lost: send the file again); 409 incomplete,
    # or wrong_offset (a part still arriving); 415 unsupported_type/type_mismatch;
    # 503 uploads_busy (the server's storage is full).
    errors=(409, 415),
)
async def finish_upload(request: web.Request) -> web.StreamResponse:
    upload = await _own_upload(request)
    record = await request.app[FILES].finish(upload, account_of(request), remote_address(request))
    view = file_view(record)
    metrics = request.app[METRICS]
    metrics.uploads.labels(record.uploader_role).inc()
    metrics.upload_bytes.inc(record.size)
    await request.app[SIGNALING].announce_file(record.consultation_id, view)
    return reply(view, status=201)


@api.route(
    "DELETE",
    "/api/v1/uploads/{upload_id}",
    summary="Abandon an upload.",
    roles=PARTICIPANTS,
    status=204,
    tag="files",
)
async def abandon_upload(request: web.Request) -> web.StreamResponse:
    await request.app[FILES].discard(await _own_upload(request))
    return web.Response(status=204)


@api.route(
    "GET",
    "/api/v1/consultations/{consultation_id}/files",
    summary="The consultation's documents.",
    roles=ANY_ACCOUNT,
    response=FileList,
    tag="files",
)
async def list_files(request: web.Request) -> web.StreamResponse:
    consultation_id = request.match_info["consultation_id"]
    shared = await _may_read(request, account_of(request), consultation_id)
    records = await request.app[FILES].of_consultation(consultation_id)
    # Recordings are no documents of the call: GET /api/v1/recordings lists them.
    recordings = await request.app[STORAGE].recordings.file_ids(consultation_id)
    return reply(
        FileList(
            files=[
                file_view(r)
                for r in records
                if (shared is None or r.id in shared) and r.id not in recordings
            ]
        )
    )


def _content_disposition(name: str, inline: bool) -> str:
    """ASCII fallback plus the UTF-8 name (RFC 6266/5987); the name is display text only."""
    fallback = (
        "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in name)
        or "document"
    )
    from urllib.parse import quote

    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@api.route(
    "GET",
    "/api/v1/files/{file_id}",
    summary="Download (decrypted as it streams). Range requests work; ?inline=1 for previews. "
    "A recording, with --recordings-play-only: only to a video or audio element "
    "(Sec-Fetch-Dest), always inline; anything else 403 play_only.",
    roles=ANY_ACCOUNT,
    tag="files",
    content_type=(*(kind.media_type for kind in ALLOWED), WEBM.media_type),
    query=(("inline", "1: Content-Disposition inline (previews); otherwise attachment"),),
    ranges=True,
    headers=(
        Header("Range", "bytes=<first>-<last>, or bytes=-<suffix>", required=False),
        Header(
            "Sec-Fetch-Dest",
            "sent by browsers; a recording under --recordings-play-only needs video or audio",
            required=False,
        ),
    ),
    # 403 play_only (a recording under --recordings-play-only, not for a player);
    # 410 shredded; 500 damaged (the stored file fails its integrity check).
    errors=(403, 410, 500),
)
async def download(request: web.Request) -> web.StreamResponse:
    account = account_of(request)
    store = request.app[FILES]
    try:
        record = await store.get(request.match_info["file_id"])
    except RecordNotFound:
        raise NotFound("no such file") from None
    storage = request.app[STORAGE]
    inline = request.query.get("inline") == "1"
    play_only = False
    if await storage.recordings.is_recording(record.id):
        # A recording: its own rule (web.recordings_api), every play audited (a
        # player's further ranges of the same play are not).
        consultation = await storage.consultations.get(record.consultation_id)
        if not await may_play(request, account, consultation):
            raise NotFound("no such file")
        refused = refused_download(request)
        if refused is not None:
            await storage.audit.append(
                audit_of(request, "recording.download_refused", record.id, destination=refused)
            )
            raise Forbidden(
                "this deployment plays recordings in the page only: they cannot be "
                "downloaded or opened on their own",
                code="play_only",
            )
        play_only = request.app[SETTINGS].recordings_play_only
        if request.headers.get("Range", "bytes=0-").replace(" ", "").startswith("bytes=0-"):
            await storage.audit.append(audit_of(request, "recording.play", record.id))
    else:
        await _may_read(request, account, record.consultation_id, record.id)
    if record.shredded_at is not None:
        raise FileShredded("the document was shredded at the end of its retention period")
    start, end, status = 0, record.size, 200
    range_header = request.headers.get("Range")
    match answer_range(range_header, record.size):
        case Part(start=start, end=end):
            status = 206
        case Unsatisfiable():
            raise web.HTTPRequestRangeNotSatisfiable(
                headers={"Content-Range": f"bytes */{record.size}"}
            )
        case Whole():
            # Absent, or ignored as RFC 9110 allows (not bytes, several ranges, unparsable).
            range_header = None
    # Storage hands out authenticated plaintext and audits the download: the first
    # megabyte is read before the status is sent, so damage there (and in any
    # smaller document) is a clean 500 damaged (DocumentDamaged, web.errors); damage
    # further on cuts the response off short of its Content-Length, which the
    # browser reports as a failed download. Nothing unauthenticated is ever sent.
    plaintext = await store.plaintext(
        record, start, end, Download(account, remote_address(request), range_header or "")
    )
    request.app[METRICS].downloads.inc()
    response = web.StreamResponse(
        status=status,
        headers={
            "Content-Type": record.media_type,
            "Content-Length": str(end - start),
            # Play-only: no file name either, nothing that suggests saving it.
            "Content-Disposition": "inline"
            if play_only
            else _content_disposition(record.name, inline),
            "X-Content-Type-Options": "nosniff",
            # A document is data, never a page of this origin: should a browser ever
            # render one as HTML, it runs sandboxed, without our cookies or scripts.
            "Content-Security-Policy": "sandbox",
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, no-store",
        },
    )
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    try:
        await response.prepare(request)
        sent = start
        try:
            async for batch in plaintext:
                await response.write(batch)
                sent += len(batch)
        except DocumentDamaged:
            log.error("document %s is damaged after byte %d; download cut off", record.id, sent)
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("damaged document: download cut off") from None
        await response.write_eof()
    finally:
        plaintext.close()
    return response


async def _attachment_list(request: web.Request, case_number: str) -> AttachmentList:
    items = await request.app[FILES].attachments(case_number)
    return AttachmentList(
        attachments=[
            AttachmentView(
                case_number=a.case_number,
                category=a.category,
                attached_at=a.attached_at,
                file=file_view(a.file),
            )
            for a in items
        ]
    )


@api.route(
    "GET",
    "/api/v1/cases/{case_number}/attachments",
    summary="The documents attached to a case record.",
    roles=CLERKS,
    response=AttachmentList,
    tag="files",
)
async def case_attachments(request: web.Request) -> web.StreamResponse:
    case_number = request.match_info["case_number"]
    return reply(await _attachment_list(request, case_number))


@api.route(
    "POST",
    "/api/v1/cases/{case_number}/attachments",
    summary="Attach a consultation's document to the case record with a category.",
    roles=CLERKS,
    body=AttachRequest,
    response=AttachmentList,
    status=201,
    tag="files",
    # 404 no such file; 409 already_attached, other_case (the document's consultation
    # is of another case), no_case_number (link the consultation first); 410 shredded.
    errors=(404, 409, 410),
)
async def attach(request: web.Request) -> web.StreamResponse:
    case_number = request.match_info["case_number"]
    try:
        valid = CaseQuery.model_validate({"case_number": case_number}).case_number == case_number
    except ValueError:
        valid = False
    if not valid:
        raise BadRequest("not a case number", code="invalid_case_number")
    body = await read_body(request, AttachRequest)
    try:
        await request.app[FILES].attach(
            case_number, body.file_id, body.category, account_of(request), remote_address(request)
        )
    except AttachRefused as exc:
        raise Conflict(str(exc), code=exc.code) from None
    return reply(await _attachment_list(request, case_number), status=201)


@api.route(
    "POST",
    "/api/v1/consultations/{consultation_id}/case",
    summary="Link a consultation that had no case number to one, once, with a reason "
    "(audited); its documents can then be attached to that case.",
    roles=CLERKS,
    body=CaseLink,
    tag="files",
    status=204,
    # 404 no such consultation; 409 already_linked (it has a case number: linked once).
    errors=(404, 409),
)
async def link_case(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, CaseLink)
    consultation_id = request.match_info["consultation_id"]
    account = account_of(request)
    records = request.app[STORAGE].consultations
    try:
        record = await records.get(consultation_id)
    except RecordNotFound:
        raise NotFound("no such consultation") from None
    already = Conflict(
        "this consultation already has a case number; a consultation is linked once",
        code="already_linked",
    )
    if record.case_number is not None:
        raise already
    try:
        # The records change only if it still has none (two clerks at once: one wins).
        await records.link_case(
            consultation_id,
            body.case_number,
            audit=AuditEvent(
                account.username,
                "consultation.link_case",
                consultation_id,
                # The reason, not the case number: the audit log never holds case numbers.
                {"reason": body.reason},
                remote_address(request),
            ),
        )
    except RecordConflict:
        raise already from None
    return web.Response(status=204)
