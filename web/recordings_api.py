"""Recordings of consultations (issue 23): listed for those who may play them and
played through the documents' own route (``GET /api/v1/files/{id}``, Range
included), where ``may_play`` decides instead of the documents' rule and every
play is audited.

Who may play a recording: the experts who took part in its consultation, the
supervisors whose scope covers its department and hall, the admin. Never the
kiosk, a clerk or an interpreter; a recording is never in a consultation's list of
documents either.

With ``--recordings-play-only`` a recording is served only to a page's media player:
browsers say what a request is for in ``Sec-Fetch-Dest`` (``video`` or ``audio``
for a <video> or <audio> element; ``document`` for a navigation or a link saved,
``empty`` for fetch and XHR), and anything else is refused (403 play_only, audited).
A speed bump against the one-click save and the link passed around, not copy
protection: whoever may play a recording can capture it (docs/DECISIONS.md).
"""

import json
import re

from aiohttp import web

from signaling.access import Right
from storage.recordings import Recording
from storage.records import Account, ConsultationRecord, Role
from web.api import Api, account_of, reply
from web.followups_api import covers
from web.keys import SETTINGS, SIGNALING, STORAGE
from web.schemas import View

api = Api()
PLAYERS = frozenset({Role.EXPERT, Role.SUPERVISOR, Role.ADMIN})
LIST_LIMIT = 200
MEDIA_DESTINATIONS = frozenset({"video", "audio"})
"""``Sec-Fetch-Dest`` of a <video> or <audio> element's requests: the only ones a
play-only deployment serves a recording to."""
_DESTINATION = re.compile(r"[a-z]{1,24}")


class RecordingTrack(View):
    participant: str
    place: str
    codec: str
    frames: int


class RecordingView(View):
    id: str
    """The document's id: played at ``url``."""
    url: str
    consultation_id: str
    department: str
    hall: str | None
    started_at: float
    created_at: float
    tracks: list[RecordingTrack]


class RecordingList(View):
    recordings: list[RecordingView]
    play_only: bool
    """The deployment serves recordings to the page's player only
    (``--recordings-play-only``): a page offers no download."""


async def may_play(request: web.Request, account: Account, record: ConsultationRecord) -> bool:
    if account.role is Role.ADMIN:
        return True
    if account.role is Role.SUPERVISOR:
        scope = await request.app[STORAGE].scopes.of(account.id)
        return covers(scope, record.department, record.hall)
    if account.role is Role.EXPERT:
        # An expert who took part (the records: once ended, each expert of the call
        # stands as its expert and may record its outcome), not the department.
        return await request.app[SIGNALING].may(account, record, Right.RECORD_OUTCOME)
    return False


def refused_download(request: web.Request) -> str | None:
    """Why this request for a recording is refused under ``--recordings-play-only``
    (the ``Sec-Fetch-Dest`` it came with, for the audit entry: ``none`` when
    missing), or None when it is served (the switch off, or a media element's)."""
    if not request.app[SETTINGS].recordings_play_only:
        return None
    destination = request.headers.get("Sec-Fetch-Dest")
    if destination in MEDIA_DESTINATIONS:
        return None
    if destination is None:
        return "none"
    # Whatever the client sent, the audit log keeps a short token only.
    return destination if _DESTINATION.fullmatch(destination) else "other"


def _view(recording: Recording, record: ConsultationRecord) -> RecordingView:
    return RecordingView(
        id=recording.file_id,
        url=f"/api/v1/files/{recording.file_id}",
        consultation_id=recording.consultation_id,
        department=record.department,
        hall=record.hall,
        started_at=recording.started_at,
        created_at=recording.created_at,
        tracks=[RecordingTrack(**t) for t in json.loads(recording.tracks)],
    )


@api.route(
    "GET",
    "/api/v1/recordings",
    summary="The recordings the caller may play (an expert: of the consultations they "
    "took part in; a supervisor: in their scope; the admin: all), newest first; each "
    "is played at its url (every play audited); play_only: in the page's player only, "
    "no download.",
    roles=PLAYERS,
    response=RecordingList,
    tag="recordings",
)
async def list_recordings(request: web.Request) -> web.StreamResponse:
    account = account_of(request)
    storage = request.app[STORAGE]
    views = []
    for recording in await storage.recordings.all(LIST_LIMIT):
        record = await storage.consultations.get(recording.consultation_id)
        if await may_play(request, account, record):
            views.append(_view(recording, record))
    return reply(
        RecordingList(recordings=views, play_only=request.app[SETTINGS].recordings_play_only)
    )
