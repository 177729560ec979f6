"""Follow-ups of bad 好差评 grades: listed, noted and closed by the supervisors whose
scope covers them (and the admin, who oversees everything).

A follow-up outside the supervisor's scope answers 404, as one that does not
exist: a supervisor learns nothing of other departments' complaints. Overdue is
decided against the app's clock (``web.keys.CLOCK``), which a test replaces.
"""

from aiohttp import web
from pydantic import ValidationError

from storage.errors import RecordNotFound
from storage.records import FollowUp, FollowUpNoteKind, Role, Scope
from web.api import Api, account_of, read_body, reply
from web.auth import remote_address
from web.errors import BadRequest
from web.keys import CLOCK, STORAGE
from web.supervision_schemas import (
    FollowUpCloseBody,
    FollowUpList,
    FollowUpNoteBody,
    FollowUpsQuery,
    FollowUpView,
)

api = Api()
OVERSEERS = frozenset({Role.SUPERVISOR, Role.ADMIN})
LIST_LIMIT = 200


async def scope_of(request: web.Request) -> Scope | None:
    """What the account oversees: a supervisor's scope (empty: everything), None for
    the admin (everything, by role)."""
    account = account_of(request)
    if account.role is Role.ADMIN:
        return None
    return await request.app[STORAGE].scopes.of(account.id)


def covers(scope: Scope | None, department: str, hall: str | None) -> bool:
    return scope is None or scope.covers(department, hall)


async def hall_names(request: web.Request) -> dict[str, tuple[str, str]]:
    """Each hall's names (zh, en) by code: the supervisor page may not list halls."""
    return {h.code: (h.name_zh, h.name_en) for h in await request.app[STORAGE].halls.list()}


@api.route(
    "GET",
    "/api/v1/follow-ups",
    summary="Follow-ups of bad grades in the supervisor's scope (the admin: all), the "
    "nearest deadline first, with their notes and whether each is overdue; closed ones "
    "too with state=all.",
    roles=OVERSEERS,
    response=FollowUpList,
    tag="supervision",
    query=(("state", "open (default: not closed) or all"),),
    query_model=FollowUpsQuery,
)
async def list_follow_ups(request: web.Request) -> web.StreamResponse:
    try:
        query = FollowUpsQuery.model_validate(dict(request.query))
    except ValidationError:
        raise BadRequest("state is open or all", code="invalid_query") from None
    now = request.app[CLOCK]()
    found = await request.app[STORAGE].followups.list(
        await scope_of(request), include_closed=query.state == "all", limit=LIST_LIMIT
    )
    halls = await hall_names(request)
    return reply(FollowUpList(follow_ups=[FollowUpView.of(f, now, halls) for f in found], now=now))


async def _write(request: web.Request, kind: FollowUpNoteKind, text: str) -> web.StreamResponse:
    scope = await scope_of(request)

    def in_scope(follow_up: FollowUp) -> None:
        if not covers(scope, follow_up.department, follow_up.hall):
            raise RecordNotFound("no follow-up of this consultation")

    now = request.app[CLOCK]()
    follow_up = await request.app[STORAGE].followups.add_note(
        request.match_info["consultation_id"],
        kind,
        text,
        author=account_of(request).username,
        now=now,
        remote=remote_address(request),
        check=in_scope,
    )
    return reply(FollowUpView.of(follow_up, now, await hall_names(request)))


@api.route(
    "POST",
    "/api/v1/follow-ups/{consultation_id}/notes",
    summary="Write on a follow-up: contact (the citizen was reached; an open one becomes "
    "contacted), finding, remedy or note; audited (409: it is closed).",
    roles=OVERSEERS,
    body=FollowUpNoteBody,
    response=FollowUpView,
    tag="supervision",
    errors=(409,),
)
async def note_follow_up(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, FollowUpNoteBody)
    return await _write(request, FollowUpNoteKind(body.kind), body.text)


@api.route(
    "POST",
    "/api/v1/follow-ups/{consultation_id}/close",
    summary="Close a follow-up with what was found and put right (or why nothing could "
    "be); audited (409: it is closed already).",
    roles=OVERSEERS,
    body=FollowUpCloseBody,
    response=FollowUpView,
    tag="supervision",
    errors=(409,),
)
async def close_follow_up(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, FollowUpCloseBody)
    return await _write(request, FollowUpNoteKind.CLOSE, body.text)
