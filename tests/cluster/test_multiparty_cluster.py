"""Calls of more than two across the nodes of one deployment (issue 21): the citizen
and the expert on one node, the interpreter invited and the expert a transfer lands
with on another. Invitations and transferred calls are rung from the shared queues by
whichever node routes them, every participant is told through the shared socket.io
manager, and the records (legs, audit) are one. The media of a third participant on
another node is tests/cluster/test_relay_cluster.py's with aiortc peers, and here in
real Chromium pages: the invited expert's page on the other node joins the relay that
holds the call, everyone sees and hears the two others, and the call goes on for two
when the invited expert leaves."""

from typing import Any

import pytest

from signaling.messages import ChatView, ConsultationView, InvitationView, OfferView
from tests.cluster.processes import Clients, Deployment, eventually
from tests.cluster.test_cluster import as_server, audit_trail, relay_connections

pytestmark = pytest.mark.postgres


async def test_an_interpreter_and_a_transfer_on_another_node_join_the_same_call(
    deployment: Deployment,
) -> None:
    a, b = await deployment.start_nodes(2)
    async with Clients() as clients:
        market = await clients.expert(a.url, "expert_market")
        await market.set_presence("available")
        kiosk = await clients.kiosk(a.url, "kiosk01")
        call_id = (await kiosk.request("market", case_number="SL-2026-2121")).consultation_id
        await market.next_event("offer", OfferView, timeout=20)
        await market.accept(call_id)

        # The interpreter's desk is on B: the invitation rings there.
        interpreter = await clients.expert(b.url, "interpreter01")
        await interpreter.set_presence("available")
        invitation = await market.invite(call_id, "interpret", "手语")
        offer = await interpreter.next_event(
            "offer",
            OfferView,
            where=lambda o: o.invitation_id == invitation.invitation_id,
            timeout=20,
        )
        assert offer.inviter is not None and offer.inviter.username == "expert_market"
        joined = await interpreter.accept_offer(offer)
        assert joined.you == 2 and joined.media is not None
        await market.next_event(
            "invitation", InvitationView, where=lambda i: i.state == "accepted", timeout=20
        )
        three = await kiosk.next_event(
            "consultation",
            ConsultationView,
            where=lambda v: len(v.participants) == 3,
            timeout=20,
        )
        assert [p.username for p in three.participants] == [
            "kiosk01",
            "expert_market",
            "interpreter01",
        ]
        await interpreter.chat(call_id, "您好，我是手语翻译")
        line = await kiosk.next_event("chat_message", ChatView, timeout=20)
        assert (line.sender, line.text) == ("interpreter", "您好，我是手语翻译")

        # Transferred to social, whose expert is on B: the call waits at the head of
        # its queue, rung there; the kiosk and the interpreter stay in it meanwhile.
        social = await clients.expert(b.url, "expert_social")
        moved = await market.transfer(call_id, "social", "社保待遇")
        assert (moved.state, moved.end_reason) == ("ended", "transferred")
        waiting = await kiosk.next_event(
            "consultation", ConsultationView, where=lambda v: v.transfer is not None, timeout=20
        )
        assert waiting.media is not None and waiting.department == "social"
        await social.set_presence("available")
        rung = await social.next_event("offer", OfferView, timeout=20)
        assert (rung.consultation_id, rung.kind, rung.note) == (call_id, "transfer", "社保待遇")
        taken = await social.accept_offer(rung)
        assert [p.username for p in taken.participants] == [
            "kiosk01",
            "expert_social",
            "interpreter01",
        ]
        back = await kiosk.next_event(
            "consultation",
            ConsultationView,
            where=lambda v: (
                v.state == "active"
                and v.transfer is None
                and v.expert is not None
                and v.expert == "expert_social"
            ),
            timeout=20,
        )
        assert back.case_number == "SL-2026-2121"

        # The last expert leaving ends it for everyone, on both nodes.
        ended = await social.leave(call_id)
        assert ended.end_reason == "completed"
        for client in (kiosk, interpreter):
            seen = await client.next_event(
                "consultation", ConsultationView, where=lambda v: v.state == "ended", timeout=20
            )
            assert seen.end_reason == "completed"

    legs = await deployment.query(
        "SELECT a.username, l.department, l.position, l.reason FROM consultation_legs l "
        "JOIN accounts a ON a.id = l.account_id WHERE l.consultation_id = $1 ORDER BY l.seq",
        call_id,
    )
    assert [tuple(row) for row in legs] == [
        ("expert_market", "market", 1, "transferred"),
        ("interpreter01", "interpret", 2, "ended"),
        ("expert_social", "social", 1, "ended"),
    ]
    actions = [action for _actor, action in await audit_trail(deployment, call_id)]
    for action in (
        "consultation.invite",
        "consultation.join",
        "consultation.transfer",
        "consultation.end",
    ):
        assert action in actions, actions
    assert actions.count("consultation.accept") == 2


