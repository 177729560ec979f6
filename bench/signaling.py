"""Signaling benchmark: the whole consultation cycle the pages run, arriving
open-loop, against the product in several server configurations and against the
stack's floor, in one invocation.

    python bench/signaling.py
    python bench/signaling.py --configs floor,memory --rates 25,50,100,150 --phase-seconds 20

The cycle (seven client events, as the kiosk and expert pages send them):
kiosk ``request_consultation`` -> the server rings an expert (``offer``) -> the
expert ``accept_offer`` after a think time -> the call is held for its length ->
the expert ``end_consultation`` and at once ``save_outcome`` -> the kiosk
``rate_consultation`` a moment after it sees the end. Experts are a pool per
department (expert i serves department i mod --departments); each takes the
next offer while free. Kiosks are the hall's terminals: a citizen who arrives
takes a free one (one open consultation per kiosk), and waits for one if none is
free (counted: the kiosks are then the limit, not the server).

Timing. A real hall thinks for seconds and talks for minutes; at 100
consultations a second that would take tens of thousands of experts (Little's
law: experts busy = rate x (think + call)), and the bench has 100. So it
compresses the hall's time and keeps its shape: by default, at each offered rate
the experts' think time and call length are scaled so that the experts are
``--utilization`` (0.8) busy, a quarter of each expert's cycle ringing and
thinking, three quarters talking. With 100 experts that is an offer answered
after 0.2 s and a 0.6 s call at 100/s, 0.8 s and 2.4 s at 25/s; at every rate
80 experts are busy, offers ring, calls overlap, queues form and drain, and each
consultation sends all seven events. What the server does for a consultation
does not depend on the wall-clock length of its call (the pings of connected
clients are idle cost, subtracted); it depends on what happens, and all of it
happens. The kiosk rates ``--rate-delay`` (1 s) after it sees the end. Think and
rating delays spread uniformly over 0.5x-1.5x their mean, call lengths are gamma
distributed with a coefficient of variation of 0.5. ``--accept-delay`` and
``--call-seconds`` fix them instead (e.g. ``--accept-delay 5 --call-seconds 60``
for a hall's own pace at low rates); a rate beyond what the experts can then
take is reported as limited by the experts, and one where citizens had to wait
for a free kiosk as limited by the kiosks, not as a server limit.

Arrivals are open-loop: each consultation has a scheduled time (Poisson, or
``--arrivals fixed`` spacing, at the offered rate, split over the client
processes; departments at random). Every latency is measured from when the
action was due, not from when a task got to run, so that a late server (or a
late load generator) shows up instead of slowing the load down:

- ``request_ack``: the scheduled arrival -> the ack (includes waiting for a kiosk);
- ``offer``: the later of that arrival and the moment the expert was due to be free
  (the due time of their previous ``end_consultation``) -> the ``offer`` event at
  the expert (the arrival time travels in the case number, ``T<microseconds>``, on
  this machine's monotonic clock, which all processes share);
- ``accept_ack``: offer received + think time -> the ack;
- ``end_ack``: accept acked + call length -> the ack;
- ``outcome_ack``: end acked -> the ack;  ``rate_ack``: end seen + rating delay -> the ack;
- ``probe``: one more kiosk asks ``get_state`` every 1/--probe-per-second s on its
  own schedule (several may be in flight) -> the ack;
- for information: ``queue_wait`` (arrival -> the call is active at the kiosk, mostly
  waiting for a free expert) and ``visit`` (arrival -> rating acked).

Phases, for each configuration: ``idle`` (everyone connected, the probe only);
``load`` at each of ``--rates`` (``--warmup-seconds`` of arrivals, then a
``--phase-seconds`` window that is measured, then arrivals stop and the bench
waits for every open consultation to finish before the next phase); ``standing``
(arrivals at ``--standing-over`` x what the experts can take until about
``--standing-queue`` consultations wait across the departments, window
``over``; then ``--standing-under`` x until the queues have drained, window
``under``); ``pairs`` (a kiosk and an expert of a department of their own run
offer/accept rounds at idle: the expert on the same server process as the kiosk,
and, with two processes, on the other one). Rates step up until the first one not
sustained above ``--reference-rate`` (``--keep-stepping`` runs them all).

Per window: completed consultations (the later of the expert's outcome ack and
the kiosk's rating ack inside the window) per second; latency percentiles; server
CPU per consultation = (CPU of the server processes and all their descendants,
relay workers included, from /proc, exactly over the window, minus the idle
rate measured with the same clients connected and the probe running, times the
window) / completed; the load generator's CPU (client processes and this one) in
seconds per second, and per consultation likewise net of its idle rate; the
machine's busy cores (everything running on it); socket.io packets per consultation,
sent and received by the hall's clients (not the probe's), split into events
sent, acks received and events received, and per name. A rate is sustained when
nothing failed, everything drained, the window completed at least 90 % as many
consultations as arrived in it, the open consultations did not pile up during
it (first fifth against last fifth) and the hall's pools were not the limit.
Every figure of a product configuration comes with its ratio to the floor's in
the same phase, and ``message_mix_differs_from_floor`` lists the events whose
number per consultation differs by more than a quarter (the floor's rules, in
bench/floor_server.py ``--mix``, then need to follow the product; in the
standing windows a slower server also makes longer queues, hence more
positions to tell).

Configurations (``--configs``, run one after another; one that does not come up
is skipped with a ``{"skipped": name, "reason": ...}`` line):

- ``floor``: ``python bench/floor_server.py --mix lean`` (python-socketio answering
  the same events with the same acks and events, no product behind them;
  ``--floor-mix echo`` for the message mix of docs/PROTOCOL.md before the
  signaling rewrite);
- ``memory``: ``python server.py`` (in-process state);
- ``redis``: ``python server.py --redis-url redis://127.0.0.1:6379/14``;
- ``redis2``: two ``server.py --redis-url ...`` processes on two ports, sharing the
  data directory; the clients alternate between them, every department has
  experts on both, and the ``pairs`` phase puts the expert on the other process;
- ``redis-processes2``: one ``server.py --redis-url ... --processes 2`` (the kernel
  spreads the connections; the pairs cannot choose a process).

Each product server gets ``--port P --data-dir D --log-level warning
--ring-timeout 20 --events-per-second 200`` (the probe asks 50 times a second on
one socket, more than the default 20 events/s a connection may send), plus
``--database-url`` if given and every ``--server-arg``. Accounts and login
sessions are seeded straight into a fresh database (SQLite in the data directory,
or with ``--database-url postgresql://.../admin_db`` a fresh PostgreSQL database
created for each configuration and dropped after). The Redis database
(``--redis-url``, never db 0) is flushed before and after each Redis
configuration. Everything the bench starts it stops: servers and their
descendants, client processes, temporary directories, databases.

Client processes (``--workers``, 3) hold the kiosks and experts; clients alternate
between the server processes of a configuration. The coordinator (this process)
holds the probe and the pair clients, samples /proc at the window boundaries,
and gathers what the client processes saw.

Output: JSON lines (``bench.measure.emit``), one per phase window and a summary
per configuration. The bench asserts nothing.
"""

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import queue
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402
from bench.measure import (  # noqa: E402
    cpu_seconds,
    machine_busy_seconds,
    percentile,
    process_tree,
    start_time,
    tree_cpu_seconds,
)
from harness.ports import free_port  # noqa: E402
from signaling.client import (  # noqa: E402
    SERVER_EVENTS,
    ClientError,
    ExpertClient,
    KioskClient,
    WindowlinkClient,
)

now = time.perf_counter
"""CLOCK_MONOTONIC on Linux: the same clock in every process of this machine."""

