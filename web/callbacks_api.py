"""Call-backs: the kiosk leaves a citizen's mobile number and a note when nobody of the
department is online or the wait is beyond its limit; an expert of the department
lists the open requests (numbers masked), takes one (the number shown in full to them
only, audited), calls and records each attempt's result."""

import time
from datetime import datetime

from aiohttp import web

from storage.callbacks import AttemptResult, Callback
from storage.errors import RecordConflict, RecordNotFound
from storage.records import Account, Role
from storage.sensitive import Kind, mask
from web.api import Api, account_of, audit_of, read_body, reply
from web.auth import remote_address
from web.booking_schemas import (
    AttemptRequest,
    CallbackList,
    CallbackRequest,
    CallbackView,
    TakenCallbackView,
)
from web.errors import Conflict, Forbidden, NotFound
from web.keys import NOTICES, SENSITIVE, STORAGE
from web.notices import Notice, NoticeType

api = Api()
KIOSK = frozenset({Role.KIOSK})
EXPERT = frozenset({Role.EXPERT})


async def _view(request: web.Request, callback: Callback, account: Account) -> CallbackView:
    phone = await request.app[SENSITIVE].reveal(Kind.PHONE, callback.phone_sealed)
    return CallbackView(
        id=callback.id,
        department=callback.department,
        case_number=callback.case_number,
        note=callback.note,
        phone_masked=mask(phone),
        queued_at=callback.queued_at,
        created_at=callback.created_at,
        expires_at=callback.expires_at,
        attempts=callback.attempts,
        max_attempts=callback.max_attempts,
        state=callback.state.value,
        taken_by_me=callback.taken_by == account.id,
    )


def _department_of(account: Account) -> str:
    if account.department is None:
        raise Forbidden("only an expert of a department takes call-backs")
    return account.department


@api.route(
    "POST",
    "/api/v1/callbacks",
    summary="The citizen asks to be called back (a mainland mobile number: 11 digits, "
    "1[3-9]...; kept sealed, never in clear in logs or the audit) with a note; a request "
    "made while the kiosk's consultation waits keeps the place it queued at.",
    roles=KIOSK,
    body=CallbackRequest,
    response=CallbackView,
    status=201,
    tag="callbacks",
    errors=(404,),
)
async def request_callback(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, CallbackRequest)
    kiosk = account_of(request)
    storage = request.app[STORAGE]
    try:
        department = await storage.departments.get(body.department)
    except RecordNotFound:
        raise NotFound("no such department") from None
    sealed = await request.app[SENSITIVE].seal(Kind.PHONE, body.phone)
    callback = await storage.callbacks.request(
        body.department,
        kiosk_id=kiosk.id,
        hall=kiosk.hall,
        phone_lookup=sealed.lookup,
        phone_sealed=sealed.sealed,
        note=body.note,
        case_number=body.case_number,
        consultation_id=body.consultation_id,
        now=time.time(),
        audit=audit_of(request, "callback.request", body.department, phone_given=True),
    )
    expires = datetime.fromtimestamp(callback.expires_at).astimezone().strftime("%m-%d %H:%M")
    await request.app[NOTICES].send(
        Notice(
            NoticeType.CALLBACK_SCHEDULED,
            body.phone,
            callback.id,
            body.department,
            {
                "department": department.name_zh,
                "department_en": department.name_en,
                "expires": expires,
            },
        ),
        actor=kiosk.username,
        remote=remote_address(request),
    )
    return reply(await _view(request, callback, kiosk), status=201)


@api.route(
    "GET",
    "/api/v1/callbacks",
    summary="For the expert desk: the open call-back requests of the expert's department "
    "in the order their citizens first queued (numbers masked); expired ones close.",
    roles=EXPERT,
    response=CallbackList,
    tag="callbacks",
)
async def list_callbacks(request: web.Request) -> web.StreamResponse:
    account = account_of(request)
    department = _department_of(account)
    found = await request.app[STORAGE].callbacks.open_of(department, time.time())
    return reply(CallbackList(callbacks=[await _view(request, c, account) for c in found]))


@api.route(
    "POST",
    "/api/v1/callbacks/{callback_id}/take",
    summary="Take an open call-back of the expert's department (of two experts at once, "
    "one wins; 409 for the other): the number in full, for this expert only; audited.",
    roles=EXPERT,
    response=TakenCallbackView,
    tag="callbacks",
    errors=(409,),
)
async def take(request: web.Request) -> web.StreamResponse:
    account = account_of(request)
    department = _department_of(account)
    callback_id = request.match_info["callback_id"]
    try:
        callback = await request.app[STORAGE].callbacks.take(
            callback_id,
            department,
            account.id,
            time.time(),
            audit=audit_of(request, "callback.take", callback_id, phone_revealed=True),
        )
    except RecordNotFound:
        raise NotFound("no such call-back") from None
    except RecordConflict as exc:
        raise Conflict(str(exc), code="taken") from None
    phone = await request.app[SENSITIVE].reveal(Kind.PHONE, callback.phone_sealed)
    return reply(TakenCallbackView(callback=await _view(request, callback, account), phone=phone))


@api.route(
    "POST",
    "/api/v1/callbacks/{callback_id}/attempts",
    summary="The result of one call to the citizen (reached, no_answer, wrong_number) by "
    "the expert who took the request: reached or a wrong number closes it; no answer "
    "gives it back to the department's list until its attempts are used up.",
    roles=EXPERT,
    body=AttemptRequest,
    response=CallbackView,
    tag="callbacks",
    errors=(409,),
)
async def record_attempt(request: web.Request) -> web.StreamResponse:
    account = account_of(request)
    department = _department_of(account)
    callback_id = request.match_info["callback_id"]
    body = await read_body(request, AttemptRequest)
    storage = request.app[STORAGE]
    try:
        current = await storage.callbacks.get(callback_id)
    except RecordNotFound:
        raise NotFound("no such call-back") from None
    if current.department != department:
        raise NotFound("no such call-back")
    after = await storage.callbacks.record_attempt(
        callback_id,
        account.id,
        AttemptResult(body.result),
        body.note,
        time.time(),
        audit=audit_of(request, "callback.attempt", callback_id, result=body.result),
    )
    return reply(await _view(request, after, account))