STEP_MS = 30000
DESK = {"width": 1366, "height": 768}
KIOSK = {"width": 1080, "height": 1920}


def whose(videos: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(v["participant"], v["department"]) for v in videos]


@pytest.mark.browser
async def test_the_invited_experts_page_on_another_node_sees_and_is_seen_by_both_others(
    deployment: Deployment, browser: Any
) -> None:
    """The kiosk and the market expert on A, media flowing; the housing expert's page
    on B takes the invitation. Its offer goes to B's media URL, which hands it to the
    worker on whichever node holds the call: one relay, three connections, and every
    page shows the two others with frames and sound. When the housing expert leaves,
    the two on A go on with one remote video each, frames still coming."""
    from playwright.async_api import expect

    from harness.chromium import (
        go_available,
        open_logged_in,
        request_from_kiosk,
        wait_media_both_ways,
        wait_remote_videos,
    )

    a, b = await deployment.start_nodes(2)
    market = await open_logged_in(
        browser, as_server(a), "expert", "expert_market", viewport=DESK, timeout_ms=STEP_MS
    )
    await go_available(market)
    kiosk = await open_logged_in(
        browser, as_server(a), "kiosk", "kiosk01", viewport=KIOSK, timeout_ms=STEP_MS
    )
    await request_from_kiosk(kiosk, "market")
    await expect(market.get_by_test_id("offer-panel")).to_have_attribute(
        "data-kind", "consultation", timeout=STEP_MS
    )
    await market.get_by_test_id("accept-call").click()
    await wait_media_both_ways(kiosk, market)
    # The relay the call was placed on holds both connections.
    assert sorted([await relay_connections(a), await relay_connections(b)]) == [0, 2]

    housing = await open_logged_in(
        browser, as_server(b), "expert", "expert_housing", viewport=DESK, timeout_ms=STEP_MS
    )
    await go_available(housing)
    await market.get_by_test_id("invite-department").click()
    await market.get_by_test_id("invite-note").fill("请协助核实住房补贴条件")
    await market.get_by_test_id("invite-housing").click()
    await expect(market.locator("[data-testid=invitation][data-department=housing]")).to_be_visible(
        timeout=STEP_MS
    )

    # Rung on B as an invitation, and taken there.
    await expect(housing.get_by_test_id("offer-panel")).to_have_attribute(
        "data-kind", "invite", timeout=STEP_MS
    )
    await expect(housing.get_by_test_id("offer-note")).to_contain_text("住房补贴")
    await housing.get_by_test_id("accept-call").click()

    kiosk_sees = await wait_remote_videos(kiosk, 2)
    market_sees = await wait_remote_videos(market, 2)
    housing_sees = await wait_remote_videos(housing, 2)
    assert whose(kiosk_sees) == [("expert", "market"), ("expert", "housing")]
    assert whose(market_sees) == [("kiosk", None), ("expert", "housing")]
    assert whose(housing_sees) == [("kiosk", None), ("expert", "market")]
    # Frames keep coming to everyone (not one frame and a frozen picture).
    for page, seen in ((kiosk, kiosk_sees), (market, market_sees), (housing, housing_sees)):
        await wait_remote_videos(page, 2, more_than=min(v["frames"] for v in seen) + 20)
    # The page on B joined the relay that holds the call, wherever that is.
    assert sorted([await relay_connections(a), await relay_connections(b)]) == [0, 3]

    # The housing expert leaves (confirming, if the page asks): the call goes on.
    await housing.get_by_test_id("leave-call").click()
    asked = housing.locator("#confirm-dialog[open]")
    outcome = housing.get_by_test_id("outcome")
    await asked.or_(outcome).first.wait_for(state="visible", timeout=STEP_MS)
    if await asked.count():
        await asked.get_by_test_id("confirm-yes").click()
    await expect(outcome).to_be_visible(timeout=STEP_MS)

    kiosk_sees = await wait_remote_videos(kiosk, 1)
    market_sees = await wait_remote_videos(market, 1)
    assert whose(kiosk_sees) == [("expert", "market")]
    assert whose(market_sees) == [("kiosk", None)]
    for page, seen in ((kiosk, kiosk_sees), (market, market_sees)):
        await wait_remote_videos(page, 1, more_than=seen[0]["frames"] + 20)
    await expect(kiosk.locator("#call-screen")).to_be_visible()

    async def two_connections_left() -> bool:
        return sorted([await relay_connections(a), await relay_connections(b)]) == [0, 2]

    await eventually(two_connections_left, 30, "the leaver's connection closed on the relay")
    rows = await deployment.query("SELECT state FROM consultations")
    assert [r["state"] for r in rows] == ["active"]
