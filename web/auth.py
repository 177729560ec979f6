"""Who is calling: the session cookie, the client's address, login throttling."""

import math
import time

from aiohttp import web

from storage.records import Account, Role
from web.errors import TooManyRequests
from web.keys import ACCOUNT, HUB, SESSION_TOKEN, SETTINGS, STORAGE
from web.settings import Settings

SESSION_COOKIE = "wl_session"


def remote_address(request: web.Request) -> str:
    """The client's address; behind a proxy, the one it forwarded."""
    if request.app[SETTINGS].behind_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.remote or ""


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


class LoginThrottle:
    """Failed logins counted per (username, address) and per address."""

    # One address may try many accounts (a shared office NAT), but not endlessly.
    PER_ADDRESS_FACTOR = 20

    def __init__(self, request: web.Request, username: str) -> None:
        settings = request.app[SETTINGS]
        self._store = request.app[HUB].store
        self._window = settings.login_window
        self._limit = settings.login_attempts
        remote = remote_address(request)
        self._keys = (
            (f"login:{username.lower()}|{remote}", self._limit),
            (f"login-address:{remote}", self._limit * self.PER_ADDRESS_FACTOR),
        )

    async def check(self) -> None:
        now = time.time()
        for key, limit in self._keys:
            if await self._store.hits(key, self._window, now) >= limit:
                raise TooManyRequests(
                    "too many failed logins; wait and try again",
                    retry_after=math.ceil(self._window),
                )

    async def failed(self) -> None:
        now = time.time()
        for key, _limit in self._keys:
            await self._store.count_hit(key, self._window, now)
