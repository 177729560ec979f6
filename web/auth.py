"""Who is calling: the session cookie, the client's address, login throttling."""

import math
import re
import time

from aiohttp import web

from storage.records import Account, Role
from web.errors import TooManyRequests
from web.forwarded import client_address, origin_allowed, public_scheme
from web.keys import ACCOUNT, PROXY_TRUST, SESSION_TOKEN, SETTINGS, SIGNALING, STORAGE
from web.settings import Settings

SESSION_COOKIE = "wl_session"
# A host and port as a browser sends them: nothing else goes into a link we show.
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def remote_address(request: web.Request) -> str:
    """The client's address; behind trusted proxies, the one they saw."""
    return client_address(
        request.remote or "", request.headers.get("X-Forwarded-For", ""), request.app[PROXY_TRUST]
    )


def _public_scheme_and_host(request: web.Request) -> tuple[str, str]:
    """The scheme this app really serves (HTTPS when it ends TLS itself or a trusted
    proxy says so) and the Host the browser addressed (a trusted proxy's
    X-Forwarded-Host), as the browser sees this origin."""
    trust = request.app[PROXY_TRUST]
    peer = request.remote or ""
    forwarded_proto = request.headers.get("X-Forwarded-Proto", "")
    scheme = public_scheme(request.app[SETTINGS].tls, peer, forwarded_proto, trust)
    host = request.headers.get("Host", "")
    if trust.enabled and trust.peer_is_proxy(peer):
        host = request.headers.get("X-Forwarded-Host", host).split(",")[-1].strip()
    return scheme, host


def socket_origin_allowed(origin: str | None, environ: dict[str, object]) -> bool:
    """socket.io's origin check: the page's origin must be this app's public scheme and
    the host the browser addressed (or a configured name of this server)."""
    request = environ.get("aiohttp.request")
    if not isinstance(request, web.Request):
        return False
    settings = request.app[SETTINGS]
    scheme, host = _public_scheme_and_host(request)
    return origin_allowed(origin, scheme, host, (settings.host, *settings.extra_hosts))


def public_origin(request: web.Request) -> str:
    """The scheme and host the browser used to reach us (``https://name[:port]``), as
    socket.io's origin check sees them: what a link shown on a page must name."""
    scheme, host = _public_scheme_and_host(request)
    if not _HOST.fullmatch(host):
        host = request.app[SETTINGS].host
    return f"{scheme}://{host}"


async def authenticate(request: web.Request) -> Account | None:
    """The account of the request's session cookie, resolved once per request."""
    if ACCOUNT in request:
        return request[ACCOUNT]
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    account = await request.app[STORAGE].sessions.resolve(token)
    if account is not None:
        request[ACCOUNT] = account
        request[SESSION_TOKEN] = token
    return account


def set_session_cookie(
    response: web.StreamResponse, token: str, settings: Settings, role: Role
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=settings.tls or settings.behind_proxy,
        path="/",
        max_age=int(settings.kiosk_session_max if role is Role.KIOSK else settings.session_max),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


class AttemptThrottle:
    """Attempts at a secret counted under some keys (each with its limit) within
    --login-window, each attempt counted BEFORE the secret is checked, so that
    concurrent guesses cannot all slip in under the limit; a right one takes its
    attempt back."""

    MESSAGE = "too many failed attempts; wait and try again"

    def __init__(
        self,
        request: web.Request,
        keys: tuple[tuple[str, int], ...],
        window: float | None = None,
    ) -> None:
        self._store = request.app[SIGNALING]
        self._window = request.app[SETTINGS].login_window if window is None else window
        self._keys = keys
        self._counted: list[tuple[str, float]] = []

    async def admit(self) -> None:
        """Count this attempt, or refuse it (429) when the limit is reached."""
        now = time.time()
        for key, limit in self._keys:
            if not await self._store.take_slot(key, self._window, limit, now):
                await self.take_back()
                raise TooManyRequests(self.MESSAGE, retry_after=math.ceil(self._window))
            self._counted.append((key, now))

    async def take_back(self) -> None:
        """This attempt does not count (it succeeded, or was never checked)."""
        for key, at in self._counted:
            await self._store.release_slot(key, at)
        self._counted.clear()


class LoginThrottle(AttemptThrottle):
    """Logins counted per (username, address) and per address."""

    MESSAGE = "too many failed logins; wait and try again"
    # One address may try many accounts (a shared office NAT), but not endlessly.
    PER_ADDRESS_FACTOR = 20

    def __init__(self, request: web.Request, username: str) -> None:
        limit = request.app[SETTINGS].login_attempts
        remote = remote_address(request)
        keys = (
            (f"login:{username.lower()}|{remote}", limit),
            (f"login-address:{remote}", limit * self.PER_ADDRESS_FACTOR),
        )
        super().__init__(request, keys)


class BookingCodeThrottle(AttemptThrottle):
    """Booking codes typed at one kiosk: a few wrong ones in ten minutes, then 429.
    Guessing a code (24^8 of them) at that rate takes centuries; a citizen who
    mistypes twice is not held up. Counted before the code is looked up and in the
    live store every node shares: a burst of guesses sent at once, or spread over
    the processes and nodes of a deployment, gets no more than one kiosk's budget."""

    MESSAGE = "too many wrong codes: wait a moment"
    FAILURES = 5
    WINDOW = 600.0

    def __init__(self, request: web.Request, kiosk_id: str) -> None:
        super().__init__(request, ((f"booking-code:{kiosk_id}", self.FAILURES),), self.WINDOW)


class MetricsTokenThrottle(AttemptThrottle):
    """Metrics tokens presented, counted per address like one account's logins."""

    MESSAGE = "too many wrong metrics tokens; wait and try again"

    def __init__(self, request: web.Request) -> None:
        limit = request.app[SETTINGS].login_attempts
        super().__init__(request, ((f"metrics-token:{remote_address(request)}", limit),))
