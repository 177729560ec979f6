"""Every socket.io event payload, both directions, as a typed, validated model.

Client -> server payloads are validated strictly (unknown fields, wrong types
and oversize strings are refused); server -> client payloads are built here so
that docs/PROTOCOL.md and the code describe the same shapes.
"""

from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from storage.documents import StoredFile
from storage.records import BAD_GRADES, GRADE_OF_RATING, Grade

ConsultationId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
InvitationId = Annotated[str, StringConstraints(pattern=r"^i-[0-9a-f]{16}$")]
FileId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
DepartmentCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,31}$")]
# The number printed on the acceptance slip: letters, digits and dashes.
CaseNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9-]{1,40}$")
]


def _no_nul(text: str) -> str:
    # PostgreSQL cannot store U+0000 in text; nobody types it: refuse it at the edge.
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


ChatText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(_no_nul),
]
Notes = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=4000), AfterValidator(_no_nul)
]
# An invitation's note and a transfer's reason: a line for the colleague who answers.
ShortNote = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_no_nul)
]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_nul),
]
OutcomeName = Literal["answered", "follow_up", "referred"]
StateName = Literal["waiting", "offered", "active", "ended"]
RevokeReason = Literal["timeout", "cancelled", "declined", "ended"]
EndReasonName = Literal[
    "completed", "abandoned", "no_expert", "dropped", "cancelled", "left", "transferred"
]
"""Why it ended; "left" and "transferred" only in the view of the staff member whose
own part ended so (the call goes on for the others)."""
ParticipantRole = Literal["kiosk", "expert", "interpreter", "supervisor"]
OfferKind = Literal["consultation", "invite", "transfer"]
InvitationState = Literal["ringing", "waiting", "accepted", "declined", "expired", "cancelled"]


class ClientPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EmptyPayload(ClientPayload):
    pass


class RequestConsultation(ClientPayload):
    department: DepartmentCode
    case_number: CaseNumber | None = None
    appointment: bool = False
    """The citizen comes by the booking admitted at this kiosk (its code typed on the
    start screen, POST /api/v1/appointments/admit): the consultation waits at the head
    of the department's queue; refused (invalid_state) when no such booking is open."""


class ConsultationRef(ClientPayload):
    consultation_id: ConsultationId


class OfferRef(ClientPayload):
    """The offer answered: a consultation's (``consultation_id``) or an invitation's
    (``invitation_id``); exactly one of the two."""

    consultation_id: ConsultationId | None = None
    invitation_id: InvitationId | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.consultation_id is None) == (self.invitation_id is None):
            raise ValueError("give consultation_id or invitation_id (one of them)")
        return self


class InviteDepartment(ClientPayload):
    consultation_id: ConsultationId
    department: DepartmentCode
    note: ShortNote = ""


class CancelInvitation(ClientPayload):
    invitation_id: InvitationId


class TransferConsultation(ClientPayload):
    consultation_id: ConsultationId
    department: DepartmentCode
    reason: Reason


class ShareScreen(ClientPayload):
    consultation_id: ConsultationId
    sharing: bool


class RecordingAnswer(ClientPayload):
    """The citizen's answer to an expert's request to record, and the version of the
    text the kiosk showed (kept on the record)."""

    consultation_id: ConsultationId
    accept: bool
    text_version: Annotated[str, StringConstraints(pattern=r"^[a-z0-9._-]{1,32}$")]


class ShareDocument(ClientPayload):
    consultation_id: ConsultationId
    file_id: FileId


class SetPresence(ClientPayload):
    status: Literal["available", "away"]


MaterialItem = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]


class SaveOutcome(ClientPayload):
    consultation_id: ConsultationId
    outcome: OutcomeName
    notes: Notes = ""
    materials: Annotated[list[MaterialItem], Field(max_length=30)] | None = None
    """What the citizen must still bring (一次性告知): the department's checklist
    items ticked and any written; printed on the citizen's slip."""


class DeferOutcome(ClientPayload):
    """稍后填写: the record stays among the expert's unfinished ones, with the notes
    written so far kept on it (a draft: no outcome yet)."""

    consultation_id: ConsultationId
    notes: Notes = ""


GradeName = Literal[
    "very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied"
]
GradeReasonName = Literal["waited_too_long", "not_solved", "attitude", "poor_audio_video", "other"]
GradeComment = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(_no_nul)
]


