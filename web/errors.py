"""HTTP errors, and the one place where every error becomes a JSON response.

ApiError                     (status, code)
 ├── BadRequest              400 bad_request / invalid_body
 ├── Unauthorized            401 unauthorized
 ├── Forbidden               403 forbidden
 ├── NotFound                404 not_found
 ├── MethodNotAllowed        405 method_not_allowed
 ├── Conflict                409 conflict
 ├── PayloadTooLarge         413 payload_too_large
 ├── UnsupportedMediaType    415 unsupported_media_type
 └── TooManyRequests         429 too_many_requests (with Retry-After)

Errors of ``signaling``, ``media`` and ``storage`` are mapped here too
(media: BadOffer 400 bad_offer, UnknownCall 404, RelayUnavailable 503), so that services
can raise their own errors without knowing about HTTP.
"""

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from media import errors as med
from signaling import errors as sig
from storage import errors as sto

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_SIGNALING_STATUS: dict[type[sig.SignalingError], int] = {
    sig.InvalidPayload: 400,
    sig.NotAuthenticated: 401,
    sig.Forbidden: 403,
    sig.NotFound: 404,
    sig.InvalidState: 409,
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _from_exception(exc: BaseException) -> web.Response:
    if isinstance(exc, TooManyRequests):
        response = error_response(exc.status, exc.code, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message)
    if isinstance(exc, sig.SignalingError):
        status = next((s for cls, s in _SIGNALING_STATUS.items() if isinstance(exc, cls)), 400)
        return error_response(status, exc.code, exc.message)
    if isinstance(exc, med.BadOffer):
        return error_response(400, "bad_offer", str(exc))
    if isinstance(exc, med.UnknownCall):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, med.RelayUnavailable):
        return error_response(503, "relay_unavailable", str(exc))
    if isinstance(exc, sto.RecordNotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, sto.RecordConflict):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, web.HTTPException):
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal", "the server could not handle this request")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        # Redirects and successes raised as exceptions are not errors.
        if exc.status < 400:
            raise
        if not request.path.startswith("/api/") and exc.status == 404:
            return error_response(404, "not_found", "no such page")
        return _from_exception(exc)
    except Exception as exc:
        return _from_exception(exc)
