"""Media across nodes: a new call goes to the least-loaded relay worker of the
deployment, even one on a node that serves neither participant; when that node
is killed with SIGKILL, the participants' next offers (what the page and the
client do when media fails) place the call on a live worker and media flows
again; nothing of the call is left on the survivor afterwards."""

import signal

import pytest

from harness.peers import CallPeer, wait_until
from signaling.client import ExpertClient
from signaling.messages import ConsultationView, MediaAccess, OfferView
from tests.cluster.processes import Clients, Deployment, ServerProcess, eventually, relay_reports
from tests.cluster.test_cluster import flowing, join_media, relay_connections

pytestmark = pytest.mark.postgres


async def active_call(
    clients: Clients, node: ServerProcess, kiosk: str, expert: str, department: str
) -> tuple[str, MediaAccess, MediaAccess, ExpertClient]:
    expert_client = await clients.expert(node.url, expert)
    await expert_client.set_presence("available")
    kiosk_client = await clients.kiosk(node.url, kiosk)
    call_id = (await kiosk_client.request(department)).consultation_id
    await expert_client.next_event("offer", OfferView, timeout=20)
    accepted = await expert_client.accept(call_id)
    active = await kiosk_client.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "active", timeout=20
    )
    assert accepted.media is not None and active.media is not None
    return call_id, active.media, accepted.media, expert_client


@pytest.mark.usefixtures("loopback_peers")
async def test_a_call_goes_to_the_least_loaded_node_and_survives_losing_it(
    deployment: Deployment,
) -> None:
    a, b = await deployment.start_nodes(2)
    peers: list[CallPeer] = []
    try:
        async with Clients() as clients:
            # Call 1, both sides on A: the workers are equally idle, A's own is taken.
            _, kiosk_1, expert_1, _ = await active_call(
                clients, a, "kiosk01", "expert_market", "market"
            )
            first = [CallPeer(), CallPeer()]
            peers += first
            await join_media(a, kiosk_1, first[0])
            await join_media(a, expert_1, first[1])
            assert await wait_until(lambda: flowing(*first), timeout=60)
            assert (await relay_connections(a), await relay_connections(b)) == (2, 0)

            async def a_reported_busier() -> bool:
                return sorted(load["calls"] for load in await relay_reports(deployment)) == [0, 1]

            # Nodes report their workers' load every 2 s.
            await eventually(a_reported_busier, 30, "the cluster has seen A's call")

            # Call 2, both sides on A again: its relay is B's idle worker.
            call_2, kiosk_2, expert_2, expert_housing = await active_call(
                clients, a, "kiosk02", "expert_housing", "housing"
            )

            async def placed_on_b() -> bool:
                peer_k, peer_e = CallPeer(), CallPeer()
                peers.extend((peer_k, peer_e))
                await join_media(a, kiosk_2, peer_k)
                await join_media(a, expert_2, peer_e)
                return await wait_until(lambda: flowing(peer_k, peer_e), timeout=60)

            assert await placed_on_b()
            assert await relay_connections(b) == 2

            # B is lost. The participants offer again through A (as the page does on
            # ICE failure): the call is placed on A's worker and media flows again.
            b.send(signal.SIGKILL)
            await b.wait_exit()
            again = [CallPeer(), CallPeer()]
            peers += again
            await join_media(a, kiosk_2, again[0])
            await join_media(a, expert_2, again[1])
            assert await wait_until(lambda: flowing(*again), timeout=60)
            assert await relay_connections(a) == 4

            # Ending call 2 leaves nothing of it on the survivor.
            await expert_housing.end(call_2)

            async def only_call_1_left() -> bool:
                return await relay_connections(a) == 2

            await eventually(only_call_1_left, 30, "call 2's connections are closed on A")
    finally:
        for peer in peers:
            await peer.close()