ACTION_ERRORS = (ClientError, socketio.exceptions.SocketIOError, TimeoutError)
OUTCOMES = ("answered", "answered", "answered", "follow_up", "referred")
NOTES = "Explained the required documents; the citizen will bring the lease tomorrow."
PAIR_DEPARTMENT = "xpair"
SAMPLE_EVERY = 0.25


def emit(record: dict[str, Any]) -> None:
    measure.emit("signaling", record)


async def sleep_until(t: float) -> None:
    delay = t - now()
    if delay > 0:
        await asyncio.sleep(delay)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return exc.code
    return type(exc).__name__


# ---- what one client process measures ----------------------------------------------


@dataclass(frozen=True)
class Window:
    name: str
    start: float
    end: float


class Recorder:
    """What one client process saw during one phase, by window: an action belongs to
    the window its due time falls in, a packet to the one it was sent or received in."""

    def __init__(self, windows: Sequence[Window] = ()) -> None:
        self.windows = list(windows)
        self.latencies: dict[str, dict[str, list[float]]] = {
            w.name: defaultdict(list) for w in self.windows
        }
        self.packets: dict[str, Counter[str]] = {w.name: Counter() for w in self.windows}
        self.counts: dict[str, Counter[str]] = {w.name: Counter() for w in self.windows}
        self.busy: dict[str, float] = {w.name: 0.0 for w in self.windows}
        self.failures: Counter[str] = Counter()

    def window_of(self, t: float) -> str | None:
        for w in self.windows:
            if w.start <= t < w.end:
                return w.name
        return None

    def latency(self, kind: str, due: float, done: float) -> None:
        name = self.window_of(due)
        if name is not None:
            self.latencies[name][kind].append(done - due)

    def count(self, key: str, t: float) -> None:
        name = self.window_of(t)
        if name is not None:
            self.counts[name][key] += 1

    def packet(self, key: str, t: float) -> None:
        name = self.window_of(t)
        if name is not None:
            self.packets[name][key] += 1

    def fail(self, key: str, due: float) -> None:
        """A failure counts for the whole phase (warm-up and drain too) and its window."""
        self.failures[key] += 1
        self.count(f"failed {key}", due)

    def busy_between(self, start: float, end: float) -> None:
        for w in self.windows:
            overlap = min(end, w.end) - max(start, w.start)
            if overlap > 0:
                self.busy[w.name] += overlap

    def report(self) -> dict[str, Any]:
        return {
            "windows": {
                w.name: {
                    "latencies": dict(self.latencies[w.name]),
                    "packets": dict(self.packets[w.name]),
                    "counts": dict(self.counts[w.name]),
                    "busy_s": self.busy[w.name],
                }
                for w in self.windows
            },
            "failures": dict(self.failures),
        }


class CountedClient(WindowlinkClient):
    """The typed client, counting every event it sends and every ack it receives."""

    def __init__(self, base_url: str, count: Callable[[str, float], None]) -> None:
        super().__init__(base_url)
        self.count = count

    async def emit(self, event: str, payload: Any = None, *, timeout: float = 60) -> Any:
        self.count(f"sent {event}", now())
        try:
            result = await super().emit(event, payload, timeout=timeout)
        except ClientError:
            self.count(f"ack {event}", now())
            raise
        self.count(f"ack {event}", now())
        return result


class CountedKiosk(CountedClient, KioskClient):
    pass


class CountedExpert(CountedClient, ExpertClient):
    pass


def listen(
    client: CountedClient,
    count: Callable[[str, float], None],
    reactions: dict[str, Callable[[dict[str, Any], float], None]],
) -> None:
    """Replace the typed client's event queues (nobody would read them) by handlers
    that count every event received, by name, and react to a few."""

    def receiver(name: str) -> Callable[..., None]:
        key = f"event {name}"
        react = reactions.get(name)

        def receive(data: Any = None, *_more: Any) -> None:
            t = now()
            count(key, t)
            if react is not None and isinstance(data, dict):
                react(data, t)

        return receive

    for name in SERVER_EVENTS:
        client.sio.on(name, handler=receiver(name))

    def anything_else(event: str, *_data: Any) -> None:
        count(f"event {event}", now())

    client.sio.on("*", handler=anything_else)


# ---- the hall: kiosks and experts of one client process ----------------------------


@dataclass(frozen=True)
class Timing:
    accept_delay: float
    """Mean seconds an expert takes to accept an offer (uniform over 0.5x-1.5x)."""
    call_seconds: float
    """Mean call length in seconds (gamma distributed, coefficient of variation 0.5)."""
    rate_delay: float
    """Mean seconds between the kiosk seeing the end and its rating (0.5x-1.5x)."""
    visit_timeout: float
    """Seconds a kiosk waits for its call before it gives up (a failure)."""

    def think(self, rng: random.Random) -> float:
        return rng.uniform(0.5, 1.5) * self.accept_delay

    def call(self, rng: random.Random) -> float:
        return rng.gammavariate(4.0, self.call_seconds / 4) if self.call_seconds > 0 else 0.0

    def rating(self, rng: random.Random) -> float:
        return rng.uniform(0.5, 1.5) * self.rate_delay

    def capacity(self, experts: int) -> float:
        """Consultations per second ``experts`` can take at this timing."""
        cycle = self.accept_delay + self.call_seconds
        return experts / cycle if cycle > 0 else math.inf

    def public(self) -> dict[str, float]:
        return {
            "accept_delay_s": round(self.accept_delay, 3),
            "call_s": round(self.call_seconds, 3),
            "rate_delay_s": round(self.rate_delay, 3),
        }


@dataclass(frozen=True)
class Seat:
    """One client: its session token and the server process it connects to."""

    token: str
    url: str


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    workers: int
    kiosks: list[Seat]
    experts: list[Seat]
    departments: list[str]
    arrivals: str
    seed: int


@dataclass(frozen=True)
class Segment:
    """Arrivals at ``rate`` per second (all client processes together) in [start, end)."""

    start: float
    end: float
    rate: float


@dataclass(frozen=True)
class PhaseOrder:
    number: int
    timing: Timing
    segments: list[Segment]
    windows: list[Window]
    start: float
    drain_timeout: float

    @property
    def end(self) -> float:
        return max([w.end for w in self.windows] + [s.end for s in self.segments])


def requested_at(case_number: Any) -> float | None:
    """The scheduled arrival a bench kiosk wrote into the case number."""
    if isinstance(case_number, str) and case_number[:1] == "T" and case_number[1:].isdigit():
        return int(case_number[1:]) / 1e6
    return None


@dataclass
class Visit:
    """One citizen's consultation as the kiosk sees it."""

    due: float
    department: str
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    end_reason: dict[str, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, cid: str, state: str, deadline: float) -> float | None:
        """When the kiosk received ``consultation`` in ``state``; None if it ended
        otherwise or did not come by ``deadline``."""
        while True:
            seen = self.seen.get((cid, state))
            if seen is not None:
                return seen
            if state != "ended" and (cid, "ended") in self.seen:
                return None
            remaining = deadline - now()
            if remaining <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return None


class Kiosk:
    def __init__(self, hall: "Hall", client: CountedKiosk) -> None:
        self.client = client
        self.visit: Visit | None = None
        listen(client, hall.packet, {"consultation": self.on_consultation})

    def on_consultation(self, data: dict[str, Any], t: float) -> None:
        visit = self.visit
        if visit is None:
            return
        cid, state = str(data.get("consultation_id")), str(data.get("state"))
        visit.seen.setdefault((cid, state), t)
        if state == "ended":
            visit.end_reason[cid] = str(data.get("end_reason"))
        visit.changed.set()


