"""Citizen identity numbers (公民身份号码, GB 11643-1999): 18 characters, a 6-digit
address code, the date of birth (YYYYMMDD), a 3-digit sequence and a check
character (ISO 7064 MOD 11-2: a digit or X).

``problem`` says which part of a typed number is wrong (the kiosk shows it while
the citizen types, web/static/js/idnumber.js being the same rule in the page);
a pure function, tested as a table.
"""

import datetime
from enum import StrEnum

from storage.sensitive import normalize

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class Problem(StrEnum):
    LENGTH = "length"
    """Not 18 characters."""
    CHARACTERS = "characters"
    """Not 17 digits followed by a digit or X."""
    REGION = "region"
    """The address code cannot be one (its first digit is 1-8)."""
    BIRTH_DATE = "birth_date"
    """Characters 7-14 are no real date of birth (or one in the future)."""
    CHECK = "check"
    """The last character does not match the check of the first 17."""


def check_character(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def problem(value: str, today: datetime.date | None = None) -> Problem | None:
    """What is wrong with ``value`` (lower-case x, spaces and dashes allowed), or None."""
    number = normalize(value)
    if len(number) != 18:
        return Problem.LENGTH
    if not (number[:17].isascii() and number[:17].isdigit()) or number[17] not in "0123456789X":
        return Problem.CHARACTERS
    if number[0] not in "12345678":
        return Problem.REGION
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return Problem.BIRTH_DATE
    if born.year < 1900 or born > (today or datetime.date.today()):
        return Problem.BIRTH_DATE
    if check_character(number[:17]) != number[17]:
        return Problem.CHECK
    return None


def is_valid(value: str) -> bool:
    return problem(value) is None
