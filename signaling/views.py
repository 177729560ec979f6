"""What clients are told: the live values turned into the payloads of
``signaling.messages`` (each side sees only its own media access)."""

from signaling.live import ExpertPresence, LiveCall, Phase
from signaling.messages import (
    ConsultationView,
    ExpertView,
    MediaAccess,
    OfferView,
    PresenceView,
    QueueEntryView,
    QueueUpdate,
)
from storage.records import ConsultationRecord
from storage.references import reference_of


def media_url(call_id: str) -> str:
    return f"/api/v1/media/{call_id}"


def consultation_view(call: LiveCall, side: str | None = None) -> ConsultationView:
    """The view one side gets: its own media access while the call is active."""
    token = call.token_of(side or "")
    media = (
        MediaAccess(url=media_url(call.id), token=token)
        if token and call.phase is Phase.ACTIVE
        else None
    )
    return ConsultationView(
        consultation_id=call.id,
        department=call.department,
        state=call.phase.value,
        case_number=call.case_number,
        hall=call.hall,
        kiosk=call.kiosk_username,
        expert=call.expert_username if call.phase is Phase.ACTIVE else None,
        waiting_since=call.waiting_since,
        offered_at=call.offered_at,
        active_at=call.active_at,
        media=media,
        reference=reference_of(call.id),
        rung_unanswered=len(call.missed_by) + len(call.declined_by),
    )


def ended_view(call: LiveCall, at: float, reason: str) -> ConsultationView:
    return consultation_view(call).model_copy(
        update={"state": "ended", "ended_at": at, "end_reason": reason, "media": None}
    )


def record_ended_view(
    record: ConsultationRecord, kiosk_username: str, at: float, reason: str
) -> ConsultationView:
    """A consultation ended that only the records held (no live state to show)."""
    return ConsultationView(
        consultation_id=record.id,
        department=record.department,
        state="ended",
        case_number=record.case_number,
        hall=record.hall,
        kiosk=kiosk_username,
        expert=None,
        waiting_since=record.waiting_at,
        offered_at=record.offered_at,
        active_at=record.active_at,
        ended_at=at,
        end_reason=reason,
        reference=reference_of(record.id),
    )


def offer_view(call: LiveCall, ring_timeout: float) -> OfferView:
    assert call.offered_at is not None
    return OfferView(
        consultation_id=call.id,
        department=call.department,
        case_number=call.case_number,
        hall=call.hall,
        waiting_since=call.waiting_since,
        expires_at=call.offered_at + ring_timeout,
        ring_timeout_s=ring_timeout,
        hall_name_zh=call.hall_name_zh,
        hall_name_en=call.hall_name_en,
        waited_s=max(0.0, call.offered_at - call.waiting_since),
    )


def presence_view(presence: ExpertPresence) -> PresenceView:
    return PresenceView(
        status=presence.status.value,
        missed_in_a_row=presence.missed_in_a_row,
        wrap_up=presence.wrap_up,
        wrap_up_until=presence.wrap_up_until,
        away_reason=presence.away_reason.value if presence.away_reason else None,
    )


def queue_update(
    department: str, calls: list[LiveCall], presences: list[ExpertPresence]
) -> QueueUpdate:
    return QueueUpdate(
        department=department,
        entries=[
            QueueEntryView(
                consultation_id=c.id,
                state=c.phase.value,
                waiting_since=c.waiting_since,
                case_number=c.case_number,
                hall=c.hall,
            )
            for c in calls
        ],
        experts=[
            ExpertView(username=p.username, status=p.status.value)
            for p in sorted(presences, key=lambda p: p.username)
        ],
    )
