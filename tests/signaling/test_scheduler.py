"""The deadline scheduler: it sleeps until the earliest deadline this node set
(or a second, for the others'), not a fixed 50 ms, and still fires each one."""

import asyncio
import time

import pytest

from signaling import scheduler as scheduler_module
from signaling.memory_store import InProcessStore
from signaling.scheduler import (
    BACKSTOP_SECONDS,
    EARLIEST_SECONDS,
    MAX_TIMES,
    DeadlineScheduler,
)
from signaling.store import Commit


class CountingStore(InProcessStore):
    def __init__(self) -> None:
        super().__init__(time.time)
        self.looks = 0

    async def claim_due(self, now: float, limit: int = 100, lease: float = 30.0) -> list[str]:
        self.looks += 1
        return await super().claim_due(now, limit, lease)


async def nothing(_key: str) -> None:
    return None


@pytest.mark.parametrize(
    ("times", "now", "sleep", "left"),
    [
        ([], 100.0, BACKSTOP_SECONDS, []),  # nothing of ours: the backstop
        ([100.4], 100.0, 0.4, [100.4]),  # ours, sooner than the backstop
        ([105.0], 100.0, BACKSTOP_SECONDS, [105.0]),  # ours, later: the backstop first
        ([99.0, 100.0, 100.3], 100.0, 0.3, [100.3]),  # past ones forgotten
        ([100.01], 100.0, EARLIEST_SECONDS, [100.01]),  # never a busy loop
    ],
)
def test_the_sleep_is_until_the_earliest_own_deadline_within_the_backstop(
    times: list[float], now: float, sleep: float, left: list[float]
) -> None:
    chosen = DeadlineScheduler(InProcessStore(), nothing)
    for at in times:
        chosen.soon(at)
    assert chosen._sleep_for(now) == pytest.approx(sleep)
    assert sorted(chosen._times) == left


def test_a_flood_of_deadlines_is_bounded_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_module, "MAX_TIMES", 3)
    chosen = DeadlineScheduler(InProcessStore(), nothing)
    for at in range(10):
        chosen.soon(float(at))
    assert len(chosen._times) == 3
    assert MAX_TIMES >= 10_000


async def test_an_idle_scheduler_looks_at_the_store_about_once_a_second() -> None:
    """It looked 20 times a second, idle or not: the idle server's largest cost
    (a Redis round trip each time in a deployment)."""
    store = CountingStore()
    chosen = DeadlineScheduler(store, nothing, time.time)
    chosen.start()
    try:
        await asyncio.sleep(2.5)
    finally:
        await chosen.stop(1.0)
    # At most the first look and one a second (a starved loop looks less, not more).
    assert 1 <= store.looks <= 4


async def test_a_deadline_this_node_sets_wakes_it_and_fires_once() -> None:
    store = CountingStore()
    fired: list[str] = []
    done = asyncio.Event()

    async def fire(key: str) -> None:
        fired.append(key)
        done.set()

    chosen = DeadlineScheduler(store, fire, time.time)
    chosen.start()
    try:
        await asyncio.sleep(0.1)  # asleep for its backstop
        at = time.time() + 0.2
        await store.commit(Commit(deadlines_set={"ring|c1|expert": at}))
        chosen.soon(at)
        await asyncio.wait_for(done.wait(), 10)  # a hang bound, not a timing
        await asyncio.sleep(0.2)
    finally:
        await chosen.stop(1.0)
    assert fired == ["ring|c1|expert"]
    assert await store.deadline("ring|c1|expert") is None


async def test_a_burst_of_more_deadlines_than_one_look_claims_is_claimed_in_a_few_looks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every waiting call's no-expert deadline falls due in one commit: 250 due at
    once took a backstop's sleep per 100 beyond the first look (here a minute)."""
    monkeypatch.setattr(scheduler_module, "BACKSTOP_SECONDS", 60.0)
    store = CountingStore()
    fired: list[str] = []
    every = asyncio.Event()

    async def fire(key: str) -> None:
        fired.append(key)
        if len(fired) == 250:
            every.set()

    at = time.time() - 1
    await store.commit(Commit(deadlines_set={f"noexpert|c{i}|": at for i in range(250)}))
    chosen = DeadlineScheduler(store, fire, time.time)
    chosen.start()
    try:
        await asyncio.wait_for(every.wait(), 10)  # a hang bound
    finally:
        await chosen.stop(1.0)
    assert sorted(fired) == sorted(f"noexpert|c{i}|" for i in range(250))


async def test_stop_ends_the_scheduler_even_as_a_deadline_is_set() -> None:
    """wait_for on Python 3.11 swallowed a cancel that came as the event was set:
    stop() then waited forever."""
    for _ in range(20):
        chosen = DeadlineScheduler(InProcessStore(), nothing, time.time)
        chosen.start()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        chosen.soon(time.time() + 0.5)
        await asyncio.wait_for(chosen.stop(1.0), 5)  # a hang bound
