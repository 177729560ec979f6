"""A supervisor listening in on a call in their scope, or stepping into it (issue
23): the claim, its state, its end. The media itself goes over the media endpoint
with the token given here (web/media_api.py): the listener's receive-only, the
stepped-in supervisor's like any participant's. signaling.supervision has the
rules."""

import time

from aiohttp import web

from media.slots import slot_of
from signaling.live import KIOSK_POSITION, LiveCall, media_url, seat_name
from storage.errors import RecordNotFound
from storage.records import ConsultationRecord, Role
from web.api import Api, account_of, reply
from web.auth import remote_address
from web.errors import NotFound
from web.followups_api import covers, scope_of
from web.keys import SETTINGS, SIGNALING, STORAGE
from web.media_api import IceServers, ice_view
from web.schemas import View

api = Api()
SUPERVISORS = frozenset({Role.SUPERVISOR})


class ListenSlot(View):
    """Who the listener gets in one slot of its offer (media/slots.py)."""

    slot: int
    position: int
    role: str
    """kiosk, expert, interpreter."""
    name: str
    department: str | None


class ListenView(View):
    consultation_id: str
    position: int
    """The listening leg's position (its media session is ``p{position}``)."""
    media_url: str
    media_token: str
    """Opens the listening leg only: an offer that sends anything is refused."""
    since: float
    connected: bool
    """Whether the listening leg's media reached the relay."""
    notice: bool
    """Whether the staff in the call are shown that it is listened to."""
    slots: list[ListenSlot]
    ice: IceServers


class StepInView(View):
    consultation_id: str
    position: int
    """The supervisor's position in the call (its media session is ``p{position}``)."""
    media_url: str
    media_token: str
    """Opens the supervisor's leg: it sends and receives like any participant's."""
    since: float
    slots: list[ListenSlot]
    ice: IceServers


async def _in_scope(request: web.Request) -> str:
    """The route's consultation, if it is one the supervisor oversees (else 404, as
    for one that does not exist)."""
    consultation_id = request.match_info["consultation_id"]
    try:
        record: ConsultationRecord | None = await request.app[STORAGE].consultations.get(
            consultation_id
        )
    except RecordNotFound:
        record = None
    if record is None or not covers(await scope_of(request), record.department, record.hall):
        raise NotFound("no consultation with this id in your scope")
    return consultation_id


def _slots(call: LiveCall, position: int) -> list[ListenSlot]:
    """Who the participant (or listener) at ``position`` gets in which slot."""
    found = [
        ListenSlot(
            slot=slot,
            position=KIOSK_POSITION,
            role="kiosk",
            name=call.kiosk_name or call.kiosk_username,
            department=None,
        )
        for slot in [slot_of(position, KIOSK_POSITION)]
        if slot is not None
    ] + [
        ListenSlot(
            slot=slot,
            position=seat.position,
            role=seat.role.value,
            name=seat.name or seat.username,
            department=seat.department,
        )
        for seat in call.seats
        for slot in [slot_of(position, seat.position)]
        if slot is not None
    ]
    return sorted(found, key=lambda s: s.slot)


def _ice(request: web.Request, account_id: str) -> IceServers:
    """The supervisor's own TURN credentials: the ICE servers route gives them to
    the participants of kiosks' and desks' pages only."""
    settings = request.app[SETTINGS]
    return ice_view(settings, settings.turn_secret, account_id, time.time())


def _view(request: web.Request, call: LiveCall) -> ListenView:
    listener = call.listener
    assert listener is not None
    return ListenView(
        consultation_id=call.id,
        position=listener.position,
        media_url=media_url(call.id),
        media_token=listener.token,
        since=listener.since,
        connected=listener.connected,
        notice=listener.notice,
        slots=_slots(call, listener.position),
        ice=_ice(request, listener.account_id),
    )


def _step_in_view(request: web.Request, call: LiveCall, account_id: str) -> StepInView:
    seat = call.seat_of(account_id)
    token = None if seat is None else call.token_of(seat_name(seat.position))
    if seat is None or token is None:
        raise NotFound("you are not taking part in this call")
    return StepInView(
        consultation_id=call.id,
        position=seat.position,
        media_url=media_url(call.id),
        media_token=token,
        since=seat.joined_at,
        slots=_slots(call, seat.position),
        ice=_ice(request, account_id),
    )


