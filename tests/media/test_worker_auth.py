"""A real relay worker process and its internal API: only requests signed with the
deployment's key, fresh, unaltered and seen once are served; refusals are counted
and logged; a call's legs are the ones signaling declares, no other."""

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from harness.peers import CallPeer
from media.config import MediaConfig
from media.errors import NotAParticipant
from media.internal_auth import HEADER, Signer, signing_key
from media.worker_pool import WorkerRelayPool
from web.metrics import Metrics

SECRET = "cluster-secret-for-tests-" + os.urandom(8).hex()
LEGS = ("kiosk", "expert")


@contextlib.asynccontextmanager
async def running_pool() -> AsyncIterator[WorkerRelayPool]:
    """One worker process (it writes its log to this process's stderr as it was when
    it started: started in a test, that is where capfd reads)."""
    pool = WorkerRelayPool(MediaConfig(addresses=("127.0.0.1",), workers=1), secret=SECRET)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def pool() -> AsyncIterator[WorkerRelayPool]:
    async with running_pool() as pool:
        yield pool


async def send(
    url: str, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, url + path, headers=headers, data=body, allow_redirects=False
        ) as response,
    ):
        return response.status, await response.text()


async def test_a_sniffed_internal_request_is_refused_replayed_altered_stale_or_unsigned(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async with running_pool() as pool:
        await refuse_every_request_but_the_signed_one(pool, capfd)


async def refuse_every_request_but_the_signed_one(
    pool: WorkerRelayPool, capfd: pytest.CaptureFixture[str]
) -> None:
    (url,) = pool.local_urls()
    signer = Signer(signing_key(SECRET))
    sniffed = signer.headers("GET", url, "/stats", b"", time.time())
    assert (await send(url, "GET", "/stats", sniffed))[0] == 200
    refused = [
        # The very request again, within the window: a replay.
        ("GET", "/stats", sniffed),
        # Its signature on another request (close the call's relay).
        ("DELETE", "/calls/c1", sniffed),
        # The static header of old, which anyone who saw one request could send.
        ("GET", "/stats", {"X-Relay-Secret": SECRET}),
        # Signed a minute ago: stale.
        ("GET", "/stats", signer.headers("GET", url, "/stats", b"", time.time() - 60)),
        # Signed for another worker.
        ("GET", "/stats", signer.headers("GET", "http://127.0.0.1:9", "/stats", b"", time.time())),
        # Signed under another deployment's secret.
        (
            "GET",
            "/stats",
            Signer(signing_key("another-cluster-secret")).headers(
                "GET", url, "/stats", b"", time.time()
            ),
        ),
    ]
    for method, path, headers in refused:
        status, text = await send(url, method, path, headers)
        assert (status, text) == (403, '{"error": "forbidden"}'), (method, path, headers)
    # The media events (a websocket) are an internal request too.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
            await http.ws_connect(f"{url}/events", headers={HEADER: "v1 t=1 n=2 s=3"})
    assert refusal.value.status == 403

    # Each refusal is counted in the worker's figures, which /metrics exports...
    workers = await pool.stats()
    (figures,) = workers.values()
    assert figures["internal_auth_failures"] == len(refused) + 1
    metrics = Metrics()
    metrics.relay.workers = workers
    exported = f'windowlink_relay_internal_auth_failures_total{{worker="0"}} {len(refused) + 1}.0'
    assert exported in metrics.exposition().decode()
    # ... and logged with the peer's address, never with the secret.
    err = capfd.readouterr().err
    assert "internal request refused from 127.0.0.1: GET /stats: nonce already used" in err
    assert SECRET not in err and signing_key(SECRET).hex() not in err


async def test_a_worker_opens_no_leg_outside_the_legs_signaling_declares(
    pool: WorkerRelayPool,
) -> None:
    (url,) = pool.local_urls()
    await pool.place("c1")
    kiosk, eavesdropper = CallPeer(), CallPeer()
    try:
        # Seen before: a third leg "eavesdropper" accepted into a call.
        with pytest.raises(NotAParticipant):
            await pool.connect("c1", "eavesdropper", await eavesdropper.offer(), LEGS)
        # A signed request that declares no legs opens nothing either.
        offer = (await kiosk.offer()).encode()
        path = "/calls/c1/legs/kiosk"
        headers = Signer(signing_key(SECRET)).headers("POST", url, path, offer, time.time())
        assert (await send(url, "POST", path, headers, offer))[0] == 400
        assert await pool.peer_connections() == 0
        # The participants' own legs are answered.
        await kiosk.accept(await pool.connect("c1", "kiosk", offer.decode(), LEGS))
        assert await pool.peer_connections() == 1
    finally:
        await kiosk.close()
        await eavesdropper.close()


async def test_a_worker_pushes_its_figures_and_the_heartbeat_asks_for_none(
    pool: WorkerRelayPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's heartbeat (every 2 s) reads what each worker pushes over /events
    instead of a signed HTTP request to each: an idle node's largest cost."""
    asked: list[str] = []
    request = pool._request

    async def counted(method: str, worker: Any, path: str, body: str | None = None) -> Any:
        asked.append(path)
        return await request(method, worker, path, body)

    monkeypatch.setattr(pool, "_request", counted)
    (url,) = pool.local_urls()
    figures: dict[str, dict[str, float]] = {}
    for _ in range(100):  # pushed when the parent listens, then every 2 s
        figures = await pool.worker_figures()
        if not asked:
            break
        asked.clear()
        await asyncio.sleep(0.1)
    assert asked == [] and figures[url]["calls"] == 0 and figures[url]["cpu_seconds"] > 0
    await pool.place("c1")
    kiosk = CallPeer()
    try:
        await kiosk.accept(await pool.connect("c1", "kiosk", await kiosk.offer(), LEGS))
        asked.clear()
        for _ in range(60):  # within the next push (2 s)
            if (await pool.worker_figures())[url]["calls"] == 1:
                break
            await asyncio.sleep(0.1)
        assert (await pool.worker_figures())[url]["calls"] == 1
        assert "/stats" not in asked
    finally:
        await kiosk.close()


async def test_a_message_the_parent_cannot_read_ends_neither_events_nor_figures(
    pool: WorkerRelayPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed /events message ended the parent's reading of the worker's
    events (its media statuses and figures with it) while the worker stayed
    registered with its last figures; figures gone stale are asked for instead."""
    (worker,) = pool._workers
    (url,) = pool.local_urls()
    heard: list[tuple[str, str, str]] = []
    monkeypatch.setattr(pool, "_notify", lambda *event: heard.append(event))
    for bad in ("not json", "[]", '{"figures": {"calls": "many"}}', '{"call_id": "c1"}'):
        pool._take_event(worker, bad)
    pool._take_event(worker, '{"call_id": "c1", "participant": "kiosk", "status": "up"}')
    assert heard == [("c1", "kiosk", "up")]
    # Figures that stopped coming (a stuck worker) are not reported as fresh.
    pool._take_event(worker, '{"figures": {"calls": 7, "cpu_seconds": 1.0}}')
    assert (await pool.worker_figures())[url]["calls"] == 7
    worker.figures_at -= 60
    assert (await pool.worker_figures())[url]["calls"] == 0  # asked: it holds none
