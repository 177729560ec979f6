"""Which passwords staff accounts may not have.

Length alone let eight spaces, eight NULs, ``12345678`` and ``admin123`` through.
The rule (explained on the admin page): at least 8 characters, not blank, no
control characters, not one of the passwords guessing tools try first (a short
list shipped here, compared ignoring case and trailing digits/punctuation), not
the username, not a short block repeated (``aaaaaaaa``, ``abcdabcd``), not only
digits, not a walk along the keyboard or the alphabet (``qwertyui``, ``1qaz2wsx``,
``abcdefgh``): guessing tools generate those before any dictionary word. A walk
or a repeated block followed by digits and punctuation (``asdf2026!``) counts too.
"""

import functools
import re
import unicodedata
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

MIN_LENGTH = 8
_LIST = Path(__file__).with_name("common_passwords.txt")
_TRAILING = re.compile(r"[\d\W_]+$")

# A walk goes along one of these lines, either way: the rows and columns of the
# US layout (the one Chinese keyboards have; shifted keys count as the key they are
# on), and the alphabet.
_ROWS = ("`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./")
_COLUMNS = ("1qaz", "2wsx", "3edc", "4rfv", "5tgb", "6yhn", "7ujm", "8ik,", "9ol.", "0p;/")
_LINES = (*_ROWS, *_COLUMNS, "abcdefghijklmnopqrstuvwxyz")
_UNSHIFTED = str.maketrans('~!@#$%^&*()_+{}|:"<>?', "`1234567890-=[]\\;',./")
WALK_PIECE = 3
"""Keys along one line that count as a piece of a walk (``qwe`` + ``asd``)."""
MAX_BLOCK = 4
"""Longest block whose repetition counts as repeated (``abcd`` in ``abcdabcd``)."""
STEM = 4
"""Shortest walk or repeated block that still counts with digits or punctuation after it."""


class Weakness(StrEnum):
    TOO_SHORT = "too_short"
    BLANK = "blank"
    CONTROL_CHARACTERS = "control_characters"
    COMMON = "common"
    USERNAME = "contains_username"
    REPETITIVE = "repetitive"
    DIGITS_ONLY = "digits_only"
    KEYBOARD_WALK = "keyboard_walk"


MESSAGES = {
    Weakness.TOO_SHORT: f"the password needs at least {MIN_LENGTH} characters",
    Weakness.BLANK: "the password cannot be blank or only spaces",
    Weakness.CONTROL_CHARACTERS: "the password cannot contain control characters",
    Weakness.COMMON: "this password is on the list of common passwords; choose another",
    Weakness.USERNAME: "the password cannot contain the username",
    Weakness.REPETITIVE: "the password cannot be a short block repeated (such as aaaaaaaa, "
    "abcdabcd or 12121212)",
    Weakness.DIGITS_ONLY: "the password cannot be only digits (dates and phone numbers are "
    "guessed first)",
    Weakness.KEYBOARD_WALK: "the password cannot be neighbouring keys or letters in order "
    "(such as qwertyui, 1qaz2wsx or abcdefgh)",
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


def _on_a_line(piece: str) -> bool:
    return any(piece in line or piece in line[::-1] for line in _LINES)


def is_walk(text: str) -> bool:
    """Whether ``text`` is made of pieces of keyboard rows or columns or of the
    alphabet, either way, each at least ``WALK_PIECE`` long (``1qaz2wsx``,
    ``qweasdzxc``, ``iuytrewq``, ``!@#$%^&*``), ignoring case."""
    keys = text.lower().translate(_UNSHIFTED)
    ends = {0}  # where a segmentation into pieces can end so far
    for start in range(len(keys)):
        if start not in ends:
            continue
        for end in range(start + WALK_PIECE, len(keys) + 1):
            # A piece that is on no line is inside no longer piece either.
            if not _on_a_line(keys[start:end]):
                break
            ends.add(end)
    return len(keys) >= WALK_PIECE and len(keys) in ends


def is_repeated(text: str) -> bool:
    """Whether ``text`` is a block of at most ``MAX_BLOCK`` characters repeated (the
    last time perhaps cut short), ignoring case: ``aaaaaaaa``, ``abcdabcd``,
    ``12121212``, ``xyzxyzxy``."""
    lowered = text.lower()
    return any(
        len(lowered) >= 2 * block
        and all(lowered[i] == lowered[i - block] for i in range(block, len(lowered)))
        for block in range(1, MAX_BLOCK + 1)
    )


def _with_stem(test: Callable[[str], bool], password: str) -> bool:
    """``test`` of the password, or of what is left before trailing digits and
    punctuation (``asdf`` of ``asdf2026!``) when that is ``STEM`` long or more."""
    stem = _TRAILING.sub("", password)
    return test(password) or (len(stem) >= STEM and test(stem))


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
    if _with_stem(is_repeated, password):
        return Weakness.REPETITIVE
    if password.isdigit():
        return Weakness.DIGITS_ONLY
    if _with_stem(is_walk, password):
        return Weakness.KEYBOARD_WALK
    if username and username.lower() in password.lower():
        return Weakness.USERNAME
    if _is_common(password):
        return Weakness.COMMON
    return None
