"""Media through the app: tokens from the consultation, offers POSTed to the
media URL, RTP through the relay, everything closed when the call ends."""

import asyncio
import re
from typing import Any

import aiohttp
import pytest

from harness.peers import CallPeer, in_order, wait_until
from signaling.client import ExpertClient, KioskClient
from signaling.messages import ConsultationView, PeerStatus
from tests.conftest import ClientFactory, RunningServer, ServerFactory, active_call


async def media_of(client: KioskClient | ExpertClient) -> tuple[str, str]:
    state = await client.state()
    assert state.consultation is not None and state.consultation.media is not None
    return state.consultation.media.url, state.consultation.media.token


async def post_offer(
    server: RunningServer,
    url: str,
    token: str | None,
    body: Any,
    content_type: str = "application/sdp",
) -> tuple[int, str, dict[str, str]]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


async def join(server: RunningServer, client: KioskClient | ExpertClient, peer: CallPeer) -> str:
    url, token = await media_of(client)
    status, answer, headers = await post_offer(server, url, token, await peer.offer())
    assert status == 201, answer
    assert headers["Content-Type"].startswith("application/sdp")
    await peer.accept(answer)
    return headers["Location"]


async def run_call(server: RunningServer, connect: ClientFactory) -> None:
    kiosk, expert, call_id = await active_call(server, connect)
    kiosk_peer, expert_peer = CallPeer(), CallPeer()
    try:
        location = await join(server, kiosk, kiosk_peer)
        assert location == f"/api/v1/media/{call_id}/p0"  # the kiosk's leg, by position
        await join(server, expert, expert_peer)
        assert await wait_until(
            lambda: (
                len(kiosk_peer.received.counters) > 20
                and len(expert_peer.received.counters) > 20
                and kiosk_peer.received.loud_audio_frames > 10
                and expert_peer.received.loud_audio_frames > 10
            )
        )
        assert in_order(kiosk_peer.received.counters)
        assert in_order(expert_peer.received.counters)
        assert await server.media.peer_connections() == 2
    finally:
        await kiosk_peer.close()
        await expert_peer.close()
    await expert.end(call_id)
    # Every peer connection of the relay is closed once the call has ended.
    assert await server.media.peer_connections() == 0


