"""The operator's instruments: Prometheus metrics on prometheus-client.

Counters and histograms are updated where things happen (HTTP requests through
a middleware, socket.io events and logins through callbacks); figures of the
live state (queues, experts, calls, relay workers) are read when /metrics is
scraped, so that they are the state's own and cost nothing in between.
"""

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from media.datapath import DatapathCollector
from signaling.figures import DepartmentFigures
from storage.tidying import Removal
from web.errors import ERROR_CODE

# Most of what the server answers takes milliseconds; uploads and offers take longer.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class RelaySnapshot:
    """What the relay workers reported at the last scrape."""

    workers: dict[str, dict[str, float]] = field(default_factory=dict)
    """worker -> {"calls", "cpu_seconds", "packets_forwarded",
    "packets_forwarded_at_once", "bytes_forwarded",
    "packets_lost", "nacks", "keyframe_requests", "peer_connections"}"""


class _RelayCollector(Collector):
    """Relay figures as the workers count them (counters since each worker started)."""

    COUNTERS = (
        ("cpu_seconds", "windowlink_relay_cpu_seconds", "CPU time used by the relay worker."),
        (
            "packets_forwarded",
            "windowlink_relay_packets_forwarded",
            "RTP packets forwarded from one leg to another.",
        ),
        (
            "packets_forwarded_at_once",
            "windowlink_relay_packets_forwarded_at_once",
            "Of the RTP packets forwarded, those sent where they arrived (the fast path).",
        ),
        ("bytes_forwarded", "windowlink_relay_bytes_forwarded", "RTP bytes forwarded."),
        (
            "packets_lost",
            "windowlink_relay_packets_lost",
            "Packets receivers reported lost on the relay's streams.",
        ),
        ("nacks", "windowlink_relay_nacks", "Retransmission requests (NACK) received."),
        (
            "keyframe_requests",
            "windowlink_relay_keyframe_requests",
            "Keyframe requests (PLI) sent to sources.",
        ),
        (
            "transport_feedback",
            "windowlink_relay_transport_feedback",
            "Transport-wide congestion control feedback packets sent to senders.",
        ),
        (
            "feedback_received",
            "windowlink_relay_feedback_received",
            "Transport-wide feedback packets received from receivers.",
        ),
        (
            "downlink_limits",
            "windowlink_relay_downlink_limits",
            "Bandwidth limits (REMB) sent to sources from the receivers' measured links.",
        ),
        (
            "feedback_dropped",
            "windowlink_relay_feedback_dropped",
            "Transport-wide feedback left unread: beyond the leg's budget of statuses.",
        ),
        (
            "pump_dropped",
            "windowlink_relay_pump_dropped",
            "Datagrams the native pump dropped: beyond its queue for Python, or refused by "
            "a full socket buffer.",
        ),
        (
            "pump_refused",
            "windowlink_relay_pump_refused",
            "Packets of a steady stream the native pump refused (failed SRTP "
            "authentication or replay).",
        ),
        (
            "internal_auth_failures",
            "windowlink_relay_internal_auth_failures",
            "Requests to the relay worker's internal API refused: unsigned, forged, "
            "stale or replayed.",
        ),
    )

    def __init__(self, snapshot: RelaySnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        workers = self._snapshot.workers
        calls = GaugeMetricFamily(
            "windowlink_relay_calls", "Calls held by each relay worker.", labels=["worker"]
        )
        connections = GaugeMetricFamily(
            "windowlink_relay_peer_connections",
            "Live peer connections in each relay worker.",
            labels=["worker"],
        )
        for worker, figures in workers.items():
            calls.add_metric([worker], figures.get("calls", 0.0))
            connections.add_metric([worker], figures.get("peer_connections", 0.0))
        yield calls
        yield connections
        for key, name, text in self.COUNTERS:
            family = CounterMetricFamily(name, text, labels=["worker"])
            for worker, figures in workers.items():
                value = figures.get(key)
                if value is not None and math.isfinite(value):
                    family.add_metric([worker], value)
            yield family


class Metrics:
    """The app's metrics in a registry of its own (tests build several apps).

    Under ``--processes N`` (prometheus-client's multiprocess mode, with
    ``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor) every process writes its
    samples to that directory and a scrape of any process reads them all: counters
    and histograms add up; the live-state figures, the same in every process (they
    come from the shared store), show the most recent; sockets and unfinished
    uploads add up over the processes alive."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_latency = Histogram(
            "windowlink_http_request_duration_seconds",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.event_latency = Histogram(
            "windowlink_event_duration_seconds",
            "socket.io events by name and outcome (ok or the error code).",
            ["event", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "windowlink_errors",
            "Errors answered, by channel (http, socket) and code.",
            ["channel", "code"],
            registry=r,
        )
        self.login_failures = Counter(
            "windowlink_login_failures", "Logins refused for wrong credentials.", registry=r
        )
        self.login_throttled = Counter(
            "windowlink_login_throttled", "Logins refused by the throttle (429).", registry=r
        )
        self.uploads = Counter(
            "windowlink_uploads", "Documents received completely.", ["uploader"], registry=r
        )
        self.upload_bytes = Counter(
            "windowlink_upload_bytes", "Bytes of documents received completely.", registry=r
        )
        self.downloads = Counter("windowlink_downloads", "Document downloads.", registry=r)
        self.blobs_removed = Counter(
            "windowlink_blobs_removed",
            "Blobs tidying removed (storage.tidying), by kind (document, part) and why "
            "(unrecorded: put but never recorded; shredded: its key was destroyed).",
            ["kind", "why"],
            registry=r,
        )
        self.queue_length = Gauge(
            "windowlink_queue_length",
            "Consultations waiting or ringing, per department.",
            ["department"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.longest_wait = Gauge(
            "windowlink_longest_wait_seconds",
            "Age of the oldest queued consultation, per department.",
            ["department"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.experts = Gauge(
            "windowlink_experts",
            "Experts by department and presence.",
            ["department", "status"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.active_calls = Gauge(
            "windowlink_active_calls",
            "Calls in progress, per department.",
            ["department"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.sockets = Gauge(
            "windowlink_socket_connections",
            "Open socket.io connections.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.unfinished_uploads = Gauge(
            "windowlink_unfinished_uploads",
            "Uploads begun and not yet finished, in the whole deployment.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.relay = RelaySnapshot()
        relay = _RelayCollector(self.relay)
        r.register(relay)
        # The path this process chose at start (its workers chose alike, from the
        # same setting on the same build).
        path = DatapathCollector()
        r.register(path)
        self._exposed = r
        if self.multiprocess:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed)  # type: ignore[no-untyped-call]
            self._exposed.register(relay)
            self._exposed.register(path)

    # ---- what happens -------------------------------------------------------------

    def observe_event(self, event: str, seconds: float, error_code: str | None) -> None:
        self.event_latency.labels(event, error_code or "ok").observe(seconds)
        if error_code is not None:
            self.errors.labels("socket", error_code).inc()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_latency.labels(route, method, str(status)).observe(seconds)

    def count_error(self, code: str) -> None:
        self.errors.labels("http", code).inc()

    def count_blob_removed(self, removal: Removal) -> None:
        self.blobs_removed.labels(removal.kind.value, removal.why.value).inc()

    # ---- live state, read at each scrape --------------------------------------------

    def set_departments(self, figures: dict[str, DepartmentFigures]) -> None:
        if not self.multiprocess:  # there a department's samples stay until it has others
            for gauge in (self.queue_length, self.longest_wait, self.experts, self.active_calls):
                gauge.clear()
        for code, f in figures.items():
            self.queue_length.labels(code).set(f.queue_length)
            self.longest_wait.labels(code).set(f.longest_wait)
            self.active_calls.labels(code).set(f.active_calls)
            for status, count in f.experts.items():
                self.experts.labels(code, status).set(count)

    def exposition(self) -> bytes:
        return generate_latest(self._exposed)


def route_of(request: web.Request) -> str:
    """The route's template (``/api/v1/files/{file_id}``), never the concrete path:
    ids in labels would grow the metrics without bound."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    canonical: str = resource.canonical
    return canonical if not canonical.startswith("/static/") else "/static/"


CLOSED_UNANSWERED = 499
"""The status recorded for a request whose handler was cancelled before it answered
(the stop's grace ran out, or the client left): nginx's "client closed request".
Recorded as 500 it would look like a failure of ours on every dashboard."""


def metrics_middleware(metrics_of: Callable[[web.Request], Metrics]) -> Middleware:
    """Time every request by route, method and status."""

    @web.middleware
    async def measure(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            code = response.get(ERROR_CODE)
            if code is not None:
                metrics_of(request).count_error(code)
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLOSED_UNANSWERED
            raise
        finally:
            metrics_of(request).observe_request(
                route_of(request), request.method, status, time.perf_counter() - start
            )

    return measure
