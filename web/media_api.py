"""The media endpoint (WHIP-style, RFC 9725 shape): a participant POSTs its SDP
offer with its per-call media token and gets the relay's answer."""

import time

from aiohttp import web

from media.ice import ice_servers
from signaling.live import LiveCall, leg_name, position_of_name
from storage.records import Role
from web.api import Api, account_of, reply
from web.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from web.keys import SETTINGS, SIGNALING
from web.schemas import View
from web.settings import Settings

api = Api()
MAX_SDP_BYTES = 64 * 1024


class IceServerView(View):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServers(View):
    ice_servers: list[IceServerView]
    expires_at: float | None
    """When TURN credentials stop working (seconds since the epoch); null without TURN."""


def ice_view(settings: Settings, secret: str | None, account_id: str, now: float) -> IceServers:
    """The deployment's ICE servers for one account, TURN credentials (valid for
    --turn-ttl) when ``secret`` is given: the ICE servers route's answer, and the
    supervisor's listening and stepping in (web/supervision_api.py)."""
    servers = ice_servers(settings.ice_servers, secret, account_id, now, settings.turn_ttl)
    with_turn = any(s.credential for s in servers)
    return IceServers(
        ice_servers=[
            IceServerView(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ],
        expires_at=now + settings.turn_ttl if with_turn else None,
    )


async def _call_and_position(request: web.Request) -> tuple[LiveCall, int]:
    """The call going on, and the position of the participant the bearer token
    belongs to."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = token if scheme.lower() == "bearer" and token else None
    return await request.app[SIGNALING].media_side(request.match_info["consultation_id"], bearer)


async def _read_offer(request: web.Request) -> bytes:
    """The whole body, at most MAX_SDP_BYTES. One ``read(n)`` returns what has
    arrived, up to n: over TLS a 22 KB offer of seven m-lines comes in 16 KB records,
    and the relay answered the first record's six m-lines (the browser then refused
    the answer, or a cut line made it 400)."""
    body = bytearray()
    while chunk := await request.content.read(MAX_SDP_BYTES + 1 - len(body)):
        body += chunk
        if len(body) > MAX_SDP_BYTES:
            raise PayloadTooLarge("the offer is too large")
    return bytes(body)


@api.route(
    "POST",
    "/api/v1/media/{consultation_id}",
    summary="Connect (or reconnect) your media: SDP offer in, SDP answer out (201, "
    "Location of your media session). Authorization: Bearer <media token>.",
    roles=None,
    status=201,
    tag="media",
    content_type="application/sdp",
    request_type="application/sdp",
    media_token=True,
    # 400 bad_offer, 413/415 the offer's size and type, 503 relay_unavailable.
    errors=(400, 413, 415, 503),
)
async def connect_media(request: web.Request) -> web.StreamResponse:
    call, position = await _call_and_position(request)
    if request.content_type != "application/sdp":
        raise UnsupportedMediaType("send the offer as application/sdp")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise PayloadTooLarge("the offer is too large")
    body = await _read_offer(request)
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the offer is not UTF-8 text", code="bad_offer") from None
    answer = await request.app[SIGNALING].connect_media(call, position, offer)
    location = f"/api/v1/media/{call.id}/{leg_name(position)}"
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": location},
    )


@api.route(
    "DELETE",
    "/api/v1/media/{consultation_id}/{side}",
    summary="Leave: close your media session ({side}: your leg p0..p3 as the POST's "
    "Location names it; kiosk and expert also name p0 and p1).",
    roles=None,
    status=204,
    tag="media",
    media_token=True,
)
async def disconnect_media(request: web.Request) -> web.StreamResponse:
    call, position = await _call_and_position(request)
    if position_of_name(request.match_info["side"]) != position:
        raise Forbidden("this token does not open that media session")
    if not await request.app[SIGNALING].disconnect_media(call, position):
        raise NotFound("no media session to close")
    return web.Response(status=204)


@api.route(
    "GET",
    "/api/v1/ice-servers",
    summary="STUN/TURN servers for your media connection (the RTCPeerConnection's "
    "iceServers): TURN, with credentials that expire within minutes, only while you "
    "take part in an active call.",
    roles=frozenset({Role.KIOSK, Role.EXPERT, Role.INTERPRETER}),
    response=IceServers,
    tag="media",
)
async def get_ice_servers(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    account = account_of(request)
    now = time.time()
    # TURN relays for whoever holds credentials: only a participant of an active call
    # gets them (the page asks as it connects its call's media); anyone else, the
    # STUN servers alone.
    secret = settings.turn_secret
    if secret is not None and not await request.app[SIGNALING].in_active_call(account):
        secret = None
    return reply(ice_view(settings, secret, account.id, now))
