"""The records that storage keeps, as plain frozen dataclasses."""

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    KIOSK = "kiosk"
    EXPERT = "expert"
    CLERK = "clerk"
    ADMIN = "admin"
    INTERPRETER = "interpreter"
    """Belongs to an interpreting pool (a department of kind ``interpreter``); joins
    calls it is invited into, sees and hears everyone, reads only shared documents."""
    SUPERVISOR = "supervisor"
    """The service centre's: watches the calls, recordings and bad ratings of the
    departments and halls in its scope (storage.scopes), and follows bad ratings up."""


DESK_ROLES = frozenset({Role.EXPERT, Role.INTERPRETER})
"""Roles working at the staff desk (/expert): a department, a presence, offers rung."""


class ConsultationState(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    ACTIVE = "active"
    ENDED = "ended"


class EndReason(StrEnum):
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    NO_EXPERT = "no_expert"
    DROPPED = "dropped"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    ANSWERED = "answered"
    FOLLOW_UP = "follow_up"
    REFERRED = "referred"


DEFAULT_HOURS = "1-5 09:00-17:00"


class DepartmentKind(StrEnum):
    SERVICE = "service"
    """Citizens call it; its experts answer, invite and transfer."""
    INTERPRETER = "interpreter"
    """An interpreting pool: invited into calls by experts, never called directly."""


@dataclass(frozen=True)
class Department:
    code: str
    name_zh: str
    name_en: str
    disabled: bool
    created_at: float
    # Weekdays and times the department usually answers: "1-5 09:00-17:00"
    # (ISO weekday numbers), rendered by the pages in the reader's language.
    hours: str = DEFAULT_HOURS
    kind: DepartmentKind = DepartmentKind.SERVICE
    languages: tuple[str, ...] = ()
    """An interpreting pool's languages, as people name them ("手语 / sign language")."""
    transfers_to: tuple[str, ...] = ()
    """The departments its experts may hand a citizen to (set by the admin)."""
    materials: tuple[str, ...] = ()
    """The checklist of materials its experts tick as still required after a call
    (一次性告知), as the admin writes them ("户口簿原件 / household register")."""
    recording: bool = False
    """Whether its experts may ask to record a call (the citizen consents or not)."""


class HallLevel(StrEnum):
    """Where a hall stands in the city's administration."""

    CITY = "city"
    DISTRICT = "district"
    STREET = "street"


@dataclass(frozen=True)
class Hall:
    """A service hall: kiosks stand in one, clerks work at one or more."""

    code: str
    name_zh: str
    name_en: str
    level: HallLevel
    district: str
    """The district it serves, as people name it ('' when none is given)."""
    allow_file_chooser: bool
    """Whether its kiosks offer the file chooser (off: documents come from the document
    camera, and the next citizen never sees the kiosk's file system)."""
    created_at: float


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    role: Role
    department: str | None
    hall: str | None
    display_name: str
    disabled: bool
    created_at: float


@dataclass(frozen=True)
class ConsultationRecord:
    id: str
    kiosk_id: str
    hall: str | None
    department: str
    expert_id: str | None
    case_number: str | None
    state: ConsultationState
    waiting_at: float
    offered_at: float | None
    active_at: float | None
    ended_at: float | None
    end_reason: EndReason | None
    ended_by: str | None
    outcome: Outcome | None
    notes: str | None
    rating: int | None
    # The answering expert's display name (joined from accounts), for staff pages.
    expert_name: str | None = None
    # What the kiosk showed the citizen (storage.references); None before references.
    reference: str | None = None
    # The citizen's 好差评 grade (``rating`` holds its 1-5 score), and for a bad one the
    # reason chosen from the kiosk's list (storage.records.GradeReason) and a free text.
    grade: "Grade | None" = None
    grade_reason: str | None = None
    grade_comment: str | None = None


class LegEnd(StrEnum):
    """Why a participant's part in a call (its leg) ended."""

    LEFT = "left"
    TRANSFERRED = "transferred"
    ENDED = "ended"
    DROPPED = "dropped"


@dataclass(frozen=True)
class ConsultationLeg:
    """One staff member's part in a consultation: who, for which department, from
    when to when, why it ended, and their own outcome and notes."""

    consultation_id: str
    seq: int
    account_id: str
    role: Role
    department: str
    position: int
    joined_at: float
    left_at: float | None
    reason: LegEnd | None
    invited_by: str | None
    """The username of the expert who invited them (None: answered the citizen)."""
    note: str | None
    """The invitation's note, or the transfer's reason for the one who took it over."""
    outcome: Outcome | None
    notes: str | None
    username: str = ""
    name: str = ""
    materials: tuple[str, ...] = ()
    """What this expert said the citizen must still bring (the slip lists them)."""
    """The account's username and display name (joined from accounts)."""


@dataclass(frozen=True)
class ChatMessage:
    id: str
    consultation_id: str
    sender_id: str
    sender_role: Role
    text: str
    sent_at: float


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str
    subject: str
    detail: str
    remote: str
    prev_hash: str
    hash: str
    """HMAC under the audit key ``key_id``; SHA-256 for the unkeyed entries ('')
    made before keyed chains."""
    key_id: str = ""


@dataclass(frozen=True)
class AuditEvent:
    """What a caller asks the audit log to record; seq and hashes are added there."""

    actor: str
    action: str
    subject: str
    detail: dict[str, str | int | float | bool | None]
    remote: str = ""


class Grade(StrEnum):
    """The five grades of the national 好差评 system, best first."""

    VERY_SATISFIED = "very_satisfied"
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    DISSATISFIED = "dissatisfied"
    VERY_DISSATISFIED = "very_dissatisfied"


GRADE_OF_RATING = {
    5: Grade.VERY_SATISFIED,
    4: Grade.SATISFIED,
    3: Grade.BASICALLY_SATISFIED,
    2: Grade.DISSATISFIED,
    1: Grade.VERY_DISSATISFIED,
}
"""The old 1-5 rating as a grade (migration 17 maps stored ratings the same way)."""
RATING_OF_GRADE = {grade: rating for rating, grade in GRADE_OF_RATING.items()}
"""A grade's 1-5 score, still stored beside it so that averages read as before."""
BAD_GRADES = frozenset({Grade.DISSATISFIED, Grade.VERY_DISSATISFIED})
"""差评: each opens a follow-up for the department's supervisors."""


class GradeReason(StrEnum):
    """Why a citizen gave a bad grade, from the kiosk's short list."""

    WAITED_TOO_LONG = "waited_too_long"
    NOT_SOLVED = "not_solved"
    ATTITUDE = "attitude"
    POOR_AUDIO_VIDEO = "poor_audio_video"
    OTHER = "other"


class FollowUpState(StrEnum):
    OPEN = "open"
    CONTACTED = "contacted"
    CLOSED = "closed"


class FollowUpNoteKind(StrEnum):
    """What a supervisor's note on a follow-up says."""

    CONTACT = "contact"
    """The citizen was contacted (moves an open follow-up to contacted)."""
    FINDING = "finding"
    """What was found."""
    REMEDY = "remedy"
    """What was put right."""
    NOTE = "note"
    CLOSE = "close"
    """The closing word (closes it)."""


@dataclass(frozen=True)
class FollowUpNote:
    seq: int
    kind: FollowUpNoteKind
    text: str
    author: str
    """The username of the supervisor (or admin) who wrote it."""
    at: float


@dataclass(frozen=True)
class FollowUp:
    """The follow-up of one consultation's bad grade."""

    consultation_id: str
    department: str
    hall: str | None
    grade: Grade
    reason: GradeReason | None
    comment: str | None
    state: FollowUpState
    opened_at: float
    due_at: float
    """After this it is overdue (opened_at + --complaint-days)."""
    contacted_at: float | None
    closed_at: float | None
    closed_by: str | None
    reference: str | None = None
    """The consultation's short reference, for finding it with the citizen."""
    notes: tuple[FollowUpNote, ...] = ()

    def overdue(self, now: float) -> bool:
        """Still not closed after its deadline."""
        return self.state is not FollowUpState.CLOSED and now > self.due_at


@dataclass(frozen=True)
class Scope:
    """The departments and halls a supervisor oversees; an empty list is all of them."""

    departments: tuple[str, ...] = ()
    halls: tuple[str, ...] = ()

    def covers(self, department: str, hall: str | None) -> bool:
        """Whether a consultation of ``department`` from ``hall`` is in this scope."""
        if self.departments and department not in self.departments:
            return False
        return not self.halls or hall in self.halls
