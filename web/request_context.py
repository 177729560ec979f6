"""Each request's log lines carry its id (and, once known, the account's)."""

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from observability.logs import log_context
from web.metrics import CLOSED_UNANSWERED, route_of

log = logging.getLogger("windowlink.http")


@web.middleware
async def request_context(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id = secrets.token_hex(8)
    # Requests on one keep-alive connection share a task: every id is reset after.
    start = time.perf_counter()
    status = 500
    with log_context(request_id=request_id, account_id=None, consultation_id=None):
        try:
            response = await handler(request)
            status = response.status
        except web.HTTPException as exc:
            status = exc.status
            exc.headers["X-Request-Id"] = request_id
            raise
        except asyncio.CancelledError:
            status = CLOSED_UNANSWERED
            raise
        finally:
            # The route's template, never the path: paths hold case numbers and ids.
            log.log(
                logging.WARNING if status >= 500 else logging.DEBUG,
                "%s %s -> %d in %.1f ms",
                request.method,
                route_of(request),
                status,
                (time.perf_counter() - start) * 1000,
            )
        response.headers["X-Request-Id"] = request_id
        return response
