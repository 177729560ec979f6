"""Board figures from records: which consultations count, and how."""

from storage.records import EndReason
from storage.statistics import Timing, hourly, percentile, summarise

T0 = 1_800_000_000.0


def record(
    waiting_at: float,
    *,
    wait: float | None,
    handle: float | None = None,
    reason: EndReason | None = EndReason.COMPLETED,
    rating: int | None = None,
) -> Timing:
    active = None if wait is None else waiting_at + wait
    ended = None
    if reason is not None:
        ended = (active or waiting_at) + (handle or 1.0)
    return Timing(waiting_at, active, ended, reason.value if reason else None, rating)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.9) == 9.0
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([], 0.5) is None


def test_summary_counts_waits_of_answered_and_abandonment_of_ended() -> None:
    records = [
        record(T0, wait=10, handle=100, rating=5),
        record(T0 + 1, wait=30, handle=300, rating=3),
        record(T0 + 2, wait=None, reason=EndReason.ABANDONED),
        record(T0 + 3, wait=None, reason=EndReason.NO_EXPERT),
        # An admin's withdrawal is neither answered nor abandoned.
        record(T0 + 4, wait=None, reason=EndReason.CANCELLED),
        # Still in the call: its wait counts, it is not yet "ended".
        record(T0 + 5, wait=20, reason=None),
    ]
    summary = summarise(records)
    assert summary.consultations == 6
    assert summary.answered == 3
    assert summary.median_wait_s == 20
    assert summary.p90_wait_s == 30
    assert summary.median_handle_s == 100
    assert summary.abandonment_rate == 2 / 5
    assert summary.average_rating == 4.0 and summary.ratings == 2


def test_empty_day_has_no_figures_rather_than_zeros() -> None:
    summary = summarise([])
    assert summary.consultations == 0
    assert summary.median_wait_s is None and summary.abandonment_rate is None
    assert summary.average_rating is None


def test_hourly_buckets_by_queue_time() -> None:
    records = [
        record(T0 - 1, wait=5),  # before the span: ignored
        record(T0, wait=5),
        record(T0 + 3599, wait=15),
        record(T0 + 3600, wait=None, reason=EndReason.ABANDONED),
        record(T0 + 3 * 3600, wait=5),  # after the span: ignored
    ]
    buckets = hourly(records, T0, 3)
    assert [b.start for b in buckets] == [T0, T0 + 3600, T0 + 7200]
    assert [b.consultations for b in buckets] == [2, 1, 0]
    assert [b.median_wait_s for b in buckets] == [5, None, None]
