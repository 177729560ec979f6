"""Where a new call's media goes: the least-loaded live relay worker of the whole
deployment, as the workers' nodes report them in the live-state store.

Each node says, every heartbeat, how many calls each of its workers holds and how
busy it was (``RelayLoad``, kept under a key that expires with the node); the
choice is a pure function of those reports, tested as a table.
"""

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

GROUP = "relays"
TTL = 6.0
"""Seconds a worker's report lives: a node that stops reporting (kill -9, a lost
machine) is no longer chosen after this."""


@dataclass(frozen=True)
class RelayLoad:
    calls: int
    cpu: float
    """Share of one core the worker used since its previous report (0..1+)."""
    draining: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {"calls": self.calls, "cpu": round(self.cpu, 3), "draining": self.draining}
        )

    @classmethod
    def from_json(cls, raw: str) -> "RelayLoad | None":
        try:
            data = json.loads(raw)
            return cls(int(data["calls"]), float(data["cpu"]), bool(data.get("draining", False)))
        except (ValueError, KeyError, TypeError):
            return None


# A worker busier than this share of a core is passed over while another is not.
BUSY_CPU = 0.8


@dataclass(frozen=True)
class CpuSample:
    """A worker's CPU seconds, when they were taken, and the rate reported then."""

    spent: float
    at: float
    rate: float


def cpu_rate(previous: CpuSample | None, spent: float, at: float) -> CpuSample:
    """The CPU rate to report from a worker's figures taken at ``at``: the same
    figures read again (a worker pushes every 2 s and the heartbeat reads every
    2 s, so one push may be read twice) keep the rate reported for them, never 0."""
    if previous is None or at < previous.at:
        return CpuSample(spent, at, 0.0)
    if at == previous.at:
        return CpuSample(spent, at, previous.rate)
    return CpuSample(spent, at, max(0.0, (spent - previous.spent) / (at - previous.at)))


def choose_relay(
    reports: Mapping[str, RelayLoad], local: frozenset[str], exclude: frozenset[str] = frozenset()
) -> str | None:
    """The worker (its URL) for a new call: not draining, not excluded (just found
    unreachable); among those, the ones not busy first, then the fewest calls,
    then the least CPU; on a tie this node's own worker (no hop for the offers),
    then the URL (the same answer on every node). None if there is none."""
    candidates = [
        (url, load) for url, load in reports.items() if not load.draining and url not in exclude
    ]
    if not candidates:
        return None
    best = min(
        candidates,
        key=lambda c: (
            c[1].cpu > BUSY_CPU,
            c[1].calls,
            round(c[1].cpu, 2),
            c[0] not in local,
            c[0],
        ),
    )
    return best[0]


def trusted_placement(placement: str, local: frozenset[str], registered: Collection[str]) -> bool:
    """Whether a call's media requests may go to ``placement`` (read from the live
    state, which this process did not necessarily write): this process's own
    worker; a worker of this deployment that reports its load (``registered``: its
    node is alive and shares the live store); or a name that is no URL at all (an
    in-process relay, which only the pool holding it accepts). Anything else would
    hand offers and signed requests to an address nobody of the deployment owns."""
    if not placement.startswith(("http://", "https://")):
        return True
    return placement in local or placement in registered


def parse_reports(raw: Mapping[str, str]) -> dict[str, RelayLoad]:
    reports = {}
    for url, info in raw.items():
        load = RelayLoad.from_json(info)
        if load is None:
            log.warning("ignoring an unreadable relay report for %s", url)
            continue
        reports[url] = load
    return reports
