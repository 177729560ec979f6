"""Declared REST endpoints: each carries its roles, body and response models, its
parameters and the statuses it answers, so that authorisation is enforced in one
wrapper and the OpenAPI document is generated from the same declarations that
route requests."""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from signaling.messages import CaseNumber, ConsultationId, DepartmentCode
from storage.records import Account, AuditEvent, Role
from web.auth import authenticate, remote_address
from web.errors import BadRequest, Forbidden, NotFound, Unauthorized, UnsupportedMediaType
from web.keys import ACCOUNT
from web.schemas import HallCode, PhoneToken, Username

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)

ANY_ACCOUNT: frozenset[Role] = frozenset(Role)

# Every path parameter, by name, as the type its values must have. A value that does
# not fit is answered 404 (after the session and role checks, so that the answer to
# someone who may not call the route at all does not depend on the path), the same
# as a well-formed id of a record that does not exist; the OpenAPI document states
# each pattern, generated from the same types.
PATH_PARAMETERS: dict[str, Any] = {
    # Every record id is ``storage.ids.new_id()``: 16 hex digits.
    "consultation_id": ConsultationId,
    "upload_id": ConsultationId,
    "file_id": ConsultationId,
    "callback_id": ConsultationId,
    "username": Username,
    "code": DepartmentCode,
    "hall": HallCode,
    "case_number": CaseNumber,
    # A media leg: p0..p3 by position (issue 21); kiosk and expert name p0 and p1.
    "side": Literal["p0", "p1", "p2", "p3", "kiosk", "expert"],
    "token": PhoneToken,
}
_PATH_ADAPTERS: dict[str, TypeAdapter[str]] = {
    name: TypeAdapter(kind) for name, kind in PATH_PARAMETERS.items()
}


def path_parameter_schema(name: str) -> dict[str, Any]:
    """The JSON schema of a path parameter's values."""
    return _PATH_ADAPTERS[name].json_schema()


def fits_path_parameter(name: str, value: str) -> bool:
    """Whether ``value`` is a well-formed ``name`` (exactly: nothing stripped)."""
    try:
        return _PATH_ADAPTERS[name].validate_python(value, strict=True) == value
    except ValidationError:
        return False


@dataclass(frozen=True)
class Header:
    """A request header an endpoint reads."""

    name: str
    description: str
    pattern: str | None = None
    required: bool = True


def _path_names(path: str) -> tuple[str, ...]:
    return tuple(part[1:-1] for part in path.split("/") if part.startswith("{"))


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: frozenset[Role] | None
    """None: open to anyone; otherwise the roles that may call it."""
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    tag: str = "api"
    content_type: tuple[str, ...] = ("application/json",)
    """Media types of the success body (several where it varies, as a document does)."""
    query: tuple[tuple[str, str], ...] = ()
    """(name, description) of query parameters."""
    query_model: type[BaseModel] | None = None
    """The model the query is validated with (400 when it does not fit); the
    parameters' schemas and which are required come from it."""
    errors: frozenset[int] = frozenset()
    """Error statuses the handler answers beyond those its declaration implies."""
    ranges: bool = False
    """Answers ``Range`` requests: 206 with the part, 416 when none of it exists."""
    request_type: str | None = None
    """Media type of a body that is not a JSON model (an SDP offer, an upload part)."""
    headers: tuple[Header, ...] = ()
    media_token: bool = False
    """Authenticated by the call's media token (``Authorization: Bearer``), not a session."""

    @property
    def path_params(self) -> tuple[str, ...]:
        return _path_names(self.path)

    @property
    def success_statuses(self) -> frozenset[int]:
        return frozenset({self.status, 206} if self.ranges else {self.status})

    @property
    def error_statuses(self) -> frozenset[int]:
        """Every error status this endpoint can answer: those its declaration implies
        (a JSON body: 400, 413, 415; a query model: 400; a session: 401, 503 when
        the database that keeps sessions is down, and 403 unless every role may
        call it; a media token: 401, 403; path parameters: 404; ranges: 416) and
        its declared ``errors``."""
        statuses = set(self.errors)
        if self.body is not None:
            statuses |= {400, 413, 415}
        if self.query_model is not None:
            statuses.add(400)
        if self.roles is not None:
            statuses |= {401, 503}
            if self.roles != ANY_ACCOUNT:
                statuses.add(403)
        if self.media_token:
            statuses |= {401, 403}
        if self.path_params:
            statuses.add(404)
        if self.ranges:
            statuses.add(416)
        return frozenset(statuses)


@dataclass
class Api:
    """A table of endpoints, like ``web.RouteTableDef`` with declarations attached."""

    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        roles: frozenset[Role] | None,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        tag: str = "api",
        content_type: str | tuple[str, ...] = "application/json",
        query: tuple[tuple[str, str], ...] = (),
        query_model: type[BaseModel] | None = None,
        errors: tuple[int, ...] = (),
        ranges: bool = False,
        request_type: str | None = None,
        headers: tuple[Header, ...] = (),
        media_token: bool = False,
    ) -> Callable[[Handler], Handler]:
        unknown = [name for name in _path_names(path) if name not in PATH_PARAMETERS]
        if unknown:
            raise ValueError(f"{path}: declare the type of {unknown} in PATH_PARAMETERS")
        if query_model is not None:
            missing = set(query_model.model_fields) ^ {name for name, _ in query}
            if missing:
                raise ValueError(f"{path}: describe exactly the query model's fields {missing}")

        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method,
                    path,
                    handler,
                    summary,
                    roles,
                    body,
                    response,
                    status,
                    tag,
                    (content_type,) if isinstance(content_type, str) else content_type,
                    query,
                    query_model,
                    frozenset(errors),
                    ranges,
                    request_type,
                    headers,
                    media_token,
                )
            )
            return handler

        return register

    def add_to(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _guarded(endpoint))


def _guarded(endpoint: Endpoint) -> Handler:
    roles = endpoint.roles
    names = endpoint.path_params
    if roles is None and not names:
        return endpoint.handler

    async def guard(request: web.Request) -> web.StreamResponse:
        if roles is not None:
            account = await authenticate(request)
            if account is None:
                raise Unauthorized("log in first")
            if account.role not in roles:
                raise Forbidden("your account may not use this")
            request[ACCOUNT] = account
        for name in names:
            if not fits_path_parameter(name, request.match_info[name]):
                raise NotFound(f"no such {name.replace('_', ' ')}")
        return await endpoint.handler(request)

    return guard


def account_of(request: web.Request) -> Account:
    return request[ACCOUNT]


def audit_of(request: web.Request, action: str, subject: str, **detail: str | bool) -> AuditEvent:
    """The audit entry of what the request's account does, from the request's address."""
    return AuditEvent(
        account_of(request).username, action, subject, dict(detail), remote_address(request)
    )


async def read_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """Decode and validate a JSON body against ``model``."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError: not JSON, not UTF-8, or an integer beyond Python's 4,300-digit
        # conversion limit; RecursionError: nesting deeper than the parser goes.
        raise BadRequest("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_body")
    if _holds_nul(data):
        # PostgreSQL cannot store U+0000 in text (it answered 500); no field needs it.
        raise BadRequest("text may not contain NUL (U+0000)", code="invalid_body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise BadRequest(details, code="invalid_body") from None


def _holds_nul(data: object) -> bool:
    """Whether any string in decoded JSON (keys included) contains U+0000; iterative,
    since a body may nest as deep as the parser allows."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def reply(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)