@api.route(
    "POST",
    "/api/v1/supervision/{consultation_id}/listen",
    summary="Listen in on a call in your scope: receive its media, send none (one "
    "listener per call; audited). 201 with the listening leg's media token and who is "
    "in which slot; then POST a receive-only offer to media_url with that token. 409 "
    "listened_already (another supervisor listens), call_full (four take part), "
    "invalid_state (the call is not going on).",
    roles=SUPERVISORS,
    status=201,
    response=ListenView,
    tag="supervision",
    errors=(404, 409),
)
async def start_listening(request: web.Request) -> web.StreamResponse:
    consultation_id = await _in_scope(request)
    call = await request.app[SIGNALING].listen(
        account_of(request),
        consultation_id,
        remote_address(request),
        notice=not request.app[SETTINGS].hide_listening,
    )
    return reply(_view(request, call), status=201)


@api.route(
    "GET",
    "/api/v1/supervision/{consultation_id}/listen",
    summary="Your listening in on this call as it is now (who is in which slot; the "
    "page polls it): 404 once it has ended (you stopped, your media was lost, the call "
    "ended, was transferred or took a fourth participant).",
    roles=SUPERVISORS,
    response=ListenView,
    tag="supervision",
    errors=(404,),
)
async def get_listening(request: web.Request) -> web.StreamResponse:
    consultation_id = await _in_scope(request)
    call = await request.app[SIGNALING].live_call(consultation_id)
    account = account_of(request)
    if call is None or call.listener is None or call.listener.account_id != account.id:
        raise NotFound("you are not listening to this call")
    return reply(_view(request, call))


@api.route(
    "DELETE",
    "/api/v1/supervision/{consultation_id}/listen",
    summary="Stop listening (audited); the listening leg closes. 204 also when you "
    "were not listening.",
    roles=SUPERVISORS,
    status=204,
    tag="supervision",
    errors=(404,),
)
async def stop_listening(request: web.Request) -> web.StreamResponse:
    consultation_id = await _in_scope(request)
    await request.app[SIGNALING].stop_listening(
        account_of(request), consultation_id, remote_address(request)
    )
    return web.Response(status=204)


@api.route(
    "POST",
    "/api/v1/supervision/{consultation_id}/join",
    summary="Step into a call in your scope as a participant: everyone sees and hears "
    "you (the kiosk shows you like anyone else); your listening to it, if any, ends. "
    "201 with your media token and who is in which slot; then POST your offer (the "
    "pages' seven m-lines) to media_url with that token. 409 call_full (four take part "
    "or are invited), invalid_state (the call is not going on). On the record as your "
    "leg of the consultation; audited (consultation.step_in).",
    roles=SUPERVISORS,
    status=201,
    response=StepInView,
    tag="supervision",
    errors=(404, 409),
)
async def step_in(request: web.Request) -> web.StreamResponse:
    consultation_id = await _in_scope(request)
    account = account_of(request)
    call = await request.app[SIGNALING].step_in(account, consultation_id, remote_address(request))
    return reply(_step_in_view(request, call, account.id), status=201)


@api.route(
    "GET",
    "/api/v1/supervision/{consultation_id}/join",
    summary="Your part in the call as it is now (who is in which slot; the page polls "
    "it): 404 once it has ended (you left, your media was lost past the grace period, "
    "the call ended).",
    roles=SUPERVISORS,
    response=StepInView,
    tag="supervision",
    errors=(404,),
)
async def get_step_in(request: web.Request) -> web.StreamResponse:
    consultation_id = await _in_scope(request)
    call = await request.app[SIGNALING].live_call(consultation_id)
    if call is None:
        raise NotFound("you are not taking part in this call")
    return reply(_step_in_view(request, call, account_of(request).id))


@api.route(
    "DELETE",
    "/api/v1/supervision/{consultation_id}/join",
    summary="Leave the call you stepped into (it goes on for the others; audited). "
    "404 when you are not in it.",
    roles=SUPERVISORS,
    status=204,
    tag="supervision",
    errors=(404, 409),
)
async def step_out(request: web.Request) -> web.StreamResponse:
    consultation_id = await _in_scope(request)
    await request.app[SIGNALING].leave_call(
        account_of(request), consultation_id, remote_address(request)
    )
    return web.Response(status=204)
