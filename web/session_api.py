"""Login, logout and who-am-I."""

from aiohttp import web

from storage.errors import RecordNotFound
from storage.records import Account, AuditEvent, Role
from storage.store import Storage
from web.api import ANY_ACCOUNT, Api, account_of, read_body, reply
from web.auth import (
    LoginThrottle,
    clear_session_cookie,
    remote_address,
    set_session_cookie,
)
from web.errors import TooManyRequests, Unauthorized
from web.keys import LOGIN_GATE, METRICS, SESSION_TOKEN, SETTINGS, SIGNALING, STORAGE
from web.schemas import LoginRequest, MeView

api = Api()


async def me_view(storage: Storage, account: Account) -> MeView:
    """The account with its hall (a kiosk's) or halls (a clerk's), named."""
    hall = None
    if account.role is Role.KIOSK and account.hall is not None:
        try:
            hall = await storage.halls.get(account.hall)
        except RecordNotFound:
            hall = None
    halls = await storage.halls.of_clerk(account.id) if account.role is Role.CLERK else []
    return MeView.of(account, hall, halls)


@api.route(
    "POST",
    "/api/v1/login",
    summary="Log in; sets the HttpOnly session cookie.",
    roles=None,
    body=LoginRequest,
    response=MeView,
    tag="session",
    # 503 unavailable: the throttle's live store or the database is down.
    errors=(401, 429, 503),
)
async def login(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, LoginRequest)
    throttle = LoginThrottle(request, body.username)
    metrics = request.app[METRICS]
    try:
        await throttle.admit()
    except TooManyRequests:
        metrics.login_throttled.inc()
        raise
    storage = request.app[STORAGE]
    remote = remote_address(request)
    try:
        async with request.app[LOGIN_GATE].admit(body.username):
            account = await storage.accounts.authenticate(body.username, body.password)
    except TooManyRequests:
        metrics.login_throttled.inc()
        await throttle.take_back()
        raise
    if account is None:
        metrics.login_failures.inc()
        await storage.audit.append(
            AuditEvent(body.username[:64], "login.failed", body.username[:64], {}, remote)
        )
        raise Unauthorized("wrong username or password", code="invalid_credentials")
    await throttle.take_back()
    # A fresh token at every login: a token planted before login is worthless.
    old = request.cookies.get("wl_session")
    if old:
        await storage.sessions.delete(old)
    token = await storage.sessions.create(
        account, remote, audit=AuditEvent(account.username, "login", account.username, {}, remote)
    )
    response = reply(await me_view(storage, account))
    set_session_cookie(response, token, request.app[SETTINGS], account.role)
    return response


@api.route(
    "POST",
    "/api/v1/logout",
    summary="End the session and close its sockets.",
    roles=ANY_ACCOUNT,
    tag="session",
    status=204,
)
async def logout(request: web.Request) -> web.StreamResponse:
    account = account_of(request)
    token = request[SESSION_TOKEN]
    remote = remote_address(request)
    await request.app[STORAGE].sessions.delete(
        token, audit=AuditEvent(account.username, "logout", account.username, {}, remote)
    )
    await request.app[SIGNALING].disconnect_token(token)
    response = web.Response(status=204)
    clear_session_cookie(response)
    return response


@api.route(
    "GET",
    "/api/v1/me",
    summary="The logged-in account.",
    roles=ANY_ACCOUNT,
    response=MeView,
    tag="session",
)
async def me(request: web.Request) -> web.StreamResponse:
    return reply(await me_view(request.app[STORAGE], account_of(request)))
