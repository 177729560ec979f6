"""Service halls: listed by staff, managed by admins; the clerk's list of the
consultations of their halls (today's, or one found by its short reference)."""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web
from pydantic import ValidationError

from storage.records import HallLevel, Role
from storage.references import typed_reference
from web.api import Api, account_of, audit_of, read_body, reply
from web.errors import BadRequest
from web.keys import STORAGE
from web.schemas import (
    ConsultationList,
    ConsultationRecordView,
    HallConsultationsQuery,
    HallCreate,
    HallList,
    HallPatch,
    HallView,
)

api = Api()
ADMIN = frozenset({Role.ADMIN})
STAFF = frozenset({Role.EXPERT, Role.CLERK, Role.ADMIN})

REFERENCE_DAYS = 7
"""How many days (today included) a reference is looked up in: a citizen may come to
the window on a later day, and a reference is unique enough within a hall and a week."""
LIST_LIMIT = 200
"""Rows of one answer: a busy hall's day; the filters narrow it further."""


@dataclass(frozen=True)
class Window:
    """[since, until) in UNIX seconds."""

    since: float
    until: float


def _clock(day: datetime, value: str) -> datetime:
    hours, minutes = (int(part) for part in value.split(":"))
    return day + timedelta(hours=hours, minutes=minutes)


def day_window(now: datetime, since: str | None, until: str | None, *, days: int = 1) -> Window:
    """The part of the last ``days`` local days (``now``'s time zone, today the last)
    between the clock times ``since`` and ``until`` of today (HH:MM; none: the whole
    span, up to the end of today)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first = midnight - timedelta(days=days - 1)
    start = _clock(midnight, since) if since is not None else first
    end = _clock(midnight, until) if until is not None else midnight + timedelta(days=1)
    return Window(start.timestamp(), max(start, end).timestamp())


@api.route(
    "GET",
    "/api/v1/halls",
    summary="Every service hall (names, level, whether its kiosks offer the file chooser).",
    roles=STAFF,
    response=HallList,
    tag="halls",
)
async def list_halls(request: web.Request) -> web.StreamResponse:
    halls = await request.app[STORAGE].halls.list()
    return reply(HallList(halls=[HallView.of(h) for h in halls]))


@api.route(
    "POST",
    "/api/v1/halls",
    summary="Create a hall (its kiosks do not offer the file chooser unless allowed).",
    roles=ADMIN,
    body=HallCreate,
    response=HallView,
    status=201,
    tag="halls",
    errors=(409,),
)
async def create_hall(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, HallCreate)
    hall = await request.app[STORAGE].halls.create(
        body.code,
        body.name_zh,
        body.name_en,
        level=HallLevel(body.level),
        district=body.district,
        allow_file_chooser=body.allow_file_chooser,
        audit=audit_of(
            request,
            "hall.create",
            body.code,
            level=body.level,
            allow_file_chooser=body.allow_file_chooser,
        ),
    )
    return reply(HallView.of(hall), status=201)


@api.route(
    "PATCH",
    "/api/v1/halls/{hall}",
    summary="Rename a hall, set its level or district, or allow or forbid its kiosks "
    "the file chooser.",
    roles=ADMIN,
    body=HallPatch,
    response=HallView,
    tag="halls",
)
async def patch_hall(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, HallPatch)
    code = request.match_info["hall"]
    values: dict[str, str | bool] = body.model_dump(exclude_none=True)
    if not values:
        raise BadRequest("nothing to change", code="invalid_body")
    hall = await request.app[STORAGE].halls.change(
        code, values, audit=audit_of(request, "hall.change", code, **values)
    )
    return reply(HallView.of(hall))


@api.route(
    "GET",
    "/api/v1/hall-consultations",
    summary="Consultations of the clerk's halls (an admin: of every hall), newest first: "
    "today's (the server's time zone), or those of the last 7 days with a reference.",
    roles=frozenset({Role.CLERK, Role.ADMIN}),
    response=ConsultationList,
    tag="consultations",
    query=(
        ("hall", "only this hall (one of the clerk's)"),
        ("department", "only this department"),
        ("since", "from this local time of today, HH:MM"),
        ("until", "before this local time of today, HH:MM"),
        ("reference", "the short reference the kiosk showed the citizen"),
    ),
    query_model=HallConsultationsQuery,
)
async def hall_consultations(request: web.Request) -> web.StreamResponse:
    try:
        query = HallConsultationsQuery.model_validate(dict(request.query))
    except ValidationError:
        raise BadRequest(
            "give hall and department as codes, since and until as HH:MM", code="invalid_query"
        ) from None
    reference = None
    if query.reference is not None:
        reference = typed_reference(query.reference)
        if reference is None:
            raise BadRequest("a reference is 6 letters and digits", code="invalid_query")
    account = account_of(request)
    storage = request.app[STORAGE]
    halls: list[str] | None = None
    if account.role is Role.CLERK:
        halls = [h.code for h in await storage.halls.of_clerk(account.id)]
    if query.hall is not None:
        halls = [query.hall] if halls is None or query.hall in halls else []
    now = datetime.fromtimestamp(time.time()).astimezone()
    window = day_window(
        now, query.since, query.until, days=REFERENCE_DAYS if reference is not None else 1
    )
    records = (
        await storage.consultations.of_halls(
            halls,
            since=window.since,
            until=window.until,
            department=query.department,
            reference=reference,
            limit=LIST_LIMIT,
        )
        if halls != []
        else []
    )
    return reply(ConsultationList(consultations=[ConsultationRecordView.of(r) for r in records]))
