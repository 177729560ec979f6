"""Password hashing with Argon2id (RFC 9106), stored as a PHC string."""

import functools
import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

# OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane (about 40 ms here).
_MEMORY_KIB = 19456
_ITERATIONS = 2
_LANES = 1


def hash_password(password: str) -> str:
    """A PHC-encoded Argon2id hash with a fresh random salt."""
    kdf = Argon2id(
        salt=os.urandom(16),
        length=32,
        iterations=_ITERATIONS,
        lanes=_LANES,
        memory_cost=_MEMORY_KIB,
    )
    return kdf.derive_phc_encoded(password.encode("utf-8"))


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches the stored hash."""
    try:
        Argon2id.verify_phc_encoded(password.encode("utf-8"), encoded)
    except (InvalidKey, ValueError):
        return False
    return True


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against when the account does not exist, so that a
    missing account costs the same time as a wrong password."""
    return hash_password(os.urandom(16).hex())
