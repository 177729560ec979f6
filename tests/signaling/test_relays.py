"""Choosing the relay worker for a new call, as a table."""

import pytest

from signaling.relays import (
    CpuSample,
    RelayLoad,
    choose_relay,
    cpu_rate,
    parse_reports,
    trusted_placement,
)

A, B, C = "http://10.0.0.1:9100", "http://10.0.0.2:9100", "http://10.0.0.3:9100"


@pytest.mark.parametrize(
    ("reports", "local", "exclude", "chosen"),
    [
        ({}, set(), set(), None),
        ({A: RelayLoad(0, 0.0)}, set(), set(), A),
        # Fewest calls wins, wherever it is.
        ({A: RelayLoad(3, 0.1), B: RelayLoad(1, 0.1)}, {A}, set(), B),
        # On a tie this node's own worker (the offers need no hop) ...
        ({A: RelayLoad(1, 0.1), B: RelayLoad(1, 0.1)}, {B}, set(), B),
        # ... and without one, the same answer on every node.
        ({B: RelayLoad(1, 0.1), A: RelayLoad(1, 0.1)}, {C}, set(), A),
        # Equal calls: the less busy CPU.
        ({A: RelayLoad(2, 0.6), B: RelayLoad(2, 0.2)}, {A}, set(), B),
        # A worker near a full core is passed over while another is not ...
        ({A: RelayLoad(0, 0.95), B: RelayLoad(5, 0.3)}, set(), set(), B),
        # ... and used when all are.
        ({A: RelayLoad(0, 0.95), B: RelayLoad(5, 0.9)}, set(), set(), A),
        # Draining workers take no new calls; one just found unreachable neither.
        ({A: RelayLoad(0, 0.0, draining=True), B: RelayLoad(9, 0.5)}, set(), set(), B),
        ({A: RelayLoad(0, 0.0), B: RelayLoad(9, 0.5)}, set(), {A}, B),
        ({A: RelayLoad(0, 0.0, draining=True)}, set(), set(), None),
    ],
)
def test_choose_relay(
    reports: dict[str, RelayLoad], local: set[str], exclude: set[str], chosen: str | None
) -> None:
    assert choose_relay(reports, frozenset(local), frozenset(exclude)) == chosen


def test_reports_round_trip_and_garbage_is_ignored() -> None:
    load = RelayLoad(4, 0.25, draining=True)
    assert RelayLoad.from_json(load.to_json()) == load
    assert parse_reports({A: load.to_json(), B: "{not json", C: '{"calls": "x"}'}) == {A: load}


@pytest.mark.parametrize(
    ("placement", "local", "registered", "trusted"),
    [
        # This process's own worker, and a worker another node reports.
        (A, {A}, set(), True),
        (B, {A}, {A, B}, True),
        # An address nobody of the deployment reports (written into the live state
        # by someone else, or a node long gone): no offer goes there.
        ("http://203.0.113.9:9100", {A}, {A, B}, False),
        (C, set(), {A, B}, False),
        ("https://10.0.0.3:9100", set(), {A}, False),
        # An in-process relay's name: only the pool holding it accepts it.
        ("in-process:0a1b2c", set(), set(), True),
    ],
)
def test_offers_go_only_to_relay_workers_of_this_deployment(
    placement: str, local: set[str], registered: set[str], trusted: bool
) -> None:
    assert trusted_placement(placement, frozenset(local), registered) is trusted


@pytest.mark.parametrize(
    ("previous", "spent", "at", "rate"),
    [
        (None, 5.0, 10.0, 0.0),  # the first report: no rate yet
        (CpuSample(5.0, 10.0, 0.0), 6.0, 12.0, 0.5),  # a core's half over 2 s
        # The same push read again by the next heartbeat: the rate stays; it was
        # reported as 0 (a busy worker taken for an idle one), then as double.
        (CpuSample(6.0, 12.0, 0.5), 6.0, 12.0, 0.5),
        (CpuSample(6.0, 12.0, 0.5), 7.0, 14.0, 0.5),
        (CpuSample(6.0, 12.0, 0.5), 1.0, 14.0, 0.0),  # a restarted worker: never negative
        (CpuSample(6.0, 12.0, 0.5), 7.0, 11.0, 0.0),  # figures older than the last
    ],
)
def test_a_worker_s_cpu_rate_is_from_when_its_figures_were_taken(
    previous: CpuSample | None, spent: float, at: float, rate: float
) -> None:
    sample = cpu_rate(previous, spent, at)
    assert sample.rate == pytest.approx(rate)
    assert (sample.spent, sample.at) == (spent, at)
