"""What a transition decides, as data: the records to write, the live-state
changes to commit, and what must happen afterwards. ``signaling.executor``
applies a ``Decision`` in that order: records in one unit of work, then the
live state (compare-and-set), then the effects."""

from dataclasses import dataclass, field

from signaling.live import Live, key_of
from signaling.messages import ServerPayload
from signaling.store import Commit
from storage.records import AuditEvent, EndReason

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
    call_id: str
    expert_id: str
    offered_at: float | None
    at: float
    audit: AuditEvent


@dataclass(frozen=True)
class MarkEnded:
    call_id: str
    reason: EndReason
    ended_by: str
    at: float
    offered_at: float | None
    audit: AuditEvent


RecordChange = CreateConsultation | MarkActive | MarkEnded


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


Effect = Notify | CloseRelay | DiscardUploads | Dispatch | PublishQueue | ArmNoExpert | Participant


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
