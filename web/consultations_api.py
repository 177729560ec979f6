"""Consultation records for staff: look up, search by case number, withdraw."""

from aiohttp import web

from signaling.access import Right, Verdict
from signaling.messages import ConsultationView
from storage.errors import RecordNotFound
from storage.records import ConsultationRecord, Role
from web.api import Api, account_of, reply
from web.auth import remote_address
from web.errors import BadRequest, Conflict, NotFound
from web.keys import SIGNALING, STORAGE
from web.schemas import CaseQuery, ConsultationList, ConsultationRecordView

api = Api()
STAFF = frozenset({Role.EXPERT, Role.CLERK, Role.ADMIN})


async def consultation_for(
    request: web.Request, right: Right, *, not_now: str | None = None
) -> ConsultationRecord:
    """The record of the route's ``{consultation_id}``, if the caller has ``right`` on
    it now (signaling.access). Otherwise the same 404 as for a missing one, so that
    nobody learns another's consultation exists; with ``not_now``, one who stands in
    it but may not do this at this stage gets 409 ``invalid_state`` saying so."""
    try:
        record = await request.app[STORAGE].consultations.get(request.match_info["consultation_id"])
    except RecordNotFound:
        raise NotFound("no such consultation") from None
    verdict = await request.app[SIGNALING].verdict(account_of(request), record, right)
    if verdict is Verdict.NOT_NOW and not_now is not None:
        raise Conflict(not_now, code="invalid_state")
    if verdict is not Verdict.ALLOWED:
        raise NotFound("no such consultation")
    return record


@api.route(
    "GET",
    "/api/v1/consultations/{consultation_id}",
    summary="One consultation record (with its legs, each staff member's part, for clerks "
    "and admins).",
    roles=frozenset(Role),
    response=ConsultationRecordView,
    tag="consultations",
)
async def get_consultation(request: web.Request) -> web.StreamResponse:
    # Clerks and admins read every record, experts their department's and those they
    # answered, a kiosk its own while it is open (signaling.access).
    record = await consultation_for(request, Right.READ_RECORD)
    account = account_of(request)
    # The office sees who took part, when, and each one's outcome (the legs).
    legs = None
    if account.role in (Role.CLERK, Role.ADMIN):
        legs = await request.app[STORAGE].legs.of(record.id)
    return reply(ConsultationRecordView.of(record, legs))


@api.route(
    "GET",
    "/api/v1/consultations",
    summary="Consultations with a case number.",
    roles=STAFF,
    response=ConsultationList,
    tag="consultations",
    query=(("case_number", "the number on the acceptance slip"),),
    query_model=CaseQuery,
)
async def find_consultations(request: web.Request) -> web.StreamResponse:
    try:
        query = CaseQuery.model_validate({"case_number": request.query.get("case_number", "")})
    except ValueError:
        raise BadRequest("give a valid case_number", code="invalid_query") from None
    account = account_of(request)
    department = account.department if account.role is Role.EXPERT else None
    records = await request.app[STORAGE].consultations.find(
        case_number=query.case_number, department=department
    )
    return reply(ConsultationList(consultations=[ConsultationRecordView.of(r) for r in records]))


@api.route(
    "POST",
    "/api/v1/consultations/{consultation_id}/withdraw",
    summary="Withdraw an open consultation (ends as cancelled).",
    roles=frozenset({Role.ADMIN}),
    response=ConsultationView,
    tag="consultations",
)
async def withdraw(request: web.Request) -> web.StreamResponse:
    view = await request.app[SIGNALING].withdraw(
        account_of(request), request.match_info["consultation_id"], remote_address(request)
    )
    return reply(view)
