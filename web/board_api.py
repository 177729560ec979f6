"""What is going on: departments' live status for the kiosk's tiles, the admin's
board (live figures, today's summary, hourly volume of the last 7 days) and
the expert's own history."""

import time
from datetime import datetime, timedelta

from aiohttp import web
from pydantic import ValidationError

from signaling.messages import QueueUpdate
from storage.followups import FollowUpCounts
from storage.opening_hours import next_opening, open_at, parse_hours
from storage.records import Department, Role
from web.api import ANY_ACCOUNT, Api, account_of, reply
from web.errors import BadRequest
from web.keys import CLOCK, SETTINGS, SIGNALING, STORAGE
from web.schemas import (
    BoardDepartment,
    BoardHall,
    BoardView,
    ConsultationList,
    ConsultationRecordView,
    DepartmentStatus,
    DepartmentStatusList,
    HourView,
    MyConsultationsQuery,
    SummaryView,
)

api = Api()
HISTORY_DAYS = 7
GRADE_DAYS = 30
"""The board's 好差评 counts cover the consultations ended in these last days."""
HISTORY_LIMIT = 50
UNFINISHED_LIMIT = 100
"""An expert's records still to complete, listed at most (the newest)."""


def _status(department: Department, snapshot: QueueUpdate, now: float) -> DepartmentStatus:
    hours = parse_hours(department.hours)
    local = datetime.fromtimestamp(now).astimezone()
    return DepartmentStatus(
        code=department.code,
        name_zh=department.name_zh,
        name_en=department.name_en,
        hours=department.hours,
        kind=department.kind.value,
        languages=list(department.languages),
        experts_online=sum(
            1 for e in snapshot.experts if e.status in ("available", "busy", "wrap_up")
        ),
        queue_length=len(snapshot.entries),
        open_now=hours is not None and open_at(hours, local),
        next_opening=None if hours is None else next_opening(hours, local).timestamp(),
    )


@api.route(
    "GET",
    "/api/v1/departments/status",
    summary="Enabled departments with experts online and queue length (the kiosk's tiles).",
    roles=ANY_ACCOUNT,
    response=DepartmentStatusList,
    tag="board",
)
async def department_status(request: web.Request) -> web.StreamResponse:
    signaling = request.app[SIGNALING]
    departments = await request.app[STORAGE].departments.list(include_disabled=False)
    now = time.time()
    statuses = [_status(d, await signaling.queue_view(d.code), now) for d in departments]
    wait = request.app[SETTINGS].no_expert_wait
    return reply(DepartmentStatusList(departments=statuses, no_expert_wait_s=wait))


def _local_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@api.route(
    "GET",
    "/api/v1/board",
    summary="Live figures per department and per hall, today's summary, hourly volume "
    "and wait of the last 7 days (server's local time); per department and hall the "
    "好差评 grades of the last 30 days and the follow-ups open and overdue.",
    roles=frozenset({Role.ADMIN}),
    response=BoardView,
    tag="board",
)
async def board(request: web.Request) -> web.StreamResponse:
    storage = request.app[STORAGE]
    signaling = request.app[SIGNALING]
    now = time.time()
    local_now = datetime.fromtimestamp(now).astimezone()
    today = _local_midnight(local_now).timestamp()
    first_hour = local_now.replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=HISTORY_DAYS * 24 - 1
    )
    # 好差评 of the last 30 days and follow-ups still open, by the app's clock (what
    # the supervisor page calls overdue is overdue here too).
    grades = await storage.followups.board(now=request.app[CLOCK](), since=now - GRADE_DAYS * 86400)
    none = FollowUpCounts()
    live = []
    waiting_by_hall: dict[str, int] = {}
    for department in await storage.departments.list(include_disabled=False):
        snapshot = await signaling.queue_view(department.code)
        for entry in snapshot.entries:
            if entry.hall is not None:
                waiting_by_hall[entry.hall] = waiting_by_hall.get(entry.hall, 0) + 1
        status = _status(department, snapshot, now)
        busy = sum(1 for e in snapshot.experts if e.status == "busy")
        oldest = min((e.waiting_since for e in snapshot.entries), default=None)
        live.append(
            BoardDepartment(
                **status.model_dump(),
                longest_wait_s=None if oldest is None else max(0.0, now - oldest),
                experts_busy=busy,
                active_calls=busy,
                grades=grades.grades_by_department.get(department.code, {}),
                follow_ups_open=grades.follow_ups_by_department.get(department.code, none).open,
                follow_ups_overdue=grades.follow_ups_by_department.get(
                    department.code, none
                ).overdue,
            )
        )
    summary, hours = await storage.statistics.board(
        now=now, today=today, first_hour=first_hour.timestamp(), hours=HISTORY_DAYS * 24
    )
    today_by_hall = await storage.halls.counts_since(today)
    halls = [
        BoardHall(
            code=hall.code,
            name_zh=hall.name_zh,
            name_en=hall.name_en,
            level=hall.level.value,
            waiting=waiting_by_hall.get(hall.code, 0),
            consultations_today=today_by_hall.get(hall.code, (0, 0))[0],
            answered_today=today_by_hall.get(hall.code, (0, 0))[1],
            grades=grades.grades_by_hall.get(hall.code, {}),
            follow_ups_open=grades.follow_ups_by_hall.get(hall.code, none).open,
            follow_ups_overdue=grades.follow_ups_by_hall.get(hall.code, none).overdue,
        )
        for hall in await storage.halls.list()
    ]
    return reply(
        BoardView(
            generated_at=now,
            departments=live,
            halls=halls,
            today=SummaryView(**summary.__dict__),
            hourly=[HourView(**h.__dict__) for h in hours],
        )
    )


@api.route(
    "GET",
    "/api/v1/me/consultations",
    summary="The expert's own consultations (answered, joined or taken over), newest "
    "first, with the expert's own outcome and notes (or only the unfinished: the expert's "
    "part ended without an outcome).",
    roles=frozenset({Role.EXPERT}),
    response=ConsultationList,
    tag="consultations",
    query=(("unfinished", "true: only the records still to complete (at most 100)"),),
    query_model=MyConsultationsQuery,
)
async def my_consultations(request: web.Request) -> web.StreamResponse:
    try:
        query = MyConsultationsQuery.model_validate(dict(request.query))
    except ValidationError:
        raise BadRequest("unfinished is true or false", code="invalid_query") from None
    consultations = request.app[STORAGE].consultations
    expert_id = account_of(request).id
    # Every call the expert took part in (answered, joined, took over), with their own
    # part's outcome and notes.
    if query.unfinished == "true":
        records = await consultations.of_expert(expert_id, unfinished=True, limit=UNFINISHED_LIMIT)
    else:
        records = await consultations.of_expert(expert_id, limit=HISTORY_LIMIT)
    return reply(ConsultationList(consultations=[ConsultationRecordView.of(r) for r in records]))
