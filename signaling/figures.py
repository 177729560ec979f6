"""Live figures of a department for the board, health and metrics."""

from collections import Counter
from dataclasses import dataclass

from signaling.messages import QueueUpdate


@dataclass(frozen=True)
class DepartmentFigures:
    queue_length: int
    longest_wait: float
    """Seconds the oldest queued consultation has waited (0 with none)."""
    active_calls: int
    experts: dict[str, int]
    """Presence status -> experts (every status present, zero included)."""


PRESENCE_STATUSES = ("available", "busy", "wrap_up", "away", "offline")


def department_figures(snapshot: QueueUpdate, now: float) -> DepartmentFigures:
    counts: Counter[str] = Counter(str(e.status) for e in snapshot.experts)
    oldest = min((e.waiting_since for e in snapshot.entries), default=None)
    return DepartmentFigures(
        queue_length=len(snapshot.entries),
        longest_wait=0.0 if oldest is None else max(0.0, now - oldest),
        # An expert is busy exactly while in a call: one call each.
        active_calls=counts.get("busy", 0),
        experts={status: counts.get(status, 0) for status in PRESENCE_STATUSES},
    )
