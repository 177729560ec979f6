"""Several real ``server.py`` processes on real Redis and PostgreSQL: a whole
consultation across two processes, contention between many kiosks and experts,
kill -9 of a process, a restart, a Redis outage, the ``--processes``
supervisor, and the pages across two processes.

No test asserts how long anything took: each waits for what it expects with a
bounded poll, the bounds generous because the machine is shared. (The Redis
outage lasts five seconds because that is the scenario; the kill -9 test checks
that the ring timeout was still pending when the process died, or it would prove
nothing.)
"""

import asyncio
import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from redis.asyncio import Redis

from harness.peers import CallPeer, in_order, wait_until
from harness.redis import PrivateRedis
from signaling.client import ClientError, ExpertClient, KioskClient
from signaling.messages import (
    ChatView,
    ConsultationView,
    FileView,
    MediaAccess,
    OfferRevoked,
    OfferView,
    QueuePosition,
)
from tests.cluster.processes import (
    Clients,
    Deployment,
    ProcessId,
    ServerProcess,
    children_of,
    connection_holder,
    descendants_of,
    environ_of,
    eventually,
    local_port_of,
    open_deployment,
    reconnected,
    samples,
    samples_of_process,
    scrape,
    sid_of,
)
from tests.conftest import RunningServer, upload_file

pytestmark = pytest.mark.postgres

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\n" + b"% cluster\n" * 400 + b"%%EOF\n"


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    async with Clients() as opened:
        yield opened


def as_server(node: ServerProcess) -> RunningServer:
    """The shared helpers only use a server's ``url``."""
    return cast(RunningServer, node)


def session_of(client: KioskClient | ExpertClient) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Cookie": f"wl_session={client.session_cookie}"})


