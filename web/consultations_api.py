"""Consultation records for staff: look up, search by case number, withdraw."""

from aiohttp import web

from signaling.access import Right
from signaling.messages import ConsultationView
from storage.errors import RecordNotFound
from storage.records import Role
from web.api import Api, account_of, reply
from web.auth import remote_address
from web.errors import BadRequest, NotFound
from web.keys import SIGNALING, STORAGE
from web.schemas import CaseQuery, ConsultationList, ConsultationRecordView

api = Api()
STAFF = frozenset({Role.EXPERT, Role.CLERK, Role.ADMIN})


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
    try:
        record = await request.app[STORAGE].consultations.get(request.match_info["consultation_id"])
    except RecordNotFound:
        raise NotFound("no such consultation") from None
    # Clerks and admins read every record, experts their department's and those they
    # answered, a kiosk its own while it is open (signaling.access).
    account = account_of(request)
    if not await request.app[SIGNALING].may(account, record, Right.READ_RECORD):
        # Same answer as a missing record: do not reveal that it exists.
        raise NotFound("no such consultation")
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
