"""A call's chat, read back: a participant whose page was reloaded (or whose
connection came back) gets the lines written so far. New lines travel as the
socket event ``chat_message``; this serves what was said before."""

from aiohttp import web

from storage.records import Role
from web.api import Api, account_of, reply
from web.keys import SIGNALING
from web.schemas import ChatList

api = Api()


@api.route(
    "GET",
    "/api/v1/consultations/{consultation_id}/chat",
    summary="The active call's chat so far, oldest first (its newest 500 lines): for its "
    "participants, while it lasts.",
    roles=frozenset({Role.KIOSK, Role.EXPERT, Role.INTERPRETER}),
    response=ChatList,
    tag="consultations",
    errors=(409,),
)
async def chat_history(request: web.Request) -> web.StreamResponse:
    messages = await request.app[SIGNALING].chat_history(
        account_of(request), request.match_info["consultation_id"]
    )
    return reply(ChatList(messages=messages))
