"""A phone link's pure decisions as tables: what a link allows at a time, and which
file a claim still carries."""

import pytest

from storage.phone_links import Announced, LinkState, PhoneLink, link_state, without_announced

T = 1000.0


def link(
    *, claimed: bool = False, allowed: int = 0, received: int = 0, send_until: float | None = None
) -> PhoneLink:
    return PhoneLink(
        token_hash="hash",
        consultation_id="c1",
        kiosk_id="k1",
        created_at=T - 10,
        expires_at=T + 300,
        claimed_at=T if claimed else None,
        claim_hash=None,
        files_allowed=allowed,
        files_received=received,
        send_until=send_until,
    )


@pytest.mark.parametrize(
    ("record", "now", "state"),
    [
        (link(), T, LinkState.READY),
        (link(), T + 299.9, LinkState.READY),
        (link(), T + 300, LinkState.EXPIRED),
        (link(claimed=True, allowed=2, received=0, send_until=T + 600), T + 1, LinkState.CLAIMED),
        (link(claimed=True, allowed=2, received=1, send_until=T + 600), T + 1, LinkState.CLAIMED),
        (link(claimed=True, allowed=2, received=2, send_until=T + 600), T + 1, LinkState.USED),
        (link(claimed=True, allowed=2, received=0, send_until=T + 600), T + 600, LinkState.USED),
        # Claimed in time, its minutes to wait for a phone over: the claim still counts.
        (link(claimed=True, allowed=1, received=0, send_until=T + 600), T + 400, LinkState.CLAIMED),
    ],
)
def test_what_a_link_allows_at_a_time(record: PhoneLink, now: float, state: LinkState) -> None:
    assert link_state(record, now) is state


A: Announced = (("a.png", 10), ("b.pdf", 20), ("a.png", 10))


@pytest.mark.parametrize(
    ("announced", "name", "size", "rest"),
    [
        (A, "b.pdf", 20, (("a.png", 10), ("a.png", 10))),
        # Two photos of one name (phones often call every photo image.jpg): one at a time.
        (A, "a.png", 10, (("b.pdf", 20), ("a.png", 10))),
        (A, "a.png", 11, None),
        (A, "c.png", 10, None),
        (A, "A.PNG", 10, None),
        ((), "a.png", 10, None),
        ((("a.png", 10),), "a.png", 10, ()),
    ],
)
def test_a_claim_carries_only_what_it_announced(
    announced: Announced, name: str, size: int, rest: Announced | None
) -> None:
    assert without_announced(announced, name, size) == rest
