"""Queue arithmetic: the wait estimate and which expert is offered next.

Pure functions, so the rules can be read and tested on their own.
"""

import math
from collections.abc import Sequence

from signaling.live import ExpertPresence, LiveCall, LiveInvitation


def mean_handle_time(samples: Sequence[float], default: float) -> float:
    return sum(samples) / len(samples) if samples else default


def estimate_wait(
    position: int, free_experts: int, online_experts: int, handle_time: float
) -> int | None:
    """Seconds until the consultation at ``position`` (1-based) is likely offered.

    None when nobody of the department is online. Positions covered by a free
    expert wait 0; the first beyond them waits for the first busy expert to
    finish (on average ``H / (n + 1)`` of a call of length H with n busy
    experts), each next one ``H / n`` more, since n experts finish n calls per H.
    """
    if online_experts <= 0:
        return None
    ahead_of_free = position - free_experts
    if ahead_of_free <= 0:
        return 0
    seconds = (
        handle_time / (online_experts + 1) + (ahead_of_free - 1) * handle_time / online_experts
    )
    return math.ceil(seconds)


def pick_expert(
    call: LiveCall | LiveInvitation, free: Sequence[ExpertPresence]
) -> ExpertPresence | None:
    """The longest-idle free expert who has not declined this call; one who let
    it ring out before comes only after everyone who has not. An invitation rings
    each staff member once (declined or let ring out), and never one in the call."""
    if isinstance(call, LiveInvitation):
        candidates = [p for p in free if p.expert_id not in call.rung]
        return min(candidates, key=lambda p: p.idle_since) if candidates else None
    candidates = [
        p for p in free if p.expert_id not in call.declined_by and p.expert_id not in call.seat_ids
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (p.expert_id in call.missed_by, p.idle_since))
