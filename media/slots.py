"""Who goes where in a call of up to four: the fixed slots of issue 21.

Every participant holds a position 0..3 for as long as they are in the call (the
kiosk 0, the expert who answered 1, each joiner the lowest free one) and names
its leg by it (``p0``..``p3``). A page offers seven m-lines once and never
renegotiates:

    index 0, 1   audio, video   its own microphone and camera; receives slot 0
    index 2, 3   audio, video   receives slot 1
    index 4, 5   audio, video   receives slot 2
    index 6      video          its own shared screen; receives another's

A receiver at position r gets the sender at position s (s != r) in slot
``s if s < r else s - 1`` (tests/media/slot_table.json holds the whole table;
the pages' JavaScript is tested against the same file). An older offer of two
m-lines (or of 2 + 2k) receives slots 0..k-1 only.

Pure: no sockets, no clock of its own (times are passed in).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

MAX_PARTICIPANTS = 4
SLOTS = MAX_PARTICIPANTS - 1
"""Slots of a receiver: everyone else."""
SCREEN_INDEX = 2 * SLOTS
"""The screen's m-line: the seventh."""
MAX_SECTIONS = SCREEN_INDEX + 1

LEGACY_POSITIONS = {"kiosk": 0, "expert": 1}
"""The two-party legs' names before issue 21: the kiosk and the expert who answered."""

SCREEN_IDLE = 1.0
"""Seconds without a packet of a participant's screen after which it no longer
shares (a page stops sharing by sending nothing on its screen m-line)."""


class Place(NamedTuple):
    """What one m-line of a leg carries: a slot's audio or video, or the screen."""

    slot: int | None
    """0..2; None for the shared screen."""
    kind: str


MICROPHONE = Place(0, "audio")
CAMERA = Place(0, "video")
SCREEN = Place(None, "video")
OWN = (MICROPHONE, CAMERA, SCREEN)
"""The places a participant sends on (the relay receives nothing on slots 1-2)."""


class SlotError(ValueError):
    """An offer's m-lines do not follow the contract's order."""


def leg_name(position: int) -> str:
    return f"p{position}"


def position_of(name: str) -> int | None:
    """A leg's position from its name (``p0``..``p3``, or the two-party names);
    None for any other name: no leg of that name is ever opened."""
    if name in LEGACY_POSITIONS:
        return LEGACY_POSITIONS[name]
    if len(name) == 2 and name[0] == "p" and name[1].isdigit():
        position = int(name[1])
        return position if position < MAX_PARTICIPANTS else None
    return None


def slot_of(receiver: int, sender: int) -> int | None:
    """The slot in which ``receiver`` gets ``sender``; None for oneself."""
    if receiver == sender:
        return None
    return sender if sender < receiver else sender - 1


def sender_in(receiver: int, slot: int) -> int:
    """Who ``receiver`` gets in ``slot`` (the inverse of ``slot_of``)."""
    return slot if slot < receiver else slot + 1


def received_in(receiver: int, sender: int, source: Place) -> Place | None:
    """Where ``receiver`` gets what ``sender`` sends on its ``source`` m-line: its
    microphone and camera into the sender's slot, its screen into the screen."""
    if receiver == sender:
        return None
    if source == SCREEN:
        return SCREEN
    slot = slot_of(receiver, sender)
    return None if slot is None else Place(slot, source.kind)


def places(kinds: Sequence[str]) -> list[Place]:
    """The place of each of an offer's audio/video m-lines, in the offer's order
    (``kinds``: "audio" or "video" each). A slot's two m-lines may come in either
    order (aiortc's clients put video first), but each slot has one of each."""
    if len(kinds) > MAX_SECTIONS:
        raise SlotError(f"at most {MAX_SECTIONS} audio and video m-lines")
    found: list[Place] = []
    for index, kind in enumerate(kinds):
        if index == SCREEN_INDEX:
            if kind != "video":
                raise SlotError("the seventh m-line (the screen) must be video")
            place = SCREEN
        else:
            place = Place(index // 2, kind)
        if place in found:
            raise SlotError(f"two {kind} m-lines for slot {place.slot}")
        found.append(place)
    return found


@dataclass(frozen=True)
class ScreenSource:
    """A participant's screen as the relay last saw it."""

    started: float
    """When its current run of packets began."""
    last: float
    """Its latest packet."""


def screen_sharer(screens: Mapping[str, ScreenSource], now: float) -> str | None:
    """Whose screen everyone else gets: of the screens sending now, the one that
    started last (a second sharer takes over at once, as signaling has it; the
    first stops when told)."""
    live = [(s.started, name) for name, s in screens.items() if now - s.last <= SCREEN_IDLE]
    return max(live)[1] if live else None


def screen_packet(previous: ScreenSource | None, now: float) -> ScreenSource:
    """A participant's screen after one more packet: a new run after a pause."""
    if previous is None or now - previous.last > SCREEN_IDLE:
        return ScreenSource(now, now)
    return ScreenSource(previous.started, now)