async def test_media_flows_both_ways_through_the_relay_in_process(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    await run_call(sqlite_server, connect)


async def test_media_flows_through_relay_worker_processes(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(media_workers=2)
    await run_call(server, connect)


async def test_bad_requests_on_the_media_endpoint_leave_nothing_behind(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    pool = sqlite_server.media
    kiosk, _expert, _call_id = await active_call(sqlite_server, connect)
    other_kiosk, other_expert, other_id = await active_call(
        sqlite_server, connect, kiosk="kiosk02", expert="expert_housing", department="housing"
    )
    url, token = await media_of(kiosk)
    _, other_token = await media_of(other_kiosk)
    offering = CallPeer()
    good_offer = await offering.offer()
    await offering.close()
    no_media = re.sub(r"m=(audio|video).*?(?=m=|\Z)", "", good_offer, flags=re.S)
    cases: list[tuple[str | None, str | bytes, str, int]] = [
        (None, good_offer, "application/sdp", 401),
        ("not-the-token", good_offer, "application/sdp", 403),
        (other_token, good_offer, "application/sdp", 403),
        (token, "v=0\r\nthis is not sdp\r\n", "application/sdp", 400),
        (token, no_media, "application/sdp", 400),
        (token, good_offer, "application/json", 415),
        (token, "a" * (70 * 1024), "application/sdp", 413),
        (token, b"\xff\xfe\x00", "application/sdp", 400),
    ]
    for bearer, body, content_type, expected in cases:
        status, text, _ = await post_offer(sqlite_server, url, bearer, body, content_type)
        assert status == expected, (expected, text)
        if status != 413:
            assert '"error"' in text
    assert await pool.peer_connections() == 0
    # An unknown consultation and an ended one answer 404.
    status, _, _ = await post_offer(
        sqlite_server, "/api/v1/media/0123456789abcdef", token, good_offer
    )
    assert status == 404
    await other_expert.end(other_id)
    status, _, _ = await post_offer(
        sqlite_server, f"/api/v1/media/{other_id}", other_token, good_offer
    )
    assert status == 404
    # The first call is unaffected: it still connects.
    peer = CallPeer()
    try:
        await join(sqlite_server, kiosk, peer)
        assert await pool.peer_connections() == 1
    finally:
        await peer.close()


async def test_reconnecting_side_gets_media_again_without_renegotiating_the_other(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, _call_id = await active_call(sqlite_server, connect)
    kiosk_peer, expert_peer = CallPeer(), CallPeer()
    second = CallPeer()
    try:
        await join(sqlite_server, kiosk, kiosk_peer)
        await join(sqlite_server, expert, expert_peer)
        assert await wait_until(lambda: len(expert_peer.received.counters) > 15)
        expert_remote_sdp = expert_peer.pc.remoteDescription.sdp
        # The kiosk's connection is replaced by a new one (as after an ICE failure).
        await kiosk_peer.close()
        await join(sqlite_server, kiosk, second)
        before = len(expert_peer.received.counters)
        assert await wait_until(lambda: len(second.received.counters) > 10)
        assert await wait_until(lambda: len(expert_peer.received.counters) > before + 10)
        # The expert's peer connection was never renegotiated.
        assert expert_peer.pc.remoteDescription.sdp == expert_remote_sdp
        assert expert_peer.pc.signalingState == "stable"
        # The new source's frames arrive in order from its very first frame (its
        # opening keyframe): no delta frame went ahead of it.
        tail = expert_peer.received.counters[before:]
        restart = tail.index(0)
        assert all(value > 0 for value in tail[restart + 1 :])
        assert in_order(tail[restart:])
        assert in_order(second.received.counters)
    finally:
        for peer in (kiosk_peer, expert_peer, second):
            await peer.close()


async def test_receive_only_side_without_camera_works(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, _ = await active_call(sqlite_server, connect)
    kiosk_peer, expert_peer = CallPeer(), CallPeer(send_video=False)
    try:
        await join(sqlite_server, kiosk, kiosk_peer)
        await join(sqlite_server, expert, expert_peer)
        assert await wait_until(
            lambda: (
                len(expert_peer.received.counters) > 15
                and kiosk_peer.received.loud_audio_frames > 10
            )
        )
        assert kiosk_peer.received.counters == []
    finally:
        await kiosk_peer.close()
        await expert_peer.close()


async def test_lost_media_past_the_grace_period_ends_the_call_dropped(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(grace_period=2.0)
    kiosk, expert, _call_id = await active_call(server, connect)
    kiosk_peer, expert_peer = CallPeer(), CallPeer()
    try:
        await join(server, kiosk, kiosk_peer)
        await join(server, expert, expert_peer)
        assert await wait_until(lambda: len(expert_peer.received.counters) > 5)
        # The kiosk's media stops (its connection closes) while its socket stays.
        await kiosk_peer.close()
        status = await expert.next_event("peer_status", PeerStatus, timeout=20)
        assert (status.side, status.status) == ("kiosk", "reconnecting")
        ended = await kiosk.next_event(
            "consultation", ConsultationView, where=lambda v: v.state == "ended", timeout=20
        )
        assert ended.end_reason == "dropped"
    finally:
        await expert_peer.close()


@pytest.mark.parametrize("workers", [0])
async def test_media_token_is_only_given_to_its_own_side(
    sqlite_server: RunningServer, connect: ClientFactory, workers: int
) -> None:
    kiosk, expert, _ = await active_call(sqlite_server, connect)
    _, kiosk_token = await media_of(kiosk)
    _, expert_token = await media_of(expert)
    assert kiosk_token != expert_token and workers == 0


async def test_delete_closes_only_that_sides_connection(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, call_id = await active_call(sqlite_server, connect)
    kiosk_peer, expert_peer = CallPeer(), CallPeer()
    try:
        location = await join(sqlite_server, kiosk, kiosk_peer)
        await join(sqlite_server, expert, expert_peer)
        assert await sqlite_server.media.peer_connections() == 2
        _, kiosk_token = await media_of(kiosk)
        _, expert_token = await media_of(expert)
        async with aiohttp.ClientSession() as http:
            async with http.delete(
                sqlite_server.url + location, headers={"Authorization": f"Bearer {expert_token}"}
            ) as response:
                assert response.status == 403, await response.text()
            async with http.delete(
                sqlite_server.url + location, headers={"Authorization": f"Bearer {kiosk_token}"}
            ) as response:
                assert response.status == 204
            async with http.delete(
                sqlite_server.url + location, headers={"Authorization": f"Bearer {kiosk_token}"}
            ) as response:
                assert response.status == 404
        assert await sqlite_server.media.peer_connections() == 1
        record = await sqlite_server.storage.consultations.get(call_id)
        assert record.state.value == "active"
        # A client from before legs were named by position leaves by its old name.
        async with (
            aiohttp.ClientSession() as http,
            http.delete(
                f"{sqlite_server.url}/api/v1/media/{call_id}/expert",
                headers={"Authorization": f"Bearer {expert_token}"},
            ) as response,
        ):
            assert response.status == 204
        assert await sqlite_server.media.peer_connections() == 0
    finally:
        await kiosk_peer.close()
        await expert_peer.close()


async def test_offers_never_go_to_an_address_that_is_no_relay_of_the_deployment(
    start_server: ServerFactory, connect: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A call's placement read from the live state names an address no node of the
    deployment reports (whoever wrote it there): no offer, DELETE or close goes
    there; the offer places the call again on a worker of ours."""
    from aiohttp import web

    received: list[str] = []

    async def record(request: web.Request) -> web.Response:
        received.append(f"{request.method} {request.path}")
        return web.Response(status=201, text="v=0\r\n", content_type="application/sdp")

    stranger = web.Application()
    stranger.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(stranger)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    elsewhere = f"http://127.0.0.1:{runner.addresses[0][1]}"
    server = await start_server(media_workers=1)
    peer = CallPeer()
    try:
        kiosk, _expert, call_id = await active_call(server, connect)
        await server.hub.consultations.place_relay(call_id, elsewhere, None)
        url, token = await media_of(kiosk)
        # Leaving answers that there is nothing to close, without asking there.
        async with (
            aiohttp.ClientSession() as http,
            http.delete(
                f"{server.url}{url}/kiosk", headers={"Authorization": f"Bearer {token}"}
            ) as response,
        ):
            assert response.status == 404
        # The offer is answered by this deployment's own worker.
        location = await join(server, kiosk, peer)
        assert location == f"/api/v1/media/{call_id}/p0"
        call = await server.hub.consultations.call(call_id)
        assert call is not None and call.relay in server.media.local_urls()
        assert await server.media.peer_connections() == 1
        assert f"is placed on {elsewhere}, which is no relay worker" in caplog.text
        # And the end of a call placed there closes nothing there.
        other_kiosk, other_expert, other_id = await active_call(
            server, connect, kiosk="kiosk02", expert="expert_housing", department="housing"
        )
        await server.hub.consultations.place_relay(other_id, elsewhere, None)
        await other_expert.end(other_id)
        await other_kiosk.next_event(
            "consultation", ConsultationView, where=lambda v: v.state == "ended", timeout=20
        )
        assert received == []
    finally:
        await peer.close()
        await runner.cleanup()


async def test_turn_credentials_only_for_a_participant_of_an_active_call_for_minutes(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    import base64
    import hashlib
    import hmac
    import time

    from tests.conftest import login_session

    secret = "turn-secret-for-tests-0123"
    stun, turn = "stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp"
    server = await start_server(ice_servers=(stun, turn), turn_secret=secret)

    async def given(username: str) -> Any:
        session = await login_session(server, username)
        async with session, session.get(f"{server.url}/api/v1/ice-servers") as response:
            assert response.status == 200
            return await response.json()

    stun_only = {
        "ice_servers": [{"urls": [stun], "username": None, "credential": None}],
        "expires_at": None,
    }
    # Without a call (seen: credentials for any kiosk or expert, valid 12 h).
    assert await given("kiosk01") == stun_only
    assert await given("expert_market") == stun_only
    kiosk, expert, call_id = await active_call(server, connect)
    for participant in ("kiosk01", "expert_market"):
        before = time.time()
        answer = await given(participant)
        servers = answer["ice_servers"]
        assert servers[0] == {"urls": [stun], "username": None, "credential": None}
        entry = servers[1]
        assert entry["urls"] == [turn]
        expected = hmac.new(secret.encode(), entry["username"].encode(), hashlib.sha1).digest()
        assert entry["credential"] == base64.b64encode(expected).decode()
        # Minutes, not hours: the default --turn-ttl.
        expiry = int(entry["username"].partition(":")[0])
        assert server.settings.turn_ttl == 300
        assert before + 299 <= expiry <= time.time() + 300
    # Not for someone else's call, nor after it ended.
    assert await given("expert_housing") == stun_only
    await expert.end(call_id)
    await kiosk.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "ended", timeout=20
    )
    assert await given("kiosk01") == stun_only
    assert await given("expert_market") == stun_only


async def test_a_second_expert_joins_through_the_media_url_and_leaves_without_a_gap(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """Issue 21 through the app: the kiosk and the expert on the pages' seven m-lines,
    a second department's expert invited in posts its offer to the media URL with its
    own token (leg p2), everyone gets the two others in the slots of the rule; when it
    leaves, signaling closes its leg and the first two never missed more than 200 ms
    of each other's video."""
    from signaling.messages import OfferView

    kiosk, expert, call_id = await active_call(sqlite_server, connect)
    peers = [CallPeer(slots=3, screen=True, first_frame=n * 10_000) for n in range(3)]
    second_expert: ExpertClient = await connect(sqlite_server, "expert_housing")
    try:
        await join(sqlite_server, kiosk, peers[0])
        await join(sqlite_server, expert, peers[1])
        assert await wait_until(lambda: all(len(p.slots[0].counters) > 20 for p in peers[:2]))
        before = [len(p.slots[0].video_pts) for p in peers[:2]]
        await second_expert.set_presence("available")
        invitation = await expert.invite(call_id, "housing", "土地证明")
        offer = await second_expert.next_event(
            "offer", OfferView, where=lambda o: o.invitation_id == invitation.invitation_id
        )
        view = await second_expert.accept_offer(offer)
        assert view.you == 2 and view.media is not None
        status, answer, headers = await post_offer(
            sqlite_server, view.media.url, view.media.token, await peers[2].offer()
        )
        assert status == 201, answer
        assert headers["Location"] == f"/api/v1/media/{call_id}/p2"
        await peers[2].accept(answer)
        # slot (receiver, slot) -> the sender's position, as media/slots.py has it.
        expected = {(0, 0): 1, (0, 1): 2, (1, 0): 0, (1, 1): 2, (2, 0): 0, (2, 1): 1}
        assert await wait_until(
            lambda: all(len(peers[r].slots[s].counters) > 20 for r, s in expected), timeout=30
        )
        for (receiver, slot), sender in expected.items():
            counters = peers[receiver].slots[slot].counters
            assert {c // 10_000 for c in counters} == {sender}, counters[:10]
            assert in_order(counters)
            assert peers[receiver].slots[slot].loud_audio_frames > 0
        assert await sqlite_server.media.peer_connections() == 3

        await second_expert.leave(call_id)
        for _ in range(100):  # signaling closes the leaver's leg (nobody re-offers)
            if await sqlite_server.media.peer_connections() == 2:
                break
            await asyncio.sleep(0.1)
        assert await sqlite_server.media.peer_connections() == 2
        after = [len(p.slots[0].video_pts) for p in peers[:2]]
        assert await wait_until(
            lambda: all(
                len(p.slots[0].video_pts) > n + 45 for p, n in zip(peers[:2], after, strict=True)
            )
        )
        # Joined and left: the first two never missed 200 ms of each other.
        for peer, start in zip(peers[:2], before, strict=True):
            assert peer.slots[0].largest_gap(start) <= 0.2, peer.slots[0].video_pts[start:]
    finally:
        for peer in peers:
            await peer.close()


async def test_an_offer_that_arrives_in_pieces_is_answered_whole(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """A page's offer of seven m-lines is some 22 KB: over TLS it comes in 16 KB
    records. The relay must answer all of it (it answered what had arrived first: six
    m-lines, which the browser refused, or a cut line, 400)."""
    kiosk, _expert, _call_id = await active_call(sqlite_server, connect)
    peer = CallPeer(slots=3, screen=True)
    try:
        offer = (await peer.offer()).encode()
        url, token = await media_of(kiosk)

        async def in_pieces() -> Any:
            middle = offer.rfind(b"m=video")
            yield offer[:middle]
            await asyncio.sleep(0.3)
            yield offer[middle:]

        status, answer, _ = await post_offer(sqlite_server, url, token, in_pieces())
        assert status == 201, answer
        assert answer.count("m=") == offer.count(b"m=") == 7
        await peer.accept(answer)
    finally:
        await peer.close()
