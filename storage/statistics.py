"""Service figures computed from consultation records: a day's summary and the
hourly volume and wait of recent days, as shown on the admin board.

Definitions (docs/DECISIONS.md, "Board figures"):
- wait: from joining the queue to an expert answering, for answered consultations;
- handle time: from answering to the end;
- abandoned: ended before any expert answered, by the citizen leaving or nobody
  being online (``abandoned``, ``no_expert``); an admin's withdrawal is not counted;
- abandonment rate: abandoned / ended consultations of the period;
- percentiles by nearest rank.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from storage.records import ConsultationRecord, ConsultationState, EndReason

_ABANDONED = frozenset({EndReason.ABANDONED, EndReason.NO_EXPERT})


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (0 < fraction <= 1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def wait_of(record: ConsultationRecord) -> float | None:
    if record.active_at is None:
        return None
    return record.active_at - record.waiting_at


def handle_time_of(record: ConsultationRecord) -> float | None:
    if record.active_at is None or record.ended_at is None:
        return None
    return record.ended_at - record.active_at


@dataclass(frozen=True)
class Summary:
    consultations: int
    answered: int
    median_wait_s: float | None
    p90_wait_s: float | None
    median_handle_s: float | None
    abandonment_rate: float | None
    average_rating: float | None
    ratings: int


def summarise(records: Sequence[ConsultationRecord]) -> Summary:
    waits = [w for w in map(wait_of, records) if w is not None]
    handles = [h for h in map(handle_time_of, records) if h is not None]
    ended = [r for r in records if r.state is ConsultationState.ENDED]
    abandoned = sum(1 for r in ended if r.end_reason in _ABANDONED)
    ratings = [r.rating for r in records if r.rating is not None]
    return Summary(
        consultations=len(records),
        answered=len(waits),
        median_wait_s=percentile(waits, 0.5),
        p90_wait_s=percentile(waits, 0.9),
        median_handle_s=percentile(handles, 0.5),
        abandonment_rate=abandoned / len(ended) if ended else None,
        average_rating=sum(ratings) / len(ratings) if ratings else None,
        ratings=len(ratings),
    )


@dataclass(frozen=True)
class HourBucket:
    start: float
    consultations: int
    median_wait_s: float | None


def hourly(records: Sequence[ConsultationRecord], start: float, hours: int) -> list[HourBucket]:
    """``hours`` one-hour buckets from ``start`` by the time each consultation
    joined the queue; records outside the span are ignored."""
    counts = [0] * hours
    waits: list[list[float]] = [[] for _ in range(hours)]
    for record in records:
        index = math.floor((record.waiting_at - start) / 3600)
        if not 0 <= index < hours:
            continue
        counts[index] += 1
        wait = wait_of(record)
        if wait is not None:
            waits[index].append(wait)
    return [
        HourBucket(start + 3600 * i, counts[i], percentile(waits[i], 0.5)) for i in range(hours)
    ]
