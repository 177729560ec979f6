"""The slip the kiosk prints for the citizen after the call: hall and time, the
department and its experts, the outcome, the materials still required (一次性告知),
the case number, the identity number masked, and a QR code of the consultation's
id (nothing secret: the clerk's page finds the consultation by it, scanned or
typed).

Only the kiosk of the consultation asks, only once it has ended and for
``SLIP_WINDOW`` seconds after: the slip is for the citizen standing there, and a
public terminal shows nothing of a consultation later (signaling.access).
"""

import time

from aiohttp import web

from signaling.access import Right
from storage.errors import RecordNotFound
from storage.records import ConsultationRecord, Role
from storage.sensitive import Kind, mask
from web.api import Api, reply
from web.consultations_api import consultation_for
from web.errors import NotFound
from web.keys import SENSITIVE, STORAGE
from web.phone_upload_api import QrView, qr_of
from web.schemas import View

api = Api()
SLIP_WINDOW = 15 * 60.0


class NameView(View):
    code: str
    name_zh: str
    name_en: str


class SlipExpert(View):
    name: str
    department: str
    role: str


class SlipView(View):
    consultation_id: str
    reference: str | None
    case_number: str | None
    hall: NameView | None
    started_at: float | None
    ended_at: float | None
    department: NameView
    experts: list[SlipExpert]
    """Everyone of the staff who took part (interpreters too), in order."""
    outcome: str | None
    """The answering expert's outcome; null until they saved it (the kiosk may ask
    again)."""
    end_reason: str | None
    materials: list[str]
    """What every expert of the call said is still required, in order, once each."""
    id_number: str | None
    """Masked (first 3 and last 4 characters); null: none given."""
    qr: QrView
    """Of the consultation's id."""


def materials_of(lists: list[tuple[str, ...]]) -> list[str]:
    seen: dict[str, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return list(seen)


async def _names(
    request: web.Request, record: ConsultationRecord
) -> tuple[NameView, NameView | None]:
    storage = request.app[STORAGE]
    department = await storage.departments.get(record.department)
    hall = None
    if record.hall:
        try:
            found = await storage.halls.get(record.hall)
            hall = NameView(code=found.code, name_zh=found.name_zh, name_en=found.name_en)
        except RecordNotFound:
            hall = NameView(code=record.hall, name_zh=record.hall, name_en=record.hall)
    return NameView(
        code=department.code, name_zh=department.name_zh, name_en=department.name_en
    ), hall


@api.route(
    "GET",
    "/api/v1/consultations/{consultation_id}/slip",
    summary="What the kiosk prints for the citizen once the consultation has ended (for "
    "15 minutes after): hall, times, department and experts, outcome, materials still "
    "required, case number, identity number masked, a QR code of the consultation id.",
    roles=frozenset({Role.KIOSK}),
    response=SlipView,
    tag="consultations",
    errors=(409,),
)
async def slip(request: web.Request) -> web.StreamResponse:
    storage = request.app[STORAGE]
    record = await consultation_for(
        request,
        Right.PRINT_SLIP,
        not_now="the slip is printed once the consultation has ended",
    )
    if record.ended_at is not None and time.time() - record.ended_at > SLIP_WINDOW:
        raise NotFound("no such consultation")
    legs = await storage.legs.of(record.id)
    department, hall = await _names(request, record)
    given = await storage.identities.of(record.id)
    masked = None
    if given is not None:
        masked = mask(await request.app[SENSITIVE].reveal(Kind.ID_NUMBER, given.sealed))
    outcome = record.outcome.value if record.outcome is not None else None
    return reply(
        SlipView(
            consultation_id=record.id,
            reference=record.reference,
            case_number=record.case_number,
            hall=hall,
            started_at=record.active_at,
            ended_at=record.ended_at,
            department=department,
            experts=[
                SlipExpert(name=leg.name, department=leg.department, role=leg.role.value)
                for leg in legs
            ],
            outcome=outcome,
            end_reason=record.end_reason.value if record.end_reason is not None else None,
            materials=materials_of([leg.materials for leg in legs]),
            id_number=masked,
            qr=qr_of(record.id),
        )
    )