class Expert:
    def __init__(self, hall: "Hall", client: CountedExpert) -> None:
        self.hall = hall
        self.client = client
        self.free_due = 0.0
        """When this expert was due to be free again (their last end was due)."""
        self.ringing: dict[str, asyncio.Task[None]] = {}
        listen(client, hall.packet, {"offer": self.on_offer, "offer_revoked": self.on_revoked})

    def on_offer(self, data: dict[str, Any], t: float) -> None:
        cid = str(data.get("consultation_id"))
        requested = requested_at(data.get("case_number"))
        due = max(requested, self.free_due) if requested is not None else t
        self.hall.rec.latency("offer", due, t)
        self.ringing[cid] = self.hall.spawn(self.take(cid, t))

    def on_revoked(self, data: dict[str, Any], t: float) -> None:
        self.hall.rec.count(f"offer_revoked {data.get('reason')}", t)
        task = self.ringing.pop(str(data.get("consultation_id")), None)
        if task is not None:
            task.cancel()

    async def take(self, cid: str, offered: float) -> None:
        """Think, accept, hold the call, end it, save the outcome."""
        hall, timing, rng = self.hall, self.hall.timing, self.hall.rng
        busy_until: float | None = None
        try:
            accept_due = offered + timing.think(rng)
            await sleep_until(accept_due)
            self.ringing.pop(cid, None)  # sent from here on: a revocation no longer stops it
            try:
                await self.client.accept(cid)
            except ACTION_ERRORS as exc:
                hall.rec.fail(f"accept_offer: {describe(exc)}", accept_due)
                return
            accepted = now()
            hall.rec.latency("accept_ack", accept_due, accepted)
            end_due = accepted + timing.call(rng)
            await sleep_until(end_due)
            self.free_due = end_due
            try:
                await self.client.end(cid)
            except ACTION_ERRORS as exc:
                hall.rec.fail(f"end_consultation: {describe(exc)}", end_due)
                return
            busy_until = ended = now()
            hall.rec.latency("end_ack", end_due, ended)
            try:
                await self.client.save_outcome(cid, rng.choice(OUTCOMES), NOTES)
            except ACTION_ERRORS as exc:
                hall.rec.fail(f"save_outcome: {describe(exc)}", ended)
                return
            done = now()
            hall.rec.latency("outcome_ack", ended, done)
            hall.completions.append((cid, done, "expert"))
        finally:
            hall.rec.busy_between(offered, busy_until if busy_until is not None else now())


class Hall:
    """One client process's share of the hall: its kiosks, its experts, its arrivals."""

    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.rec = Recorder()
        self.timing = Timing(0, 0, 0, 60)
        self.clients: list[CountedClient] = []
        self.kiosks: list[Kiosk] = []
        self.experts: list[Expert] = []
        self.idle: list[Kiosk] = []
        self.pending: deque[tuple[float, str]] = deque()
        self.visits: set[asyncio.Task[None]] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.completions: list[tuple[str, float, str]] = []
        self.arrived: list[float] = []
        self.waiting = 0

    def packet(self, key: str, t: float) -> None:
        self.rec.packet(key, t)

    def spawn(self, coro: Any, into: set[asyncio.Task[None]] | None = None) -> asyncio.Task[None]:
        tasks = self.tasks if into is None else into
        task: asyncio.Task[None] = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def open(self) -> None:
        gate = asyncio.Semaphore(16)

        async def connect(client: CountedClient, seat: Seat) -> None:
            client.session_cookie = seat.token
            self.clients.append(client)
            async with gate:
                await client.connect()

        experts = [CountedExpert(s.url, self.packet) for s in self.plan.experts]
        kiosks = [CountedKiosk(s.url, self.packet) for s in self.plan.kiosks]
        await asyncio.gather(
            *(connect(c, s) for c, s in zip(experts, self.plan.experts, strict=True)),
            *(connect(c, s) for c, s in zip(kiosks, self.plan.kiosks, strict=True)),
        )
        self.experts = [Expert(self, c) for c in experts]
        self.kiosks = [Kiosk(self, c) for c in kiosks]
        self.idle = list(self.kiosks)
        for expert in self.experts:
            await expert.client.set_presence("available")

    async def close(self) -> None:
        for task in [*self.visits, *self.tasks]:
            task.cancel()
        await asyncio.gather(*self.visits, *self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)

    # ---- arrivals ----------------------------------------------------------------

    def arrive(self, due: float, department: str) -> None:
        self.rec.count("arrivals", due)
        self.arrived.append(due)
        if self.idle:
            kiosk = self.idle.pop(self.rng.randrange(len(self.idle)))
            self.spawn(self.visit(kiosk, due, department), self.visits)
        else:
            self.rec.count("arrivals that waited for a kiosk", due)
            self.pending.append((due, department))

    def release(self, kiosk: Kiosk) -> None:
        if self.pending:
            due, department = self.pending.popleft()
            self.spawn(self.visit(kiosk, due, department), self.visits)
        else:
            self.idle.append(kiosk)

    async def arrivals(self, segment: Segment) -> None:
        share = segment.rate / self.plan.workers
        if share <= 0:
            return
        poisson = self.plan.arrivals == "poisson"
        t = segment.start + (
            self.rng.expovariate(share) if poisson else self.plan.index / segment.rate
        )
        while t < segment.end:
            await sleep_until(t)
            self.arrive(t, self.rng.choice(self.plan.departments))
            t += self.rng.expovariate(share) if poisson else 1 / share

    async def visit(self, kiosk: Kiosk, due: float, department: str) -> None:
        """Request, wait for the call and its end, rate."""
        timing, rec = self.timing, self.rec
        visit = kiosk.visit = Visit(due, department)
        self.waiting += 1
        waiting = True
        try:
            try:
                view = await kiosk.client.request(department, f"T{round(due * 1e6)}")
            except ACTION_ERRORS as exc:
                rec.fail(f"request_consultation: {describe(exc)}", due)
                return
            rec.latency("request_ack", due, now())
            cid = view.consultation_id
            active = await visit.until(cid, "active", max(due, now()) + timing.visit_timeout)
            self.waiting -= 1
            waiting = False
            if active is None:
                reason = visit.end_reason.get(cid)
                rec.fail(f"ended {reason} before the call" if reason else "no call in time", due)
                if reason is None:
                    with contextlib.suppress(*ACTION_ERRORS):
                        await kiosk.client.end(cid)
                return
            rec.latency("queue_wait", due, active)
            ended = await visit.until(cid, "ended", active + timing.visit_timeout)
            if ended is None or visit.end_reason.get(cid) != "completed":
                rec.fail(f"call ended {visit.end_reason.get(cid, 'never')}", due)
                return
            rate_due = ended + timing.rating(self.rng)
            await sleep_until(rate_due)
            try:
                await kiosk.client.rate(cid, self.rng.choice((5, 5, 5, 4, 4, 3)))
            except ACTION_ERRORS as exc:
                rec.fail(f"rate_consultation: {describe(exc)}", rate_due)
                return
            done = now()
            rec.latency("rate_ack", rate_due, done)
            rec.latency("visit", due, done)
            self.completions.append((cid, done, "kiosk"))
        finally:
            if waiting:
                self.waiting -= 1
            kiosk.visit = None
            self.release(kiosk)

    # ---- one phase -----------------------------------------------------------------

    async def sample(self, start: float, samples: dict[int, tuple[int, int]]) -> None:
        """Consultations waiting for a call and open (incl. citizens waiting for a
        kiosk), on a grid shared by every client process."""
        k = 0
        while True:
            await sleep_until(start + k * SAMPLE_EVERY)
            samples[k] = (self.waiting, len(self.visits) + len(self.pending))
            k += 1

    async def run(self, order: PhaseOrder) -> dict[str, Any]:
        self.rec = Recorder(order.windows)
        self.timing = order.timing
        self.completions = []
        self.arrived = []
        samples: dict[int, tuple[int, int]] = {}
        sampler = asyncio.create_task(self.sample(order.start, samples))
        for segment in order.segments:
            await self.arrivals(segment)
        await sleep_until(order.end)
        dropped = len(self.pending)
        self.pending.clear()
        deadline = now() + order.drain_timeout
        while (self.visits or self.tasks) and now() < deadline:
            await asyncio.wait({*self.visits, *self.tasks}, timeout=deadline - now())
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        report = self.rec.report()
        report.update(
            completions=self.completions,
            arrived=self.arrived,
            samples=samples,
            dropped_arrivals=dropped,
            unfinished=len(self.visits) + len(self.tasks),
        )
        self.rec = Recorder()
        return report