async def join_media(node: ServerProcess, media: MediaAccess, peer: CallPeer) -> None:
    """POST the peer's offer to the media URL on ``node``'s origin; take the answer."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            node.url + media.url,
            data=await peer.offer(),
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {media.token}"},
        ) as response,
    ):
        answer = await response.text()
        assert response.status == 201, answer
    await peer.accept(answer)


def flowing(*peers: CallPeer, more_than: int = 20) -> bool:
    return all(
        len(p.received.counters) > more_than and p.received.loud_audio_frames > 10 for p in peers
    )


async def relay_connections(node: ServerProcess) -> float:
    """Peer connections in the relay workers of ``node`` (its own /metrics)."""
    return sum(samples(await scrape(node.url), "windowlink_relay_peer_connections"))


async def audit_trail(deployment: Deployment, call_id: str) -> list[tuple[str, str]]:
    """(actor, action) of the audit entries about a consultation, oldest first."""
    rows = await deployment.query(
        "SELECT actor, action, subject, detail FROM audit_log ORDER BY seq"
    )
    return [
        (r["actor"], r["action"])
        for r in rows
        if r["subject"] == call_id or json.loads(r["detail"]).get("consultation") == call_id
    ]


# ---- 1. the whole consultation -------------------------------------------------------


@pytest.mark.usefixtures("loopback_peers")
async def test_whole_consultation_with_kiosk_and_expert_on_two_processes(
    deployment: Deployment, clients: Clients
) -> None:
    a, b = await deployment.start_nodes(2)
    expert = await clients.expert(b.url, "expert_market")
    await expert.set_presence("available")
    kiosk = await clients.kiosk(a.url, "kiosk01")
    requested = await kiosk.request("market", case_number="CL-2468")
    call_id = requested.consultation_id
    offer = await expert.next_event("offer", OfferView, timeout=20)
    assert offer.consultation_id == call_id and offer.case_number == "CL-2468"
    accepted = await expert.accept(call_id)
    active = await kiosk.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "active", timeout=20
    )
    assert accepted.media is not None and active.media is not None

    # Media: the kiosk's offer reaches A, which places the call on its relay worker;
    # B hands the expert's offer to that worker.
    kiosk_peer, expert_peer = CallPeer(), CallPeer()
    try:
        await join_media(a, active.media, kiosk_peer)
        await join_media(b, accepted.media, expert_peer)
        assert await wait_until(lambda: flowing(kiosk_peer, expert_peer), timeout=60)
        assert in_order(kiosk_peer.received.counters)
        assert in_order(expert_peer.received.counters)
        assert (await relay_connections(a), await relay_connections(b)) == (2, 0)
    finally:
        await kiosk_peer.close()
        await expert_peer.close()

    # A document uploaded through A is announced to the expert on B, who downloads it
    # from B; chat goes across too.
    async with session_of(kiosk) as kiosk_http:
        status, record = await upload_file(as_server(a), kiosk_http, call_id, "执照.pdf", PDF)
    assert status == 201, record
    announced = await expert.next_event("file_added", FileView, timeout=20)
    assert (announced.id, announced.name, announced.uploaded_by) == (
        record["id"],
        "执照.pdf",
        "kiosk",
    )
    async with session_of(expert) as expert_http, expert_http.get(b.url + announced.url) as got:
        assert got.status == 200
        assert await got.read() == PDF
    await kiosk.chat(call_id, "请问需要原件吗")
    line = await expert.next_event("chat_message", ChatView, timeout=20)
    assert (line.sender, line.text) == ("kiosk", "请问需要原件吗")

    ended = await expert.end(call_id)
    assert ended.end_reason == "completed"
    told = await kiosk.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "ended", timeout=20
    )
    assert told.end_reason == "completed"
    await expert.save_outcome(call_id, "answered", "原件已核对")
    await kiosk.rate(call_id, 5)

    async def relay_closed() -> bool:
        return await relay_connections(a) + await relay_connections(b) == 0

    await eventually(relay_closed, 30, "the relay closed the call's peer connections")

    (row,) = await deployment.query(
        """SELECT c.*, k.username AS kiosk, e.username AS expert FROM consultations c
           JOIN accounts k ON k.id = c.kiosk_id LEFT JOIN accounts e ON e.id = c.expert_id
           WHERE c.id = $1""",
        call_id,
    )
    assert (row["state"], row["end_reason"], row["ended_by"]) == (
        "ended",
        "completed",
        "expert_market",
    )
    assert (row["kiosk"], row["expert"], row["case_number"]) == (
        "kiosk01",
        "expert_market",
        "CL-2468",
    )
    assert (row["outcome"], row["notes"], row["rating"]) == ("answered", "原件已核对", 5)
    assert row["waiting_at"] <= row["offered_at"] <= row["active_at"] <= row["ended_at"]
    files = await deployment.query(
        "SELECT id, name, uploader_role, size FROM files WHERE consultation_id = $1", call_id
    )
    assert [tuple(f) for f in files] == [(record["id"], "执照.pdf", "kiosk", len(PDF))]
    assert await audit_trail(deployment, call_id) == [
        ("kiosk01", "consultation.request"),
        ("expert_market", "consultation.accept"),
        ("kiosk01", "file.upload"),
        ("expert_market", "file.download"),
        ("expert_market", "consultation.end"),
        ("expert_market", "consultation.outcome"),
        ("kiosk01", "consultation.rate"),
    ]
    # Both processes appended to one hash chain.
    code, output = await deployment.verify_audit()
    assert code == 0, output


# ---- 2. contention -------------------------------------------------------------------

# Each expert takes the actions in turn (starting at its own place), so that some
# offers are declined and some ring out, never two missed in a row by one expert.
PLAN = ("accept", "decline", "accept", "ignore", "accept")
RINGING = """
local function values(pattern)
  local out = {}
  for _, key in ipairs(redis.call('KEYS', pattern)) do
    local json = redis.call('HGET', key, 'json')
    if json then out[#out + 1] = json end
  end
  return out
end
return {values(ARGV[1] .. 'value:presence:*'), values(ARGV[1] .. 'value:call:*')}
"""


@dataclass
class OfferSeen:
    expert: str
    consultation_id: str
    action: str
    outcome: str
    """accepted, declined, or the reason of the offer_revoked that ended it"""


async def watch_ringing(redis_url: str, prefix: str, stop: asyncio.Event) -> tuple[int, list[str]]:
    """Sample the live state in Redis (one atomic script per sample: every expert's
    presence and every consultation) until ``stop``: the most offers seen ringing at
    once, and what broke the rule that a consultation rings for one expert at a time,
    for the expert the consultation says."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    most, broken = 0, []
    try:
        while not stop.is_set():
            presences, calls = await redis.eval(RINGING, 0, prefix)
            ringing = [json.loads(p) for p in presences]
            by_id = {c["id"]: c for c in map(json.loads, calls)}
            offers = [(p["expert_id"], p["offer"]) for p in ringing if p.get("offer")]
            most = max(most, len(offers))
            for call_id, count in Counter(o for _, o in offers).items():
                if count > 1:
                    broken.append(f"{call_id} rings for {count} experts")
            for expert_id, call_id in offers:
                call = by_id.get(call_id)
                if call is None or (call["phase"], call["expert_id"]) != ("offered", expert_id):
                    broken.append(f"{expert_id} rings for {call_id}, which is {call}")
            await asyncio.sleep(0.02)
    finally:
        await redis.aclose()
    return most, broken


async def test_contention_every_consultation_offered_to_one_expert_at_a_time_accepted_once(
    deployment: Deployment, clients: Clients
) -> None:
    nodes = await deployment.start_nodes(
        2, "--ring-timeout", "1", "--media-workers", "0", "--grace-period", "60"
    )
    kiosk_names = [f"hall_kiosk{i:02d}" for i in range(1, 21)]
    expert_names = [f"market_expert{i}" for i in range(1, 6)]
    await deployment.create_accounts(kiosk_names, [(name, "market") for name in expert_names])
    experts = [await clients.expert(nodes[i % 2].url, name) for i, name in enumerate(expert_names)]
    kiosks = [await clients.kiosk(nodes[i % 2].url, name) for i, name in enumerate(kiosk_names)]
    for expert in experts:
        await expert.set_presence("available")

    seen: list[OfferSeen] = []
    accepted: list[tuple[str, str]] = []
    ended: set[str] = set()
    everything_ended = asyncio.Event()

    async def serve(expert: ExpertClient, place: int) -> None:
        turn = place
        while not everything_ended.is_set():
            try:
                offer = await expert.next_event("offer", OfferView, timeout=0.5)
            except TimeoutError:
                continue
            call_id, action = offer.consultation_id, PLAN[turn % len(PLAN)]
            turn += 1
            outcome = ""
            try:
                if action == "accept":
                    await expert.accept(call_id)
                    outcome = "accepted"
                elif action == "decline":
                    await expert.decline(call_id)
                    outcome = "declined"
            except ClientError as exc:
                assert exc.code == "invalid_state", exc  # it rang out first
            if outcome == "accepted":
                accepted.append((expert.username, call_id))
                await expert.end(call_id)
                # The record saved, the expert is offered the next (no offer meanwhile).
                await expert.save_outcome(call_id, "answered")
                ended.add(call_id)
                if len(ended) == len(kiosks):
                    everything_ended.set()
            elif not outcome:
                revoked = await expert.next_event(
                    "offer_revoked",
                    OfferRevoked,
                    where=lambda r, c=call_id: r.consultation_id == c,  # type: ignore[misc]
                    timeout=30,
                )
                outcome = revoked.reason
                state = await expert.state()
                if state.presence is not None and state.presence.status == "away":
                    await expert.set_presence("available")
            seen.append(OfferSeen(expert.username, call_id, action, outcome))

    stop_watching = asyncio.Event()
    watcher = asyncio.create_task(
        watch_ringing(deployment.redis_url, deployment.redis_prefix, stop_watching)
    )
    servers = [asyncio.create_task(serve(e, i)) for i, e in enumerate(experts)]
    all_ended = asyncio.create_task(everything_ended.wait())
    try:
        requested = await asyncio.gather(*(k.request("market") for k in kiosks))
        async with asyncio.timeout(180):
            # An expert's task ends early only by failing: no waiting for the rest.
            await asyncio.wait([all_ended, *servers], return_when=asyncio.FIRST_COMPLETED)
    finally:
        everything_ended.set()
        await all_ended
        await asyncio.gather(*servers)
        stop_watching.set()
        most_ringing, broken = await watcher

    ids = {v.consultation_id for v in requested}
    assert len(ids) == len(kiosks)
    # Each consultation accepted exactly once, by one expert; none lost.
    assert sorted(c for _, c in accepted) == sorted(ids)
    # Every other offer ended by a decline or by ringing out, none taken away
    # because another expert had it at the same time.
    assert {s.outcome for s in seen} <= {"accepted", "declined", "timeout"}, seen
    assert {s.action for s in seen if s.outcome == "declined"} == {"decline"}
    assert [s for s in seen if s.outcome == "timeout"], "no offer rang out"
    assert [s for s in seen if s.outcome == "declined"], "no offer was declined"
    # Nobody is offered again what they declined.
    declined = {(s.expert, s.consultation_id) for s in seen if s.outcome == "declined"}
    assert len(declined) == sum(1 for s in seen if s.outcome == "declined")
    assert most_ringing >= 1 and broken == [], broken

    # The records and the audit log agree with what the clients saw.
    rows = await deployment.query(
        """SELECT c.id, c.state, c.end_reason, c.offered_at, c.active_at, e.username AS expert
           FROM consultations c JOIN accounts e ON e.id = c.expert_id"""
    )
    assert {r["id"] for r in rows} == ids
    assert {(r["state"], r["end_reason"]) for r in rows} == {("ended", "completed")}
    assert all(r["offered_at"] <= r["active_at"] for r in rows)
    assert {(r["expert"], r["id"]) for r in rows} == set(accepted)
    audit = await deployment.query(
        "SELECT actor, action, subject FROM audit_log WHERE action LIKE 'consultation.%'"
    )
    by_action = Counter((r["action"], r["subject"]) for r in audit)
    for action in ("consultation.request", "consultation.accept", "consultation.end"):
        assert {s for (a, s) in by_action if a == action} == ids, action
        assert {n for (a, _), n in by_action.items() if a == action} == {1}, action
    accepts = {(r["actor"], r["subject"]) for r in audit if r["action"] == "consultation.accept"}
    assert accepts == set(accepted)
    code, output = await deployment.verify_audit()
    assert code == 0, output


# ---- 3. kill -9 ----------------------------------------------------------------------


async def place_on(
    client: KioskClient | ExpertClient,
    port: int,
    supervisor: ServerProcess,
    wanted: Any,
) -> int:
    """Connect again until the socket lands on a child ``wanted(pid)`` accepts
    (SO_REUSEPORT spreads connections over the children); that child's pid."""
    holder: int | None = None

    async def placed() -> bool:
        nonlocal holder
        holder = connection_holder(port, local_port_of(client), children_of(supervisor.pid))
        if holder is not None and wanted(holder):
            return True
        await client.sio.disconnect()
        await client.connect()
        return False

    await eventually(placed, 120, f"{client.username} connected to the wanted process")
    assert holder is not None
    return holder


async def test_kill_9_of_the_process_holding_a_waiting_kiosk(
    deployment: Deployment, clients: Clients
) -> None:
    """``--processes 2`` on one port: both kiosks on one child, the expert on the
    other. The first kiosk's request rings for the expert from the kiosks' child,
    which sets the ring timeout; that child is killed while it rings."""
    supervisor = await deployment.start(
        "--processes", "2", "--ring-timeout", "6", "--grace-period", "60"
    )
    port = supervisor.port
    expert = await clients.expert(supervisor.url, "expert_market", reconnect=True)
    first = await clients.kiosk(supervisor.url, "kiosk01", reconnect=True)
    second = await clients.kiosk(supervisor.url, "kiosk02", reconnect=True)
    expert_child = await place_on(expert, port, supervisor, lambda pid: True)
    doomed = await place_on(first, port, supervisor, lambda pid: pid != expert_child)
    await place_on(second, port, supervisor, lambda pid: pid == doomed)
    doomed_id = ProcessId.of(doomed)
    assert doomed_id is not None

    await expert.set_presence("available")
    head = (await first.request("market")).consultation_id
    offer = await expert.next_event("offer", OfferView, timeout=20)
    assert offer.consultation_id == head
    behind = (await second.request("market")).consultation_id
    position = await second.next_event(
        "queue_position", QueuePosition, where=lambda p: p.position == 2, timeout=20
    )
    assert position.consultation_id == behind
    queue = [e.consultation_id for e in (await expert.queue()).entries]
    assert queue == [head, behind]
    before = {k.username: (await k.state()).consultation for k in (first, second)}
    old_sids = {k.username: sid_of(k) for k in (first, second)}
    assert expert.drain("offer_revoked") == []

    supervisor_children = children_of(supervisor.pid)
    assert doomed in supervisor_children
    os.kill(doomed, signal.SIGKILL)
    killed_at = time.time()

    async def killed() -> bool:
        return doomed_id.gone

    await eventually(killed, 30, "the killed child is gone")
    assert killed_at < offer.expires_at, "the ring timeout fell due before the kill"

    # The kiosks come back by themselves, on another process, with their places.
    for kiosk in (first, second):
        await reconnected(kiosk, old_sids[kiosk.username])
        holder = connection_holder(port, local_port_of(kiosk), descendants_of(supervisor.pid))
        assert holder is not None and holder != doomed
        state = (await kiosk.state()).consultation
        was = before[kiosk.username]
        assert state is not None and was is not None
        assert (state.consultation_id, state.waiting_since) == (
            was.consultation_id,
            was.waiting_since,
        )
        assert state.state in ("waiting", "offered")
    behind_now = (await second.state()).consultation
    assert behind_now is not None and behind_now.state == "waiting"
    assert [e.consultation_id for e in (await expert.queue()).entries] == [head, behind]

    # The ring timeout the killed child set fires after it is gone: the offer is
    # taken back and rings again (the only expert of the department, still available).
    revoked = await expert.next_event(
        "offer_revoked", OfferRevoked, where=lambda r: r.consultation_id == head, timeout=60
    )
    assert revoked.reason == "timeout"
    assert doomed_id.gone
    again = await expert.next_event(
        "offer", OfferView, where=lambda o: o.consultation_id == head, timeout=30
    )
    assert again.expires_at > offer.expires_at
    presence = (await expert.state()).presence
    assert presence is not None and presence.status == "available"
    await expert.accept(head)
    moved_up = await second.next_event(
        "queue_position", QueuePosition, where=lambda p: p.position == 1, timeout=20
    )
    assert moved_up.consultation_id == behind


# ---- 4. restart ----------------------------------------------------------------------


@pytest.mark.usefixtures("loopback_peers")
async def test_restart_of_the_only_process_keeps_the_queue_and_the_call(
    deployment: Deployment, clients: Clients
) -> None:
    flags = ("--grace-period", "120", "--ring-timeout", "30")
    server = await deployment.start(*flags)
    await deployment.create_accounts(["kiosk03", "kiosk04"])
    expert = await clients.expert(server.url, "expert_market", reconnect=True)
    await expert.set_presence("available")
    caller = await clients.kiosk(server.url, "kiosk01", reconnect=True)
    call_id = (await caller.request("market")).consultation_id
    await expert.next_event("offer", OfferView, timeout=20)
    in_call = await expert.accept(call_id)
    active = await caller.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "active", timeout=20
    )
    waiting = [
        await clients.kiosk(server.url, name, reconnect=True)
        for name in ("kiosk02", "kiosk03", "kiosk04")
    ]
    queued = [(await k.request("market")).consultation_id for k in waiting]
    assert [e.consultation_id for e in (await expert.queue()).entries] == queued
    assert in_call.media is not None and active.media is not None
    peers = [CallPeer(), CallPeer()]
    try:
        await join_media(server, active.media, peers[0])
        await join_media(server, in_call.media, peers[1])
        assert await wait_until(lambda: flowing(*peers, more_than=5), timeout=60)
    finally:
        for peer in peers:
            await peer.close()
    everyone = [expert, caller, *waiting]
    before = {c.username: await c.state() for c in everyone}
    sids = {c.username: sid_of(c) for c in everyone}

    server.send(signal.SIGTERM)
    assert await server.wait_exit() == 0
    restarted = await deployment.start(*flags, port=server.port)

    for client in everyone:
        await reconnected(client, sids[client.username])
        now, was = await client.state(), before[client.username]
        assert now.consultation is not None and was.consultation is not None
        assert (now.consultation.consultation_id, now.consultation.state) == (
            was.consultation.consultation_id,
            was.consultation.state,
        )
        assert now.consultation.waiting_since == was.consultation.waiting_since
    assert [e.consultation_id for e in (await expert.queue()).entries] == queued
    expert_state = await expert.state()
    assert expert_state.presence is not None and expert_state.presence.status == "busy"

    # The call carries on: media again (the old relay worker is gone), then the head
    # of the queue is offered when it ends.
    kiosk_media = (await caller.state()).consultation
    expert_media = expert_state.consultation
    assert kiosk_media is not None and kiosk_media.media is not None
    assert expert_media is not None and expert_media.media is not None
    peers = [CallPeer(), CallPeer()]
    try:
        await join_media(restarted, kiosk_media.media, peers[0])
        await join_media(restarted, expert_media.media, peers[1])
        assert await wait_until(lambda: flowing(*peers, more_than=5), timeout=60)
    finally:
        for peer in peers:
            await peer.close()
    await expert.end(call_id)
    await expert.save_outcome(call_id, "answered")
    offer = await expert.next_event(
        "offer", OfferView, where=lambda o: o.consultation_id == queued[0], timeout=30
    )
    assert offer.consultation_id == queued[0]


