"""A call recorded through the real server and relay (issue 23), with aiortc peers
sending real RTP (a frame counter and a 440 Hz tone): the citizen consents, the
relay writes the dump as it forwards, the expert stops, and within seconds the
recording is a document that decodes (PyAV) to each side's counter, in order, and
their sound; the dump is gone, nothing of it was ever in clear under the data
directory. Only the experts of the call (and supervisors, the admin) may play it,
every play audited; the kiosk and the clerk get 404 and the call's document list
does not show it. A declined request writes nothing at all."""

import asyncio
import io
import itertools
import json
import os
import time
from pathlib import Path

import aiohttp
import av
import pytest

from harness.peers import CallPeer, read_counter, wait_until
from signaling.client import ExpertClient, KioskClient
from storage.recordings import Recording
from storage.retention import shred_expired_recordings
from tests.conftest import ClientFactory, RunningServer, ServerFactory, active_call, login_session
from tests.web.documents import png
from web.keys import FILES, MEDIA, RECORDER

# Real media for tens of seconds each: not the tier run between edits.
pytestmark = pytest.mark.slow


async def connect_media(
    server: RunningServer, *clients: KioskClient | ExpertClient
) -> list[CallPeer]:
    peers = []
    for client in clients:
        state = await client.state()
        assert state.consultation is not None and state.consultation.media is not None
        media = state.consultation.media
        peer = CallPeer()
        peers.append(peer)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                server.url + media.url,
                data=await peer.offer(),
                headers={
                    "Content-Type": "application/sdp",
                    "Authorization": f"Bearer {media.token}",
                },
            ) as response,
        ):
            assert response.status == 201, await response.text()
            await peer.accept(await response.text())
    return peers


def grew(peers: list[CallPeer], seen: list[int], frames: int) -> bool:
    """Each peer received ``frames`` more than it had."""
    return all(len(p.received.counters) > n + frames for p, n in zip(peers, seen, strict=True))


async def recorded_call(
    server: RunningServer,
    connect: ClientFactory,
    *,
    frames: int = 45,
    accept: bool = True,
    within: float = 40,
) -> tuple[str, list[CallPeer]]:
    """A call of kiosk01 and expert_market whose citizen was asked to record it and
    answered ``accept``, each side then receiving ``frames`` more frames."""
    await server.storage.departments.change("market", {"recording": True})
    kiosk, expert, call_id = await active_call(server, connect)
    peers = await connect_media(server, kiosk, expert)
    assert await wait_until(lambda: all(len(p.received.counters) > 5 for p in peers), 30)
    await expert.request_recording(call_id)
    await kiosk.answer_recording(call_id, accept)
    seen = [len(p.received.counters) for p in peers]
    assert await wait_until(lambda: grew(peers, seen, frames), within)
    return call_id, peers


async def made(server: RunningServer, call_id: str) -> list[Recording]:
    for _ in range(100):
        found: list[Recording] = await server.storage.recordings.of(call_id)
        if found:
            return found
        await asyncio.sleep(0.2)
    return []


def everything_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
async def test_a_consented_recording_decodes_to_what_each_side_sent(
    start_server: ServerFactory, connect: ClientFactory, workers: int
) -> None:
    server = await start_server(grace_period=30.0, media_workers=workers)
    # Some seconds of the call recorded.
    call_id, peers = await recorded_call(server, connect, frames=60)
    try:
        expert = await connect(server, "expert_market")
        await expert.stop_recording(call_id)
        found = await made(server, call_id)
        assert found, "no recording was made within 20 s"
    finally:
        for peer in peers:
            await peer.close()
    recording = found[0]
    data_dir = Path(server.settings.data_dir)
    assert list((data_dir / "recordings").glob("*.dump")) == []

    session = await login_session(server, "expert_market")
    async with session, session.get(f"{server.url}/api/v1/files/{recording.file_id}") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("video/webm")
        webm = await response.read()
    container = av.open(io.BytesIO(webm), mode="r")
    counters: dict[int, list[int]] = {}
    audio_frames = 0
    for packet in container.demux():
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame):
                counters.setdefault(packet.stream.index, []).append(read_counter(frame))
            elif isinstance(frame, av.AudioFrame):
                audio_frames += 1
    assert len(counters) == 2, counters.keys()
    for values in counters.values():
        assert len(values) > 30
        # The counter each side sent, in order (frames may be missing, never swapped).
        assert all(b > a for a, b in itertools.pairwise(values)), values[:20]
    assert audio_frames > 100
    # Nothing of it in clear anywhere under the data directory (dumps, blobs, database).
    stored = everything_under(data_dir)
    assert webm[200:264] not in stored

    # Not for the kiosk or the clerk; not among the call's documents; every play audited.
    for username in ("kiosk01", "clerk"):
        other = await login_session(server, username)
        async with other, other.get(f"{server.url}/api/v1/files/{recording.file_id}") as response:
            assert response.status == 404
    clerk = await login_session(server, "clerk")
    async with clerk, clerk.get(f"{server.url}/api/v1/consultations/{call_id}/files") as response:
        assert recording.file_id not in {f["id"] for f in (await response.json())["files"]}
    admin = await login_session(server, "admin")
    async with admin, admin.get(f"{server.url}/api/v1/recordings") as response:
        listed_ids = [r["id"] for r in (await response.json())["recordings"]]
    assert listed_ids == [recording.file_id]
    actions = [e.action for e in await server.storage.audit.entries()]
    assert actions.count("recording.play") == 1


