"""Relays tick on a shared grid (media.relay.until_tick), as a table."""

import pytest

from media.relay import until_tick


@pytest.mark.parametrize(
    "now,interval,delay",
    [
        (0.0, 0.1, 0.1),  # on an instant: the next one
        (10.02, 0.1, 0.08),
        (10.05, 0.1, 0.05),
        (10.0999999, 0.1, 0.1000001),  # a hair early: not twice at once
        (10.095, 0.1, 0.105),  # late by most of an interval: the instant after
        (10.089, 0.1, 0.011),
        (7.25, 1.0, 0.75),
        (7.95, 1.0, 1.05),
    ],
)
def test_the_next_tick_is_on_the_grid_and_never_at_once(
    now: float, interval: float, delay: float
) -> None:
    assert until_tick(now, interval) == pytest.approx(delay, abs=1e-6)
    assert (now + until_tick(now, interval)) / interval == pytest.approx(
        round((now + delay) / interval), abs=1e-6
    )


def test_two_relays_started_apart_wake_together() -> None:
    first, second = 3.013, 3.071  # two calls opened 58 ms apart
    assert first + until_tick(first, 0.1) == pytest.approx(second + until_tick(second, 0.1))