# ---- 5. Redis outage -----------------------------------------------------------------


async def test_redis_stopped_for_five_seconds_then_service_resumes_without_restart(
    tmp_path: Path,
) -> None:
    """The test's own redis-server goes down with SHUTDOWN SAVE and comes back on the
    same port from its dump, as after a Redis restart with persistence (or a network
    cut): the outage is what is tested, not the loss of the live state. While it is
    down /healthz answers 503 naming Redis and events answer ``unavailable`` within
    their ack timeout; afterwards the same server process serves a new consultation."""
    redis = PrivateRedis(tmp_path / "redis")
    await redis.start()
    try:
        async with (
            open_deployment(tmp_path / "deployment", redis_url=redis.url) as deployment,
            Clients() as clients,
        ):
            server = await deployment.start("--media-workers", "0", "--grace-period", "60")
            pid = server.pid
            expert = await clients.expert(server.url, "expert_market")
            await expert.set_presence("available")
            kiosk = await clients.kiosk(server.url, "kiosk01")
            # Events at once use several of the server's pooled Redis connections.
            await asyncio.gather(*(c.state() for c in (kiosk, expert) for _ in range(8)))

            await redis.shutdown_saving()
            down_since = time.monotonic()

            async def unhealthy() -> bool:
                return (await server.health())[0] == 503

            await eventually(unhealthy, 30, "/healthz answers 503")
            _, body = await server.health()
            assert body["status"] == "unavailable"
            assert any("live state unreachable" in p for p in body["problems"]), body
            for attempt in (
                kiosk.request("market", case_number="DOWN-1"),
                expert.set_presence("away"),
                kiosk.state(),
            ):
                with pytest.raises(ClientError) as refused:
                    await attempt  # the client's ack timeout (10 s) would raise TimeoutError
                assert refused.value.code == "unavailable"
            # Nothing was recorded for the refused request.
            assert await deployment.query("SELECT id FROM consultations") == []

            await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - down_since)))
            await redis.start()

            async def healthy() -> bool:
                return (await server.health())[0] == 200

            await eventually(healthy, 60, "/healthz answers 200 again")
            # None of the connections pooled before the outage fails an event now.
            await asyncio.gather(*(c.state() for c in (kiosk, expert) for _ in range(8)))
            requested = await kiosk.request("market", case_number="UP-1")
            offer = await expert.next_event("offer", OfferView, timeout=60)
            assert offer.consultation_id == requested.consultation_id
            await expert.accept(offer.consultation_id)
            await kiosk.next_event(
                "consultation", ConsultationView, where=lambda v: v.state == "active", timeout=30
            )
            await kiosk.end(offer.consultation_id)
            assert server.running and server.pid == pid
            rows = await deployment.query(
                "SELECT case_number, state, end_reason FROM consultations"
            )
            assert [tuple(r) for r in rows] == [("UP-1", "ended", "completed")]
    finally:
        await redis.stop()