def raise_open_file_limit() -> None:
    """Every client is a socket: use the open-file allowance the system grants."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker(plan: WorkerPlan, orders: Any, results: Any) -> None:
    raise_open_file_limit()
    asyncio.run(_worker(plan, orders, results))


async def _worker(plan: WorkerPlan, orders: Any, results: Any) -> None:
    hall = Hall(plan)
    try:
        try:
            await hall.open()
        except Exception as exc:
            results.put({"worker": plan.index, "error": f"{type(exc).__name__}: {exc}"})
            return
        results.put({"worker": plan.index, "ready": len(hall.clients)})
        loop = asyncio.get_running_loop()
        while True:
            order = await loop.run_in_executor(None, orders.get)
            if order is None:
                break
            results.put({"worker": plan.index, "phase": order.number, **await hall.run(order)})
    finally:
        await hall.close()


# ---- accounts and server configurations ------------------------------------------


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    department: str | None = None
    hall: str | None = None


@dataclass
class Accounts:
    kiosks: list[Account]
    experts: list[Account]
    departments: list[str]
    probe: Account = Account("probe", "kiosk", hall="city")
    pair_kiosk: Account = Account("xkiosk", "kiosk", hall="city")
    pair_experts: tuple[Account, Account] = (
        Account("xexpert0", "expert", PAIR_DEPARTMENT),
        Account("xexpert1", "expert", PAIR_DEPARTMENT),
    )

    @classmethod
    def for_hall(cls, kiosks: int, experts: int, departments: int) -> "Accounts":
        codes = [f"dept{d}" for d in range(max(1, min(departments, experts)))]
        return cls(
            kiosks=[Account(f"kiosk{i:04d}", "kiosk", hall="city") for i in range(kiosks)],
            experts=[
                Account(f"expert{i:04d}", "expert", codes[i % len(codes)]) for i in range(experts)
            ],
            departments=codes,
        )

    def all(self) -> list[Account]:
        return [*self.kiosks, *self.experts, self.probe, self.pair_kiosk, *self.pair_experts]


async def seed_product(
    accounts: Accounts, data_dir: Path, database_url: str | None
) -> dict[str, str]:
    """Accounts and ready sessions straight into the database (logins are not measured)."""
    from storage.passwords import hash_password
    from storage.records import AuditEvent, Role
    from storage.sessions import SessionPolicy
    from storage.store import Storage

    storage = await Storage.open(database_url, data_dir, SessionPolicy(86400, 86400))
    tokens: dict[str, str] = {}
    try:
        encoded = hash_password("bench-password")
        for code in [*accounts.departments, PAIR_DEPARTMENT]:
            await storage.departments.create(code, f"部门 {code}", f"Department {code}")
        for a in accounts.all():
            record = await storage.accounts.create(
                a.username,
                "",
                Role(a.role),
                department=a.department,
                hall=a.hall,
                password_hash=encoded,
            )
            tokens[a.username] = await storage.sessions.create(record, "127.0.0.1", audit=None)
        await storage.audit.append(AuditEvent("bench", "bench.seed", "", {}))
    finally:
        await storage.close()
    return tokens


def seed_floor(accounts: Accounts, path: Path) -> dict[str, str]:
    tokens = {a.username: secrets.token_urlsafe(32) for a in accounts.all()}
    identities = {
        tokens[a.username]: {
            "username": a.username,
            "role": a.role,
            "department": a.department,
            "hall": a.hall,
        }
        for a in accounts.all()
    }
    path.write_text(json.dumps(identities))
    return tokens


@dataclass(frozen=True)
class Config:
    name: str
    processes: int
    """Server processes the bench starts (each on its own port)."""
    redis: bool = False
    floor: bool = False
    extra: tuple[str, ...] = ()


CONFIGS = {
    c.name: c
    for c in (
        Config("floor", 1, floor=True),
        Config("memory", 1),
        Config("redis", 1, redis=True),
        Config("redis2", 2, redis=True),
        Config("redis-processes2", 1, redis=True, extra=("--processes", "2")),
    )
}


CLUSTER_SECRET = secrets.token_urlsafe(24)
"""Shared by the processes of a configuration, as a deployment's nodes share theirs."""


def server_commands(
    config: Config, ports: list[int], data_dir: Path, args: argparse.Namespace, db_url: str | None
) -> list[list[str]]:
    if config.floor:
        return [
            [
                sys.executable,
                "bench/floor_server.py",
                "--port",
                str(ports[0]),
                "--identities",
                str(data_dir / "identities.json"),
                "--mix",
                args.floor_mix,
            ]
        ]
    commands = []
    for port in ports:
        command = [
            sys.executable,
            "server.py",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            "--ring-timeout",
            "20",
            "--events-per-second",
            "200",
        ]
        if config.redis:
            command += ["--redis-url", args.redis_url, "--cluster-secret", CLUSTER_SECRET]
            # Nodes sharing documents start only with a shared master key.
            command += ["--master-key-file", str(master_key_beside(data_dir))]
        if db_url:
            command += ["--database-url", db_url]
        commands.append(command + list(config.extra) + list(args.server_arg))
    return commands


def master_key_beside(data_dir: Path) -> Path:
    """The run's master key, made once next to its data directory (mode 600)."""
    path = data_dir.parent / "master.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(os.urandom(32).hex())
    return path


