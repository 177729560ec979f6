"""A service-centre supervisor listening in on a call or stepping into it (issue
23). Listening: receiving its media without sending any, at a position nobody
holds, shown to nobody as a participant. Stepping in: taking part like anyone
else, at the lowest free position, shown to everyone (``StaffRole.SUPERVISOR``).
Pure transitions on the call's live state, like ``signaling.transitions``; whether
the supervisor's scope covers the call is the caller's to check (it needs the
records).

One listener per call. The claim is taken with the listen request and holds while
the listener's media is up (or for ``LISTEN_CLAIM_SECONDS`` while it is on its
way); it ends when the supervisor stops, when their media is lost, and with the
call's shape (``LiveCall``: the call ends or is transferred, or a participant
joins at the listener's position). Whenever it ends, the listening leg at the
relay closes (``listen_closed``).
"""

import dataclasses

from signaling.effects import AuditOnly, CloseLeg, Decision, JoinCall
from signaling.errors import CallFull, InvalidState, ListenedAlready, NotFound
from signaling.live import (
    MAX_PARTICIPANTS,
    Listener,
    LiveCall,
    OpenCall,
    Phase,
    Seat,
    StaffRole,
    seat_name,
)
from signaling.transitions import Snapshot, _audit, _tell_everyone
from storage.records import Account, Role


def _active(s: Snapshot) -> LiveCall:
    call = s.call
    if call is None:
        raise NotFound("no open consultation with this id")
    if call.phase is not Phase.ACTIVE or call.in_transfer:
        raise InvalidState("a call is listened to while it is going on")
    return call


def listen(
    s: Snapshot, supervisor: Account, token: str, remote: str, *, notice: bool = True
) -> Decision:
    """The supervisor starts listening (again: a new media token, the same
    position). Refused while another supervisor holds the claim, and in a call of
    four (no position is free). The reply is the call with its listener."""
    call = _active(s)
    current = call.listener
    if current is not None and current.account_id != supervisor.id and current.holds_claim(s.now):
        raise ListenedAlready("another supervisor is listening to this call")
    if current is not None and current.account_id == supervisor.id:
        position: int | None = current.position
    else:
        position = call.listen_position()
    if position is None:
        raise CallFull("four take part in this call: there is no room to listen")
    listener = Listener(supervisor.id, supervisor.username, position, token, s.now, notice=notice)
    after = dataclasses.replace(call, listener=listener)
    d = Decision(
        record=AuditOnly(
            _audit(
                supervisor.username,
                "consultation.listen",
                call.id,
                remote,
                position=position,
                notice=notice,
                took_over=current.username
                if current is not None and current.account_id != supervisor.id
                else None,
            )
        )
    )
    d.put(after)
    if current is not None:
        # A claim taken over (or one's own earlier leg): that leg goes.
        d.effects.append(CloseLeg(call.id, call.relay, current.position))
    _tell_everyone(d, s, after)
    d.reply = after
    return d


def stop_listening(s: Snapshot, supervisor: Account, remote: str) -> Decision:
    """The supervisor stops (nothing to do when they are not listening)."""
    call = s.call
    if call is None or call.listener is None or call.listener.account_id != supervisor.id:
        return Decision()
    d = Decision(
        record=AuditOnly(
            _audit(
                supervisor.username, "consultation.listen_end", call.id, remote, reason="stopped"
            )
        )
    )
    after = dataclasses.replace(call, listener=None)
    d.put(after)
    d.effects.append(CloseLeg(call.id, call.relay, call.listener.position))
    _tell_everyone(d, s, after)
    return d


def listener_media(s: Snapshot, position: int, status: str) -> Decision:
    """The relay reports the listening leg: connected (the claim holds from now on)
    or lost (the listen ends: a page closed, a network gone)."""
    call = s.call
    listener = None if call is None else call.listener
    if call is None or listener is None or listener.position != position:
        return Decision()
    d = Decision()
    if status == "lost":
        d.record = AuditOnly(
            _audit(listener.username, "consultation.listen_end", call.id, "", reason="media_lost")
        )
        after = dataclasses.replace(call, listener=None)
        d.effects.append(CloseLeg(call.id, call.relay, listener.position))
        d.put(after)
        _tell_everyone(d, s, after)
    elif not listener.connected:
        d.put(dataclasses.replace(call, listener=dataclasses.replace(listener, connected=True)))
    return d


def listen_closed(before: LiveCall | None, after: LiveCall | None) -> CloseLeg | None:
    """The listening leg to close when a commit ended a listen by the call's shape
    (the call ended or was transferred: no participant holds its position then; a
    participant who took the position replaces the leg themselves)."""
    if before is None or before.listener is None:
        return None
    listener = before.listener
    if after is not None and after.listener is not None:
        return None
    if after is not None and after.account_at(listener.position) is not None:
        return None
    return CloseLeg(before.id, before.relay, listener.position)


def step_in(
    s: Snapshot,
    supervisor: Account,
    token: str,
    remote: str,
    *,
    recorded: bool = False,
    department_names: tuple[str, str] | None = None,
) -> Decision:
    """The supervisor joins the call as a participant, at the lowest free position,
    with a media token of their own; everyone is told (the kiosk shows them like
    anyone else). Their listening, if they listened, ends. Refused in a call of four
    (open invitations count, as for an invitation). The reply is the call."""
    call = s.call
    if call is None:
        raise NotFound("no open consultation with this id")
    if call.seat_of(supervisor.id) is not None:
        return Decision(reply=call)  # in it already (or the records' retry)
    if call.phase is not Phase.ACTIVE or call.in_transfer:
        if recorded:
            return Decision()
        raise InvalidState("a supervisor steps into a call while it is going on")
    position = call.free_position()
    if position is None or 1 + len(call.seats) + len(call.invitations) >= MAX_PARTICIPANTS:
        raise CallFull("four take part in this call (or are invited) already")
    d = Decision()
    if not recorded:
        d.record = JoinCall(
            call.id,
            supervisor.id,
            Role.SUPERVISOR,
            call.department,
            position,
            s.now,
            None,
            supervisor.username,
            None,
            _audit(
                supervisor.username,
                "consultation.step_in",
                call.id,
                remote,
                position=position,
                listened=call.listener is not None and call.listener.account_id == supervisor.id,
            ),
        )
    seat = Seat(
        position,
        supervisor.id,
        supervisor.username,
        StaffRole.SUPERVISOR,
        call.department,
        s.now,
        supervisor.display_name,
        department_names[0] if department_names else None,
        department_names[1] if department_names else None,
    )
    tokens = dict(call.media_tokens)
    tokens[seat_name(position)] = token
    listener = call.listener
    own_listen = listener is not None and listener.account_id == supervisor.id
    after = dataclasses.replace(
        call,
        seats=(*call.seats, seat),
        media_tokens=tuple(sorted(tokens.items())),
        listener=None if own_listen else listener,
    )
    d.put(after)
    d.put(OpenCall(supervisor.id, call.id))
    if own_listen and listener is not None and listener.position != position:
        # Their listening leg goes; the one at their new position is theirs to offer.
        d.effects.append(CloseLeg(call.id, call.relay, listener.position))
    _tell_everyone(d, s, after)
    d.reply = after
    return d
