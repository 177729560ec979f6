"""A department's usual hours ("1-5 09:00-17:00": ISO weekdays from-to, a time
span) as the kiosk needs them: open now or not, and when it next opens.

Pure functions of the text and a local, time-zone-aware moment (the server's
local time, as the board's "today": run the server in the city's time zone).
A span of days may wrap the week ("6-2": Saturday to Tuesday); "24:00" closes
at midnight.
"""

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

_HOURS = re.compile(r"^([1-7])-([1-7]) ([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9])$")


@dataclass(frozen=True)
class UsualHours:
    days: frozenset[int]
    """ISO weekdays (Monday 1 .. Sunday 7)."""
    opens: int
    """Minutes after midnight."""
    closes: int
    """Minutes after midnight (1440: midnight at the end of the day)."""


def parse_hours(text: str) -> UsualHours | None:
    """The hours ``text`` names, or None when it names none (a bad value, or a span
    that closes before it opens)."""
    match = _HOURS.match(text)
    if match is None:
        return None
    first, last, oh, om, ch, cm = (int(g) for g in match.groups())
    opens, closes = oh * 60 + om, ch * 60 + cm
    if oh > 23 or closes > 24 * 60 or closes <= opens:
        return None
    span = range(first, last + 1) if first <= last else [*range(first, 8), *range(1, last + 1)]
    return UsualHours(frozenset(span), opens, closes)


def _minutes(moment: datetime) -> int:
    return moment.hour * 60 + moment.minute


def open_at(hours: UsualHours, moment: datetime) -> bool:
    """Whether ``moment`` falls within the usual hours."""
    return moment.isoweekday() in hours.days and hours.opens <= _minutes(moment) < hours.closes


def next_opening(hours: UsualHours, moment: datetime) -> datetime:
    """The first opening strictly after ``moment`` (in ``moment``'s time zone)."""
    opening = time(hours.opens // 60, hours.opens % 60)
    for offset in range(8):
        day = moment.date() + timedelta(days=offset)
        if day.isoweekday() not in hours.days:
            continue
        start = datetime.combine(day, opening, tzinfo=moment.tzinfo)
        if start > moment:
            return start
    raise AssertionError("every week has an opening day")  # days is never empty
