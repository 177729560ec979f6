"""Calls of more than two across the nodes of one deployment (issue 21): the citizen
and the expert on one node, the interpreter invited and the expert a transfer lands
with on another. Invitations and transferred calls are rung from the shared queues by
whichever node routes them, every participant is told through the shared socket.io
manager, and the records (legs, audit) are one. The media of a third participant on
another node is tests/cluster/test_relay_cluster.py's."""

import pytest

from signaling.messages import ChatView, ConsultationView, InvitationView, OfferView
from tests.cluster.processes import Clients, Deployment
from tests.cluster.test_cluster import audit_trail

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
