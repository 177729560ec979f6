"""A supervisor listening in on a call (issue 23) through the real server and relay,
with aiortc peers sending real RTP (a frame counter and a 440 Hz tone): the
listener receives both sides' pictures and sound and sends nothing; the others'
pictures go on without a gap over 200 ms (of the media's own clock) when the
listener joins; a second supervisor is refused; an offer to send is refused; the
expert's view says the call is listened to, the kiosk's never; a supervisor out of
scope learns nothing of the call; stopping closes the listening leg, audited."""

import aiohttp
import pytest

from harness.peers import CallPeer, wait_until
from signaling.messages import ConsultationView
from storage.records import Role, Scope
from tests.conftest import (
    ClientFactory,
    RunningServer,
    ServerFactory,
    active_call,
    call_route,
    login_session,
)

# Real media for tens of seconds each: not the tier run between edits.
pytestmark = pytest.mark.slow
PASSWORD = "Listen-Pass-2026"


async def _offer(server: RunningServer, listen: dict[str, object], peer: CallPeer) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + str(listen["media_url"]),
            data=await peer.offer(),
            headers={
                "Content-Type": "application/sdp",
                "Authorization": f"Bearer {listen['media_token']}",
            },
        ) as response,
    ):
        if response.status == 201:
            await peer.accept(await response.text())
        return response.status


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
async def test_a_supervisor_hears_both_sides_sends_nothing_and_nobody_notices_a_gap(
    start_server: ServerFactory, connect: ClientFactory, workers: int
) -> None:
    server = await start_server(grace_period=30.0, media_workers=workers)
    accounts = server.storage.accounts
    await accounts.create("supervisor_two", PASSWORD, Role.SUPERVISOR)
    await accounts.create("supervisor_social", PASSWORD, Role.SUPERVISOR, scope=Scope(("social",)))
    kiosk, expert, call_id = await active_call(server, connect)
    # The pages' seven m-lines: the listener's position is a slot of theirs.
    peers = []
    for client, first in ((kiosk, 0), (expert, 10_000)):
        state = await client.state()
        assert state.consultation is not None and state.consultation.media is not None
        peer = CallPeer(slots=3, screen=True, first_frame=first)
        peers.append(peer)
        media = state.consultation.media
        status = await _offer(server, {"media_url": media.url, "media_token": media.token}, peer)
        assert status == 201
    listener = CallPeer(send_video=False, send_audio=False, slots=3)
    sender = CallPeer(slots=3)
    supervisor = await login_session(server, "supervisor")
    second = await login_session(server, "supervisor_two", PASSWORD)
    outsider = await login_session(server, "supervisor_social", PASSWORD)
    try:
        assert await wait_until(lambda: all(len(p.received.counters) > 15 for p in peers), 30), [
            (len(p.received.counters), p.pc.connectionState) for p in peers
        ]
        before = [len(p.received.video_pts) for p in peers]

        # Out of scope: as if the call did not exist.
        status, body = await call_route(
            outsider, server, "POST", f"/api/v1/supervision/{call_id}/listen"
        )
        assert status == 404, body
        status, listen = await call_route(
            supervisor, server, "POST", f"/api/v1/supervision/{call_id}/listen"
        )
        assert status == 201, listen
        assert listen["position"] == 3
        assert [(s["slot"], s["role"]) for s in listen["slots"]] == [(0, "kiosk"), (1, "expert")]
        # The expert is shown that the call is listened to; the kiosk never.
        view = await expert.next_event("consultation", ConsultationView, where=lambda v: v.listened)
        assert view.consultation_id == call_id
        assert not (await kiosk.state()).consultation.listened  # type: ignore[union-attr]

        # An offer that would send is refused; a receive-only one is answered.
        assert await _offer(server, listen, sender) == 400
        assert await _offer(server, listen, listener) == 201
        assert await wait_until(
            lambda: all(
                len(listener.slots[s].counters) > 30 and listener.slots[s].loud_audio_frames > 30
                for s in (0, 1)
            ),
            40,
        ), [(len(r.counters), r.loud_audio_frames) for r in listener.slots]
        # Each slot holds its side's counter (the kiosk counts from 0, the expert
        # from 10,000): nobody else's picture in it.
        assert all(c < 10_000 for c in listener.slots[0].counters)
        assert all(c >= 10_000 for c in listener.slots[1].counters)
        assert listener.slots[2].counters == []
        # The listener sends nothing: nothing reaches the others in its slot.
        assert all(p.slots[2].counters == [] and p.slots[2].audio_frames == 0 for p in peers)
        # The others' pictures had no gap over 200 ms while the listener joined.
        for peer, start in zip(peers, before, strict=True):
            assert peer.received.largest_gap(max(start - 1, 0)) <= 0.2, peer.received.video_pts

        # One listener per call: a second supervisor is refused while it holds.
        status, refused = await call_route(
            second, server, "POST", f"/api/v1/supervision/{call_id}/listen"
        )
        assert status == 409 and refused["error"]["code"] == "listened_already", refused
        status, now = await call_route(
            supervisor, server, "GET", f"/api/v1/supervision/{call_id}/listen"
        )
        assert status == 200 and now["connected"] is True, now

        # Stopped: the leg closes (nothing more arrives), the expert's view says so.
        async with supervisor.delete(
            f"{server.url}/api/v1/supervision/{call_id}/listen"
        ) as stopped:
            assert stopped.status == 204
        await expert.next_event("consultation", ConsultationView, where=lambda v: not v.listened)
        assert await wait_until(lambda: listener.pc.connectionState in ("closed", "failed"), 30)
        status, _ = await call_route(
            supervisor, server, "GET", f"/api/v1/supervision/{call_id}/listen"
        )
        assert status == 404
        # Now the second supervisor may.
        status, taken = await call_route(
            second, server, "POST", f"/api/v1/supervision/{call_id}/listen"
        )
        assert status == 201, taken
    finally:
        for peer in (*peers, listener, sender):
            await peer.close()
        for session in (supervisor, second, outsider):
            await session.close()
    actions = [
        (e.actor, e.action) for e in await server.storage.audit.entries() if e.subject == call_id
    ]
    assert ("supervisor", "consultation.listen") in actions
    assert ("supervisor", "consultation.listen_end") in actions
    assert ("supervisor_two", "consultation.listen") in actions


