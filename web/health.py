"""Liveness and Prometheus metrics."""

from collections import Counter

from aiohttp import web

from signaling.state import PresenceStatus
from web.api import Api, reply
from web.keys import HUB, STORAGE
from web.schemas import HealthView

api = Api()


@api.route(
    "GET",
    "/healthz",
    summary="Liveness: 200 with status ok.",
    roles=None,
    response=HealthView,
    tag="operations",
)
async def healthz(_request: web.Request) -> web.StreamResponse:
    return reply(HealthView(status="ok"))


def _labels(**labels: str) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}" if inner else ""


@api.route(
    "GET",
    "/metrics",
    summary="Prometheus text metrics, names prefixed windowlink_.",
    roles=None,
    tag="operations",
    content_type="text/plain",
)
async def metrics(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    lines = [
        "# HELP windowlink_socket_connections Open socket.io connections on this node.",
        "# TYPE windowlink_socket_connections gauge",
        f"windowlink_socket_connections {hub.gateway.connection_count}",
        "# HELP windowlink_queue_length Consultations waiting or ringing, per department.",
        "# TYPE windowlink_queue_length gauge",
    ]
    experts: list[str] = []
    oldest: list[str] = []
    now = hub.dispatcher.clock()
    for department in await request.app[STORAGE].departments.list():
        code = department.code
        queue = await hub.store.queue(code)
        lines.append(f"windowlink_queue_length{_labels(department=code)} {len(queue)}")
        calls = [c for c in [await hub.store.get_call(i) for i in queue] if c is not None]
        longest = max((now - c.waiting_since for c in calls), default=0.0)
        oldest.append(f"windowlink_longest_wait_seconds{_labels(department=code)} {longest:.3f}")
        counts = Counter(p.status for p in await hub.store.department_presence(code))
        for status in PresenceStatus:
            experts.append(
                f"windowlink_experts{_labels(department=code, status=status.value)} "
                f"{counts.get(status.value, 0)}"
            )
    lines += [
        "# HELP windowlink_longest_wait_seconds Age of the oldest queued consultation.",
        "# TYPE windowlink_longest_wait_seconds gauge",
        *oldest,
        "# HELP windowlink_experts Experts known to signaling, by presence.",
        "# TYPE windowlink_experts gauge",
        *experts,
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")
