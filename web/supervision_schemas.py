"""Request and response bodies of the supervisor's routes (web.followups_api,
web.supervisor_api), in the style of ``web.schemas``: bodies forbid unknown fields
and are strict; views are frozen."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from signaling.messages import GradeName, GradeReasonName
from storage.records import ConsultationRecord, FollowUp, FollowUpNote
from web.schemas import Body, View


def _no_nul(text: str) -> str:
    # PostgreSQL cannot store U+0000 in text; nobody types it.
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


NoteText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(_no_nul),
]
NoteKindName = Literal["contact", "finding", "remedy", "note"]
FollowUpStateName = Literal["open", "contacted", "closed"]


class FollowUpNoteBody(Body):
    """A supervisor's note: ``contact`` (the citizen was reached: an open follow-up
    becomes contacted), ``finding`` (what was found), ``remedy`` (what was put right)
    or ``note``."""

    kind: NoteKindName
    text: NoteText


class FollowUpCloseBody(Body):
    """The closing word: what was found and put right, or why nothing could be."""

    text: NoteText


class FollowUpsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    state: Literal["open", "all"] | None = None


class FollowUpNoteView(View):
    seq: int
    kind: Literal["contact", "finding", "remedy", "note", "close"]
    text: str
    author: str
    at: float

    @classmethod
    def of(cls, note: FollowUpNote) -> "FollowUpNoteView":
        return cls(
            seq=note.seq, kind=note.kind.value, text=note.text, author=note.author, at=note.at
        )


class FollowUpView(View):
    consultation_id: str
    reference: str | None
    """The short reference the kiosk showed the citizen."""
    department: str
    hall: str | None
    hall_zh: str | None = None
    hall_en: str | None = None
    grade: GradeName
    reason: GradeReasonName | None
    comment: str | None
    """The citizen's own words at the kiosk."""
    state: FollowUpStateName
    opened_at: float
    due_at: float
    overdue: bool
    """Not closed and past ``due_at`` (--complaint-days after the grade)."""
    contacted_at: float | None
    closed_at: float | None
    closed_by: str | None
    notes: list[FollowUpNoteView]

    @classmethod
    def of(
        cls, follow_up: FollowUp, now: float, halls: dict[str, tuple[str, str]] | None = None
    ) -> "FollowUpView":
        hall = (halls or {}).get(follow_up.hall or "")
        return cls(
            consultation_id=follow_up.consultation_id,
            reference=follow_up.reference,
            department=follow_up.department,
            hall=follow_up.hall,
            hall_zh=hall[0] if hall else None,
            hall_en=hall[1] if hall else None,
            grade=follow_up.grade.value,
            reason=None if follow_up.reason is None else follow_up.reason.value,
            comment=follow_up.comment,
            state=follow_up.state.value,
            opened_at=follow_up.opened_at,
            due_at=follow_up.due_at,
            overdue=follow_up.overdue(now),
            contacted_at=follow_up.contacted_at,
            closed_at=follow_up.closed_at,
            closed_by=follow_up.closed_by,
            notes=[FollowUpNoteView.of(n) for n in follow_up.notes],
        )


class FollowUpList(View):
    follow_ups: list[FollowUpView]
    now: float
    """The server's time the list was read at (what ``overdue`` was decided against)."""


class LiveCallView(View):
    consultation_id: str
    reference: str | None
    department: str
    department_zh: str
    department_en: str
    hall: str | None
    hall_zh: str | None
    hall_en: str | None
    active_at: float | None
    duration_s: float
    """Seconds since an expert answered."""
    expert_name: str | None
    grade: GradeName | None
    """The citizen's grade if one was given already (none while the call goes on)."""

    @classmethod
    def of(
        cls,
        record: ConsultationRecord,
        now: float,
        departments: dict[str, tuple[str, str]],
        halls: dict[str, tuple[str, str]],
    ) -> "LiveCallView":
        department = departments.get(record.department, (record.department, record.department))
        hall = halls.get(record.hall or "")
        start = record.active_at if record.active_at is not None else record.waiting_at
        return cls(
            consultation_id=record.id,
            reference=record.reference,
            department=record.department,
            department_zh=department[0],
            department_en=department[1],
            hall=record.hall,
            hall_zh=hall[0] if hall else None,
            hall_en=hall[1] if hall else None,
            active_at=record.active_at,
            duration_s=max(0.0, now - start),
            expert_name=record.expert_name,
            grade=None if record.grade is None else record.grade.value,
        )


class LiveCallList(View):
    calls: list[LiveCallView]