class Servers:
    """The server processes of one configuration; stopped with every descendant."""

    def __init__(self, commands: list[list[str]], log_dir: Path) -> None:
        self.commands = commands
        self.logs = [log_dir / f"server{i}.log" for i in range(len(commands))]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.known: set[tuple[int, int | None]] = set()

    async def start(self, ports: list[int], timeout: float) -> str | None:
        """Start the processes one after the other (the second finds the database the
        first has prepared); None when every one answers /healthz, else why not."""
        for command, log, port in zip(self.commands, self.logs, ports, strict=True):
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
                )
            problem = await self.wait_up(self.processes[-1], port, timeout)
            if problem is not None:
                return problem
        self.remember_descendants()
        return None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def remember_descendants(self) -> None:
        for pid in self.pids:
            self.known |= {(p, start_time(p)) for p in process_tree(pid)}

    def tail(self, lines: int = 6) -> str:
        text = []
        for log in self.logs:
            if log.exists():
                text += log.read_text(errors="replace").strip().splitlines()[-lines:]
        return " | ".join(text)

    async def wait_up(
        self, process: "subprocess.Popen[bytes]", port: int, timeout: float
    ) -> str | None:
        import aiohttp

        deadline = now() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if process.poll() is not None:
                    return f"exited with status {process.returncode}: {self.tail()}"
                if now() > deadline:
                    return f"no answer at /healthz within {timeout:.0f} s: {self.tail()}"
                try:
                    async with http.get(
                        f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as response:
                        if response.status == 200:
                            return None
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.remember_descendants()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        # Relay workers exit with their parent; any left over are ended by their id.
        for pid, started in self.known:
            if started is not None and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def flush_redis(url: str) -> str | None:
    """Empty the bench's Redis database; why not, if it cannot."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        if int(client.connection_pool.connection_kwargs.get("db", 0)) == 0:
            return f"{url} is Redis database 0, which others use; give another (e.g. /14)"
        client.flushdb()
    except redis.RedisError as exc:
        return f"Redis at {url}: {exc}"
    finally:
        client.close()
    return None


async def create_database(admin_url: str) -> str:
    import asyncpg

    name = f"wl_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


async def drop_database(admin_url: str, url: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


# ---- what the coordinator measures ------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    at: float
    server: float
    generator: float
    machine: float


class Probe:
    """One more kiosk asking ``get_state`` on a fixed schedule; the round trip is
    timed from when each question was due, several may be in flight."""

    def __init__(self, client: KioskClient, per_second: float) -> None:
        self.client = client
        self.interval = 1 / per_second

    async def run(
        self, start: float, end: float, windows: list[Window]
    ) -> tuple[dict[str, list[float]], int]:
        """Round trips by window, and how many questions got no answer."""
        rec = Recorder(windows)
        asking: set[asyncio.Task[None]] = set()
        errors = 0

        async def ask(due: float) -> None:
            nonlocal errors
            try:
                await self.client.emit("get_state", timeout=30)
            except ACTION_ERRORS:
                errors += 1
                return
            rec.latency("probe", due, now())

        due = start
        while due < end:
            await sleep_until(due)
            task = asyncio.create_task(ask(due))
            asking.add(task)
            task.add_done_callback(asking.discard)
            due += self.interval
        if asking:
            await asyncio.wait(asking, timeout=30)
        return {name: rtts["probe"] for name, rtts in rec.latencies.items()}, errors


class PairClients:
    """A kiosk and two experts of a department of their own, for offer/accept rounds
    with the expert on the kiosk's server process or on another one."""

    def __init__(self, kiosk: KioskClient, same: ExpertClient, other: ExpertClient) -> None:
        self.kiosk, self.same, self.other = kiosk, same, other
        self.offer_at: float | None = None
        self.states: dict[tuple[str, str], float] = {}
        self.changed = asyncio.Event()
        self.accepting: set[asyncio.Task[Any]] = set()

        def on_consultation(data: Any) -> None:
            if isinstance(data, dict):
                key = (str(data.get("consultation_id")), str(data.get("state")))
                self.states.setdefault(key, now())
                self.changed.set()

        kiosk.sio.on("consultation", handler=on_consultation)
        for expert in (same, other):
            expert.sio.on("offer", handler=self._accepting(expert))

    def _accepting(self, expert: ExpertClient) -> Callable[[Any], None]:
        def on_offer(data: Any) -> None:
            self.offer_at = now()
            if isinstance(data, dict):
                task = asyncio.create_task(expert.accept(str(data.get("consultation_id"))))
                self.accepting.add(task)
                task.add_done_callback(self.accepting.discard)

        return on_offer

    async def until(self, cid: str, state: str, timeout: float = 10) -> float | None:
        deadline = now() + timeout
        while (cid, state) not in self.states:
            if now() > deadline:
                return None
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), deadline - now())
        return self.states[(cid, state)]

    async def rounds(self, count: int) -> dict[str, dict[str, list[float]]]:
        """``count`` rounds each way, alternating: request -> offer at the expert, who
        accepts at once -> the kiosk sees the call active; then the expert ends it."""
        legs: dict[str, dict[str, list[float]]] = {
            kind: {"round": [], "offer": [], "accept": []} for kind in ("same", "other")
        }
        for i in range(2 * count):
            kind = ("same", "other")[i % 2]
            expert = self.same if kind == "same" else self.other
            idle = self.other if kind == "same" else self.same
            try:
                await idle.set_presence("away")
                await expert.set_presence("available")
                await asyncio.sleep(0.05)
                self.offer_at = None
                sent = now()
                view = await self.kiosk.request(PAIR_DEPARTMENT)
                active = await self.until(view.consultation_id, "active")
                if active is not None and self.offer_at is not None:
                    legs[kind]["round"].append(active - sent)
                    legs[kind]["offer"].append(self.offer_at - sent)
                    legs[kind]["accept"].append(active - self.offer_at)
                    await expert.end(view.consultation_id)
                else:
                    await self.kiosk.end(view.consultation_id)
                await self.until(view.consultation_id, "ended")
            except ACTION_ERRORS as exc:
                print(f"pair round failed: {exc!r}", file=sys.stderr)
            await asyncio.sleep(0.05)
        return legs


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def summarize(values: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values)) if values else None,
        "n": len(values),
    }


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or floor is None or floor <= 0:
        return None
    return round(value / floor, 2)


@dataclass
class PhaseResult:
    parts: list[dict[str, Any]]
    cpu: dict[float, CpuSample]
    probe: dict[str, list[float]]
    probe_errors: int
    completed_at: dict[str, float]
    samples: dict[int, tuple[int, int]]
    arrived: list[float]