# ---- 6. --processes ------------------------------------------------------------------


async def test_supervisor_killed_takes_every_child_and_relay_worker_and_metrics_add_up(
    deployment: Deployment,
) -> None:
    supervisor = await deployment.start("--processes", "2")

    async def two_children() -> bool:
        return len(children_of(supervisor.pid)) == 2

    await eventually(two_children, 60, "the supervisor runs two children")
    children = children_of(supervisor.pid)
    metrics_dir = Path(environ_of(children[0])["PROMETHEUS_MULTIPROC_DIR"])
    me = {"route": "/api/v1/me", "method": "GET", "status": "401"}
    count_name = "windowlink_http_request_duration_seconds_count"
    sent = 0
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:

            async def both_served() -> bool:
                nonlocal sent
                for _ in range(10):  # a new connection each: the kernel picks a child
                    async with http.get(f"{supervisor.url}/api/v1/me") as response:
                        assert response.status == 401
                    sent += 1
                return all(
                    sum(samples_of_process(metrics_dir, pid, count_name, **me)) > 0
                    for pid in children
                )

            await eventually(both_served, 120, "both children answered requests")
        # One scrape, whichever child answers it, counts both children's requests.
        total = samples(await scrape(supervisor.url), count_name, **me)
        assert total == [sent]
        per_child = [sum(samples_of_process(metrics_dir, p, count_name, **me)) for p in children]
        assert sum(per_child) == sent and all(per_child)

        # Every child has a relay worker; all of them go when the supervisor is killed.
        tree = descendants_of(supervisor.pid)
        for child in children:
            workers = [
                p
                for p in descendants_of(child)
                if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()
            ]
            assert workers, f"child {child} has no relay worker"
        processes = [ProcessId.of(p) for p in tree]
        supervisor.send(signal.SIGKILL)
        await supervisor.wait_exit()

        async def all_gone() -> bool:
            return all(p is None or p.gone for p in processes)

        await eventually(all_gone, 60, f"every process of {tree} exited")
    finally:
        # The supervisor, killed, could not remove its metrics directory (the next
        # start in the same data directory empties it).
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def test_no_childs_command_line_carries_a_secret_given_as_a_flag(
    deployment: Deployment,
) -> None:
    """Every local user reads every command line (ps, /proc/<pid>/cmdline): the
    supervisor hands the secrets given to it as flags to its children in their
    environment, and their relay workers get none on theirs either."""
    turn_secret, metrics_token = "turn-secret-" + os.urandom(8).hex(), os.urandom(12).hex()
    supervisor = await deployment.start(
        "--processes",
        "2",
        "--turn-secret",
        turn_secret,
        f"--metrics-token={metrics_token}",
        # An abbreviation argparse takes for --cluster-secret.
        "--cluster-sec",
        deployment.cluster_secret,
    )

    async def children_and_workers() -> bool:
        children = children_of(supervisor.pid)
        return len(children) == 2 and all(
            any("spawn_main" in Path(f"/proc/{p}/cmdline").read_text() for p in children_of(c))
            for c in children
        )

    await eventually(children_and_workers, 120, "two children, each with a relay worker")
    secrets = (deployment.cluster_secret, turn_secret, metrics_token, deployment.redis_url)
    for pid in descendants_of(supervisor.pid):
        command_line = Path(f"/proc/{pid}/cmdline").read_text()
        assert not [s for s in secrets if s in command_line], command_line
    for child in children_of(supervisor.pid):
        environment = environ_of(child)
        assert environment["WINDOWLINK_CLUSTER_SECRET"] == deployment.cluster_secret
        assert environment["WINDOWLINK_TURN_SECRET"] == turn_secret
        assert environment["WINDOWLINK_METRICS_TOKEN"] == metrics_token
    # The children serve (with those), and the supervisor says where secrets belong.
    assert (await supervisor.health())[0] == 200
    assert "--turn-secret was given on the command line" in supervisor.log.read_text()


