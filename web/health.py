"""Liveness and Prometheus metrics."""

import hmac
import ipaddress
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from web.api import Api, reply
from web.auth import MetricsTokenThrottle, remote_address
from web.errors import NotFound
from web.keys import FILES, MEDIA, METRICS, SETTINGS, SIGNALING, STORAGE
from web.schemas import HealthView

api = Api()


@api.route(
    "GET",
    "/healthz",
    summary="Health: 200 with status ok; 503 with status unavailable and the problems "
    "when Redis or the database cannot be reached.",
    roles=None,
    response=HealthView,
    tag="operations",
    errors=(503,),
)
async def healthz(request: web.Request) -> web.StreamResponse:
    problems = list(await request.app[SIGNALING].problems())
    blobs = request.app[FILES].blobs
    if not await blobs.reachable():
        problems.append(f"the document store ({blobs.description}) cannot be reached")
    if problems:
        return reply(HealthView(status="unavailable", problems=problems), status=503)
    if request.app[SIGNALING].draining:
        # A load balancer's health check stops sending new clients; the ones here
        # and their calls go on.
        draining = ["draining: this node takes no new calls"]
        return reply(HealthView(status="draining", problems=draining), status=503)
    return reply(HealthView(status="ok"))


@api.route(
    "GET",
    "/metrics",
    summary="Prometheus text metrics, names prefixed windowlink_ (loopback clients, or "
    "Authorization: Bearer <--metrics-token>; anyone else gets 404; wrong tokens are "
    "counted per address: 429 past --login-attempts).",
    roles=None,
    tag="operations",
    content_type="text/plain",
    errors=(404, 429),
)
async def metrics(request: web.Request) -> web.StreamResponse:
    await _admit_scraper(request)
    registry = request.app[METRICS]
    signaling = request.app[SIGNALING]
    now = time.time()
    figures = {}
    for department in await request.app[STORAGE].departments.list():
        figures[department.code] = await signaling.figures(department.code, now)
    registry.set_departments(figures)
    registry.sockets.set(signaling.connection_count)
    registry.unfinished_uploads.set((await request.app[FILES].unfinished())[0])
    registry.relay.workers = await request.app[MEDIA].stats()
    return web.Response(
        body=registry.exposition(),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


async def _admit_scraper(request: web.Request) -> None:
    """The operator only: a loopback client (the real one, behind trusted proxies),
    or whoever presents the metrics token; anyone else is told there is nothing
    here (404). A presented token counts as an attempt before it is compared
    (429 past the limit), so guesses, concurrent ones too, are as few as logins."""
    token = request.app[SETTINGS].metrics_token
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer":
        throttle = MetricsTokenThrottle(request)
        await throttle.admit()
        if hmac.compare_digest(presented.strip().encode(), token.encode()):
            await throttle.take_back()
            return
        raise NotFound("no such page")
    try:
        loopback = ipaddress.ip_address(remote_address(request)).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NotFound("no such page")
