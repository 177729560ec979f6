"""The citizen's identity number: given at the kiosk for a consultation (with the
citizen's consent, and a second one for experts to see earlier consultations),
the expert's view of the citizen's earlier consultations with their department,
the clerk's search across every hall and the clerk's audited reveal.

The number travels only in request bodies (never a URL), is kept only as a lookup
HMAC and a sealed value (storage.sensitive), is shown masked everywhere but the
reveal, and the audit log records only that one was given, searched or revealed.
"""

import time
from typing import Annotated

from aiohttp import web
from pydantic import StringConstraints

from signaling.access import Right
from signaling.messages import FileView
from storage.identity_numbers import Problem, problem
from storage.records import Role
from storage.sensitive import Kind, mask
from web.api import Api, account_of, audit_of, read_body, reply
from web.consultations_api import consultation_for
from web.errors import BadRequest
from web.keys import FILES, SENSITIVE, STORAGE
from web.schemas import Body, ConsultationRecordView, View

api = Api()
HISTORY_LIMIT = 20
SEARCH_LIMIT = 100

# Said in the error, so that the kiosk (and a clerk) know which part to check;
# never the number itself.
PROBLEM_MESSAGES = {
    Problem.LENGTH: "an identity number has 18 characters",
    Problem.CHARACTERS: "17 digits, then a digit or X",
    Problem.REGION: "the first 6 digits are no region code",
    Problem.BIRTH_DATE: "characters 7-14 are no real date of birth",
    Problem.CHECK: "the last character does not match the others (check character)",
}

IdNumber = Annotated[str, StringConstraints(max_length=40)]


class IdentityGive(Body):
    id_number: IdNumber
    history_consent: bool
    """Whether experts of the same department may see the earlier consultations."""


class IdentityView(View):
    masked: str | None
    """null: no number was given for the consultation."""
    history_consent: bool


class HistoryEntry(View):
    record: ConsultationRecordView
    documents: list[FileView]


class HistoryView(View):
    consented: bool
    """False: the citizen gave no number, or did not let experts see the history."""
    masked: str | None
    consultations: list[HistoryEntry]
    """Earlier consultations with the expert's department, newest first."""


class IdentitySearch(Body):
    id_number: IdNumber


class SearchEntry(View):
    record: ConsultationRecordView
    masked: str


class SearchView(View):
    masked: str
    consultations: list[SearchEntry]
    """Every consultation given this number, across every hall, newest first."""


class RevealBody(Body):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]


class RevealView(View):
    id_number: str | None
    """null: no number was given for the consultation (nothing revealed, no entry)."""


def _checked(value: str) -> str:
    found = problem(value)
    if found is not None:
        raise BadRequest(PROBLEM_MESSAGES[found], code=f"invalid_id_number.{found.value}")
    return value


@api.route(
    "POST",
    "/api/v1/consultations/{consultation_id}/identity",
    summary="The citizen's identity number for this consultation (18 characters, GB "
    "11643-1999; 400 invalid_id_number.<part> says which part is wrong), given with the "
    "citizen's consent, and whether experts of the department may see the earlier "
    "consultations. Kept only as a lookup HMAC and sealed; answered masked.",
    roles=frozenset({Role.KIOSK}),
    body=IdentityGive,
    response=IdentityView,
    tag="identity",
)
async def give_identity(request: web.Request) -> web.StreamResponse:
    record = await consultation_for(request, Right.GIVE_IDENTITY)
    body = await read_body(request, IdentityGive)
    number = _checked(body.id_number)
    sealed = await request.app[SENSITIVE].seal(Kind.ID_NUMBER, number)
    storage = request.app[STORAGE]
    await storage.identities.give(record.id, sealed, body.history_consent, time.time())
    await storage.audit.append(
        audit_of(request, "identity.give", record.id, history_consent=body.history_consent)
    )
    return reply(IdentityView(masked=mask(number), history_consent=body.history_consent))