# ---- 7. the pages --------------------------------------------------------------------


@pytest.mark.browser
async def test_browser_journey_with_kiosk_and_expert_pages_on_two_processes(
    deployment: Deployment, browser: Any
) -> None:
    from harness.chromium import (
        go_available,
        open_logged_in,
        request_from_kiosk,
        wait_for_js,
        wait_media_both_ways,
    )

    a, b = await deployment.start_nodes(2)
    expert = await open_logged_in(browser, as_server(b), "expert", "expert_market")
    await go_available(expert)
    kiosk = await open_logged_in(browser, as_server(a), "kiosk", "kiosk01")
    await request_from_kiosk(kiosk, "market")
    await expert.get_by_test_id("accept-call").click()
    await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")
    await wait_media_both_ways(kiosk, expert)
    # One relay worker holds both pages' connections, whichever process got which.
    assert sorted([await relay_connections(a), await relay_connections(b)]) == [0, 2]

    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await expert.get_by_test_id("outcome").select_option("answered")
    await expert.get_by_test_id("save-outcome").click()
    await expert.wait_for_selector("[data-testid=outcome-saved]:has-text('已保存')")
    await kiosk.evaluate("window.beforeWipe = true")
    await kiosk.get_by_test_id("rating-very-satisfied").click()
    await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=15000)
    await kiosk.wait_for_selector("[data-testid=department-market]")

    rows = await deployment.query("SELECT state, end_reason, outcome, rating FROM consultations")
    assert [tuple(r) for r in rows] == [("ended", "completed", "answered", 5)]
