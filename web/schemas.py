"""Every REST request and response body as a typed model."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from signaling.messages import CaseNumber, DepartmentCode
from storage.records import DEFAULT_HOURS, Account, ConsultationRecord, Department

Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{2,31}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Hall = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,31}$")]
RoleName = Literal["kiosk", "expert", "clerk", "admin"]
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


class DepartmentPatch(Body):
    disabled: bool | None = None
    hours: Hours | None = None


class AccountCreate(Body):
    username: Username
    password: Password
    role: RoleName
    department: DepartmentCode | None = None
    hall: Hall | None = None
    display_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""


class AccountPatch(Body):
    disabled: bool | None = None
    password: Password | None = None


class CaseQuery(Body):
    case_number: CaseNumber


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class HealthView(View):
    status: Literal["ok", "unavailable", "draining"]
    problems: list[str] = []
    """Why this node cannot serve now (Redis or the database unreachable)."""


class MeView(View):
    username: str
    role: RoleName
    display_name: str
    department: str | None
    hall: str | None

    @classmethod
    def of(cls, account: Account) -> "MeView":
        return cls(
            username=account.username,
            role=account.role.value,
            display_name=account.display_name,
            department=account.department,
            hall=account.hall,
        )


class AccountView(MeView):
    disabled: bool
    created_at: float

    @classmethod
    def of(cls, account: Account) -> "AccountView":
        return cls(
            **MeView.of(account).model_dump(),
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

    @classmethod
    def of(cls, department: Department) -> "DepartmentView":
        return cls(
            code=department.code,
            name_zh=department.name_zh,
            name_en=department.name_en,
            disabled=department.disabled,
            hours=department.hours,
        )


class DepartmentList(View):
    departments: list[DepartmentView]


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
    expert_name: str | None

    @classmethod
    def of(cls, record: ConsultationRecord) -> "ConsultationRecordView":
        data = {k: getattr(record, k) for k in cls.model_fields}
        return cls(**data)


class ConsultationList(View):
    consultations: list[ConsultationRecordView]


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
    experts_online: int
    queue_length: int


class DepartmentStatusList(View):
    departments: list[DepartmentStatus]


class BoardDepartment(DepartmentStatus):
    longest_wait_s: float | None
    experts_busy: int
    active_calls: int


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


class BoardView(View):
    generated_at: float
    departments: list[BoardDepartment]
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
