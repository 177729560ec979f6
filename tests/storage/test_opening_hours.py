"""Departments' usual hours: open now, and the next opening, as a table."""

from datetime import datetime, timedelta, timezone

import pytest

from storage.opening_hours import UsualHours, next_opening, open_at, parse_hours

SHANGHAI = timezone(timedelta(hours=8))
# 2026-03-02 is a Monday.
MONDAY = datetime(2026, 3, 2, tzinfo=SHANGHAI)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """ISO weekday ``day`` of that week, at hour:minute, Shanghai time."""
    return MONDAY + timedelta(days=day - 1, hours=hour, minutes=minute)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1-5 09:00-17:00", UsualHours(frozenset({1, 2, 3, 4, 5}), 540, 1020)),
        ("6-2 10:00-24:00", UsualHours(frozenset({6, 7, 1, 2}), 600, 1440)),
        ("3-3 08:30-12:00", UsualHours(frozenset({3}), 510, 720)),
        ("1-5 17:00-09:00", None),  # closes before it opens
        ("1-5 09:00-09:00", None),
        ("1-5 24:00-24:00", None),
        ("1-5 09:00-24:30", None),
        ("0-5 09:00-17:00", None),
        ("weekdays", None),
        ("", None),
    ],
)
def test_usual_hours_are_read_from_the_departments_text(
    text: str, expected: UsualHours | None
) -> None:
    assert parse_hours(text) == expected


WEEKDAYS = parse_hours("1-5 09:00-17:00")
WEEKEND = parse_hours("6-7 10:00-16:00")
WRAPPING = parse_hours("6-2 10:00-24:00")


@pytest.mark.parametrize(
    ("hours", "now", "is_open", "opens"),
    [
        # Within the hours: open; the next opening is the next day's.
        (WEEKDAYS, at(1, 10), True, at(2, 9)),
        # Before opening on a working day: today's opening.
        (WEEKDAYS, at(3, 8, 59), False, at(3, 9)),
        # The opening minute itself is open; the closing minute is not.
        (WEEKDAYS, at(3, 9), True, at(4, 9)),
        (WEEKDAYS, at(3, 17), False, at(4, 9)),
        # Friday evening and the weekend: Monday.
        (WEEKDAYS, at(5, 18), False, at(8, 9)),
        (WEEKDAYS, at(6, 12), False, at(8, 9)),
        (WEEKDAYS, at(7, 23, 59), False, at(8, 9)),
        (WEEKEND, at(3, 12), False, at(6, 10)),
        (WEEKEND, at(7, 15, 59), True, at(13, 10)),
        # A span of days across the week's end, open until midnight.
        (WRAPPING, at(7, 23, 30), True, at(8, 10)),
        (WRAPPING, at(3, 12), False, at(6, 10)),
        (WRAPPING, at(2, 9), False, at(2, 10)),
    ],
)
def test_open_now_and_the_next_opening(
    hours: UsualHours | None, now: datetime, is_open: bool, opens: datetime
) -> None:
    assert hours is not None
    assert open_at(hours, now) is is_open
    assert next_opening(hours, now) == opens
    assert next_opening(hours, now).utcoffset() == timedelta(hours=8)
