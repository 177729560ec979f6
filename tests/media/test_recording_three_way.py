"""Recording to the letter of issue 23, through the real server and relay with
aiortc peers sending real RTP (a frame counter from a number of their own, a
440 Hz tone): a 20 s three-party call kept in an S3-compatible object store
decodes (PyAV) to each participant's counter and tone, each in its own tracks;
neither the object store nor the data directory holds any of it in clear; a
declined request writes nothing there either; a relay worker killed with SIGKILL
mid-recording leaves a recording up to its last chunk."""

import asyncio
import io
import itertools
import os
import signal
from pathlib import Path
from typing import Any

import av
import boto3
import numpy as np
import pytest

from harness.object_store import CREDENTIALS, ObjectStore
from harness.peers import CallPeer, read_counter, wait_until
from signaling.messages import OfferView
from tests.conftest import ClientFactory, ServerFactory, active_call, login_session
from tests.media.test_media_api import join
from tests.media.test_recording_e2e import everything_under, grew, made
from web.keys import MEDIA

pytestmark = pytest.mark.slow

FRAMES = 10_000
"""Each participant's camera counts from its position times this."""
FPS = 15


def bucket_objects(store: ObjectStore, bucket: str) -> dict[str, bytes]:
    client: Any = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


async def test_a_20_s_three_party_call_in_s3_decodes_to_each_participant(
    start_server: ServerFactory, connect: ClientFactory, object_store: ObjectStore
) -> None:
    bucket = object_store.new_bucket()
    server = await start_server(
        grace_period=30.0,
        media_workers=0,
        blob_url=f"s3://{bucket}/docs",
        s3_endpoint=object_store.endpoint,
    )
    for department in ("market", "social"):
        await server.storage.departments.change(department, {"recording": True})

    # Declined first (another kiosk and department: the experts of the three-way
    # call below must not be wrapping this one up): nothing in the bucket but the
    # deployment's own marker, nothing on disk.
    before = bucket_objects(object_store, bucket)
    kiosk, expert, declined_id = await active_call(
        server, connect, kiosk="kiosk02", expert="expert_social", department="social"
    )
    await expert.request_recording(declined_id)
    await kiosk.answer_recording(declined_id, False)
    await expert.end(declined_id)
    assert bucket_objects(object_store, bucket) == before
    assert await server.storage.recordings.unfinished_dumps(declined_id) == []
    data_dir = Path(server.settings.data_dir)
    assert list(data_dir.glob("recordings/*")) == []

    kiosk, expert, call_id = await active_call(server, connect)
    second = await connect(server, "expert_housing")
    peers = [CallPeer(slots=3, screen=True, first_frame=n * FRAMES) for n in range(3)]
    try:
        await join(server, kiosk, peers[0])
        await join(server, expert, peers[1])
        await second.set_presence("available")
        invitation = await expert.invite(call_id, "housing", "土地证明")
        offer = await second.next_event(
            "offer", OfferView, where=lambda o: o.invitation_id == invitation.invitation_id
        )
        await second.accept_offer(offer)
        await join(server, second, peers[2])
        assert await wait_until(
            lambda: all(len(p.slots[s].counters) > 10 for p in peers for s in (0, 1)), 40
        )
        await expert.request_recording(call_id)
        await kiosk.answer_recording(call_id, True)
        # 20 s of the call recorded: each receiver got that many frames more.
        seen = [len(p.received.counters) for p in peers]
        assert await wait_until(lambda: grew(peers, seen, 20 * FPS), 90)
        await expert.stop_recording(call_id)
        found = await made(server, call_id)
        assert found, "no recording was made within 20 s"
    finally:
        for peer in peers:
            await peer.close()

    session = await login_session(server, "expert_market")
    url = f"{server.url}/api/v1/files/{found[0].file_id}"
    async with session, session.get(url) as response:
        assert response.status == 200
        webm = await response.read()
    container = av.open(io.BytesIO(webm), mode="r")
    counters: dict[int, list[int]] = {}
    loud: dict[int, int] = {}
    for packet in container.demux():
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame):
                counters.setdefault(packet.stream.index, []).append(read_counter(frame))
            elif isinstance(frame, av.AudioFrame):
                samples = frame.to_ndarray()
                peak = float(np.abs(samples).max())
                if np.issubdtype(samples.dtype, np.integer):
                    peak /= 32768  # Opus decodes to floats in [-1, 1]; be sure
                loud[packet.stream.index] = loud.get(packet.stream.index, 0) + int(peak > 0.03)
    # One video track per participant, each holding that participant's counter only,
    # in order, for about the 20 s recorded; one audio track each with the tone.
    owners = sorted(sorted({c // FRAMES for c in values}) for values in counters.values())
    assert owners == [[0], [1], [2]], owners
    for values in counters.values():
        assert all(b > a for a, b in itertools.pairwise(values)), values[:20]
        assert len(values) >= 15 * FPS, len(values)
    assert len(loud) == 3 and all(n > 15 * 50 for n in loud.values()), loud

    # Nothing of it in clear: not in the bucket, not under the data directory.
    stored = bucket_objects(object_store, bucket)
    assert set(stored) - set(before), "the recording is in the object store"
    sample = webm[len(webm) // 2 : len(webm) // 2 + 64]
    assert all(sample not in blob for blob in stored.values())
    assert sample not in everything_under(data_dir)
    assert list((data_dir / "recordings").glob("*.dump")) == []


async def test_a_relay_worker_killed_mid_recording_leaves_a_recording(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    """SIGKILL, not a polite close: the dump ends wherever the worker's last chunk
    did, and the call's end makes a recording of what was flushed."""
    server = await start_server(grace_period=30.0, media_workers=1)
    await server.storage.departments.change("market", {"recording": True})
    kiosk, expert, call_id = await active_call(server, connect)
    peers = [CallPeer(first_frame=0), CallPeer(first_frame=FRAMES)]
    try:
        await join(server, kiosk, peers[0])
        await join(server, expert, peers[1])
        assert await wait_until(lambda: all(len(p.received.counters) > 10 for p in peers), 40)
        await expert.request_recording(call_id)
        await kiosk.answer_recording(call_id, True)
        seen = [len(p.received.counters) for p in peers]
        assert await wait_until(lambda: grew(peers, seen, 6 * FPS), 60)
        workers = server.app[MEDIA]._workers  # type: ignore[attr-defined]
        pid = workers[0].process.pid
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if not workers[0].alive:
                break
            await asyncio.sleep(0.1)
        await expert.end(call_id)
    finally:
        for peer in peers:
            await peer.close()
    found = await made(server, call_id)
    assert found, "no recording was made of the dump the killed worker left"
    session = await login_session(server, "expert_market")
    url = f"{server.url}/api/v1/files/{found[0].file_id}"
    async with session, session.get(url) as response:
        assert response.status == 200
        webm = await response.read()
    container = av.open(io.BytesIO(webm), mode="r")
    counters = [
        read_counter(frame)
        for packet in container.demux(video=0)
        for frame in packet.decode()
        if isinstance(frame, av.VideoFrame)
    ]
    assert counters and all(b > a for a, b in itertools.pairwise(counters))
