"""What the supervisor page reads of the calls going on: the consultations an
expert is answering now, in the supervisor's scope (the admin: all of them)."""

from aiohttp import web

from storage.records import ConsultationState
from web.api import Api, reply
from web.followups_api import OVERSEERS, covers, hall_names, scope_of
from web.keys import CLOCK, STORAGE
from web.supervision_schemas import LiveCallList, LiveCallView

api = Api()


@api.route(
    "GET",
    "/api/v1/live-calls",
    summary="Calls going on in the supervisor's scope (the admin: all), longest first: "
    "department, hall, duration and the citizen's grade if one was given.",
    roles=OVERSEERS,
    response=LiveCallList,
    tag="supervision",
)
async def live_calls(request: web.Request) -> web.StreamResponse:
    storage = request.app[STORAGE]
    scope = await scope_of(request)
    now = request.app[CLOCK]()
    departments = {d.code: (d.name_zh, d.name_en) for d in await storage.departments.list()}
    halls = await hall_names(request)
    records = [
        r
        for r in await storage.consultations.open_consultations()
        if r.state is ConsultationState.ACTIVE and covers(scope, r.department, r.hall)
    ]
    records.sort(key=lambda r: r.active_at or r.waiting_at)
    return reply(LiveCallList(calls=[LiveCallView.of(r, now, departments, halls) for r in records]))
