"""The OpenAPI 3.1 document, generated from the declared endpoints."""

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from web.api import Api, Endpoint, path_parameter_schema
from web.keys import OPENAPI
from web.schemas import ErrorView

api = Api()

ERROR_DESCRIPTIONS = {
    400: "Invalid body, query or header",
    401: "No valid session (or media token)",
    403: "Not allowed for this account (or token)",
    404: "Not found, not yours, or a path parameter that does not fit its pattern",
    408: "The body arrived too slowly",
    409: "Conflicts with the current state",
    410: "Gone (shredded at the end of its retention period; a phone link used or expired)",
    413: "Too large",
    415: "Wrong content type",
    416: "Range not satisfiable",
    429: "Too many attempts or unfinished uploads (see Retry-After where given)",
    500: "The stored document failed its integrity check",
    503: "Busy or unavailable; try again",
}
SUCCESS_DESCRIPTIONS = {206: "Part of the document (Range)"}


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter's schema: absent rather than null."""
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**options[0], **rest}
    return {k: v for k, v in schema.items() if k != "default" or v is not None}


def _query_parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    declared = endpoint.query_model.model_json_schema() if endpoint.query_model else {}
    fields = declared.get("properties", {})
    required = set(declared.get("required", []))
    params = []
    for name, text in endpoint.query:
        schema = _without_null(fields[name]) if name in fields else {"type": "string"}
        schema.pop("title", None)
        if name not in required and schema != {"type": "string"}:
            # An empty optional parameter counts as not given (forms send them so).
            schema = {"anyOf": [schema, {"const": ""}]}
        params.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": text,
                "schema": schema,
            }
        )
    return params


def _success_content(endpoint: Endpoint, schemas: dict[str, Any]) -> dict[str, Any] | None:
    if endpoint.status == 204:
        return None
    if endpoint.response is not None:
        ref = _ref(endpoint.response, schemas)
        return {media_type: {"schema": ref} for media_type in endpoint.content_type}
    if endpoint.content_type == ("application/json",):
        return None
    return {media_type: {"schema": _string_of(media_type)} for media_type in endpoint.content_type}


def _string_of(media_type: str) -> dict[str, str]:
    """Text, or the bytes of a document."""
    if media_type.startswith("text/") or media_type == "application/sdp":
        return {"type": "string"}
    return {"type": "string", "format": "binary"}


def _operation(endpoint: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "operationId": endpoint.handler.__name__,
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": path_parameter_schema(name)}
        for name in endpoint.path_params
    ]
    params += _query_parameters(endpoint)
    params += [
        {
            "name": header.name,
            "in": "header",
            "required": header.required,
            "description": header.description,
            "schema": {"type": "string", **({"pattern": header.pattern} if header.pattern else {})},
        }
        for header in endpoint.headers
    ]
    if params:
        op["parameters"] = params
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(endpoint.body, schemas)}},
        }
    elif endpoint.request_type is not None:
        op["requestBody"] = {
            "required": True,
            "content": {endpoint.request_type: {"schema": _string_of(endpoint.request_type)}},
        }
    responses: dict[str, Any] = {}
    content = _success_content(endpoint, schemas)
    for status in sorted(endpoint.success_statuses):
        ok: dict[str, Any] = {"description": SUCCESS_DESCRIPTIONS.get(status, "Success")}
        if content is not None:
            ok["content"] = content
        responses[str(status)] = ok
    error = {"content": {"application/json": {"schema": _ref(ErrorView, schemas)}}}
    for status in sorted(endpoint.error_statuses):
        responses[str(status)] = {"description": ERROR_DESCRIPTIONS[status], **error}
    op["responses"] = responses
    if endpoint.roles is not None:
        op["security"] = [{"session": []}]
        op["x-roles"] = sorted(r.value for r in endpoint.roles)
    if endpoint.media_token:
        op["security"] = [{"mediaToken": []}]
    return op


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
                "session": {"type": "apiKey", "in": "cookie", "name": "wl_session"},
                "mediaToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The per-participant token of an active call (its "
                    "consultation event's media.token).",
                },
            },
        },
    }


@api.route("GET", "/api/v1/openapi.json", summary="This document.", roles=None, tag="operations")
async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[OPENAPI])