class Bench:
    """One configuration: its servers, its client processes, its phases."""

    def __init__(
        self,
        config: Config,
        args: argparse.Namespace,
        accounts: Accounts,
        floor: dict[str, dict[str, Any]] | None,
    ) -> None:
        self.config = config
        self.args = args
        self.accounts = accounts
        self.floor = floor
        self.figures: dict[str, dict[str, Any]] = {}
        self.urls: list[str] = []
        self.servers: Servers | None = None
        self.processes: list[Any] = []
        self.orders: list[Any] = []
        self.results: Any = None
        self.coordinator_clients: list[WindowlinkClient] = []
        self.probe: Probe | None = None
        self.pairs: PairClients | None = None
        self.idle_rate = 0.0
        self.idle_generator_rate = 0.0
        self.connected = 0
        self.phases = 0

    # ---- set-up --------------------------------------------------------------------

    def plans(self, tokens: dict[str, str]) -> list[WorkerPlan]:
        args, a = self.args, self.accounts
        n = len(self.urls)
        kiosk_seats = [Seat(tokens[k.username], self.urls[i % n]) for i, k in enumerate(a.kiosks)]
        # Every department gets experts on every server process.
        expert_seats = [
            Seat(tokens[e.username], self.urls[(i // len(a.departments)) % n])
            for i, e in enumerate(a.experts)
        ]
        return [
            WorkerPlan(
                index=w,
                workers=args.workers,
                kiosks=kiosk_seats[w :: args.workers],
                experts=expert_seats[w :: args.workers],
                departments=a.departments,
                arrivals=args.arrivals,
                seed=args.seed * 1000 + w,
            )
            for w in range(args.workers)
        ]

    async def start_clients(self, tokens: dict[str, str]) -> str | None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        for plan in self.plans(tokens):
            orders = ctx.Queue()
            process = ctx.Process(target=worker, args=(plan, orders, self.results), daemon=True)
            process.start()
            self.orders.append(orders)
            self.processes.append(process)
        replies = await self.collect(timeout=self.args.connect_timeout)
        errors = [r["error"] for r in replies if "error" in r]
        if errors or len(replies) < len(self.processes):
            return f"clients could not connect: {errors or 'a client process did not answer'}"
        self.connected = sum(int(r["ready"]) for r in replies)

        async def open_client(cls: type[Any], username: str, url: str) -> Any:
            client = cls(url)
            client.session_cookie = tokens[username]
            self.coordinator_clients.append(client)
            await client.connect()
            return client

        a = self.accounts
        probe = await open_client(KioskClient, a.probe.username, self.urls[0])
        self.probe = Probe(probe, self.args.probe_per_second)
        kiosk = await open_client(KioskClient, a.pair_kiosk.username, self.urls[0])
        same = await open_client(ExpertClient, a.pair_experts[0].username, self.urls[0])
        other = await open_client(ExpertClient, a.pair_experts[1].username, self.urls[-1])
        self.pairs = PairClients(kiosk, same, other)
        self.connected += 4
        return None

    async def collect(self, timeout: float, phase: int | None = None) -> list[dict[str, Any]]:
        """One answer from every client process (fewer if one does not answer in time);
        a late answer to an earlier phase is dropped."""
        loop = asyncio.get_running_loop()
        replies: list[dict[str, Any]] = []
        deadline = now() + timeout
        while len(replies) < len(self.processes):
            remaining = deadline - now()
            if remaining <= 0:
                break
            try:
                reply = await loop.run_in_executor(None, self.results.get, True, remaining)
            except queue.Empty:
                break
            if reply.get("phase") == phase:
                replies.append(reply)
        return replies

    async def stop_clients(self) -> None:
        for client in self.coordinator_clients:
            with contextlib.suppress(Exception):
                await client.close()
        for orders in self.orders:
            orders.put(None)
        for process in self.processes:
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 10)

    # ---- one phase -----------------------------------------------------------------

    def cpu_sample(self) -> CpuSample:
        assert self.servers is not None
        return CpuSample(
            at=now(),
            server=tree_cpu_seconds(self.servers.pids),
            generator=cpu_seconds(os.getpid()) + tree_cpu_seconds([p.pid for p in self.processes]),
            machine=machine_busy_seconds(),
        )

    async def phase(
        self, timing: Timing, segments: list[Segment], windows: list[Window], start: float
    ) -> PhaseResult:
        assert self.probe is not None
        self.phases += 1
        order = PhaseOrder(
            self.phases, timing, segments, windows, start, self.args.visit_timeout * 2 + 30
        )
        for orders in self.orders:
            orders.put(order)
        probe = asyncio.create_task(self.probe.run(start, order.end, windows))
        cpu: dict[float, CpuSample] = {}
        for boundary in sorted({w.start for w in windows} | {w.end for w in windows}):
            await sleep_until(boundary)
            cpu[boundary] = self.cpu_sample()
        rtts, probe_errors = await probe
        parts = await self.collect(order.end - now() + order.drain_timeout + 60, order.number)
        sides: dict[str, set[str]] = defaultdict(set)
        last: dict[str, float] = {}
        for part in parts:
            for cid, t, side in part.get("completions", []):
                sides[cid].add(side)
                last[cid] = max(last.get(cid, 0.0), t)
        completed_at = {cid: t for cid, t in last.items() if sides[cid] == {"kiosk", "expert"}}
        samples: dict[int, tuple[int, int]] = {}
        for part in parts:
            for k, (waiting, open_) in part.get("samples", {}).items():
                w0, o0 = samples.get(k, (0, 0))
                samples[k] = (w0 + waiting, o0 + open_)
        arrived = [t for part in parts for t in part.get("arrived", [])]
        return PhaseResult(parts, cpu, rtts, probe_errors, completed_at, samples, arrived)

    def window_figures(
        self, result: PhaseResult, window: Window, offered: float, start: float
    ) -> dict[str, Any]:
        """Everything one window says, as a JSON-ready dict."""
        parts = [p for p in result.parts if "windows" in p]
        completed = sum(1 for t in result.completed_at.values() if window.start <= t < window.end)
        latencies: dict[str, list[float]] = defaultdict(list)
        packets: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        busy = 0.0
        for part in parts:
            seen = part["windows"][window.name]
            for kind, values in seen["latencies"].items():
                latencies[kind] += values
            packets.update(seen["packets"])
            counts.update(seen["counts"])
            busy += seen["busy_s"]
            failures.update(part["failures"])
        latencies["probe"] = result.probe.get(window.name, [])
        c0, c1 = result.cpu[window.start], result.cpu[window.end]
        seconds = c1.at - c0.at
        server_cpu = c1.server - c0.server
        generator_cpu = c1.generator - c0.generator

        def per(total: float) -> float | None:
            return total / completed if completed else None

        def per_2(total: float) -> float | None:
            return round(total / completed, 2) if completed else None

        ks = sorted(
            k for k in result.samples if window.start <= start + k * SAMPLE_EVERY <= window.end
        )
        waiting = [result.samples[k][0] for k in ks]
        open_ = [result.samples[k][1] for k in ks]
        # Open consultations near the window's start and end, averaged over a fifth of
        # it each (single samples swing with the arrivals).
        fifth = max(1, len(open_) // 5)
        sent = sum(n for key, n in packets.items() if key.startswith("sent "))
        acks = sum(n for key, n in packets.items() if key.startswith("ack "))
        events = sum(n for key, n in packets.items() if key.startswith("event "))
        experts = len(self.accounts.experts)
        arrivals = counts.get("arrivals", 0)
        # At a steady state the window completes what arrived one visit earlier.
        visit = percentile(latencies.get("visit", []), 50) or 0.0
        earlier = sum(1 for t in result.arrived if window.start - visit <= t < window.end - visit)
        return {
            "window_s": round(seconds, 2),
            "offered_per_s": round(offered, 1),
            "arrivals": arrivals,
            "arrivals_one_visit_earlier": earlier,
            "completed": completed,
            "completed_per_s": round(completed / seconds, 1),
            "failed_in_phase": dict(failures),
            "failed_in_window": {
                key.removeprefix("failed "): n
                for key, n in counts.items()
                if key.startswith("failed ")
            },
            "unfinished_after_drain": sum(p.get("unfinished", 0) for p in parts),
            "arrivals_that_waited_for_a_kiosk": counts.get("arrivals that waited for a kiosk", 0),
            "offers_revoked": sum(n for k, n in counts.items() if k.startswith("offer_revoked")),
            "waiting_max": max(waiting, default=None),
            "waiting_at_end": waiting[-1] if waiting else None,
            "open_at_start": round(sum(open_[:fifth]) / fifth, 1) if open_ else None,
            "open_at_end": round(sum(open_[-fifth:]) / fifth, 1) if open_ else None,
            "expert_utilization": round(busy / (experts * seconds), 3) if experts else None,
            "latency": {kind: summarize(values) for kind, values in sorted(latencies.items())},
            "probe_errors": result.probe_errors,
            "server_cpu_s_per_s": round(server_cpu / seconds, 3),
            "server_cpu_ms_per_consultation": ms(per(server_cpu - self.idle_rate * seconds)),
            "generator_cpu_s_per_s": round(generator_cpu / seconds, 3),
            "generator_cpu_ms_per_consultation": ms(
                per(generator_cpu - self.idle_generator_rate * seconds)
            ),
            "machine_busy_cores": round((c1.machine - c0.machine) / seconds, 2),
            "messages_per_consultation": {
                "total": per_2(sent + acks + events),
                "sent": per_2(sent),
                "acks": per_2(acks),
                "events": per_2(events),
                "by_name": {k: round(n / completed, 3) for k, n in sorted(packets.items())}
                if completed
                else {},
            },
        }

    def compare(self, key: str, figures: dict[str, Any]) -> dict[str, Any]:
        """The figures' ratios to the floor's in the same phase."""
        floor = (self.floor or {}).get(key)
        if floor is None or self.config.floor:
            return {}
        out: dict[str, Any] = {
            "server_cpu_per_consultation": ratio(
                figures["server_cpu_ms_per_consultation"], floor["server_cpu_ms_per_consultation"]
            ),
            "messages_per_consultation": ratio(
                figures["messages_per_consultation"]["total"],
                floor["messages_per_consultation"]["total"],
            ),
        }
        for kind, mine in figures["latency"].items():
            theirs = floor["latency"].get(kind)
            if theirs:
                out[f"{kind}_p50"] = ratio(mine["p50_ms"], theirs["p50_ms"])
                out[f"{kind}_p99"] = ratio(mine["p99_ms"], theirs["p99_ms"])
        # Where the floor no longer sends what the product sends (see floor_server.py).
        mine_by, theirs_by = (
            figures["messages_per_consultation"]["by_name"],
            floor["messages_per_consultation"]["by_name"],
        )
        differs = {
            name: [mine_by.get(name, 0), theirs_by.get(name, 0)]
            for name in sorted({*mine_by, *theirs_by})
            if abs(mine_by.get(name, 0) - theirs_by.get(name, 0))
            > max(0.2, 0.25 * max(mine_by.get(name, 0), theirs_by.get(name, 0)))
        }
        return {"floor_ratio": out, "message_mix_differs_from_floor": differs}

    def report(self, key: str, record: dict[str, Any], figures: dict[str, Any]) -> None:
        self.figures[key] = figures
        emit({"config": self.config.name, **record, **figures, **self.compare(key, figures)})

    # ---- the phases ----------------------------------------------------------------

    def timing(self, rate: float) -> Timing:
        """The hall's timing for arrivals at ``rate``: as given, or (by default) think
        and call lengths scaled so that the experts are ``--utilization`` busy."""
        args = self.args
        accept, call = args.accept_delay, args.call_seconds
        if accept is None or call is None:
            cycle = args.utilization * len(self.accounts.experts) / rate
            # A quarter of the cycle thinking, three quarters talking, unless one is given.
            if accept is None and call is None:
                accept, call = 0.25 * cycle, 0.75 * cycle
            elif accept is None:
                accept = max(0.0, cycle - call)
            else:
                call = max(0.0, cycle - accept)
        return Timing(accept, call, args.rate_delay, args.visit_timeout)

    async def idle(self) -> None:
        start = now() + 1
        window = Window("idle", start, start + self.args.idle_seconds)
        result = await self.phase(self.timing(self.args.reference_rate), [], [window], start)
        c0, c1 = result.cpu[window.start], result.cpu[window.end]
        self.idle_rate = (c1.server - c0.server) / (c1.at - c0.at)
        self.idle_generator_rate = (c1.generator - c0.generator) / (c1.at - c0.at)
        probe = result.probe.get("idle", [])
        figures: dict[str, Any] = {
            "clients": self.connected,
            "server_cpu_s_per_s": round(self.idle_rate, 3),
            "generator_cpu_s_per_s": round((c1.generator - c0.generator) / (c1.at - c0.at), 3),
            "machine_busy_cores": round((c1.machine - c0.machine) / (c1.at - c0.at), 2),
            "latency": {"probe": summarize(probe)},
        }
        self.figures["idle"] = figures
        floor = (self.floor or {}).get("idle")
        extra: dict[str, Any] = {}
        if floor and not self.config.floor:
            extra = {
                "floor_ratio": {
                    "server_cpu_s_per_s": ratio(self.idle_rate, floor["server_cpu_s_per_s"]),
                    "probe_p50": ratio(
                        figures["latency"]["probe"]["p50_ms"],
                        floor["latency"]["probe"]["p50_ms"],
                    ),
                    "probe_p99": ratio(
                        figures["latency"]["probe"]["p99_ms"],
                        floor["latency"]["probe"]["p99_ms"],
                    ),
                }
            }
        emit({"config": self.config.name, "phase": "idle", **figures, **extra})

    def warmup(self, timing: Timing) -> float:
        if self.args.warmup_seconds is not None:
            return float(self.args.warmup_seconds)
        return max(5.0, 2 * (timing.accept_delay + timing.call_seconds + timing.rate_delay))

    async def load(self, rate: float) -> dict[str, Any]:
        timing = self.timing(rate)
        start = now() + 1
        warm = start + self.warmup(timing)
        window = Window("load", warm, warm + self.args.phase_seconds)
        result = await self.phase(timing, [Segment(start, window.end, rate)], [window], start)
        figures = self.window_figures(result, window, rate, start)
        capacity = timing.capacity(len(self.accounts.experts))
        figures.update(timing.public(), expert_capacity_per_s=round(capacity, 1))
        limited_by = None
        if rate > 0.95 * capacity:
            limited_by = "experts"
        if figures["arrivals_that_waited_for_a_kiosk"]:
            limited_by = "kiosks"
        opened = figures["open_at_start"] or 0
        piled_up = (figures["open_at_end"] or 0) - opened
        reasons = [
            reason
            for reason, true in (
                ("failures", figures["failed_in_phase"]),
                ("unfinished after the drain", figures["unfinished_after_drain"]),
                (
                    "completions behind arrivals",
                    figures["completed"] < 0.9 * figures["arrivals_one_visit_earlier"],
                ),
                (
                    "open consultations piled up",
                    piled_up > max(10, 0.05 * figures["arrivals"], 3 * math.sqrt(opened)),
                ),
                (f"limited by the {limited_by}", limited_by),
            )
            if true
        ]
        figures.update(sustained=not reasons, not_sustained_because=reasons, limited_by=limited_by)
        self.report(f"load {rate:g}", {"phase": "load"}, figures)
        return figures

    async def standing(self) -> None:
        """Over what the experts can take until queues of hundreds, then under it."""
        args = self.args
        # The hall as at the reference rate; arrivals above and below what it can take.
        timing = self.timing(args.reference_rate)
        capacity = timing.capacity(len(self.accounts.experts))
        over, under = args.standing_over * capacity, args.standing_under * capacity
        # Each waiting citizen holds a kiosk: leave room for those in a call or rating.
        target = min(args.standing_queue, 0.6 * len(self.accounts.kiosks))
        over_s = min(args.standing_max_seconds, max(2.0, target / (over - capacity)))
        under_s = min(args.standing_max_seconds, max(2.0, 1.5 * target / (capacity - under)))
        start = now() + 1
        warm = start + self.warmup(timing)
        windows = [
            Window("over", warm, warm + over_s),
            Window("under", warm + over_s, warm + over_s + under_s),
        ]
        segments = [
            Segment(start, warm, under),
            Segment(warm, warm + over_s, over),
            Segment(warm + over_s, warm + over_s + under_s, under),
        ]
        result = await self.phase(timing, segments, windows, start)
        for window, rate in zip(windows, (over, under), strict=True):
            figures = self.window_figures(result, window, rate, start)
            figures.update(timing.public(), expert_capacity_per_s=round(capacity, 1))
            figures["queue_target"] = round(target)
            self.report(
                f"standing {window.name}", {"phase": "standing", "window": window.name}, figures
            )

    async def pair_rounds(self) -> None:
        assert self.pairs is not None
        legs = await self.pairs.rounds(self.args.pair_rounds)
        two = len(self.urls) > 1
        figures: dict[str, Any] = {
            "server_processes_apart": two,
            "same_process": {leg: summarize(v) for leg, v in legs["same"].items()},
            "other_process": {leg: summarize(v) for leg, v in legs["other"].items()}
            if two
            else None,
        }
        same = percentile(legs["same"]["round"], 50)
        other = percentile(legs["other"]["round"], 50)
        figures["cross_process_added_p50_ms"] = (
            ms(other - same) if two and same is not None and other is not None else None
        )
        self.figures["pairs"] = figures
        emit({"config": self.config.name, "phase": "pairs", **figures})

    async def run(self) -> None:
        args = self.args
        await self.idle()
        best = 0.0
        stopped_by: dict[str, Any] | None = None
        for rate in args.rates:
            figures = await self.load(rate)
            if figures["sustained"]:
                best = max(best, figures["completed_per_s"])
            elif rate >= args.reference_rate and not args.keep_stepping:
                stopped_by = {"rate": rate, "because": figures["not_sustained_because"]}
                break
        if args.standing_queue > 0:
            await self.standing()
        if args.pair_rounds > 0:
            await self.pair_rounds()
        self.summary(best, stopped_by)

    def summary(self, best: float, stopped_by: dict[str, Any] | None) -> None:
        reference = self.figures.get(f"load {self.args.reference_rate:g}")
        at: dict[str, Any] | None = None
        if reference is not None:
            at = {
                "completed_per_s": reference["completed_per_s"],
                "sustained": reference["sustained"],
                "probe_rtt_p50_ms": reference["latency"]["probe"]["p50_ms"],
                "probe_rtt_p99_ms": reference["latency"]["probe"]["p99_ms"],
                "server_cpu_ms_per_consultation": reference["server_cpu_ms_per_consultation"],
                "generator_cpu_ms_per_consultation": reference["generator_cpu_ms_per_consultation"],
                "messages_per_consultation": reference["messages_per_consultation"]["total"],
                **self.compare(f"load {self.args.reference_rate:g}", reference),
            }
        standing = {
            name: {
                "offered_per_s": f["offered_per_s"],
                "completed_per_s": f["completed_per_s"],
                "waiting_max": f["waiting_max"],
                "messages_per_consultation": f["messages_per_consultation"]["total"],
                "server_cpu_ms_per_consultation": f["server_cpu_ms_per_consultation"],
                "request_ack_p99_ms": f["latency"].get("request_ack", {}).get("p99_ms"),
                "probe_p99_ms": f["latency"]["probe"]["p99_ms"],
            }
            for name, f in (
                ("over", self.figures.get("standing over")),
                ("under", self.figures.get("standing under")),
            )
            if f is not None
        }
        pairs = self.figures.get("pairs") or {}
        emit(
            {
                "config": self.config.name,
                "phase": "summary",
                "commands": [["python", *c[1:]] for c in self.servers.commands]
                if self.servers
                else None,
                "clients": self.connected,
                "client_processes": self.args.workers,
                "timing_at_reference_rate": {
                    **self.timing(self.args.reference_rate).public(),
                    "utilization": None
                    if self.args.accept_delay is not None and self.args.call_seconds is not None
                    else self.args.utilization,
                    "arrivals": self.args.arrivals,
                },
                "highest_sustained_per_s": round(best, 1),
                "stepping_stopped_at": stopped_by,
                "idle_server_cpu_s_per_s": round(self.idle_rate, 3),
                "reference_rate_per_s": self.args.reference_rate,
                "at_reference_rate": at,
                "standing": standing,
                "cross_process_added_p50_ms": pairs.get("cross_process_added_p50_ms"),
                "offer_accept_round_p50_ms": (pairs.get("same_process") or {})
                .get("round", {})
                .get("p50_ms"),
            }
        )


async def run_config(
    config: Config,
    args: argparse.Namespace,
    accounts: Accounts,
    floor: dict[str, dict[str, Any]] | None,
) -> dict[str, dict[str, Any]] | None:
    """Set up, measure, tear down one configuration; its figures, or None if skipped."""
    bench = Bench(config, args, accounts, floor)
    workdir = Path(tempfile.mkdtemp(prefix=f"wl-bench-{config.name}-"))
    data_dir = workdir / "data"
    db_url: str | None = None
    flushed = False

    def skip(reason: str) -> None:
        emit({"skipped": config.name, "reason": reason})

    try:
        if config.redis:
            problem = flush_redis(args.redis_url)
            if problem:
                skip(problem)
                return None
            flushed = True
        if config.floor:
            data_dir.mkdir(mode=0o700)
            tokens = seed_floor(accounts, data_dir / "identities.json")
        else:
            if args.database_url:
                db_url = await create_database(args.database_url)
            tokens = await seed_product(accounts, data_dir, db_url)
        ports = [free_port() for _ in range(config.processes)]
        bench.urls = [f"http://127.0.0.1:{port}" for port in ports]
        bench.servers = Servers(server_commands(config, ports, data_dir, args, db_url), workdir)
        problem = await bench.servers.start(ports, args.startup_timeout)
        if problem is None:
            problem = await bench.start_clients(tokens)
        if problem is not None:
            skip(f"{problem} (command: {' '.join(bench.servers.commands[0][1:])})")
            return None
        await bench.run()
        return bench.figures
    finally:
        await bench.stop_clients()
        if bench.servers is not None:
            bench.servers.stop()
        if flushed:
            flush_redis(args.redis_url)
        if db_url is not None and args.database_url:
            with contextlib.suppress(Exception):
                await drop_database(args.database_url, db_url)
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--configs",
        default="floor,memory,redis,redis2",
        help=f"comma-separated, run in this order: {', '.join(CONFIGS)}",
    )
    parser.add_argument("--kiosks", type=int, default=900)
    parser.add_argument("--experts", type=int, default=100)
    parser.add_argument("--departments", type=int, default=10)
    parser.add_argument("--workers", type=int, default=3, help="client processes")
    parser.add_argument(
        "--rates",
        default="25,50,100,125,150,200",
        help="offered consultations per second, one load phase each, stepping up",
    )
    parser.add_argument("--reference-rate", type=float, default=100)
    parser.add_argument("--keep-stepping", action="store_true")
    parser.add_argument("--arrivals", choices=("poisson", "fixed"), default="poisson")
    parser.add_argument(
        "--utilization",
        type=float,
        default=0.8,
        help="how busy the experts are at each rate, unless think and call times are given",
    )
    parser.add_argument(
        "--accept-delay", type=float, default=None, help="mean think time, s (default: scaled)"
    )
    parser.add_argument(
        "--call-seconds", type=float, default=None, help="mean call length, s (default: scaled)"
    )
    parser.add_argument("--rate-delay", type=float, default=1.0, help="mean s before rating")
    parser.add_argument("--visit-timeout", type=float, default=120)
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=None,
        help="arrivals before a window opens (default: 5 s or two visits, the longer)",
    )
    parser.add_argument("--phase-seconds", type=float, default=20, help="measured window")
    parser.add_argument("--probe-per-second", type=float, default=50)
    parser.add_argument(
        "--standing-queue", type=int, default=400, help="consultations waiting; 0: no phase"
    )
    parser.add_argument("--standing-over", type=float, default=1.5)
    parser.add_argument("--standing-under", type=float, default=0.5)
    parser.add_argument("--standing-max-seconds", type=float, default=60)
    parser.add_argument("--pair-rounds", type=int, default=40, help="each way; 0: no phase")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://.../<admin db>: a fresh database per configuration, dropped after",
    )
    parser.add_argument(
        "--server-arg", action="append", default=[], help="one more flag for server.py"
    )
    parser.add_argument("--startup-timeout", type=float, default=60)
    parser.add_argument("--connect-timeout", type=float, default=300)
    parser.add_argument(
        "--floor-mix",
        choices=("lean", "echo"),
        default="lean",
        help="the floor's message mix (see bench/floor_server.py): lean follows the "
        "rewritten signaling core, echo docs/PROTOCOL.md before it",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.rates = sorted(float(r) for r in args.rates.split(",") if r)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not 0 < args.utilization <= 1:
        parser.error("--utilization must be in (0, 1]")
    if not args.standing_under < 1 < args.standing_over:
        parser.error("--standing-under must be below 1 and --standing-over above it")
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    return args


def interrupted(_signum: int, _frame: Any) -> None:
    # Once: a second SIGTERM during the clean-up would interrupt the clean-up itself
    # (asyncio's executor shutdown) and leave the servers unreaped.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    raise_open_file_limit()
    # Stopped by a signal, it still stops what it started (the finally blocks run).
    signal.signal(signal.SIGTERM, interrupted)
    accounts = Accounts.for_hall(args.kiosks, args.experts, args.departments)
    floor: dict[str, dict[str, Any]] | None = None
    for name in args.configs:
        figures = asyncio.run(run_config(CONFIGS[name], args, accounts, floor))
        if name == "floor":
            floor = figures


if __name__ == "__main__":
    main()