@pytest.mark.usefixtures("loopback_peers")
async def test_a_draining_node_takes_no_new_calls_and_ends_none(deployment: Deployment) -> None:
    a, b = await deployment.start_nodes(2)
    peers: list[CallPeer] = []
    try:
        async with Clients() as clients:
            # A call on B's relay first, with both sides on B.
            call_1, kiosk_1, expert_1, expert_market = await active_call(
                clients, b, "kiosk01", "expert_market", "market"
            )
            first = [CallPeer(), CallPeer()]
            peers += first
            await join_media(b, kiosk_1, first[0])
            await join_media(b, expert_1, first[1])
            assert await wait_until(lambda: flowing(*first), timeout=60)
            assert await relay_connections(b) == 2

            b.send(signal.SIGUSR1)

            async def b_draining() -> bool:
                status, body = await b.health()
                drained = [r for r in await relay_reports(deployment) if r["draining"]]
                return status == 503 and body["status"] == "draining" and len(drained) == 1

            await eventually(b_draining, 30, "B drains")
            # A new call whose both sides are on B goes to A's worker ...
            _, kiosk_2, expert_2, _ = await active_call(
                clients, b, "kiosk02", "expert_housing", "housing"
            )
            second = [CallPeer(), CallPeer()]
            peers += second
            await join_media(b, kiosk_2, second[0])
            await join_media(b, expert_2, second[1])
            assert await wait_until(lambda: flowing(*second), timeout=60)
            assert (await relay_connections(a), await relay_connections(b)) == (2, 2)
            # ... and B's own call goes on.
            before = len(first[0].received.counters)
            assert await wait_until(
                lambda: len(first[0].received.counters) > before + 10, timeout=30
            )
            assert await expert_market.state() is not None

            b.send(signal.SIGUSR2)

            async def b_back() -> bool:
                return (await b.health())[0] == 200

            await eventually(b_back, 30, "B takes calls again")
            await expert_market.end(call_1)
    finally:
        for peer in peers:
            await peer.close()


@pytest.mark.usefixtures("loopback_peers")
async def test_a_third_participant_on_another_node_joins_the_call_where_its_relay_is(
    deployment: Deployment,
) -> None:
    """Issue 21: the kiosk and the expert on A, a second department's expert on B.
    Invited, it accepts on B and posts its offer to B's media URL, which hands it to
    the worker holding the call: one relay, three legs, each gets the two others in
    the slots of the rule (media/slots.py)."""
    a, b = await deployment.start_nodes(2)
    peers = [CallPeer(slots=3, screen=True, first_frame=n * 10_000) for n in range(3)]
    try:
        async with Clients() as clients:
            call_id, kiosk_media, expert_media, expert = await active_call(
                clients, a, "kiosk01", "expert_market", "market"
            )
            await join_media(a, kiosk_media, peers[0])
            await join_media(a, expert_media, peers[1])
            assert await wait_until(lambda: flowing(peers[0], peers[1]), timeout=60)
            second = await clients.expert(b.url, "expert_housing")
            await second.set_presence("available")
            invitation = await expert.invite(call_id, "housing", "")
            offer = await second.next_event(
                "offer",
                OfferView,
                where=lambda o: o.invitation_id == invitation.invitation_id,
                timeout=20,
            )
            joined = await second.accept_offer(offer)
            assert joined.you == 2 and joined.media is not None
            await join_media(b, joined.media, peers[2])
            expected = {(0, 0): 1, (0, 1): 2, (1, 0): 0, (1, 1): 2, (2, 0): 0, (2, 1): 1}
            assert await wait_until(
                lambda: all(len(peers[r].slots[s].counters) > 20 for r, s in expected),
                timeout=60,
            )
            for (receiver, slot), sender in expected.items():
                counters = peers[receiver].slots[slot].counters
                assert {c // 10_000 for c in counters} == {sender}, counters[:10]
            # All three legs on the one worker that holds the call.
            assert sorted([await relay_connections(a), await relay_connections(b)]) == [0, 3]
    finally:
        for peer in peers:
            await peer.close()
