"""The media endpoint (WHIP-style, RFC 9725 shape): a participant POSTs its SDP
offer with its per-call media token and gets the relay's answer."""

from aiohttp import web

from signaling.live import LiveCall, Side
from web.api import Api
from web.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from web.keys import SIGNALING

api = Api()
MAX_SDP_BYTES = 64 * 1024


async def _call_and_side(request: web.Request) -> tuple[LiveCall, Side]:
    """The active call, and which participant the bearer token belongs to."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = token if scheme.lower() == "bearer" and token else None
    return await request.app[SIGNALING].media_side(request.match_info["consultation_id"], bearer)


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
    call, side = await _call_and_side(request)
    if request.content_type != "application/sdp":
        raise UnsupportedMediaType("send the offer as application/sdp")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise PayloadTooLarge("the offer is too large")
    body = await request.content.read(MAX_SDP_BYTES + 1)
    if len(body) > MAX_SDP_BYTES:
        raise PayloadTooLarge("the offer is too large")
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the offer is not UTF-8 text", code="bad_offer") from None
    answer = await request.app[SIGNALING].connect_media(call, side, offer)
    location = f"/api/v1/media/{call.id}/{side.value}"
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": location},
    )


@api.route(
    "DELETE",
    "/api/v1/media/{consultation_id}/{side}",
    summary="Leave: close your media session.",
    roles=None,
    status=204,
    tag="media",
    media_token=True,
)
async def disconnect_media(request: web.Request) -> web.StreamResponse:
    call, side = await _call_and_side(request)
    if side.value != request.match_info["side"]:
        raise Forbidden("this token does not open that media session")
    if not await request.app[SIGNALING].disconnect_media(call, side):
        raise NotFound("no media session to close")
    return web.Response(status=204)
