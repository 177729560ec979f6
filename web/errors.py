"""HTTP errors, and the one place where every error becomes a JSON response.

ApiError                     (status, code)
 ├── BadRequest              400 bad_request / invalid_body
 ├── Unauthorized            401 unauthorized
 ├── Forbidden               403 forbidden
 ├── NotFound                404 not_found
 ├── MethodNotAllowed        405 method_not_allowed
 ├── RequestTimeout          408 too_slow (a body that stalls or crawls)
 ├── Conflict                409 conflict
 ├── Gone                    410 gone
 ├── PayloadTooLarge         413 payload_too_large
 ├── UnsupportedMediaType    415 unsupported_media_type
 └── TooManyRequests         429 too_many_requests (with Retry-After)

Errors of ``signaling``, ``media`` and ``storage`` are mapped here too
(media: BadOffer 400 bad_offer, UnknownCall 404, NotAParticipant 403, RelayUnavailable
503; storage: RecordNotFound 404, RecordConflict 409 (FileShredded 410 shredded),
DocumentDamaged 500 damaged,
KeyringError 503 keys_unavailable with Retry-After),
so that services can raise their own errors without knowing about HTTP.

A store that is down (the database unreachable or locked: ``StorageUnavailable``;
Redis unreachable: ``StoreUnavailable``, or signaling's ``Unavailable``) is one
answer everywhere: 503 unavailable with Retry-After, and one log line without the
exception's chain (which may hold the SQL statement).
"""

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from media import errors as med
from signaling import errors as sig
from signaling.store import StoreUnavailable
from storage import errors as sto
from storage.filestore import UploadError

log = logging.getLogger(__name__)

KEYS_RETRY_AFTER = 60
"""Seconds a client is asked to wait after 503 keys_unavailable (an operator's fix)."""

ERROR_CODE = web.ResponseKey("error_code", str)
"""The error code a response carries (for the metrics, without parsing its body)."""

STORE_RETRY_AFTER = 5
"""Seconds a client is asked to wait when a store is down: Redis and PostgreSQL
fail over, and a locked SQLite frees itself, within seconds."""


class ApiError(Exception):
    status = 500
    code = "internal"
    retry_after: int | None = None
    """Seconds after which trying again may succeed (the Retry-After header)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after
        self.headers = dict(headers or {})
        """More headers the answer carries (where a resumable upload stands)."""


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


class RequestTimeout(ApiError):
    status = 408
    code = "too_slow"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Gone(ApiError):
    status = 410
    code = "gone"


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
        super().__init__(message, retry_after=retry_after)


_UPLOAD_STATUS = {
    "too_many_uploads": 429,
    "account_upload_limit": 429,
    "call_upload_limit": 429,
    "uploads_busy": 503,
    "gone": 404,
    "wrong_offset": 409,
    "checksum_mismatch": 400,
    "too_large": 413,
    "incomplete": 409,
    "bad_name": 400,
    "unsupported_type": 415,
    "type_mismatch": 415,
}
UPLOAD_ROOM_RETRY_AFTER = 10
"""Seconds a client is asked to wait when unfinished uploads hold all the room it
may use (in all, its account's, its call's): other parts arrive and uploads finish
or expire within seconds, so trying again soon can succeed."""
_WAIT_FOR_ROOM = frozenset({"uploads_busy", "account_upload_limit", "call_upload_limit"})


def upload_refusal(exc: UploadError, headers: dict[str, str] | None = None) -> ApiError:
    """The answer to an upload storage refused (by its code), with ``headers`` (where
    the upload stands, for a client that resumes)."""
    retry_after = UPLOAD_ROOM_RETRY_AFTER if exc.code in _WAIT_FOR_ROOM else None
    error = ApiError(str(exc), code=exc.code, retry_after=retry_after, headers=headers)
    error.status = _UPLOAD_STATUS.get(exc.code, 400)
    return error


_SIGNALING_STATUS: dict[type[sig.SignalingError], int] = {
    sig.InvalidPayload: 400,
    sig.NotAuthenticated: 401,
    sig.Forbidden: 403,
    sig.NotFound: 404,
    sig.InvalidState: 409,
    sig.RateLimited: 429,
}


def error_response(status: int, code: str, message: str) -> web.Response:
    response = web.json_response({"error": {"code": code, "message": message}}, status=status)
    response[ERROR_CODE] = code
    return response


def _from_exception(exc: BaseException) -> web.Response:
    if isinstance(exc, (sto.StorageUnavailable, StoreUnavailable, sig.Unavailable)):
        # The message only: the chain holds the driver's error and the statement.
        log.warning("a store is unavailable: %s: %s", type(exc).__name__, exc)
        response = error_response(
            503, "unavailable", "the service is not available right now; try again shortly"
        )
        response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
        return response
    if isinstance(exc, UploadError):
        exc = upload_refusal(exc)
    if isinstance(exc, ApiError):
        response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, sig.SignalingError):
        status = next((s for cls, s in _SIGNALING_STATUS.items() if isinstance(exc, cls)), 400)
        return error_response(status, exc.code, exc.message)
    if isinstance(exc, med.BadOffer):
        return error_response(400, "bad_offer", str(exc))
    if isinstance(exc, med.UnknownCall):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, med.NotAParticipant):
        return error_response(403, "forbidden", str(exc))
    if isinstance(exc, med.RelayUnavailable):
        return error_response(503, "relay_unavailable", str(exc))
    if isinstance(exc, sto.KeyringError):
        # A key this node cannot find (the keys of another node: a cluster without a
        # shared master key) or a key store it cannot open: the operator's to fix,
        # the client's to retry. Which key, and where, stays in the log.
        log.error("a key is not available: %s", exc)
        response = error_response(
            503,
            "keys_unavailable",
            "documents cannot be read or written on this server now (its keys are not "
            "available); try again later",
        )
        response.headers["Retry-After"] = str(KEYS_RETRY_AFTER)
        return response
    if isinstance(exc, sto.DocumentDamaged):
        # Not the client's doing: the operator must hear of it (restore the blob).
        log.error("a recorded document cannot be read: %s", exc)
        return error_response(500, "damaged", str(exc))
    if isinstance(exc, sto.RecordNotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, sto.FileShredded):
        # Gone for good, however it was reached (a download, an attachment, a key
        # found destroyed while reading): not a conflict the client could resolve.
        return error_response(410, "shredded", str(exc))
    if isinstance(exc, sto.RecordConflict):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, web.HTTPException):
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            416: "range_not_satisfiable",
        }.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason)
        # Keep what the status needs (Allow on 405, Content-Range on 416, ...).
        for name, value in exc.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal", "the server could not handle this request")


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a full traceback at ERROR for a request it cannot parse (a NUL
    in a header, an over-long request line) before any handler runs: anyone can
    flood the log that way. Such a request is the client's fault: one info line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "malformed request refused (%s)"
            record.args = (type(error).__name__,)
            record.exc_info = record.exc_text = None
        return True


def quiet_malformed_requests() -> None:
    """Install ``MalformedRequestFilter`` on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())


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
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        # The client went away mid-body or mid-download: expected, and anyone can
        # cause it at will, so one quiet line, never a traceback.
        route = request.match_info.route.resource
        log.info(
            "client went away during %s %s",
            request.method,
            route.canonical if route is not None else "?",
        )
        return error_response(400, "client_disconnected", "the client went away")
    except Exception as exc:
        return _from_exception(exc)
