"""The records that storage keeps, as plain frozen dataclasses."""

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    KIOSK = "kiosk"
    EXPERT = "expert"
    CLERK = "clerk"
    ADMIN = "admin"


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
