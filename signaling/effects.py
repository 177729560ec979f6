"""What a transition decides, as data: the records to write, the live-state
changes to commit, and what must happen afterwards. ``signaling.executor``
applies a ``Decision`` in that order: records in one unit of work, then the
live state (compare-and-set), then the effects."""

from dataclasses import dataclass, field

from signaling.live import Live, key_of
from signaling.messages import ServerPayload
from signaling.store import Commit
from storage.records import AuditEvent, EndReason, LegEnd, Role

# ---- records (written before the live state) ----------------------------------------


@dataclass(frozen=True)
class CreateConsultation:
    """A new waiting consultation; the records refuse a second open one per kiosk."""

    call_id: str
    kiosk_id: str
    hall: str | None
    department: str
    case_number: str | None
    at: float
    audit: AuditEvent


@dataclass(frozen=True)
class MarkActive:
    """The first expert answers: the call starts, with their leg at ``position``."""

    call_id: str
    expert_id: str
    offered_at: float | None
    at: float
    audit: AuditEvent
    position: int = 1


@dataclass(frozen=True)
class ResumeCall:
    """An expert of the department a call was transferred to takes it over."""

    call_id: str
    expert_id: str
    position: int
    at: float
    invited_by: str | None
    note: str | None
    audit: AuditEvent


@dataclass(frozen=True)
class JoinCall:
    """An invited expert or interpreter joins the call (once per invitation)."""

    call_id: str
    account_id: str
    role: Role
    department: str
    position: int
    at: float
    invitation: str | None
    """None for a supervisor who stepped in (nobody invited them)."""
    invited_by: str
    note: str | None
    audit: AuditEvent


@dataclass(frozen=True)
class LeaveCall:
    """A staff member's part ends while the call goes on."""

    call_id: str
    account_id: str
    at: float
    reason: LegEnd
    audit: AuditEvent


@dataclass(frozen=True)
class TransferCall:
    """The expert's part ends as transferred; the consultation waits for ``department``."""

    call_id: str
    account_id: str
    department: str
    at: float
    audit: AuditEvent


@dataclass(frozen=True)
class AuditOnly:
    """What changes only the live state, audited (an invitation made or cancelled)."""

    audit: AuditEvent


@dataclass(frozen=True)
class MarkEnded:
    call_id: str
    reason: EndReason
    ended_by: str
    at: float
    offered_at: float | None
    audit: AuditEvent


RecordChange = (
    CreateConsultation
    | MarkActive
    | MarkEnded
    | ResumeCall
    | JoinCall
    | LeaveCall
    | TransferCall
    | AuditOnly
)


# ---- effects (after the live state is committed) ------------------------------------


@dataclass(frozen=True)
class Notify:
    """An event to every socket of an account (but the acting socket, which gets
    the same in its ack, when ``not_actor``)."""

    account_id: str
    event: str
    payload: ServerPayload
    not_actor: bool = False


@dataclass(frozen=True)
class CloseRelay:
    call_id: str
    relay: str | None


@dataclass(frozen=True)
class CloseLeg:
    """A participant left the call: its media leg at the relay closes (the others'
    go on)."""

    call_id: str
    relay: str | None
    position: int


@dataclass(frozen=True)
class RecordMedia:
    """The call's relay starts writing its recording (the citizen consented), or
    stops (either side stopped it)."""

    call_id: str
    relay: str | None
    on: bool


@dataclass(frozen=True)
class DiscardUploads:
    call_id: str


@dataclass(frozen=True)
class Dispatch:
    """Offer the department's waiting consultations to its free experts."""

    department: str


@dataclass(frozen=True)
class PublishQueue:
    """Tell the department's kiosks and experts where the queue stands (coalesced)."""

    department: str


@dataclass(frozen=True)
class ArmNoExpert:
    """With nobody of the department online, start the no-expert wait of each of
    its waiting consultations."""

    department: str


@dataclass(frozen=True)
class Participant:
    """An account's connection to its open call changed (the socket came or went)."""

    account_id: str
    connected: bool


Effect = (
    Notify
    | CloseRelay
    | CloseLeg
    | RecordMedia
    | DiscardUploads
    | Dispatch
    | PublishQueue
    | ArmNoExpert
    | Participant
)


@dataclass
class Decision:
    """A transition's outcome. Empty when nothing changes (the event was stale)."""

    commit: Commit = field(default_factory=Commit)
    record: RecordChange | None = None
    effects: list[Effect] = field(default_factory=list)
    reply: object = None

    def put(self, value: Live) -> None:
        self.commit.put[key_of(value)] = value

    def delete(self, key: str) -> None:
        self.commit.put[key] = None

    def notify(
        self, account_id: str | None, event: str, payload: ServerPayload, *, not_actor: bool = False
    ) -> None:
        if account_id is not None:
            self.effects.append(Notify(account_id, event, payload, not_actor))

    @property
    def changes_nothing(self) -> bool:
        c = self.commit
        return not (
            c.put
            or c.queue_add
            or c.queue_remove
            or c.members_add
            or c.members_remove
            or c.deadlines_set
            or c.deadlines_clear
            or c.handle_times
            or self.record
        )
