"""The fixed slots of issue 21 as tables: who a receiver gets where (the table the
pages' JavaScript is tested against too), what each m-line of an offer carries,
and whose screen everyone gets."""

import json
from pathlib import Path
from typing import Any

import pytest

from media.slots import (
    CAMERA,
    MICROPHONE,
    SCREEN,
    SCREEN_IDLE,
    Place,
    ScreenSource,
    SlotError,
    places,
    position_of,
    received_in,
    screen_packet,
    screen_sharer,
    sender_in,
    slot_of,
)

TABLE: dict[str, Any] = json.loads((Path(__file__).parent / "slot_table.json").read_text())


@pytest.mark.parametrize(
    "row", TABLE["rows"], ids=[f"r{r['receiver']}-s{r['sender']}" for r in TABLE["rows"]]
)
def test_the_slot_rule_is_the_shared_table(row: dict[str, Any]) -> None:
    receiver, sender, slot = row["receiver"], row["sender"], row["slot"]
    assert slot_of(receiver, sender) == slot
    if slot is not None:
        assert sender_in(receiver, slot) == sender
        assert received_in(receiver, sender, CAMERA) == Place(slot, "video")
        assert received_in(receiver, sender, MICROPHONE) == Place(slot, "audio")
        assert received_in(receiver, sender, SCREEN) == SCREEN
    else:
        assert received_in(receiver, sender, CAMERA) is None


def test_the_table_covers_every_pair_of_four_positions_once() -> None:
    pairs = [(r["receiver"], r["sender"]) for r in TABLE["rows"]]
    assert sorted(pairs) == [(r, s) for r in range(4) for s in range(4)]
    # Each receiver gets the three others in three different slots.
    for receiver in range(4):
        slots = [r["slot"] for r in TABLE["rows"] if r["receiver"] == receiver]
        assert sorted(s for s in slots if s is not None) == [0, 1, 2]


def test_the_table_s_m_lines_are_the_offer_the_relay_reads() -> None:
    kinds = [m["kind"] for m in TABLE["mlines"]]
    expected = [Place(m["slot"], m["kind"]) for m in TABLE["mlines"]]
    assert places(kinds) == expected


@pytest.mark.parametrize(
    "name,position",
    [
        ("p0", 0),
        ("p3", 3),
        ("kiosk", 0),
        ("expert", 1),
        ("p4", None),  # a fifth participant has no place
        ("p", None),
        ("p01", None),
        ("interpreter", None),
    ],
)
def test_a_leg_s_position_is_its_name(name: str, position: int | None) -> None:
    assert position_of(name) == position


@pytest.mark.parametrize(
    "kinds,expected",
    [
        (["audio", "video"], [MICROPHONE, CAMERA]),
        (["video", "audio"], [CAMERA, MICROPHONE]),  # aiortc's video-first clients
        (["audio"], [MICROPHONE]),
        (
            ["audio", "video", "audio", "video"],
            [MICROPHONE, CAMERA, Place(1, "audio"), Place(1, "video")],
        ),
        (["audio", "video", "video"], [MICROPHONE, CAMERA, Place(1, "video")]),
    ],
)
def test_what_each_m_line_carries(kinds: list[str], expected: list[Place]) -> None:
    assert places(kinds) == expected


@pytest.mark.parametrize(
    "kinds",
    [
        ["audio", "audio"],
        ["audio", "video", "audio", "video", "audio", "video", "audio"],
        ["audio", "video"] * 3 + ["video", "audio"],
    ],
    ids=["two audio in slot 0", "an audio screen", "eight m-lines"],
)
def test_an_offer_out_of_the_contract_s_order_is_refused(kinds: list[str]) -> None:
    with pytest.raises(SlotError):
        places(kinds)


# screens: name -> (started, last) at now=10 -> the sharer
SHARERS = [
    ({}, None),
    ({"p1": (5.0, 9.9)}, "p1"),
    ({"p1": (5.0, 10.0 - SCREEN_IDLE - 0.1)}, None),  # stopped sending
    ({"p1": (5.0, 9.9), "p2": (9.5, 9.9)}, "p2"),  # the later start takes over
    ({"p1": (5.0, 9.9), "p2": (9.5, 8.0)}, "p1"),  # ... unless it stopped
]


@pytest.mark.parametrize("screens,sharer", SHARERS)
def test_whose_screen_everyone_gets(
    screens: dict[str, tuple[float, float]], sharer: str | None
) -> None:
    sources = {name: ScreenSource(*times) for name, times in screens.items()}
    assert screen_sharer(sources, 10.0) == sharer


def test_a_screen_s_run_starts_again_after_a_pause() -> None:
    first = screen_packet(None, 1.0)
    assert screen_packet(first, 1.5) == ScreenSource(1.0, 1.5)
    assert screen_packet(ScreenSource(1.0, 1.5), 1.5 + SCREEN_IDLE + 0.1) == ScreenSource(
        1.5 + SCREEN_IDLE + 0.1, 1.5 + SCREEN_IDLE + 0.1
    )
