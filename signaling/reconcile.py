"""Records and live state made to agree again, decided as a pure function.

A transition writes its records, then commits the live state. When the second
step never happens (Redis unreachable at that moment, the process stopped or
killed between the two), the two disagree, and nothing a participant can do
repairs it: a kiosk whose consultation is open in the records but absent from
the live state is refused every new request (``already_in_consultation``) while
cancel and end answer ``not_found``. The reverse, a live call whose record has
ended, is offered or held on to without anyone being able to end it.

``plan_repairs`` looks at the open records and the live calls and says what to
do with each disagreement; ``signaling.hub`` gathers what it needs (at start,
then every ``RECONCILE_EVERY`` seconds on one node of the deployment at a time,
and for a kiosk refused a request) and ``ConsultationService.repair`` applies it
through the executor, so that a transition that is still racing it is caught by
the live commit's compare-and-set.

What is done (docs/DECISIONS.md, "Records and live state"):

- An open record without its live call ends as ``dropped`` by ``system``, with
  an audit entry saying why (``repair: no_live_state``). It is not put back in
  the queue: the citizen was told the request failed, and a kiosk is a shared
  terminal, so a consultation reappearing minutes later could reach the next
  citizen standing there.
- A live call whose record has ended (or is missing: records restored from an
  older backup) is removed from the live state as the record says it ended;
  both sides are told.
- A record that says active while its live call is still waiting or ringing (an
  accept whose live commit failed: nobody can accept it again) ends as
  ``dropped`` in both.

Only disagreements older than ``SETTLE`` seconds are repaired: between a
transition's two steps the two disagree for a moment, which is no fault.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from signaling.live import LiveCall, Phase
from storage.records import ConsultationRecord, ConsultationState, EndReason

SETTLE = 30.0
"""Seconds a disagreement must have lasted before it is repaired: a transition's
records and live commit are milliseconds apart, and one whose live commit fails
fails at once (the store's timeout is 2 s)."""
RECONCILE_EVERY = 30.0
"""Seconds between two passes of the deployment (one node at a time)."""


class Mismatch(StrEnum):
    """Why a consultation needs repairing; written in its audit entry."""

    NO_LIVE_STATE = "no_live_state"
    """An open record whose live call is gone (or never was)."""
    RECORD_ENDED = "record_ended"
    """A live call whose record has ended."""
    NO_RECORD = "no_record"
    """A live call without any record."""
    NOT_ACTIVE_LIVE = "not_active_live"
    """A record that says active while its live call waits or rings."""


@dataclass(frozen=True)
class Repair:
    """One consultation to end where it is still open: in the records (with an
    audit entry), in the live state, or both."""

    consultation_id: str
    mismatch: Mismatch
    reason: EndReason
    """The end reason the records get (or already have)."""
    write_record: bool
    """Whether the records still need the end (False: they have it already)."""
    offered_at: float | None = None
    """The record's, kept as it is by the end written."""


def _last_change(record: ConsultationRecord) -> float:
    return max(t for t in (record.waiting_at, record.active_at, record.ended_at) if t is not None)


def _live_since(call: LiveCall) -> float:
    return max(t for t in (call.waiting_since, call.offered_at, call.active_at) if t is not None)


def disagreement(
    record: ConsultationRecord | None, call: LiveCall | None
) -> tuple[Mismatch, float] | None:
    """How a consultation's record and live call disagree, and since when (the later
    of their last changes); None when they agree."""
    if call is None:
        if record is None or record.state is ConsultationState.ENDED:
            return None
        return Mismatch.NO_LIVE_STATE, _last_change(record)
    if record is None:
        return Mismatch.NO_RECORD, _live_since(call)
    if record.state is ConsultationState.ENDED:
        return Mismatch.RECORD_ENDED, _last_change(record)
    if record.state is ConsultationState.ACTIVE and call.phase is not Phase.ACTIVE:
        return Mismatch.NOT_ACTIVE_LIVE, _last_change(record)
    return None


def plan_repairs(
    records: Mapping[str, ConsultationRecord | None],
    live: Mapping[str, LiveCall],
    now: float,
    settle: float = SETTLE,
) -> list[Repair]:
    """What to repair, by consultation id (sorted). ``records``: the open records
    and the records of the live calls (None where a live call has none); ``live``:
    the live calls found, by id."""
    repairs: list[Repair] = []
    for consultation_id in sorted(set(records) | set(live)):
        record = records.get(consultation_id)
        found = disagreement(record, live.get(consultation_id))
        if found is None or now - found[1] < settle:
            continue
        mismatch = found[0]
        if mismatch is Mismatch.RECORD_ENDED:
            assert record is not None
            reason = record.end_reason or EndReason.DROPPED
            repairs.append(Repair(consultation_id, mismatch, reason, False))
        elif mismatch is Mismatch.NO_RECORD:
            repairs.append(Repair(consultation_id, mismatch, EndReason.DROPPED, False))
        else:
            assert record is not None
            repairs.append(
                Repair(consultation_id, mismatch, EndReason.DROPPED, True, record.offered_at)
            )
    return repairs
