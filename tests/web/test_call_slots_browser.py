"""The pages' side of issue 21's fixed media slots, in Chromium against the same
table as the relay's (tests/media/slot_table.json): the slot rule of
web/static/js/slots.js, who the page shows in which slot, and the seven m-lines of
the page's one offer (web/static/js/peer.js), in the table's order and directions."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

TABLE = json.loads(
    (Path(__file__).resolve().parents[1] / "media" / "slot_table.json").read_text(encoding="utf-8")
)


async def page_with_modules(browser: Any, server: RunningServer) -> Any:
    """A page of the server's origin (the kiosk's login form), where the pages' own
    modules can be imported as the pages import them."""
    page = await browser.new_page()
    await page.goto(f"{server.url}/kiosk")
    await page.wait_for_selector("body[data-ready]")
    return page


async def test_the_pages_slot_rule_is_the_relays_table(
    browser: Any, sqlite_server: RunningServer
) -> None:
    page = await page_with_modules(browser, sqlite_server)
    slots = await page.evaluate(
        """async (rows) => {
          const { slotOf } = await import('/static/js/slots.js');
          return rows.map((row) => slotOf(row.receiver, row.sender));
        }""",
        TABLE["rows"],
    )
    assert slots == [row["slot"] for row in TABLE["rows"]]


def person(position: int, role: str, department: str | None = None) -> dict[str, Any]:
    return {"position": position, "role": role, "department": department, "connected": True}


KIOSK = person(0, "kiosk")
MARKET = person(1, "expert", "market")
HOUSING = person(2, "expert", "housing")
INTERPRETER = person(3, "interpreter", "interpret")

# (the view's participants, you, the page's side) -> the positions shown in slots 0..2
SHOWN = [
    ([KIOSK, MARKET], 0, "kiosk", [1, None, None]),
    ([KIOSK, MARKET], 1, "expert", [0, None, None]),
    ([KIOSK, MARKET, HOUSING, INTERPRETER], 0, "kiosk", [1, 2, 3]),
    ([KIOSK, MARKET, HOUSING, INTERPRETER], 2, "expert", [0, 1, 3]),
    # The first expert left: the kiosk's slot 0 is empty, the others keep theirs.
    ([KIOSK, HOUSING, INTERPRETER], 0, "kiosk", [None, 2, 3]),
    ([KIOSK, HOUSING, INTERPRETER], 3, "expert", [0, None, 2]),
    # A transfer waits: the kiosk and the interpreter who stays.
    ([KIOSK, INTERPRETER], 0, "kiosk", [None, None, 3]),
    # This desk is no longer in the call: it shows nobody.
    ([KIOSK, MARKET], None, "expert", [None, None, None]),
]


async def test_the_page_shows_each_participant_in_the_slot_the_relay_fills(
    browser: Any, sqlite_server: RunningServer
) -> None:
    page = await page_with_modules(browser, sqlite_server)
    shown = await page.evaluate(
        """async (cases) => {
          const { slotsOf } = await import('/static/js/slots.js');
          return cases.map(([participants, you, side]) =>
            slotsOf({ participants, you }, side).map((p) => (p ? p.position : null)));
        }""",
        [[participants, you, side] for participants, you, side, _ in SHOWN],
    )
    assert shown == [expected for *_, expected in SHOWN]
    # A view of before issue 21 (no participants): the other side in slot 0, as in
    # a call of two.
    legacy = await page.evaluate(
        """async () => {
          const { slotsOf } = await import('/static/js/slots.js');
          return [slotsOf({ department: 'market' }, 'kiosk'), slotsOf({}, 'expert')];
        }"""
    )
    assert [slots[0]["role"] for slots in legacy] == ["expert", "kiosk"]
    assert legacy[0][0]["department"] == "market"
    assert [slots[1:] for slots in legacy] == [[None, None], [None, None]]


M_LINE = re.compile(r"^m=(audio|video) ", re.MULTILINE)
DIRECTION = re.compile(r"^a=(sendrecv|recvonly|sendonly|inactive)\r?$", re.MULTILINE)


def m_lines(sdp: str) -> list[tuple[str, str]]:
    """(kind, direction) of each audio/video m-line of an SDP, in order."""
    sections = re.split(r"(?=^m=)", sdp, flags=re.MULTILINE)[1:]
    found = []
    for section in sections:
        kind = M_LINE.match(section)
        direction = DIRECTION.search(section)
        assert kind and direction, section
        found.append((kind.group(1), direction.group(1)))
    return found


OFFER = """async () => {
  const { MediaLink } = await import('/static/js/peer.js');
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  const link = new MediaLink({ localVideo: null, remoteVideos: [null, null, null] });
  link.useStream(stream);
  const pc = new RTCPeerConnection();
  link.addTransceivers(pc);
  const offer = await pc.createOffer();
  pc.close();
  for (const track of stream.getTracks()) track.stop();
  return offer.sdp;
}"""


async def test_the_pages_offer_has_the_seven_m_lines_of_the_table(
    browser: Any, sqlite_server: RunningServer
) -> None:
    page = await page_with_modules(browser, sqlite_server)
    sdp = await page.evaluate(OFFER)
    expected = [(line["kind"], line["page_direction"]) for line in TABLE["mlines"]]
    assert m_lines(sdp) == expected
    # One transport for all of them (the relay answers one BUNDLE group).
    (group,) = re.findall(r"^a=group:BUNDLE (.+?)\r?$", sdp, flags=re.MULTILINE)
    assert len(group.split()) == len(TABLE["mlines"])
