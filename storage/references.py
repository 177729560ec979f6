"""A consultation's short reference: what the kiosk shows the citizen at the end of
the call, and what the clerk at the window types to find the consultation when it
has no case number.

Six characters from an alphabet without look-alikes (no 0/O/Q/D-like pairs: 0, 1,
B, G, I, L, O, Q, S, U, V and Z are left out), so that it can be read aloud and
typed without doubt. It is derived from the consultation's random id by a one-way
function, so every layer computes the same reference from the id it already holds,
and the reference reveals nothing of the id. It opens nothing by itself: only a
clerk of the consultation's hall (or an admin) finds a consultation by it, among
recent ones. 24^6 is about 191 million: n consultations of one hall share a
reference with a chance of about n^2 / 382 million (a hall with 100 a day: 0.003 %
in a day, 0.13 % in the week a reference is looked up in); the clerk then sees both
rows, each with its time and department.
"""

import hashlib

ALPHABET = "23456789ACDEFHJKMNPRTWXY"
LENGTH = 6


def reference_of(consultation_id: str) -> str:
    """The reference of the consultation with this id."""
    digest = hashlib.sha256(b"windowlink consultation reference\x00" + consultation_id.encode())
    number = int.from_bytes(digest.digest()[:8], "big")
    characters = []
    for _ in range(LENGTH):
        number, index = divmod(number, len(ALPHABET))
        characters.append(ALPHABET[index])
    return "".join(characters)


def typed_reference(text: str) -> str | None:
    """What someone typed, as a reference (case, spaces and dashes ignored), or None
    when it cannot be one."""
    value = "".join(c for c in text.upper() if c not in " -")
    if len(value) == LENGTH and all(c in ALPHABET for c in value):
        return value
    return None
