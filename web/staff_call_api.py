"""A citizen at a kiosk calls the hall's staff: the clerks of the kiosk's hall get
an alert on their page (socket.io event ``staff_call``), one of them acknowledges
it ("on my way"), and the kiosk and the other clerks are told
(``staff_call_answered``).

A call is an alert, not a record: it reaches the clerks whose pages are open,
and the audit log keeps that it was made and answered. One call per kiosk per
minute (the button is easy to press again and again, and every press rings
every clerk of the hall). A call is taken once: while it is open the live state
holds it (``OPEN_FOR``), and the first clerk to answer takes it; the others are
told it is taken, so that one clerk walks to the kiosk, not every one who clicked.
"""

import time
from typing import Annotated

from aiohttp import web
from pydantic import StringConstraints

from signaling.messages import StaffCallAnswered, StaffCallView
from storage.errors import RecordNotFound
from storage.ids import new_id
from storage.records import Account, AuditEvent, Role
from web.api import Api, account_of, audit_of, read_body, reply
from web.auth import remote_address
from web.errors import Conflict, NotFound, TooManyRequests
from web.keys import SIGNALING, STORAGE
from web.schemas import Body, Username

api = Api()

CALL_EVERY = 60.0
"""Seconds between two staff calls of one kiosk."""
OPEN_FOR = 30 * 60.0
"""Seconds a call can be answered: a citizen still waiting after that has pressed the
button again long since, or gone."""


def staff_call_key(kiosk_id: str, call_id: str) -> str:
    """What the live state holds while a kiosk's call is open to an answer."""
    return f"staffcall-open:{kiosk_id}:{call_id}"


class StaffCallAnswer(Body):
    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    kiosk: Username


async def _clerks_of(request: web.Request, hall: str | None) -> list[str]:
    """Account ids of the enabled clerks who work at ``hall``."""
    if hall is None:
        return []
    storage = request.app[STORAGE]
    working = await storage.halls.clerks()
    ids = [account_id for account_id, codes in working.items() if hall in codes]
    enabled = []
    for account_id in ids:
        try:
            account = await storage.accounts.get(account_id)
        except RecordNotFound:
            continue
        if not account.disabled and account.role is Role.CLERK:
            enabled.append(account_id)
    return enabled


@api.route(
    "POST",
    "/api/v1/staff-calls",
    summary="Call the staff of this kiosk's hall to the kiosk (an alert on their "
    "clerk pages); once a minute.",
    roles=frozenset({Role.KIOSK}),
    response=StaffCallView,
    status=202,
    tag="staff",
    # 429 with Retry-After: the kiosk called less than a minute ago.
    errors=(429,),
)
async def call_staff(request: web.Request) -> web.StreamResponse:
    kiosk = account_of(request)
    now = time.time()
    admitted = await request.app[SIGNALING].take_slot(f"staffcall:{kiosk.id}", CALL_EVERY, 1, now)
    if not admitted:
        raise TooManyRequests("the staff were called less than a minute ago", retry_after=60)
    clerks = await _clerks_of(request, kiosk.hall)
    view = StaffCallView(
        id=new_id(),
        kiosk=kiosk.username,
        kiosk_name=kiosk.display_name,
        hall=kiosk.hall,
        at=now,
        clerks=len(clerks),
    )
    await request.app[STORAGE].audit.append(
        AuditEvent(
            kiosk.username,
            "staff_call.create",
            kiosk.hall or "-",
            {"clerks": len(clerks)},
            remote_address(request),
        )
    )
    await request.app[SIGNALING].hold(staff_call_key(kiosk.id, view.id), OPEN_FOR)
    await request.app[SIGNALING].notify(clerks, "staff_call", view)
    return reply(view, status=202)


@api.route(
    "POST",
    "/api/v1/staff-calls/answer",
    summary="A clerk of the kiosk's hall takes a staff call: the kiosk and the hall's "
    "other clerks are told who is coming.",
    roles=frozenset({Role.CLERK}),
    body=StaffCallAnswer,
    response=StaffCallAnswered,
    tag="staff",
    # 404: no such kiosk, or not one of this clerk's halls; 409 staff_call_closed:
    # another clerk took it first, or no such call is open.
    errors=(404, 409),
)
async def answer_staff_call(request: web.Request) -> web.StreamResponse:
    clerk = account_of(request)
    body = await read_body(request, StaffCallAnswer)
    storage = request.app[STORAGE]
    try:
        kiosk: Account = await storage.accounts.get_by_username(body.kiosk)
    except RecordNotFound:
        raise NotFound("no such kiosk in your halls") from None
    halls = {hall.code for hall in await storage.halls.of_clerk(clerk.id)}
    if kiosk.role is not Role.KIOSK or kiosk.hall not in halls:
        raise NotFound("no such kiosk in your halls")
    if not await request.app[SIGNALING].take_held(staff_call_key(kiosk.id, body.id)):
        raise Conflict(
            "another clerk has taken this call, or it is no longer open",
            code="staff_call_closed",
        )
    view = StaffCallAnswered(
        id=body.id, kiosk=kiosk.username, by=clerk.display_name, at=time.time()
    )
    await storage.audit.append(audit_of(request, "staff_call.answer", kiosk.username))
    told = [kiosk.id, *await _clerks_of(request, kiosk.hall)]
    await request.app[SIGNALING].notify(told, "staff_call_answered", view)
    return reply(view)
