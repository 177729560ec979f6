"""ICE servers for the pages and the relay: STUN as given, TURN with credentials
that expire (coturn's TURN REST API, ``use-auth-secret``): the user name carries
its expiry, the password is the HMAC-SHA1 of the name under the secret that
coturn and windowlink share. Nothing static ever reaches a page."""

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


def check_ice_url(url: str) -> str:
    if not url.startswith(SCHEMES) or len(url) > 512 or any(c.isspace() for c in url):
        raise ValueError(f"not a STUN or TURN URL: {url!r} (stun:, stuns:, turn:, turns:)")
    return url


def is_turn(url: str) -> bool:
    return url.startswith(("turn:", "turns:"))


def turn_credentials(secret: str, user: str, now: float, ttl: float) -> tuple[str, str]:
    """(user name, password) valid until ``now + ttl`` for a TURN server sharing
    ``secret``; ``user`` is an opaque id (never a person's name)."""
    username = f"{int(now + ttl)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    urls: Sequence[str], secret: str | None, user: str, now: float, ttl: float
) -> list[IceServer]:
    """What a peer connection is configured with: the STUN URLs, then the TURN URLs
    with fresh credentials (TURN is left out without a secret: it would refuse)."""
    stun = tuple(u for u in urls if not is_turn(u))
    turn = tuple(u for u in urls if is_turn(u))
    servers = [IceServer(stun)] if stun else []
    if turn and secret:
        username, credential = turn_credentials(secret, user, now, ttl)
        servers.append(IceServer(turn, username, credential))
    return servers
