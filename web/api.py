"""Declared REST endpoints: each carries its roles, body and response models,
so that authorisation is enforced in one wrapper and the OpenAPI document is
generated from the same declarations that route requests."""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from storage.records import Account, Role
from web.auth import authenticate
from web.errors import BadRequest, Forbidden, Unauthorized, UnsupportedMediaType
from web.keys import ACCOUNT

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)

ANY_ACCOUNT: frozenset[Role] = frozenset(Role)


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
    content_type: str = "application/json"
    query: tuple[tuple[str, str], ...] = ()
    """(name, description) of query parameters."""


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
        content_type: str = "application/json",
        query: tuple[tuple[str, str], ...] = (),
    ) -> Callable[[Handler], Handler]:
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
                    content_type,
                    query,
                )
            )
            return handler

        return register

    def add_to(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _guarded(endpoint))


def _guarded(endpoint: Endpoint) -> Handler:
    if endpoint.roles is None:
        return endpoint.handler
    roles = endpoint.roles

    async def guard(request: web.Request) -> web.StreamResponse:
        account = await authenticate(request)
        if account is None:
            raise Unauthorized("log in first")
        if account.role not in roles:
            raise Forbidden("your account may not use this")
        request[ACCOUNT] = account
        return await endpoint.handler(request)

    return guard


def account_of(request: web.Request) -> Account:
    return request[ACCOUNT]


async def read_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """Decode and validate a JSON body against ``model``."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise BadRequest(details, code="invalid_body") from None


def reply(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)