async def test_a_supervisor_steps_in_is_seen_and_heard_and_leaves(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    """Stepping in: a participant like any other, whose picture the others get in
    the slot of its position; on the record as a leg; leaving ends only its part."""
    server = await start_server(grace_period=30.0, media_workers=0)
    kiosk, expert, call_id = await active_call(server, connect)
    peers = []
    for client, first in ((kiosk, 0), (expert, 10_000)):
        state = await client.state()
        assert state.consultation is not None and state.consultation.media is not None
        peer = CallPeer(slots=3, screen=True, first_frame=first)
        peers.append(peer)
        media = state.consultation.media
        status = await _offer(server, {"media_url": media.url, "media_token": media.token}, peer)
        assert status == 201
    supervisor_peer = CallPeer(slots=3, screen=True, first_frame=20_000)
    supervisor = await login_session(server, "supervisor")
    try:
        status, joined = await call_route(
            supervisor, server, "POST", f"/api/v1/supervision/{call_id}/join"
        )
        assert status == 201, joined
        assert joined["position"] == 2
        view = await kiosk.next_event(
            "consultation", ConsultationView, where=lambda v: len(v.participants) == 3
        )
        assert view.participants[2].role == "supervisor"
        assert await _offer(server, joined, supervisor_peer) == 201
        # Everyone gets everyone: the supervisor the kiosk and the expert, they the
        # supervisor in their slot 1 (position 2).
        assert await wait_until(
            lambda: (
                all(len(supervisor_peer.slots[s].counters) > 20 for s in (0, 1))
                and all(len(p.slots[1].counters) > 20 for p in peers)
            ),
            40,
        )
        assert all(c >= 20_000 for p in peers for c in p.slots[1].counters)
        assert all(p.slots[1].loud_audio_frames > 0 for p in peers)
        async with supervisor.delete(f"{server.url}/api/v1/supervision/{call_id}/join") as left:
            assert left.status == 204
        after = await kiosk.next_event(
            "consultation", ConsultationView, where=lambda v: len(v.participants) == 2
        )
        assert after.state == "active"
    finally:
        for peer in (*peers, supervisor_peer):
            await peer.close()
        await supervisor.close()
    legs = await server.storage.legs.of(call_id)
    assert [(leg.role.value, leg.left_at is not None) for leg in legs] == [
        ("expert", False),
        ("supervisor", True),
    ]
    actions = [e.action for e in await server.storage.audit.entries() if e.subject == call_id]
    assert "consultation.step_in" in actions and "consultation.leave" in actions
