"""Listening in and stepping in (``signaling.supervision``) as tables: pure
transitions on a call's live state, no sockets, no relay."""

import dataclasses

import pytest

from signaling.effects import AuditOnly, CloseLeg, JoinCall
from signaling.errors import CallFull, InvalidState, ListenedAlready
from signaling.live import (
    LISTEN_CLAIM_SECONDS,
    Listener,
    LiveCall,
    OpenCall,
    Phase,
    Seat,
    StaffRole,
    Transfer,
    call_key,
)
from signaling.supervision import listen, listen_closed, listener_media, step_in, stop_listening
from signaling.transitions import Snapshot
from signaling.views import consultation_view
from storage.records import Account, Role

SUPERVISOR = Account("id-sup", "supervisor", Role.SUPERVISOR, None, None, "督查", False, 0.0)
OTHER = Account("id-sup2", "supervisor2", Role.SUPERVISOR, None, None, "督查二", False, 0.0)


def seat(position: int, role: StaffRole = StaffRole.EXPERT) -> Seat:
    return Seat(position, f"id-p{position}", f"staff{position}", role, "tax", 2.0)


def active(*positions: int, listener: Listener | None = None) -> LiveCall:
    return LiveCall(
        id="c1",
        department="tax",
        kiosk_id="id-kiosk",
        kiosk_username="kiosk01",
        hall=None,
        case_number=None,
        phase=Phase.ACTIVE,
        waiting_since=1.0,
        expert_id="id-p1",
        active_at=2.0,
        relay="w1",
        seats=tuple(seat(p) for p in positions),
        listener=listener,
    )


def put_call(decision: object) -> LiveCall | None:
    value = decision.commit.put.get(call_key("c1"))  # type: ignore[attr-defined]
    assert value is None or isinstance(value, LiveCall)
    return value


@pytest.mark.parametrize(
    ("positions", "expected"),
    [((1,), 3), ((1, 2), 3), ((1, 3), 2), ((1, 2, 3), None)],
    ids=["two", "three", "hole", "four"],
)
def test_a_listener_takes_the_highest_free_position(
    positions: tuple[int, ...], expected: int | None
) -> None:
    s = Snapshot(now=10.0, call=active(*positions))
    if expected is None:
        with pytest.raises(CallFull):
            listen(s, SUPERVISOR, "tok", "127.0.0.1")
        return
    d = listen(s, SUPERVISOR, "tok", "127.0.0.1")
    after = put_call(d)
    assert after is not None and after.listener is not None
    assert after.listener.position == expected
    assert after.listener.token == "tok" and not after.listener.connected
    assert isinstance(d.record, AuditOnly) and d.record.audit.action == "consultation.listen"
    # Hidden from the participants; the staff's views say so, the kiosk's never.
    assert after.account_at(expected) is None
    assert consultation_view(after, 1).listened
    assert not consultation_view(after, 0).listened
    assert not consultation_view(
        dataclasses.replace(after, listener=dataclasses.replace(after.listener, notice=False)), 1
    ).listened


@pytest.mark.parametrize(
    ("connected", "age", "refused"),
    [(True, 1.0, True), (True, 3600.0, True), (False, 1.0, True), (False, 60.0, False)],
    ids=["up", "up-long", "young-claim", "stale-claim"],
)
def test_one_listener_per_call(connected: bool, age: float, refused: bool) -> None:
    """A second supervisor is refused while the first's media is up or on its way;
    a claim whose media never came is taken over (its leg closed)."""
    assert LISTEN_CLAIM_SECONDS < 60.0
    first = Listener(SUPERVISOR.id, SUPERVISOR.username, 3, "t1", 100.0, connected=connected)
    s = Snapshot(now=100.0 + age, call=active(1, listener=first))
    if refused:
        with pytest.raises(ListenedAlready):
            listen(s, OTHER, "t2", "")
        return
    d = listen(s, OTHER, "t2", "")
    after = put_call(d)
    assert after is not None and after.listener is not None
    assert after.listener.account_id == OTHER.id
    assert CloseLeg("c1", "w1", 3) in d.effects


def test_listening_again_renews_the_token_at_the_same_position() -> None:
    first = Listener(SUPERVISOR.id, SUPERVISOR.username, 2, "t1", 100.0, connected=True)
    d = listen(Snapshot(now=101.0, call=active(1, 3, listener=first)), SUPERVISOR, "t2", "")
    after = put_call(d)
    assert after is not None and after.listener is not None
    assert (after.listener.position, after.listener.token) == (2, "t2")
    assert CloseLeg("c1", "w1", 2) in d.effects


