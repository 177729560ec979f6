"""What clients are told: the live values turned into the payloads of
``signaling.messages`` (each participant sees only its own media access)."""

from collections.abc import Mapping

from signaling.live import (
    KIOSK_POSITION,
    ExpertPresence,
    LiveCall,
    LiveInvitation,
    Phase,
    Seat,
    StaffRole,
    media_url,
    position_of_name,
    seat_name,
)
from signaling.messages import (
    ConsultationView,
    ExpertView,
    FileView,
    InvitationState,
    InvitationView,
    InviterView,
    MediaAccess,
    OfferView,
    ParticipantView,
    PresenceView,
    QueueEntryView,
    QueueUpdate,
    TransferView,
)
from storage.documents import StoredFile
from storage.records import ConsultationRecord
from storage.references import reference_of


def _connected(call: LiveCall, position: int) -> bool:
    name = seat_name(position)
    return call.dropped_since(name) is None and call.dropped_since(f"media:{name}") is None


def _seat_view(call: LiveCall, seat: Seat) -> ParticipantView:
    # A supervisor who stepped in speaks for the service centre, not for the
    # department whose call it is (their seat's department is only the record's).
    supervisor = seat.role is StaffRole.SUPERVISOR
    return ParticipantView(
        position=seat.position,
        role=seat.role.value,
        username=seat.username,
        name=seat.name or seat.username,
        department=None if supervisor else seat.department,
        department_name_zh=seat.department_name_zh,
        department_name_en=seat.department_name_en,
        joined_at=seat.joined_at,
        connected=_connected(call, seat.position),
    )


def participant_views(call: LiveCall) -> list[ParticipantView]:
    """Everyone in the call now: the kiosk (position 0), then the staff by position."""
    kiosk = ParticipantView(
        position=KIOSK_POSITION,
        role="kiosk",
        username=call.kiosk_username,
        name=call.kiosk_name or call.kiosk_username,
        department=None,
        joined_at=call.waiting_since,
        connected=_connected(call, KIOSK_POSITION),
    )
    return [kiosk, *(_seat_view(call, s) for s in call.seats)]


def invitation_view(
    call_id: str,
    invitation: LiveInvitation,
    state: InvitationState | None = None,
    *,
    for_kiosk: bool = False,
) -> InvitationView:
    """``state``: what just became of it (default: ringing or waiting, as it is)."""
    if state is None:
        state = "ringing" if invitation.phase is Phase.OFFERED else "waiting"
    return InvitationView(
        invitation_id=invitation.id,
        consultation_id=call_id,
        department=invitation.department,
        state=state,
        note=None if for_kiosk else invitation.note,
        created_at=invitation.created_at,
        by=invitation.by_username,
    )


def _in_call(call: LiveCall) -> bool:
    return call.phase is Phase.ACTIVE or call.in_transfer


def consultation_view(
    call: LiveCall,
    you: int | str | None = None,
    invitations: Mapping[str, LiveInvitation] | None = None,
) -> ConsultationView:
    """The view of the participant at position ``you`` (or a side's name, "kiosk" or
    "expert"): its own media access while it is in the call, nobody else's.
    ``invitations``: the call's open invitations as they are now (without them, each
    is shown as waiting)."""
    position = position_of_name(you) if isinstance(you, str) else you
    if position is not None and call.account_at(position) is None:
        position = None
    token = call.token_of(seat_name(position)) if position is not None else None
    media = MediaAccess(url=media_url(call.id), token=token) if token and _in_call(call) else None
    for_kiosk = position == KIOSK_POSITION
    found = invitations or {}
    transfer = call.transfer if call.in_transfer else None
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
        participants=participant_views(call) if _in_call(call) or call.seats else [],
        you=position if _in_call(call) or position == KIOSK_POSITION else None,
        screen=call.screen if call.phase is Phase.ACTIVE else None,
        recording=call.recording if call.phase is Phase.ACTIVE else "off",
        listened=call.listener is not None and call.listener.notice and not for_kiosk,
        invitations=[
            invitation_view(call.id, found[ref.id], for_kiosk=for_kiosk)
            if ref.id in found
            else InvitationView(
                invitation_id=ref.id,
                consultation_id=call.id,
                department=ref.department,
                state="waiting",
                note=None if for_kiosk else ref.note,
                created_at=ref.created_at,
            )
            for ref in call.invitations
        ],
        transfer=TransferView(
            department=transfer.department,
            reason=None if for_kiosk else transfer.reason,
            by=transfer.by,
            by_name=transfer.by_name,
            from_department=transfer.from_department,
        )
        if transfer is not None
        else None,
    )


def left_view(call: LiveCall, at: float, reason: str) -> ConsultationView:
    """What a staff member who left (or transferred) sees: their part has ended; the
    call goes on for the others."""
    return consultation_view(call).model_copy(
        update={
            "state": "ended",
            "ended_at": at,
            "end_reason": reason,
            "media": None,
            "you": None,
            "invitations": [],
        }
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
    transfer = call.transfer if call.in_transfer else None
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
        kind="transfer" if transfer is not None else "consultation",
        inviter=InviterView(
            username=transfer.by, name=transfer.by_name, department=transfer.from_department
        )
        if transfer is not None
        else None,
        note=transfer.reason if transfer is not None else None,
    )


def invitation_offer_view(
    invitation: LiveInvitation, call: LiveCall, ring_timeout: float
) -> OfferView:
    """The offer of an invitation into ``call``: who invites, the case, the note."""
    assert invitation.offered_at is not None
    return OfferView(
        consultation_id=call.id,
        department=call.department,
        case_number=call.case_number,
        hall=call.hall,
        waiting_since=invitation.created_at,
        expires_at=invitation.offered_at + ring_timeout,
        ring_timeout_s=ring_timeout,
        hall_name_zh=call.hall_name_zh,
        hall_name_en=call.hall_name_en,
        waited_s=max(0.0, invitation.offered_at - invitation.created_at),
        kind="invite",
        invitation_id=invitation.id,
        inviter=InviterView(
            username=invitation.by_username,
            name=invitation.by_name,
            department=invitation.by_department,
        ),
        note=invitation.note,
    )


def file_view(record: StoredFile) -> FileView:
    """A document as participants and staff see it (``file_added``, the lists)."""
    return FileView.of(record)


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
