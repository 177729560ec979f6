"""Every REST request and response body as a typed model."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from signaling.messages import CaseNumber, ChatView, DepartmentCode
from storage.records import (
    DEFAULT_HOURS,
    Account,
    ConsultationLeg,
    ConsultationRecord,
    Department,
    Hall,
    Scope,
)

Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{2,31}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
HallCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,31}$")]
# A phone link's token (storage.phone_links: secrets.token_urlsafe(16)).
PhoneToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{22}$")]
HallLevelName = Literal["city", "district", "street"]
District = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
RoleName = Literal["kiosk", "expert", "clerk", "admin", "interpreter", "supervisor"]
DepartmentKindName = Literal["service", "interpreter"]
# A language as people name it in the hall: "手语 / sign language".
Language = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
Languages = Annotated[list[Language], Field(max_length=30)]
TransferTargets = Annotated[list[DepartmentCode], Field(max_length=50)]
Material = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Materials = Annotated[list[Material], Field(max_length=30)]
# A local time of day, 00:00 to 24:00.
_CLOCK = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
# ISO weekdays from-to and a time span: "1-5 09:00-17:00".
Hours = Annotated[
    str,
    StringConstraints(
        pattern=r"^[1-7]-[1-7] ([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$"
    ),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LoginRequest(Body):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class DepartmentCreate(Body):
    code: DepartmentCode
    name_zh: Name
    name_en: Name
    hours: Hours = DEFAULT_HOURS
    kind: DepartmentKindName = "service"
    """service: citizens call it; interpreter: an interpreting pool, invited into calls."""
    languages: Languages = []
    """An interpreting pool's languages."""
    transfers_to: TransferTargets = []
    """The departments its experts may hand a citizen to."""


class DepartmentPatch(Body):
    disabled: bool | None = None
    hours: Hours | None = None
    kind: DepartmentKindName | None = None
    languages: Languages | None = None
    transfers_to: TransferTargets | None = None
    """Exactly these (an empty list: none)."""
    materials: Materials | None = None
    """The checklist of materials its experts tick after a call (exactly these)."""
    recording: bool | None = None
    """Whether its experts may ask to record a call (with the citizen's consent)."""


class AccountCreate(Body):
    username: Username
    password: Password
    role: RoleName
    department: DepartmentCode | None = None
    hall: HallCode | None = None
    """The hall a kiosk stands in (kiosks only, required for them)."""
    halls: Annotated[list[HallCode], Field(max_length=50)] | None = None
    """The halls a clerk works at, or a supervisor oversees (none: every hall)."""
    departments: Annotated[list[DepartmentCode], Field(max_length=50)] | None = None
    """The departments a supervisor oversees (supervisors only; none: every department)."""
    display_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""


class AccountPatch(Body):
    disabled: bool | None = None
    password: Password | None = None
    hall: HallCode | None = None
    """Move a kiosk to this hall."""
    halls: Annotated[list[HallCode], Field(max_length=50)] | None = None
    """A clerk now works at exactly these halls; a supervisor oversees exactly these
    (empty: every hall)."""
    departments: Annotated[list[DepartmentCode], Field(max_length=50)] | None = None
    """A supervisor now oversees exactly these departments (empty: every department)."""


class HallCreate(Body):
    code: HallCode
    name_zh: Name
    name_en: Name
    level: HallLevelName
    district: District = ""
    allow_file_chooser: bool = False


class HallPatch(Body):
    name_zh: Name | None = None
    name_en: Name | None = None
    level: HallLevelName | None = None
    district: District | None = None
    allow_file_chooser: bool | None = None


class HallConsultationsQuery(BaseModel):
    """Query-string filters of the clerk's list (strings; unknown names refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hall: HallCode | None = None
    department: DepartmentCode | None = None
    # Local times of today (the server's time zone): since inclusive, until exclusive.
    since: Annotated[str, StringConstraints(pattern=_CLOCK)] | None = None
    until: Annotated[str, StringConstraints(pattern=_CLOCK)] | None = None
    reference: Annotated[str, StringConstraints(max_length=20)] | None = None


class MyConsultationsQuery(BaseModel):
    """The expert's own consultations: every one, or (``unfinished=true``) only those
    answered and ended without an outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unfinished: Literal["true", "false"] | None = None