class RateConsultation(ClientPayload):
    """好差评: one of the five grades, a bad one (dissatisfied, very dissatisfied) with
    an optional reason from the kiosk's list and the citizen's own words. ``rating``
    1-5 is what pages before the five grades send: mapped, 5 very satisfied to 1 very
    dissatisfied."""

    consultation_id: ConsultationId
    grade: GradeName | None = None
    rating: Annotated[int, Field(ge=1, le=5)] | None = None
    reason: GradeReasonName | None = None
    comment: GradeComment | None = None

    @model_validator(mode="after")
    def _one_bad_grade_explained(self) -> Self:
        if (self.grade is None) == (self.rating is None):
            raise ValueError("give a grade (or an old page's rating), one of them")
        # A reason answers the question the kiosk asks after a bad grade only.
        if (self.reason is not None or self.comment) and self.given_grade not in BAD_GRADES:
            raise ValueError("a reason and a comment go with a bad grade only")
        return self

    @property
    def given_grade(self) -> Grade:
        if self.grade is not None:
            return Grade(self.grade)
        assert self.rating is not None
        return GRADE_OF_RATING[self.rating]


class SendChat(ClientPayload):
    consultation_id: ConsultationId
    text: ChatText


class ServerPayload(BaseModel):
    model_config = ConfigDict(frozen=True)


class MediaAccess(ServerPayload):
    """Where and with what this participant connects its media (WHIP-style POST)."""

    url: str
    token: str


class ParticipantView(ServerPayload):
    """Someone in the call now, at the position they hold until they leave."""

    position: int
    role: ParticipantRole
    username: str
    name: str
    department: str | None
    department_name_zh: str | None = None
    department_name_en: str | None = None
    joined_at: float
    connected: bool
    """False while their socket or media is lost (within the grace period)."""


class InvitationView(ServerPayload):
    """An invitation into a call (event ``invitation``, and the open ones in the
    consultation's view)."""

    invitation_id: str
    consultation_id: str
    department: str
    kind: Literal["invite", "transfer"] = "invite"
    state: InvitationState
    note: str | None
    """Not in the kiosk's view."""
    created_at: float
    by: str | None = None
    """The inviter's username."""


class TransferView(ServerPayload):
    """A transfer waiting for the department it goes to."""

    department: str
    reason: str | None
    """Not in the kiosk's view."""
    by: str
    by_name: str | None = None
    from_department: str | None = None


class ConsultationView(ServerPayload):
    """A consultation as its participants see it (event ``consultation``)."""

    consultation_id: str
    department: str
    state: StateName
    case_number: str | None
    hall: str | None
    kiosk: str
    expert: str | None
    waiting_since: float
    offered_at: float | None = None
    active_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReasonName | None = None
    media: MediaAccess | None = None
    """Only in an active consultation, and only the recipient's own access."""
    reference: str | None = None
    """The short reference the kiosk shows the citizen and the clerk types
    (storage.references)."""
    rung_unanswered: int = 0
    """How often an expert was rung for it and did not take it (let it ring out or
    declined): the kiosk says that it is being offered again."""
    participants: list[ParticipantView] = []
    """Everyone in the call now, the recipient included (the kiosk always, at 0)."""
    you: int | None = None
    """The recipient's position (None: not taking part, or no longer)."""
    screen: int | None = None
    """The position of whoever shares their screen now."""
    recording: Literal["off", "asked", "on"] = "off"
    """Whether the call is recorded: "asked" while the citizen is being asked."""
    listened: bool = False
    """A supervisor of the service centre listens to the call now (in the staff's
    views, unless the deployment turned that notice off; never in the kiosk's,
    which always shows that calls may be listened to)."""
    invitations: list[InvitationView] = []
    """The call's open invitations."""
    transfer: TransferView | None = None
    """Set while the consultation waits for the department it was transferred to."""


class QueuePosition(ServerPayload):
    """Event ``queue_position`` to a waiting kiosk."""

    consultation_id: str
    position: int
    queue_length: int
    estimated_wait_s: int | None
    experts_online: int


class QueueEntryView(ServerPayload):
    consultation_id: str
    state: StateName
    waiting_since: float
    case_number: str | None
    hall: str | None


PresenceName = Literal["available", "busy", "wrap_up", "away", "offline"]


class ExpertView(ServerPayload):
    username: str
    status: PresenceName


