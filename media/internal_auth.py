"""Signed requests on the deployment's internal API (the relay workers'), so that
a request seen on the network can neither be replayed nor altered.

Every request carries ``X-Windowlink-Signature: v1 t=<unix time> n=<nonce>
s=<HMAC>``; the HMAC-SHA256, under a key derived from ``--cluster-secret`` with
HKDF (a label of its own, so the secret's other uses never share this key),
covers the version, the method, the worker's authority (host:port: a request
signed for one worker is worthless at another), the path with its query, the
SHA-256 of the body, the time and the nonce. A worker accepts it when the time is
within ``WINDOW`` seconds of its own clock, the HMAC matches (compared in
constant time) and the nonce was not seen in the window; nonces are remembered
only after the HMAC matched (nobody without the key can fill the memory), until
their time leaves the window (a replay later is refused as stale), and at most
``MAX_NONCES`` at once: a full memory refuses instead of forgetting.

The checks are ``check``, a pure function of the request and the clock, tested as
a table (tests/media/test_internal_auth.py); the worker's middleware applies it.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HEADER = "X-Windowlink-Signature"
VERSION = "v1"
WINDOW = 30.0
"""Seconds a signed request stays valid either side of the receiver's clock (the
nodes' clocks must agree within it: NTP)."""
MAX_NONCES = 65_536
"""Nonces one worker remembers at once (a few hundred requests a second over the
window, far above what a deployment sends one worker)."""
LABEL = b"windowlink internal API request signing v1"

_HEADER_FORMAT = re.compile(
    r"v1 t=(?P<t>[0-9]{1,12}(?:\.[0-9]{1,6})?) n=(?P<n>[0-9a-f]{32}) s=(?P<s>[0-9a-f]{64})"
)


def signing_key(cluster_secret: str) -> bytes:
    """The request-signing key of a deployment sharing ``cluster_secret``."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL).derive(
        cluster_secret.encode()
    )


def authority_of(url: str) -> str:
    """``host:port`` of a worker URL, as both ends name it (``worker_url``)."""
    return urlsplit(url).netloc


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers."""

    method: str
    authority: str
    path: str
    """Path and query string exactly as sent (``request.raw_path``)."""
    body: bytes


def _mac(key: bytes, request: SignedRequest, timestamp: str, nonce: str) -> str:
    message = "\n".join(
        (
            VERSION,
            request.method.upper(),
            request.authority,
            request.path,
            hashlib.sha256(request.body).hexdigest(),
            timestamp,
            nonce,
        )
    )
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, request: SignedRequest, now: float, nonce: str | None = None) -> str:
    """The signature header's value for ``request`` sent at ``now``."""
    timestamp = f"{now:.3f}"
    nonce = nonce or secrets.token_hex(16)
    return f"{VERSION} t={timestamp} n={nonce} s={_mac(key, request, timestamp, nonce)}"


class Refusal(StrEnum):
    """Why a request was refused (for the log; the caller hears only 403)."""

    MISSING = "no signature"
    MALFORMED = "malformed signature"
    STALE = "timestamp outside the window"
    FORGED = "signature does not match"
    REPLAYED = "nonce already used"
    BUSY = "too many nonces to remember"


@dataclass(frozen=True)
class Accepted:
    nonce: str
    remember_until: float
    """When the nonce may be forgotten: its time then is outside the window."""


def check(
    key: bytes,
    request: SignedRequest,
    header: str | None,
    now: float,
    seen: Container[str],
    full: bool = False,
) -> Accepted | Refusal:
    """Whether a request with signature ``header`` arriving at ``now`` is
    accepted, given the nonces ``seen`` in the window and whether that memory is
    ``full``. Checked in this order, cheapest first; the HMAC before the nonce, so
    that only a request signed with the key is remembered."""
    if not header:
        return Refusal.MISSING
    match = _HEADER_FORMAT.fullmatch(header)
    if match is None:
        return Refusal.MALFORMED
    timestamp, nonce, mac = match["t"], match["n"], match["s"]
    sent = float(timestamp)
    if abs(now - sent) > WINDOW:
        return Refusal.STALE
    if not hmac.compare_digest(mac, _mac(key, request, timestamp, nonce)):
        return Refusal.FORGED
    if nonce in seen:
        return Refusal.REPLAYED
    if full:
        return Refusal.BUSY
    return Accepted(nonce, sent + WINDOW)


class NonceMemory:
    """The nonces accepted within the window (one worker's, in its process)."""

    def __init__(self, limit: int = MAX_NONCES) -> None:
        self._limit = limit
        self._until: dict[str, float] = {}

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._until

    def __len__(self) -> int:
        return len(self._until)

    def full(self, now: float) -> bool:
        """Whether there is no room for one more, after forgetting what expired."""
        if len(self._until) < self._limit:
            return False
        self._until = {n: until for n, until in self._until.items() if until >= now}
        return len(self._until) >= self._limit

    def remember(self, accepted: Accepted) -> None:
        self._until[accepted.nonce] = accepted.remember_until


REFUSAL_LOG_INTERVAL = 1.0
"""Seconds between two log lines about refused requests (a flood is one line a
second with its count, not one line per request)."""


def log_due(last_logged: float | None, now: float) -> bool:
    """Whether a refused request is logged now or only counted."""
    return last_logged is None or now - last_logged >= REFUSAL_LOG_INTERVAL


class Signer:
    """Signs this process's requests to workers."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def headers(self, method: str, url: str, path: str, body: bytes, now: float) -> dict[str, str]:
        request = SignedRequest(method, authority_of(url), path, body)
        return {HEADER: sign(self._key, request, now)}