@pytest.mark.parametrize("phase", [Phase.WAITING, Phase.OFFERED])
def test_no_listening_before_the_call(phase: Phase) -> None:
    call = dataclasses.replace(active(), phase=phase, seats=())
    with pytest.raises(InvalidState):
        listen(Snapshot(now=1.0, call=call), SUPERVISOR, "t", "")


def test_the_listen_ends_with_the_call_s_shape() -> None:
    """One rule in the value: a transfer, an end of the active phase, a participant at
    the listener's position each leave no listener; the listening leg closes unless
    a participant took its position."""
    listener = Listener(SUPERVISOR.id, SUPERVISOR.username, 3, "t", 1.0, connected=True)
    before = active(1, 2, listener=listener)
    joined = dataclasses.replace(before, seats=(*before.seats, seat(3)))
    assert joined.listener is None
    assert listen_closed(before, joined) is None  # the joiner's leg replaces it
    transfer = Transfer("land", "why", "staff1", "staff1", "tax", 5.0)
    moved = dataclasses.replace(before, phase=Phase.WAITING, transfer=transfer, seats=())
    assert moved.listener is None
    assert listen_closed(before, moved) == CloseLeg("c1", "w1", 3)
    assert listen_closed(before, None) == CloseLeg("c1", "w1", 3)  # ended
    assert listen_closed(before, before) is None
    # The value read back from the shared store keeps its listener.
    again = LiveCall.from_json(before.to_json(), 1)
    assert again.listener == listener


def test_stopping_and_losing_the_media() -> None:
    listener = Listener(SUPERVISOR.id, SUPERVISOR.username, 3, "t", 1.0)
    s = Snapshot(now=5.0, call=active(1, listener=listener))
    # Another supervisor's stop changes nothing.
    assert put_call(stop_listening(s, OTHER, "")) is None
    d = stop_listening(s, SUPERVISOR, "")
    after = put_call(d)
    assert after is not None and after.listener is None
    assert CloseLeg("c1", "w1", 3) in d.effects
    assert isinstance(d.record, AuditOnly) and d.record.audit.detail["reason"] == "stopped"
    up = put_call(listener_media(s, 3, "connected"))
    assert up is not None and up.listener is not None and up.listener.connected
    assert put_call(listener_media(s, 2, "lost")) is None  # not the listener's leg
    lost = listener_media(s, 3, "lost")
    gone = put_call(lost)
    assert gone is not None and gone.listener is None
    assert isinstance(lost.record, AuditOnly) and lost.record.audit.detail["reason"] == "media_lost"


def test_stepping_in_is_taking_part() -> None:
    listener = Listener(SUPERVISOR.id, SUPERVISOR.username, 3, "t", 1.0, connected=True)
    s = Snapshot(now=5.0, call=active(1, listener=listener))
    d = step_in(s, SUPERVISOR, "seat-token", "")
    after = put_call(d)
    assert after is not None
    supervisor_seat = after.seat_of(SUPERVISOR.id)
    assert supervisor_seat is not None
    assert (supervisor_seat.position, supervisor_seat.role) == (2, StaffRole.SUPERVISOR)
    assert after.token_of("p2") == "seat-token"
    assert after.listener is None  # their own listening ended, its leg closed
    assert CloseLeg("c1", "w1", 3) in d.effects
    assert isinstance(d.record, JoinCall) and d.record.role is Role.SUPERVISOR
    assert d.record.invitation is None
    assert OpenCall(SUPERVISOR.id, "c1") in d.commit.put.values()
    # Everyone sees them.
    roles = [p.role for p in consultation_view(after, 0).participants]
    assert roles == ["kiosk", "expert", "supervisor"]
    # Another's listening goes on while there is room for both.
    other = Listener(OTHER.id, OTHER.username, 3, "t", 1.0, connected=True)
    d2 = step_in(Snapshot(now=5.0, call=active(1, listener=other)), SUPERVISOR, "x", "")
    kept = put_call(d2)
    assert kept is not None and kept.listener == other


def test_stepping_into_a_full_call_is_refused() -> None:
    with pytest.raises(CallFull):
        step_in(Snapshot(now=5.0, call=active(1, 2, 3)), SUPERVISOR, "x", "")
