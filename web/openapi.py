"""The OpenAPI 3.1 document, generated from the declared endpoints."""

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from web.api import Api, Endpoint
from web.keys import OPENAPI
from web.schemas import ErrorView

api = Api()

_ERRORS = {
    400: "Invalid body or query",
    401: "No valid session",
    403: "Not allowed for this account",
    404: "Not found",
    409: "Conflicts with the current state",
    415: "Wrong content type",
    429: "Too many attempts",
}


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(endpoint: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "operationId": endpoint.handler.__name__,
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_params(endpoint.path)
    ]
    params += [
        {
            "name": name,
            "in": "query",
            "required": True,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text in endpoint.query
    ]
    if params:
        op["parameters"] = params
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(endpoint.body, schemas)}},
        }
    ok: dict[str, Any] = {"description": "Success"}
    if endpoint.response is not None:
        ok["content"] = {endpoint.content_type: {"schema": _ref(endpoint.response, schemas)}}
    elif endpoint.content_type != "application/json":
        ok["content"] = {endpoint.content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(endpoint.status): ok}
    error = {"content": {"application/json": {"schema": _ref(ErrorView, schemas)}}}
    codes = [400, 415] if endpoint.body is not None else []
    if endpoint.roles is not None:
        codes += [401, 403]
    if "{" in endpoint.path:
        codes.append(404)
    if endpoint.method in ("POST", "PATCH"):
        codes.append(409)
    if endpoint.path == "/api/v1/login":
        codes += [401, 429]
    for code in sorted(set(codes)):
        responses[str(code)] = {"description": _ERRORS[code], **error}
    op["responses"] = responses
    if endpoint.roles is not None:
        op["security"] = [{"session": []}]
        op["x-roles"] = sorted(r.value for r in endpoint.roles)
    return op


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def build_openapi(tables: list[Api]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for table in tables:
        for endpoint in table.endpoints:
            paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(
                endpoint, schemas
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "windowlink API",
            "version": "1",
            "description": "Remote video consultation and document exchange for service halls. "
            'Errors are JSON {"error": {"code", "message"}}.',
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "wl_session"}
            },
        },
    }


@api.route("GET", "/api/v1/openapi.json", summary="This document.", roles=None, tag="operations")
async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[OPENAPI])