async def test_a_declined_recording_writes_nothing(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(grace_period=30.0)
    call_id, peers = await recorded_call(server, connect, frames=20, accept=False, within=30)
    try:
        expert = await connect(server, "expert_market")
        await expert.end(call_id)
    finally:
        for peer in peers:
            await peer.close()
    data_dir = Path(server.settings.data_dir)
    assert not (data_dir / "recordings").exists() or not any((data_dir / "recordings").iterdir())
    assert await server.storage.recordings.of(call_id) == []
    assert await server.storage.recordings.unfinished_dumps(call_id) == []


async def test_a_relay_lost_mid_recording_leaves_a_recording_up_to_its_last_chunk(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(grace_period=30.0)
    call_id, peers = await recorded_call(server, connect)
    try:
        relay = server.app[MEDIA].relays[call_id]  # type: ignore[attr-defined]
        writer = relay.recorder
        assert writer is not None and writer.packets > 100
        # The relay's process dies: its dump is neither finished nor closed.
        relay.recorder = None
        os.close(writer._fd)
        writer.closed = True
        expert = await connect(server, "expert_market")
        await expert.end(call_id)
    finally:
        for peer in peers:
            await peer.close()
    found = await made(server, call_id)
    assert found, "no recording was made of the dump left behind"
    tracks = json.loads(found[0].tracks)
    assert {t["place"] for t in tracks} == {"audio", "video"}
    assert all(t["frames"] > 0 for t in tracks)


async def test_recordings_are_shredded_after_their_retention_and_the_rest_stays(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(grace_period=30.0)
    call_id, peers = await recorded_call(server, connect)
    try:
        kiosk = await connect(server, "kiosk01")
        await kiosk.upload(call_id, "户口簿.png", png(8, 8, (10, 120, 200)))
        kiosk_docs = await server.app[FILES].of_consultation(call_id)
        assert len(kiosk_docs) == 1
        expert = await connect(server, "expert_market")
        await expert.stop_recording(call_id)
        found = await made(server, call_id)
        assert found
        await expert.end(call_id)
    finally:
        for peer in peers:
            await peer.close()
    later = time.time() + 3 * 86400
    shredded = await shred_expired_recordings(
        server.storage.db, server.app[FILES], days=2, now=later
    )
    assert shredded == [found[0].file_id]
    stored = await server.app[FILES].get(found[0].file_id)
    assert stored.shredded_at is not None
    # Only recordings: the call's other documents are the documents' retention's.
    for document in kiosk_docs:
        assert (await server.app[FILES].get(document.id)).shredded_at is None
    actions = [e.action for e in await server.storage.audit.entries()]
    assert actions.count("recording.shred") == 1


async def test_a_long_recording_is_kept_in_segments_larger_than_a_document_may_be(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    # Documents of at most 64 KiB: recordings have their own limit.
    server = await start_server(grace_period=30.0, max_file_size=64 * 1024)
    server.app[RECORDER].segment_seconds = 3.0
    call_id, peers = await recorded_call(server, connect)
    try:
        # Past the first segment's end (recorded_call waited some 3 s already).
        assert await wait_until(lambda: False, 4.0) is False
        expert = await connect(server, "expert_market")
        await expert.stop_recording(call_id)
    finally:
        for peer in peers:
            await peer.close()
    found: list[Recording] = []
    for _ in range(100):
        found = await server.storage.recordings.of(call_id)
        if len(found) >= 2 and not await server.storage.recordings.unfinished_dumps(call_id):
            break
        await asyncio.sleep(0.2)
    assert len(found) >= 2
    sizes = [(await server.app[FILES].get(r.file_id)).size for r in found]
    assert max(sizes) > 64 * 1024, sizes