class QueueUpdate(ServerPayload):
    """Event ``queue_updated`` to the department's experts."""

    department: str
    entries: list[QueueEntryView]
    """The head of the queue (at most 50), oldest first."""
    experts: list[ExpertView]
    more: int = 0
    """Consultations waiting beyond ``entries``."""


class InviterView(ServerPayload):
    username: str
    name: str
    department: str


class OfferView(ServerPayload):
    """Event ``offer`` to the expert being rung."""

    consultation_id: str
    department: str
    case_number: str | None
    hall: str | None
    waiting_since: float
    expires_at: float
    ring_timeout_s: float
    hall_name_zh: str | None = None
    hall_name_en: str | None = None
    """The kiosk's hall as it was named when the citizen asked (None: no hall)."""
    waited_s: float = 0.0
    """Seconds the citizen had waited when this offer was made (the server's clock)."""
    kind: OfferKind = "consultation"
    """A citizen's request, an invitation into a call, or a call transferred here."""
    invitation_id: str | None = None
    """An invitation's (accepted with ``accept_offer {"invitation_id"}``)."""
    inviter: InviterView | None = None
    """Who invites, or who transferred the call."""
    note: str | None = None
    """The invitation's note, or the transfer's reason."""


class OfferRevoked(ServerPayload):
    """Event ``offer_revoked``: the offer is gone (timeout, cancel, taken elsewhere)."""

    consultation_id: str
    reason: RevokeReason
    invitation_id: str | None = None
    """Set when the offer was an invitation's."""


class PresenceView(ServerPayload):
    """Event ``presence`` to an expert: their own status as the server has it."""

    status: PresenceName
    missed_in_a_row: int
    wrap_up: str | None = None
    """The consultation whose record the expert completes (status ``wrap_up``)."""
    wrap_up_until: float | None = None
    """When the wrap-up ends by itself and the expert is set away (the server's clock)."""
    away_reason: Literal["missed_offers", "wrap_up_expired"] | None = None
    """Why the server set the expert away; None when the expert chose."""


class ChatView(ServerPayload):
    """Event ``chat_message`` to every participant."""

    id: str
    consultation_id: str
    sender: ParticipantRole
    text: str
    sent_at: float
    sender_name: str | None = None
    """The sender's display name (several staff may take part)."""


class FileView(ServerPayload):
    """A document of a consultation (event ``file_added``, and the file lists)."""

    id: str
    consultation_id: str
    name: str
    media_type: str
    size: int
    uploaded_by: Literal["kiosk", "expert"]
    digest: str
    digest_alg: str
    created_at: float
    url: str
    shredded_at: float | None = None
    """When retention destroyed the document's key (listed, no longer downloadable)."""

    @classmethod
    def of(cls, record: StoredFile) -> "FileView":
        return cls(
            id=record.id,
            consultation_id=record.consultation_id,
            name=record.name,
            media_type=record.media_type,
            size=record.size,
            uploaded_by="kiosk" if record.uploader_role == "kiosk" else "expert",
            digest=record.digest,
            digest_alg=record.digest_alg,
            created_at=record.created_at,
            url=f"/api/v1/files/{record.id}",
            shredded_at=record.shredded_at,
        )


class PeerStatus(ServerPayload):
    """Event ``peer_status``: another participant's connection dropped or came back."""

    consultation_id: str
    side: ParticipantRole
    """The participant's role ("kiosk", or the staff member's)."""
    status: Literal["reconnecting", "connected"]
    grace_s: float | None = None
    position: int | None = None


class StaffCallView(ServerPayload):
    """Event ``staff_call`` to the clerks of the kiosk's hall, and the kiosk's answer."""

    id: str
    kiosk: str
    """The kiosk's username (what a clerk acknowledges)."""
    kiosk_name: str
    """The kiosk's display name, as its hall's staff know it."""
    hall: str | None
    at: float
    clerks: int
    """Clerk accounts of the hall the alert was sent to."""


class StaffCallAnswered(ServerPayload):
    """Event ``staff_call_answered`` to the kiosk and the hall's clerks."""

    id: str
    kiosk: str
    by: str
    """The display name of the clerk who is coming."""
    at: float


class SessionState(ServerPayload):
    """Ack of ``get_state``: who you are and what is open for you."""

    username: str
    role: Literal["kiosk", "expert", "clerk", "admin", "interpreter", "supervisor"]
    department: str | None
    hall: str | None
    presence: PresenceView | None
    consultation: ConsultationView | None
    offer: OfferView | None


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorAck(BaseModel):
    error: ErrorBody
