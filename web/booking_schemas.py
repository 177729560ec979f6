"""Request and response bodies of call-backs and appointments (web.appointments_api,
web.callbacks_api), in the style of ``web.schemas``: bodies forbid unknown fields and
are strict; views are frozen."""

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from signaling.messages import CaseNumber, ConsultationId, DepartmentCode
from storage.booking_settings import (
    MAX_CALLBACK_ATTEMPTS,
    MAX_CALLBACK_EXPIRY,
    MAX_SLOT_CAPACITY,
    MAX_WAIT_LIMIT,
    SLOT_MINUTES,
)
from web.schemas import Body, Hours, View

_MOBILE = re.compile(r"^1[3-9]\d{9}$")
MOBILE_RULE = "a mainland mobile number: 11 digits, the first 1, the second 3 to 9"


def mobile_number(value: str) -> str:
    """A mainland mobile number as typed (spaces and dashes allowed), its 11 digits;
    ValueError naming the rule otherwise."""
    digits = "".join(value.split()).replace("-", "")
    if digits.startswith("+86"):
        digits = digits[3:]
    if not _MOBILE.match(digits):
        raise ValueError(MOBILE_RULE)
    return digits


MobilePhone = Annotated[str, StringConstraints(max_length=30), AfterValidator(mobile_number)]
IdNumberText = Annotated[str, StringConstraints(max_length=40)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Day = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
BookingCodeText = Annotated[str, StringConstraints(min_length=1, max_length=20)]


class BookingSettingsBody(Body):
    availability: Annotated[list[Hours], Field(max_length=14, default_factory=list)]
    """Spans of the week appointments are kept in ("1-5 09:00-12:00"); empty: the
    department's usual hours."""
    slot_minutes: Annotated[int, Field(ge=SLOT_MINUTES[0], le=SLOT_MINUTES[1])] = 15
    slot_capacity: Annotated[int, Field(ge=1, le=MAX_SLOT_CAPACITY)] = 1
    wait_limit_s: Annotated[float, Field(ge=0, le=MAX_WAIT_LIMIT)] = 900.0
    """Estimated wait beyond which the kiosk offers a call-back or a booking."""
    callback_attempts: Annotated[int, Field(ge=1, le=MAX_CALLBACK_ATTEMPTS)] = 3
    callback_expiry_s: Annotated[float, Field(ge=3600, le=MAX_CALLBACK_EXPIRY)] = 86400.0
    """How long a call-back request stays open (1 hour to 3 days)."""


class BookingSettingsView(View):
    department: str
    availability: list[str]
    slot_minutes: int
    slot_capacity: int
    wait_limit_s: float
    callback_attempts: int
    callback_expiry_s: float


class SlotView(View):
    at: float
    """The slot's start (UNIX seconds)."""
    free: int


class SlotList(View):
    department: str
    slot_minutes: int
    slots: list[SlotView]
    """Free slots of the next 14 days, in order."""


class BookingRequest(Body):
    department: DepartmentCode
    slot_at: float
    """A start from the department's free slots."""
    phone: MobilePhone | None = None
    """For the notices (confirmation, reminder, cancellation); or identify by id_number."""
    id_number: IdNumberText | None = None


class AppointmentView(View):
    id: str
    department: str
    slot_at: float
    slot_minutes: int
    state: Literal["booked", "admitted", "queued", "cancelled"]
    hall: str | None = None
    phone_masked: str | None = None
    id_number_masked: str | None = None


class BookingView(View):
    booking_code: str
    """Shown once, on the kiosk: only its hash is kept."""
    appointment: AppointmentView


class AdmitRequest(Body):
    code: BookingCodeText


class AdmissionView(View):
    department: str
    name_zh: str
    name_en: str
    slot_at: float
    """Request a consultation of ``department`` with ``appointment: true`` now."""


class AppointmentList(View):
    day: str
    appointments: list[AppointmentView]


class ClosureRequest(Body):
    day: Day
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]


class ClosureView(View):
    department: str
    day: str
    cancelled: int
    notified: int


class CallbackRequest(Body):
    department: DepartmentCode
    phone: MobilePhone
    note: Note = ""
    case_number: CaseNumber | None = None
    consultation_id: ConsultationId | None = None
    """The kiosk's consultation waiting now: the request keeps its place."""


class CallbackView(View):
    id: str
    department: str
    case_number: str | None
    note: str
    phone_masked: str
    queued_at: float
    created_at: float
    expires_at: float
    attempts: int
    max_attempts: int
    state: Literal["open", "taken", "done", "unreached", "expired"]
    taken_by_me: bool = False


class CallbackList(View):
    callbacks: list[CallbackView]


class TakenCallbackView(View):
    callback: CallbackView
    phone: str
    """In full: only for the expert who took it (audited)."""


class AttemptRequest(Body):
    result: Literal["reached", "no_answer", "wrong_number"]
    note: Note = ""
