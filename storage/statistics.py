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

from sqlalchemy import select

from storage.database import Database
from storage.records import EndReason
from storage.schema import consultations

_ABANDONED = frozenset({EndReason.ABANDONED.value, EndReason.NO_EXPERT.value})


@dataclass(frozen=True, slots=True)
class Timing:
    """What the figures need of a consultation (a week of them is read per board)."""

    waiting_at: float
    active_at: float | None
    ended_at: float | None
    end_reason: str | None
    rating: int | None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (0 < fraction <= 1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def wait_of(record: Timing) -> float | None:
    if record.active_at is None:
        return None
    return record.active_at - record.waiting_at


def handle_time_of(record: Timing) -> float | None:
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


def summarise(records: Sequence[Timing]) -> Summary:
    waits = [w for w in map(wait_of, records) if w is not None]
    handles = [h for h in map(handle_time_of, records) if h is not None]
    ended = [r for r in records if r.ended_at is not None]
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


def hourly(records: Sequence[Timing], start: float, hours: int) -> list[HourBucket]:
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


_TIMINGS = select(
    consultations.c.waiting_at,
    consultations.c.active_at,
    consultations.c.ended_at,
    consultations.c.end_reason,
    consultations.c.rating,
)


@dataclass(frozen=True)
class _PastWeek:
    today: float
    computed_at: float
    buckets: list[HourBucket]


class ConsultationStatistics:
    """The board's figures: today's are computed from the records at every call;
    the hourly buckets of the days before are kept and recomputed when the day
    changes or after ``past_refresh`` seconds (a consultation still open across
    midnight can change them meanwhile). Buckets are 3600 s from local midnight."""

    def __init__(self, db: Database, *, past_refresh: float = 600.0) -> None:
        self._db = db
        self._past_refresh = past_refresh
        self._past: _PastWeek | None = None

    async def timings(self, start: float, end: float | None = None) -> list[Timing]:
        """Consultations that joined a queue in [start, end)."""
        query = _TIMINGS.where(consultations.c.waiting_at >= start)
        if end is not None:
            query = query.where(consultations.c.waiting_at < end)
        rows = await self._db.read(lambda conn: conn.execute(query).all())
        return [Timing(*row) for row in rows]

    async def _past_buckets(self, today: float, now: float, days: int) -> list[HourBucket]:
        past = self._past
        if past is None or past.today != today or now - past.computed_at > self._past_refresh:
            start = today - days * 86400
            timings = await self.timings(start, today)
            past = _PastWeek(today, now, hourly(timings, start, days * 24))
            self._past = past
        return past.buckets

    async def board(
        self, *, now: float, today: float, first_hour: float, hours: int
    ) -> tuple[Summary, list[HourBucket]]:
        """Today's summary and ``hours`` hourly buckets from ``first_hour`` (an hour
        start before ``today``, the local midnight) to the current hour."""
        today_timings = await self.timings(today)
        days = math.ceil((today - first_hour) / 86400)
        past = [b for b in await self._past_buckets(today, now, days) if b.start >= first_hour]
        current = hourly(today_timings, today, math.floor((now - today) / 3600) + 1)
        return summarise(today_timings), (past + current)[-hours:]