class CaseQuery(Body):
    case_number: CaseNumber


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class HealthView(View):
    status: Literal["ok", "unavailable", "draining"]
    problems: list[str] = []
    """Why this node cannot serve now (Redis or the database unreachable)."""


class HallView(View):
    code: str
    name_zh: str
    name_en: str
    level: HallLevelName
    district: str
    allow_file_chooser: bool
    """Whether the hall's kiosks offer the file chooser."""

    @classmethod
    def of(cls, hall: Hall) -> "HallView":
        return cls(
            code=hall.code,
            name_zh=hall.name_zh,
            name_en=hall.name_en,
            level=hall.level.value,
            district=hall.district,
            allow_file_chooser=hall.allow_file_chooser,
        )


class HallList(View):
    halls: list[HallView]


class MeView(View):
    username: str
    role: RoleName
    display_name: str
    department: str | None
    hall: HallView | None
    """A kiosk's hall."""
    halls: list[HallView]
    """A clerk's halls."""

    @classmethod
    def of(
        cls, account: Account, hall: Hall | None = None, halls: list[Hall] | None = None
    ) -> "MeView":
        return cls(
            username=account.username,
            role=account.role.value,
            display_name=account.display_name,
            department=account.department,
            hall=HallView.of(hall) if hall is not None else None,
            halls=[HallView.of(h) for h in halls or []],
        )


class AccountView(View):
    username: str
    role: RoleName
    display_name: str
    department: str | None
    hall: str | None
    """The hall code a kiosk stands in."""
    halls: list[str]
    """The hall codes a clerk works at, or a supervisor oversees (none: every hall)."""
    departments: list[str] = []
    """The department codes a supervisor oversees (none: every department)."""
    disabled: bool
    created_at: float

    @classmethod
    def of(
        cls, account: Account, halls: list[str] | None = None, scope: Scope | None = None
    ) -> "AccountView":
        if scope is not None:
            halls = list(scope.halls)
        return cls(
            username=account.username,
            role=account.role.value,
            display_name=account.display_name,
            department=account.department,
            hall=account.hall,
            halls=halls or [],
            departments=list(scope.departments) if scope is not None else [],
            disabled=account.disabled,
            created_at=account.created_at,
        )


class AccountList(View):
    accounts: list[AccountView]


class DepartmentView(View):
    code: str
    name_zh: str
    name_en: str
    disabled: bool
    hours: str
    kind: DepartmentKindName = "service"
    languages: list[str] = []
    transfers_to: list[str] = []
    materials: list[str] = []
    """The checklist of materials its experts tick after a call."""
    recording: bool = False

    @classmethod
    def of(cls, department: Department) -> "DepartmentView":
        return cls(
            code=department.code,
            name_zh=department.name_zh,
            name_en=department.name_en,
            disabled=department.disabled,
            hours=department.hours,
            kind=department.kind.value,
            languages=list(department.languages),
            transfers_to=list(department.transfers_to),
            materials=list(department.materials),
            recording=department.recording,
        )


class DepartmentList(View):
    departments: list[DepartmentView]


class LegView(View):
    """One staff member's part in a consultation (the clerk's and the admin's view)."""

    seq: int
    username: str
    name: str
    role: RoleName
    department: str
    position: int
    joined_at: float
    left_at: float | None
    reason: Literal["left", "transferred", "ended", "dropped"] | None
    invited_by: str | None
    note: str | None
    """The invitation's note, or the transfer's reason for whoever took it over."""
    outcome: str | None
    notes: str | None
    materials: list[str] = []
    """What this expert said the citizen must still bring."""

    @classmethod
    def of(cls, leg: ConsultationLeg) -> "LegView":
        return cls(
            seq=leg.seq,
            username=leg.username,
            name=leg.name,
            role=leg.role.value,
            department=leg.department,
            position=leg.position,
            joined_at=leg.joined_at,
            left_at=leg.left_at,
            reason=leg.reason.value if leg.reason is not None else None,
            invited_by=leg.invited_by,
            note=leg.note,
            outcome=leg.outcome.value if leg.outcome is not None else None,
            notes=leg.notes,
            materials=list(leg.materials),
        )


