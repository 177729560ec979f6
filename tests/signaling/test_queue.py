"""The queue rules on their own: the wait estimate and the choice of expert."""

import dataclasses
from typing import Any

from signaling.live import ExpertPresence, LiveCall, Phase, PresenceStatus
from signaling.queue import estimate_wait, mean_handle_time, pick_expert


def expert(name: str, idle_since: float) -> ExpertPresence:
    return ExpertPresence(name, name, "market", PresenceStatus.AVAILABLE, idle_since)


def call(**changes: Any) -> LiveCall:
    base = LiveCall("c1", "market", "k1", "kiosk01", "city", None, Phase.WAITING, 0.0)
    return dataclasses.replace(base, **changes)


def test_no_estimate_when_nobody_is_online() -> None:
    assert estimate_wait(1, 0, 0, 300) is None


def test_positions_covered_by_free_experts_wait_nothing() -> None:
    assert estimate_wait(1, 1, 1, 300) == 0
    assert estimate_wait(2, 2, 3, 300) == 0


def test_each_position_beyond_adds_a_share_of_a_call() -> None:
    # One busy expert: the first waits half a call on average, then a call each.
    assert [estimate_wait(p, 0, 1, 300) for p in (1, 2, 3)] == [150, 450, 750]
    # Three busy experts finish three calls per call length.
    assert [estimate_wait(p, 0, 3, 300) for p in (1, 2)] == [75, 175]


def test_mean_handle_time_falls_back_to_the_default() -> None:
    assert mean_handle_time([], 300) == 300
    assert mean_handle_time([100, 200], 300) == 150


def test_longest_idle_expert_is_picked() -> None:
    assert pick_expert(call(), [expert("b", 20), expert("a", 10)]).username == "a"  # type: ignore[union-attr]


def test_decliners_are_skipped_and_missers_come_last() -> None:
    experts = [expert("a", 10), expert("b", 20), expert("c", 30)]
    chosen = pick_expert(call(declined_by=["a"], missed_by=["b"]), experts)
    assert chosen is not None and chosen.username == "c"
    only_misser = pick_expert(call(declined_by=["a", "c"], missed_by=["b"]), experts)
    assert only_misser is not None and only_misser.username == "b"
    assert pick_expert(call(declined_by=["a", "b", "c"]), experts) is None
