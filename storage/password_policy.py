"""Which passwords staff accounts may not have.

Length alone let eight spaces, eight NULs, ``12345678`` and ``admin123`` through.
The rule (explained on the admin page): at least 8 characters, not blank, no
control characters, not one of the passwords guessing tools try first (a short
list shipped here, compared ignoring case and trailing digits/punctuation), not
the username, not one character repeated, not only digits.
"""

import functools
import re
import unicodedata
from enum import StrEnum
from pathlib import Path

MIN_LENGTH = 8
_LIST = Path(__file__).with_name("common_passwords.txt")
_TRAILING = re.compile(r"[\d\W_]+$")


class Weakness(StrEnum):
    TOO_SHORT = "too_short"
    BLANK = "blank"
    CONTROL_CHARACTERS = "control_characters"
    COMMON = "common"
    USERNAME = "contains_username"
    REPETITIVE = "repetitive"
    DIGITS_ONLY = "digits_only"


MESSAGES = {
    Weakness.TOO_SHORT: f"the password needs at least {MIN_LENGTH} characters",
    Weakness.BLANK: "the password cannot be blank or only spaces",
    Weakness.CONTROL_CHARACTERS: "the password cannot contain control characters",
    Weakness.COMMON: "this password is on the list of common passwords; choose another",
    Weakness.USERNAME: "the password cannot contain the username",
    Weakness.REPETITIVE: "the password cannot be one character repeated",
    Weakness.DIGITS_ONLY: "the password cannot be only digits (dates and phone numbers are "
    "guessed first)",
}


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = _LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and line[0] != "#")


def _is_common(password: str) -> bool:
    lowered = password.lower()
    listed = common_passwords()
    if lowered in listed:
        return True
    # "Password2026!" and "admin123" are the listed word with a suffix.
    stem = _TRAILING.sub("", lowered)
    return bool(stem) and stem in listed


def weakness(password: str, username: str, *, staff: bool) -> Weakness | None:
    """Why ``password`` is refused for this account, or None. Kiosk accounts (set up
    by an operator, typed on no keyboard) get the structural checks only."""
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in password):
        return Weakness.CONTROL_CHARACTERS
    if not password.strip():
        return Weakness.BLANK
    if len(password) < MIN_LENGTH:
        return Weakness.TOO_SHORT
    if not staff:
        return None
    if len(set(password)) == 1:
        return Weakness.REPETITIVE
    if password.isdigit():
        return Weakness.DIGITS_ONLY
    if username and username.lower() in password.lower():
        return Weakness.USERNAME
    if _is_common(password):
        return Weakness.COMMON
    return None