class ConsultationRecordView(View):
    id: str
    department: str
    hall: str | None
    case_number: str | None
    state: str
    waiting_at: float
    offered_at: float | None
    active_at: float | None
    ended_at: float | None
    end_reason: str | None
    outcome: str | None
    notes: str | None
    rating: int | None
    grade: str | None = None
    """The citizen's 好差评 grade (very_satisfied .. very_dissatisfied); ``rating`` is its
    1-5 score."""
    expert_name: str | None
    reference: str | None
    """The short reference the kiosk showed the citizen."""
    legs: list[LegView] | None = None
    """Each staff member's part, in order (clerks and admins; null for others)."""

    @classmethod
    def of(
        cls, record: ConsultationRecord, legs: list[ConsultationLeg] | None = None
    ) -> "ConsultationRecordView":
        data = {k: getattr(record, k) for k in cls.model_fields if k != "legs"}
        return cls(**data, legs=[LegView.of(leg) for leg in legs] if legs is not None else None)


class ConsultationList(View):
    consultations: list[ConsultationRecordView]


class ChatList(View):
    messages: list[ChatView]
    """Oldest first."""


class ErrorDetail(View):
    code: str
    message: str


class ErrorView(View):
    error: ErrorDetail


class DepartmentStatus(View):
    code: str
    name_zh: str
    name_en: str
    hours: str
    kind: DepartmentKindName = "service"
    """An interpreting pool is invited into calls: the kiosk shows no tile for it."""
    languages: list[str] = []
    experts_online: int
    queue_length: int
    open_now: bool = False
    """Whether now (the server's local time) is within the department's usual hours."""
    next_opening: float | None = None
    """When its usual hours next begin (None: its hours name no time)."""


class DepartmentStatusList(View):
    departments: list[DepartmentStatus]
    no_expert_wait_s: float = 0.0
    """How long a request waits while nobody of its department is online before it
    ends (--no-expert-wait): what the kiosk tells before and while queuing."""


class BoardDepartment(DepartmentStatus):
    longest_wait_s: float | None
    experts_busy: int
    active_calls: int
    grades: dict[str, int] = {}
    """好差评 grades given in the last 30 days, by grade name."""
    follow_ups_open: int = 0
    """Follow-ups of bad grades not closed yet."""
    follow_ups_overdue: int = 0
    """Of those, the ones past their deadline (--complaint-days)."""


class SummaryView(View):
    consultations: int
    answered: int
    median_wait_s: float | None
    p90_wait_s: float | None
    median_handle_s: float | None
    abandonment_rate: float | None
    average_rating: float | None
    ratings: int


class HourView(View):
    start: float
    consultations: int
    median_wait_s: float | None


class BoardHall(View):
    code: str
    name_zh: str
    name_en: str
    level: HallLevelName
    waiting: int
    """Citizens of the hall waiting or being rung now."""
    consultations_today: int
    answered_today: int
    grades: dict[str, int] = {}
    """好差评 grades its citizens gave in the last 30 days, by grade name."""
    follow_ups_open: int = 0
    follow_ups_overdue: int = 0


class BoardView(View):
    generated_at: float
    departments: list[BoardDepartment]
    halls: list[BoardHall]
    today: SummaryView
    hourly: list[HourView]


ActionName = Annotated[str, StringConstraints(pattern=r"^[a-z_]+(\.[a-z_]+)*$", max_length=64)]


class AuditQuery(BaseModel):
    """Query-string filters (strings converted, unknown names refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    actor: Annotated[str, StringConstraints(max_length=64)] | None = None
    action: (
        Annotated[str, StringConstraints(pattern=r"^[a-z_]+(\.[a-z_]+)*$", max_length=64)] | None
    ) = None
    subject: Annotated[str, StringConstraints(max_length=200)] | None = None
    # Sequence numbers fit a signed 64-bit column; more is no entry, not an overflow.
    before: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class AuditEntryView(View):
    seq: int
    at: float
    actor: str
    action: str
    subject: str
    detail: dict[str, str | int | float | bool | None]
    remote: str


class AuditList(View):
    entries: list[AuditEntryView]


class AuditVerification(View):
    intact: bool
    entries: int
    """Entries checked and found intact (before the broken one, if any)."""
    broken_seq: int | None
    reason: str | None
    checked_at: float
