"""A stop that always stops: a ``server.py`` process exits within 10 s of SIGTERM
whatever it is doing: a call's media going through its relay worker, an upload
half-sent, clients sending events, and one of its database statements blocked by a
table lock another connection holds (a slow migration, an administrator's open
transaction). Repeated, each time on a fresh process of the same deployment.

The 10 s is the promise itself (to operators and to init systems, which kill what
has not exited), so it is the one time this test waits; it asserts no duration.
"""

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from harness.peers import CallPeer, wait_until
from signaling.client import ClientError, WindowlinkClient, part_headers
from signaling.messages import ConsultationView, OfferView
from tests.cluster.processes import Clients, Deployment, ProcessId, children_of, eventually
from tests.cluster.test_cluster import flowing, join_media
from tests.pg_locks import table_locked, waiting_on_locks
from tests.web.test_upload_limits import begin

pytestmark = pytest.mark.postgres

EXIT_WITHIN = 10.0
"""Seconds from SIGTERM by which the process must have exited (the contract)."""
DEPARTMENTS = (
    ("market", "expert_market"),
    ("housing", "expert_housing"),
    ("social", "expert_social"),
)


async def keep_sending(client: WindowlinkClient, stop: asyncio.Event) -> None:
    """Events, one after the other, until told to stop (answers and refusals alike)."""
    while not stop.is_set():
        with contextlib.suppress(ClientError, TimeoutError, Exception):
            await client.emit("get_state", {}, timeout=2)
        await asyncio.sleep(0.05)


async def stalled_upload(
    http: aiohttp.ClientSession, base: str, call_id: str
) -> asyncio.Task[None]:
    """An upload whose first part stops half-way and never goes on: the request is
    still open when the stop comes."""
    size = 512 * 1024
    status, created = await begin(http, base, call_id, size, "材料.pdf")
    assert status == 201, created
    part = b"%PDF-1.7\n" + b"x" * (size - 9)
    half_sent = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield part[: size // 2]
        half_sent.set()
        await asyncio.Event().wait()

    async def send() -> None:
        with contextlib.suppress(aiohttp.ClientError):
            await http.patch(
                base + str(created["url"]), data=stalls(), headers=part_headers(0, part)
            )

    task = asyncio.create_task(send())
    await asyncio.wait_for(half_sent.wait(), 20)
    return task


async def busy_node_stopped(deployment: Deployment, round_: int) -> None:
    """One node, made busy in every way at once, then SIGTERM; exited within 10 s."""
    department, expert_name = DEPARTMENTS[round_]
    kiosks = [f"kiosk_stop{round_}{k}" for k in "abc"]
    await deployment.create_accounts(kiosks)
    node = await deployment.start("--grace-period", "120", "--ring-timeout", "30")
    relay_workers = [ProcessId.of(pid) for pid in children_of(node.pid)]
    assert relay_workers and all(relay_workers)
    stop_sending = asyncio.Event()
    peers = [CallPeer(), CallPeer()]
    async with Clients() as clients, contextlib.AsyncExitStack() as stack:
        # A call with media through the node's relay worker.
        expert = await clients.expert(node.url, expert_name, reconnect=True)
        await expert.set_presence("available")
        caller = await clients.kiosk(node.url, kiosks[0], reconnect=True)
        call_id = (await caller.request(department)).consultation_id
        await expert.next_event("offer", OfferView, timeout=20)
        in_call = await expert.accept(call_id)
        active = await caller.next_event(
            "consultation", ConsultationView, where=lambda v: v.state == "active", timeout=20
        )
        assert active.media is not None and in_call.media is not None
        await join_media(node, active.media, peers[0])
        await join_media(node, in_call.media, peers[1])
        assert await wait_until(lambda: flowing(*peers, more_than=5), timeout=60)

        # An upload half-sent, and clients sending events all along.
        http = aiohttp.ClientSession(headers={"Cookie": f"wl_session={caller.session_cookie}"})
        await stack.enter_async_context(http)
        upload = await stalled_upload(http, node.url, call_id)
        busy = await clients.kiosk(node.url, kiosks[1], reconnect=True)
        senders = [
            asyncio.create_task(keep_sending(c, stop_sending)) for c in (expert, caller, busy)
        ]

        # A statement of the node's blocked by a lock another connection holds.
        holder = await stack.enter_async_context(
            table_locked(deployment.database_url, "consultations")
        )
        blocked = await clients.kiosk(node.url, kiosks[2], reconnect=True)
        request = asyncio.create_task(
            blocked.emit("request_consultation", {"department": department}, timeout=60)
        )

        async def statement_blocked() -> bool:
            return await waiting_on_locks(holder) > 0

        await eventually(statement_blocked, 20, "the node's statement waits for the lock")

        node.send(signal.SIGTERM)
        try:
            code = await node.wait_exit(EXIT_WITHIN)
        except TimeoutError:
            raise AssertionError(
                f"round {round_}: still running {EXIT_WITHIN:.0f} s after SIGTERM:\n"
                + node.log_tail()
            ) from None
        log = node.log.read_text(errors="replace")
        # Stopped by its own steps, not by the watchdog's last resort, and no event
        # ran into a store already closed.
        assert code == 0, f"round {round_}: exit status {code}\n{node.log_tail()}"
        assert "Traceback" not in log, log
        for worker in relay_workers:
            assert worker is not None

            async def worker_gone(worker: ProcessId = worker) -> bool:
                return worker.gone

            await eventually(worker_gone, 10, "the relay worker exited with its node")

        stop_sending.set()
        await asyncio.gather(*senders)
        upload.cancel()
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError, ClientError, TimeoutError):
            await request
    for peer in peers:
        await peer.close()
    # The blocked request was never half-done: no record without its live state.
    rows = await deployment.query(
        "SELECT c.id FROM consultations c JOIN accounts a ON a.id = c.kiosk_id "
        "WHERE a.username = $1",
        kiosks[2],
    )
    assert rows == []


@pytest.mark.usefixtures("loopback_peers")
async def test_a_busy_node_blocked_on_a_table_lock_exits_within_10_s_of_sigterm_every_time(
    deployment: Deployment,
) -> None:
    for round_ in range(len(DEPARTMENTS)):
        await busy_node_stopped(deployment, round_)