@api.route(
    "GET",
    "/api/v1/consultations/{consultation_id}/history",
    summary="For the expert in the call: the citizen's earlier consultations with the "
    "expert's department (outcome, notes, documents), only when the citizen gave an "
    "identity number and consented on the kiosk.",
    roles=frozenset({Role.EXPERT}),
    response=HistoryView,
    tag="identity",
)
async def history(request: web.Request) -> web.StreamResponse:
    record = await consultation_for(request, Right.READ_HISTORY)
    storage = request.app[STORAGE]
    given = await storage.identities.of(record.id)
    if given is None or not given.history_consent:
        return reply(HistoryView(consented=False, masked=None, consultations=[]))
    account = account_of(request)
    ids = await storage.identities.consultations_of(
        given.lookup, department=account.department, limit=HISTORY_LIMIT + 1
    )
    entries = []
    for consultation_id in ids:
        if consultation_id == record.id:
            continue
        earlier = await storage.consultations.get(consultation_id)
        documents = await request.app[FILES].of_consultation(consultation_id)
        entries.append(
            HistoryEntry(
                record=ConsultationRecordView.of(earlier),
                documents=[FileView.of(d) for d in documents],
            )
        )
    masked = mask(await request.app[SENSITIVE].reveal(Kind.ID_NUMBER, given.sealed))
    return reply(HistoryView(consented=True, masked=masked, consultations=entries[:HISTORY_LIMIT]))


@api.route(
    "POST",
    "/api/v1/identity/search",
    summary="Every consultation (across every hall) given this identity number, newest "
    "first, numbers masked. Audited (that a search was made, not the number).",
    roles=frozenset({Role.CLERK, Role.ADMIN}),
    body=IdentitySearch,
    response=SearchView,
    tag="identity",
)
async def search(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, IdentitySearch)
    number = _checked(body.id_number)
    storage = request.app[STORAGE]
    lookup = await request.app[SENSITIVE].lookup(Kind.ID_NUMBER, number)
    ids = await storage.identities.consultations_of(lookup, limit=SEARCH_LIMIT)
    records = [await storage.consultations.get(i) for i in ids]
    await storage.audit.append(
        audit_of(request, "identity.search", "consultations", found=bool(ids))
    )
    masked = mask(number)
    return reply(
        SearchView(
            masked=masked,
            consultations=[
                SearchEntry(record=ConsultationRecordView.of(r), masked=masked) for r in records
            ],
        )
    )


@api.route(
    "GET",
    "/api/v1/consultations/{consultation_id}/identity",
    summary="The identity number given for this consultation, masked (null: none given).",
    roles=frozenset({Role.EXPERT, Role.CLERK, Role.ADMIN}),
    response=IdentityView,
    tag="identity",
)
async def masked_identity(request: web.Request) -> web.StreamResponse:
    record = await consultation_for(request, Right.READ_RECORD)
    given = await request.app[STORAGE].identities.of(record.id)
    if given is None:
        return reply(IdentityView(masked=None, history_consent=False))
    number = await request.app[SENSITIVE].reveal(Kind.ID_NUMBER, given.sealed)
    return reply(IdentityView(masked=mask(number), history_consent=given.history_consent))


@api.route(
    "POST",
    "/api/v1/consultations/{consultation_id}/identity/reveal",
    summary="The identity number given for this consultation, in full, for a reason the "
    "clerk gives; audited with the reason.",
    roles=frozenset({Role.CLERK}),
    body=RevealBody,
    response=RevealView,
    tag="identity",
)
async def reveal(request: web.Request) -> web.StreamResponse:
    record = await consultation_for(request, Right.READ_RECORD)
    body = await read_body(request, RevealBody)
    storage = request.app[STORAGE]
    given = await storage.identities.of(record.id)
    if given is None:
        return reply(RevealView(id_number=None))
    number = await request.app[SENSITIVE].reveal(Kind.ID_NUMBER, given.sealed)
    await storage.audit.append(audit_of(request, "identity.reveal", record.id, reason=body.reason))
    return reply(RevealView(id_number=number))
