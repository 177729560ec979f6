"""Relay benchmark: synthetic calls through the RTP relay and through aiortc's
MediaRelay (decode + re-encode, what a user of aiortc would otherwise get).

Callers run in separate processes and send pre-encoded VP8 640x480@30 and
Opus (nothing is encoded during the run); receivers count packets and frames
without decoding. For each mode and number of calls it prints one JSON line:
relay CPU-seconds per relayed A/V stream-second (4 streams per call: each
side's audio and video), frames delivered/sent, and, for the RTP relay, the
added one-way delay (p50/p99), audio and video separately: every frame and
audio packet is unique, so the receiver knows which one arrived and when it
was sent (same machine, same clock); the same measurement over a direct
connection (no relay) is subtracted. A last run with 2 % loss on one caller's
link decodes the frames and checks that they arrive complete and in order.

    python bench/relay.py --calls 1,2,5,10 --seconds 15
    python bench/relay.py --calls 1,2,5 --seconds 15 --workers 1 --modes rtp,rtp2

``--participants 2,3,4`` measures calls of more than two instead (issue 21): each
participant offers the pages' seven m-lines (media/slots.py) and sends the same
camera-like video and Opus; a call's last participant joins once the others
flow. Each point runs as many calls as make ``--forwarded`` A/V streams (a
stream: one source's audio and video to one receiver; 24: twelve calls of two,
four of three, two of four) and prints relay CPU per forwarded stream, the bitrate each
camera really sent, frames and audio packets delivered per sent (to every
receiver), and the time from the joiner's leg connecting to its first frame at
each of the others; a last line compares three and four participants with two.
The callers answer keyframe requests as a camera does (every frame is also
encoded as a keyframe beforehand).
    python bench/relay.py --participants 2,3,4 --seconds 15

Mode ``rtp2`` runs two relay hosts sharing a cluster secret, as two nodes do:
each call is placed on a worker of the first, the kiosk side offers to the first
and the expert side to the second, which hands its offer to the first's worker
over the internal API (``WorkerRelayPool.adopt``); the CPU of both hosts counts.
    python bench/relay.py --calls 10,20,30,40 --seconds 15 --workers 2 --modes rtp

``--recording`` (issue 23) runs the same two-party calls (camera-like video and
Opus, each side answering keyframe requests as a camera does) for
``2 x --rounds`` phases of ``--seconds``, recording off and on in turn (off, on,
off, on, ...): at an "on" phase's start the bench asks the relay host to record
every call into a dump of its own (a fresh data key, as web/call_recorder.py
makes one; ``RelayPool.start_recording``), at its end to stop (the dump's last
chunk sealed and synced), both counted in the phase. Per phase: relay CPU per
forwarded A/V stream (one side's audio and video to the other: 2 per call), per
forwarded packet, the video bitrate each camera really sent, frames and audio
packets delivered per sent, and dump bytes per call-minute; then on against off
(target at most 1.3x) and, last, one of the relay's dumps remuxed (bench/remux.py's
timing) as a check on the synthetic ten-minute dump there.
    python bench/relay.py --recording --calls 5 --seconds 60 --rounds 3
"""

import argparse
import asyncio
import fractions
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiohttp import ClientSession, web  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.rtp import (  # noqa: E402
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
    RtpPacket,
)
from aiortc.sdp import SessionDescription  # noqa: E402

from bench import measure  # noqa: E402
from bench.measure import cpu_seconds, percentile  # noqa: E402
from harness.ports import free_port  # noqa: E402
from media import datapath  # noqa: E402
from media.aiortc_private import dtls_transports, intercept, restrict_host_addresses  # noqa: E402
from media.config import MediaConfig  # noqa: E402
from media.pool import create_relay_pool  # noqa: E402
from media.recording_dump import DumpTarget  # noqa: E402
from media.slots import MAX_PARTICIPANTS, SLOTS, Place, leg_name, places, sender_in  # noqa: E402
from storage.filecrypt import Suite  # noqa: E402

LEGS = ("kiosk", "expert")
"""The legs of every two-party call the bench makes (the relay opens no other)."""
PARTY_LEGS = tuple(leg_name(n) for n in range(MAX_PARTICIPANTS))
"""The legs of a call of more (``--participants``)."""
FPS = 30
AUDIO_PERIOD = 0.02
# aiortc's payload types for Opus and VP8, which every leg here negotiates.
AUDIO_PT = 96
VIDEO_PT = 97


def emit(record: dict[str, Any]) -> None:
    measure.emit("relay", record)


def camera_like(frames: int) -> Iterator[np.ndarray]:
    """A textured scene panning as a held camera does, with sensor noise, and a
    frame counter in the pixels: it encodes at about 1 Mbit/s in VP8 at 640x480@30,
    where a flat synthetic picture encodes at ~50 kbit/s and flatters a relay."""
    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    scene = np.kron(coarse, np.ones((8, 8, 1), dtype=np.uint8)) // 2
    scene += rng.integers(0, 60, scene.shape, dtype=np.uint8)
    for n in range(frames):
        x, y = (n * 3) % 640, (n * 2) % 480
        image = scene[y : y + 480, x : x + 640].copy()
        image += rng.integers(0, 8, image.shape, dtype=np.uint8)
        # The frame's tail codes the bottom-right macroblocks: a counter there makes
        # every frame end differently (the receivers' fingerprint).
        for bit in range(12):
            row, col = divmod(bit, 4)
            value = 255 if (n >> bit) & 1 else 0
            image[432 + row * 16 : 448 + row * 16, 576 + col * 16 : 592 + col * 16] = value
        yield image


def prepare_media(seconds: float) -> Path:
    """Encode once: unique camera-like VP8 frames and unique Opus packets."""
    frames = int(seconds * FPS) + FPS * 5
    path = Path(tempfile.gettempdir()) / f"wl-bench-media-v4-{frames}.pkl"
    if path.exists():
        return path
    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = 640, 480, "yuv420p"
    video.time_base = fractions.Fraction(1, FPS)
    video.bit_rate = 1_000_000
    video.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    video.gop_size = 2 * FPS
    video_packets: list[bytes] = []
    for n, image in enumerate(camera_like(frames)):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        for packet in video.encode(frame):
            video_packets.append(bytes(packet))
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format = 48000, "mono", "s16"
    audio.bit_rate = 32000
    audio_packets: list[bytes] = []
    samples = 0
    for n in range(int(frames / FPS / AUDIO_PERIOD)):
        t = (np.arange(960) + samples) / 48000
        # Frequency and loudness together make every packet different.
        loudness = 3000 + 400 * (n // 700)
        wave = (np.sin(2 * np.pi * (300 + (n % 700)) * t) * loudness).astype(np.int16)
        aframe = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        aframe.sample_rate = 48000
        aframe.pts = samples
        samples += 960
        for packet in audio.encode(aframe):
            audio_packets.append(bytes(packet))
    path.write_bytes(pickle.dumps({"video": video_packets, "audio": audio_packets}))
    return path


def media_bitrates(media_file: str) -> dict[str, float]:
    """What each sender really sends (payload bits per second, before RTP)."""
    media = pickle.loads(Path(media_file).read_bytes())  # noqa: S301 - our file
    video_seconds = len(media["video"]) / FPS
    audio_seconds = len(media["audio"]) * AUDIO_PERIOD
    return {
        "video_kbit_s": round(sum(map(len, media["video"])) * 8 / video_seconds / 1000, 1),
        "video_bytes_per_frame": round(sum(map(len, media["video"])) / len(media["video"])),
        "audio_kbit_s": round(sum(map(len, media["audio"])) * 8 / audio_seconds / 1000, 1),
    }


def prepare_keyframes(frames: int) -> Path:
    """Each frame of the camera-like scene also encoded as a keyframe: what a camera
    sends in place of that frame when a receiver asks for one (a PLI). Nobody
    decodes in the bench, so the substitution needs no care for references."""
    path = Path(tempfile.gettempdir()) / f"wl-bench-keyframes-v1-{frames}.pkl"
    if path.exists():
        return path
    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = 640, 480, "yuv420p"
    video.time_base = fractions.Fraction(1, FPS)
    video.bit_rate = 1_000_000
    video.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    keyframes: list[bytes] = []
    for n, image in enumerate(camera_like(frames)):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        frame.pict_type = av.video.frame.PictureType.I
        keyframes.append(b"".join(bytes(p) for p in video.encode(frame)))
    path.write_bytes(pickle.dumps(keyframes))
    return path


class PacketTrack(MediaStreamTrack):
    """Yields pre-encoded packets on a fixed schedule; aiortc only packetizes them.
    ``start`` None: the schedule starts with the first packet asked for (when the
    connection is up, as a camera's first frame). With ``keyframes``, a keyframe
    asked for (``keyframe_wanted``) replaces the next frame."""

    def __init__(
        self,
        kind: str,
        payloads: list[bytes],
        start: float | None,
        keyframes: list[bytes] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.payloads = payloads
        self.start = start
        self.keyframes = keyframes
        self.keyframe_wanted = False
        self.period = 1 / FPS if kind == "video" else AUDIO_PERIOD
        self.rate = 90000 if kind == "video" else 48000
        self.n = 0
        self.sent = 0
        self.sizes: list[tuple[float, int]] = []
        """(when, bytes) of each payload sent (with ``keyframes`` only)."""

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        if self.start is None:
            self.start = time.time()
        if self.n >= len(self.payloads):
            await asyncio.sleep(3600)
        await asyncio.sleep(max(0.0, self.start + self.n * self.period - time.time()))
        payload = self.payloads[self.n]
        if self.keyframes is not None:
            if self.keyframe_wanted:
                self.keyframe_wanted = False
                payload = self.keyframes[self.n]
            self.sizes.append((self.start + self.n * self.period, len(payload)))
        packet = av.Packet(payload)
        packet.pts = round(self.n * self.period * self.rate)
        packet.time_base = fractions.Fraction(1, self.rate)
        self.n += 1
        self.sent += 1
        return packet


def fingerprint(payload: bytes) -> bytes:
    """The tail of an encoded frame (= of its last RTP packet) or Opus packet."""
    return hashlib.blake2b(payload[-48:], digest_size=8).digest()


# ---- a caller process -------------------------------------------------------------


async def run_calls(
    url: str | None,
    call_ids: list[str],
    media_file: str,
    start: float,
    seconds: float,
    expert_url: str | None = None,
    silent: bool = False,
) -> dict[str, Any]:
    """Both sides of each call; ``url`` None connects the two sides directly. The
    expert side offers to ``expert_url`` when given (another host). ``silent``
    calls connect and send nothing (the relay's idle cost)."""
    restrict_host_addresses(["127.0.0.1"])
    media = pickle.loads(Path(media_file).read_bytes())  # noqa: S301 - our file, once
    # Every frame and audio packet is unique: its tail tells which one it is.
    index = {
        VIDEO_PT: {fingerprint(p): i for i, p in enumerate(media["video"])},
        AUDIO_PT: {fingerprint(p): i for i, p in enumerate(media["audio"])},
    }
    period = {VIDEO_PT: 1 / FPS, AUDIO_PT: AUDIO_PERIOD}
    results: dict[str, Any] = {
        "video_sent": 0,
        "audio_sent": 0,
        "video_frames": 0,
        "audio_packets": 0,
        "video_delay": [],
        "audio_delay": [],
    }
    identified: dict[int, set[tuple[int, int]]] = {VIDEO_PT: set(), AUDIO_PT: set()}

    counting = True

    async def on_rtp(data: bytes, _arrival: int) -> None:
        if not counting:
            return
        now = time.time()
        packet = RtpPacket.parse(data)
        pt = packet.payload_type
        if pt == VIDEO_PT:
            if not packet.marker:
                return
            results["video_frames"] += 1
        elif pt == AUDIO_PT:
            results["audio_packets"] += 1
        else:
            return
        found = index[pt].get(fingerprint(packet.payload))
        key = (packet.ssrc, found if found is not None else -1)
        if found is not None and key not in identified[pt]:
            identified[pt].add(key)
            delays = results["video_delay" if pt == VIDEO_PT else "audio_delay"]
            delays.append(now - (start + found * period[pt]))

    async def on_rtcp(_data: bytes) -> None:
        return None

    def new_peer() -> tuple[RTCPeerConnection, list[PacketTrack]]:
        pc = RTCPeerConnection()
        tracks = [
            PacketTrack("audio", [] if silent else media["audio"], start),
            PacketTrack("video", [] if silent else media["video"], start),
        ]
        for track in tracks:
            pc.addTrack(track)
        return pc, tracks

    peers: list[tuple[RTCPeerConnection, list[PacketTrack]]] = []
    async with ClientSession() as http:
        for call_id in call_ids:
            sides = [new_peer(), new_peer()]
            if url is None:
                (a, _), (b, _) = sides
                await a.setLocalDescription(await a.createOffer())
                await b.setRemoteDescription(a.localDescription)
                await b.setLocalDescription(await b.createAnswer())
                await a.setRemoteDescription(b.localDescription)
            else:
                for (pc, _), side in zip(sides, ("kiosk", "expert"), strict=True):
                    await pc.setLocalDescription(await pc.createOffer())
                    host = expert_url if side == "expert" and expert_url else url
                    async with http.post(
                        f"{host}/calls/{call_id}/{side}", data=pc.localDescription.sdp
                    ) as response:
                        answer = await response.text()
                    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            for pc, tracks in sides:
                for transport in dtls_transports(pc):
                    intercept(transport, on_rtp, on_rtcp)
                peers.append((pc, tracks))
        await asyncio.sleep(max(0.0, start + seconds - time.time()))
        counting = False
        for _pc, tracks in peers:
            results["video_sent"] += tracks[1].sent
            results["audio_sent"] += tracks[0].sent
        for pc, _tracks in peers:
            await pc.close()
    return results


def caller(
    args: tuple[str | None, list[str], str, float, float, str | None, bool], out: Any
) -> None:
    out.put(asyncio.run(run_calls(*args)))


class _Party:
    """One participant of a call of more than two (a caller's side)."""

    def __init__(self, position: int, media: dict[str, list[bytes]], keyframes: list[bytes]):
        self.position = position
        # Every m-line on one transport, as browsers bundle them.
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.audio = PacketTrack("audio", media["audio"], None)
        self.video = PacketTrack("video", media["video"], None, keyframes)
        self.pc.addTransceiver(self.audio, direction="sendrecv")
        self.pc.addTransceiver(self.video, direction="sendrecv")
        for _ in range(1, SLOTS):
            self.pc.addTransceiver("audio", direction="recvonly")
            self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("video", direction="sendrecv")  # the screen: not shared here
        self.places: dict[int, Place] = {}
        """The relay's SSRC on each of this leg's m-lines -> what it carries."""
        self.connected_at: float | None = None

        @self.pc.on("connectionstatechange")
        def changed() -> None:
            if self.pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = time.time()

    def video_ssrc(self) -> int:
        return int(self.pc.getTransceivers()[1].sender._ssrc)

    def learn(self, answer: str) -> None:
        """Which relay SSRC carries which slot (from the relay's answer)."""
        description = SessionDescription.parse(answer)
        lines = [m for m in description.media if m.kind in ("audio", "video")]
        for media, place in zip(lines, places([m.kind for m in lines]), strict=True):
            if media.ssrc:
                self.places[media.ssrc[0].ssrc] = place


def _in_window(track: PacketTrack, window: tuple[float, float]) -> range:
    """The numbers of the payloads ``track`` sent within ``window`` (by its schedule)."""
    if track.start is None:
        return range(0)
    first = max(0, int(-(-(window[0] - track.start) // track.period)))
    last = min(track.sent - 1, int((window[1] - track.start) // track.period))
    return range(first, last + 1)


async def run_party_calls(
    url: str,
    call_ids: list[str],
    participants: int,
    media_file: str,
    keyframes_file: str,
    join_at: float,
    window: tuple[float, float],
) -> dict[str, Any]:
    """Calls of ``participants``: all but the last connect at once, the last at
    ``join_at``; what every receiver got of every other participant is counted for
    the frames and audio packets sent within ``window``."""
    restrict_host_addresses(["127.0.0.1"])
    media = pickle.loads(Path(media_file).read_bytes())  # noqa: S301 - our file, once
    keyframes = pickle.loads(Path(keyframes_file).read_bytes())  # noqa: S301 - ours
    video_index = {fingerprint(p): i for i, p in enumerate(media["video"])}
    video_index.update({fingerprint(p): i for i, p in enumerate(keyframes)})
    audio_index = {fingerprint(p): i for i, p in enumerate(media["audio"])}
    calls: dict[str, dict[int, _Party]] = {call_id: {} for call_id in call_ids}
    # (call, receiver, sender, kind) -> the payload numbers received within the window
    received: dict[tuple[str, int, int, str], set[int]] = {}
    delays: dict[str, list[float]] = {"video": [], "audio": []}
    first_of_joiner: dict[tuple[str, int], float] = {}
    origins: dict[tuple[str, int, int, str], int] = {}
    """Per received stream: the RTP time of its payload number 0."""
    counting = True

    def on_rtp(call_id: str, party: _Party) -> Any:
        async def handle(data: bytes, _arrival: int) -> None:
            if not counting:
                return
            now = time.time()
            packet = RtpPacket.parse(data)
            place = party.places.get(packet.ssrc)
            if place is None or place.slot is None:
                return
            sender = calls[call_id].get(sender_in(party.position, place.slot))
            if sender is None:
                return
            if packet.payload_type == VIDEO_PT:
                if not packet.marker:
                    return  # a frame counts once it is whole
                if sender.position == participants - 1:
                    first_of_joiner.setdefault((call_id, party.position), now)
                found, track = video_index.get(fingerprint(packet.payload)), sender.video
            elif packet.payload_type == AUDIO_PT:
                found, track = audio_index.get(fingerprint(packet.payload)), sender.audio
            else:
                return
            if track.start is None:
                return
            # A frame whose last packet holds only a few bytes of it has no whole
            # tail to recognise: its RTP time tells which it is, once one frame of
            # the stream has told where the stream's times start.
            stream = (call_id, party.position, sender.position, track.kind)
            ticks = round(track.period * track.rate)
            if found is not None:
                origins[stream] = (packet.timestamp - found * ticks) % (1 << 32)
            elif stream in origins:
                found = ((packet.timestamp - origins[stream]) % (1 << 32)) // ticks
            else:
                return
            sent_at = track.start + found * track.period
            if not window[0] <= sent_at <= window[1]:
                return
            numbers = received.setdefault(stream, set())
            if found not in numbers:
                numbers.add(found)
                delays[track.kind].append(now - sent_at)

        return handle

    def on_rtcp(party: _Party) -> Any:
        async def handle(data: bytes) -> None:
            # A camera's encoder answers a keyframe request with its next frame.
            try:
                packets = RtcpPacket.parse(data)
            except ValueError:
                return
            for packet in packets:
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (
                    RTCP_PSFB_PLI,
                    RTCP_PSFB_FIR,
                ):
                    party.video.keyframe_wanted = True

        return handle

    async def connect(http: ClientSession, call_id: str, position: int) -> _Party:
        party = _Party(position, media, keyframes)
        calls[call_id][position] = party
        await party.pc.setLocalDescription(await party.pc.createOffer())
        async with http.post(
            f"{url}/calls/{call_id}/{leg_name(position)}", data=party.pc.localDescription.sdp
        ) as response:
            answer = await response.text()
        party.learn(answer)
        await party.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        for transport in dtls_transports(party.pc):
            intercept(transport, on_rtp(call_id, party), on_rtcp(party))
        return party

    async with ClientSession() as http:
        for call_id in call_ids:
            for position in range(participants - 1):
                await connect(http, call_id, position)
        await asyncio.sleep(max(0.0, join_at - time.time()))
        joiners = [await connect(http, call_id, participants - 1) for call_id in call_ids]
        await asyncio.sleep(max(0.0, window[1] + 0.5 - time.time()))
        counting = False
        results: dict[str, Any] = {
            "video_sent": 0,
            "video_received": 0,
            "audio_sent": 0,
            "audio_received": 0,
            "video_bytes_in_window": 0,
            "cameras": 0,
            "video_delay": delays["video"],
            "audio_delay": delays["audio"],
            "join_ms": [],
        }
        for call_id, parties in calls.items():
            receivers = len(parties) - 1
            for party in parties.values():
                results["cameras"] += 1
                results["video_sent"] += len(_in_window(party.video, window)) * receivers
                results["audio_sent"] += len(_in_window(party.audio, window)) * receivers
                results["video_bytes_in_window"] += sum(
                    size for at, size in party.video.sizes if window[0] <= at <= window[1]
                )
            for (call, _receiver, _sender, kind), numbers in received.items():
                if call == call_id:
                    results[f"{kind}_received"] += len(numbers)
        for call_id, joiner in zip(call_ids, joiners, strict=True):
            for receiver in range(participants - 1):
                seen = first_of_joiner.get((call_id, receiver))
                if seen is not None and joiner.connected_at is not None:
                    results["join_ms"].append((seen - joiner.connected_at) * 1000)
                else:
                    results["join_ms"].append(None)
        for parties in calls.values():
            for party in parties.values():
                await party.pc.close()
    return results


def party_caller(
    args: tuple[str, list[str], int, str, str, float, tuple[float, float]], out: Any
) -> None:
    out.put(asyncio.run(run_party_calls(*args)))


# ---- the relay host -------------------------------------------------------------


class ForwardTrack(MediaStreamTrack):
    """The baseline's outgoing track: frames of the other side, decoded by aiortc
    and re-encoded by this side's sender."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=30)

    async def recv(self) -> Any:
        return await self.queue.get()


class BaselineRelay:
    """aiortc's MediaRelay between the two sides of each call."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.pcs: dict[tuple[str, str], RTCPeerConnection] = {}
        self.outgoing: dict[tuple[str, str, str], ForwardTrack] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, call_id: str, side: str, offer: str) -> str:
        pc = RTCPeerConnection()
        self.pcs[(call_id, side)] = pc
        other = "expert" if side == "kiosk" else "kiosk"
        for kind in ("audio", "video"):
            track = ForwardTrack(kind)
            self.outgoing[(call_id, side, kind)] = track
            pc.addTrack(track)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            async def pump() -> None:
                source = self.relay.subscribe(track)
                while True:
                    frame = await source.recv()
                    target = self.outgoing.get((call_id, other, track.kind))
                    if target is not None and not target.queue.full():
                        target.queue.put_nowait(frame)

            self.tasks.append(asyncio.create_task(pump()))

        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)


async def serve(
    mode: str, port: int, workers: int, secret: str | None = None, peer: str | None = None
) -> None:
    restrict_host_addresses(["127.0.0.1"])
    path = os.environ.get("WINDOWLINK_RELAY_DATAPATH", "auto")
    datapath.select(path)
    print(datapath.describe(prefer_native=path != "python"), file=sys.stderr)
    pool = create_relay_pool(
        MediaConfig(("127.0.0.1",), None, workers, datapath=path), secret=secret
    )
    await pool.start()
    baseline = BaselineRelay()
    placed: dict[str, str] = {}
    placing = asyncio.Lock()

    async def place(call_id: str) -> str:
        async with placing:
            if call_id not in placed:
                if peer is None:
                    placed[call_id] = await pool.place(call_id)
                else:
                    # Another host holds the call: ask it where, hand offers there.
                    async with (
                        ClientSession() as http,
                        http.get(f"{peer}/placement/{call_id}") as response,
                    ):
                        placed[call_id] = await response.text()
                    pool.adopt(call_id, placed[call_id])
            return placed[call_id]

    async def connect(request: web.Request) -> web.Response:
        call_id, side = request.match_info["call"], request.match_info["side"]
        offer = await request.text()
        if mode == "mediarelay":
            return web.Response(text=await baseline.connect(call_id, side, offer))
        await place(call_id)
        legs = PARTY_LEGS if side in PARTY_LEGS else LEGS
        return web.Response(text=await pool.connect(call_id, side, offer, legs))

    async def placement(request: web.Request) -> web.Response:
        return web.Response(text=await place(request.match_info["call"]))

    async def recording(request: web.Request) -> web.Response:
        """Start (POST, a DumpTarget's JSON) or stop (DELETE) recording a call."""
        call_id = request.match_info["call"]
        if request.method == "POST":
            await pool.start_recording(call_id, DumpTarget.from_json(await request.text()))
        else:
            await pool.stop_recording(call_id)
        return web.Response(status=204)

    async def forwarded(_request: web.Request) -> web.Response:
        figures = await pool.stats()
        return web.Response(text=str(sum(f.get("packets_forwarded", 0) for f in figures.values())))

    async def dropped(_request: web.Request) -> web.Response:
        figures = await pool.stats()
        return web.Response(text=str(sum(f.get("pump_dropped", 0) for f in figures.values())))

    app = web.Application()
    app.router.add_get("/dropped", dropped)
    app.router.add_post("/calls/{call}/{side}", connect)
    app.router.add_get("/placement/{call}", placement)
    app.router.add_get("/forwarded", forwarded)
    app.router.add_post("/recording/{call}", recording)
    app.router.add_delete("/recording/{call}", recording)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # Stop on SIGTERM with the pool closed, so that its worker processes go too.
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await pool.close()


def start_host(
    mode: str, port: int, workers: int, secret: str, peer: str | None = None
) -> "subprocess.Popen[bytes]":
    args = [sys.executable, __file__, "--serve", mode, "--port", str(port)]
    args += ["--workers", str(workers), "--secret", secret]
    if peer:
        args += ["--peer", peer]
    host = subprocess.Popen(args, cwd=ROOT)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return host


def forwarded_packets(url: str) -> int:
    """RTP packets the relay host and its workers have forwarded so far."""
    with urllib.request.urlopen(f"{url}/forwarded", timeout=10) as response:  # noqa: S310 - ours
        return int(float(response.read()))


def pump_dropped(url: str) -> int:
    """Datagrams the relay's native pumps dropped so far (media/pump.py)."""
    with urllib.request.urlopen(f"{url}/dropped", timeout=10) as response:  # noqa: S310 - ours
        return int(float(response.read()))


def run_mode(
    mode: str, calls: int, seconds: float, workers: int, media_file: str, processes: int
) -> dict[str, Any]:
    hosts: list[subprocess.Popen[bytes]] = []
    url = expert_url = None
    secret = os.urandom(16).hex()
    if mode == "rtp2" and workers < 1:
        raise SystemExit("rtp2 needs --workers 1 or more: offers are handed between workers")
    if mode != "direct":
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        hosts.append(start_host("rtp" if mode == "idle" else mode, port, workers, secret))
    if mode == "rtp2":
        second = free_port()
        expert_url = f"http://127.0.0.1:{second}"
        hosts.append(start_host(mode, second, workers, secret, peer=url))
    try:
        if hosts:
            time.sleep(2.0 if workers else 0.2)
        start = time.time() + 3.0 + 0.4 * calls
        ids = [f"call{i}" for i in range(calls)]
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = []
        for p in range(min(processes, calls)):
            args = (url, ids[p::processes], media_file, start, seconds, expert_url, mode == "idle")
            proc = ctx.Process(target=caller, args=(args, out))
            proc.start()
            procs.append(proc)
        time.sleep(max(0.0, start + 2.0 - time.time()))
        cpu = packet_rate = None
        dropped: int | None = None
        if hosts and url is not None:
            packets0 = forwarded_packets(url)
            cpu0, t0 = sum(cpu_seconds(h.pid, children=True) for h in hosts), time.time()
            time.sleep(max(0.0, start + seconds - 1.0 - time.time()))
            spent = sum(cpu_seconds(h.pid, children=True) for h in hosts) - cpu0
            cpu = spent / (time.time() - t0)
            if mode != "mediarelay":
                packet_rate = (forwarded_packets(url) - packets0) / (time.time() - t0)
        parts = [out.get(timeout=180) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
        dropped = pump_dropped(url) if hosts and url is not None else None
    finally:
        for host in hosts:
            host.terminate()
            host.wait(timeout=30)
    sent = sum(p["video_sent"] for p in parts)
    delivered = sum(p["video_frames"] for p in parts)
    audio_delay = [d for p in parts for d in p["audio_delay"]]
    video_delay = [d for p in parts for d in p["video_delay"]]
    streams = calls * 4

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 2)

    return {
        "mode": mode,
        "calls": calls,
        "workers": workers,
        "relay_cpu_s_per_s": None if cpu is None else round(cpu, 4),
        "cpu_s_per_stream_s": None if cpu is None else round(cpu / streams, 5),
        "packets_forwarded_per_s": None if packet_rate is None else round(packet_rate),
        "relay_us_per_packet": (
            round(cpu / packet_rate * 1e6, 1) if cpu is not None and packet_rate else None
        ),
        "video_frames_delivered_per_sent": round(delivered / sent, 4) if sent else None,
        "audio_packets_delivered_per_sent": round(
            sum(p["audio_packets"] for p in parts) / max(1, sum(p["audio_sent"] for p in parts)),
            4,
        ),
        "video_one_way_ms_p50": ms(video_delay, 50),
        "video_one_way_ms_p99": ms(video_delay, 99),
        "audio_one_way_ms_p50": ms(audio_delay, 50),
        "audio_one_way_ms_p99": ms(audio_delay, 99),
        "identified": {"video": len(video_delay), "audio": len(audio_delay)},
        "pump_dropped": dropped,
    }


JOIN_AFTER = 4.0
"""Seconds from the callers' start until each call's last participant joins (the
others connect within it)."""
SETTLE = 2.0
"""Seconds after the joins before the measured window opens."""


def run_participants(
    participants: int,
    forwarded: int,
    seconds: float,
    workers: int,
    media_file: str,
    keyframes_file: str,
    processes: int,
) -> dict[str, Any]:
    """One point of ``--participants``: enough calls of that many for about
    ``forwarded`` forwarded A/V streams, measured over ``seconds`` once all joined."""
    streams_per_call = participants * (participants - 1)
    calls = max(1, round(forwarded / streams_per_call))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    host = start_host("rtp", port, workers, os.urandom(16).hex())
    try:
        time.sleep(2.0 if workers else 0.2)
        join_at = time.time() + JOIN_AFTER + 0.2 * calls * participants
        window = (join_at + SETTLE + 0.2 * calls, join_at + SETTLE + 0.2 * calls + seconds)
        ids = [f"party{participants}-{i}" for i in range(calls)]
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = []
        for p in range(min(processes, calls)):
            args = (
                url,
                ids[p::processes],
                participants,
                media_file,
                keyframes_file,
                join_at,
                window,
            )
            proc = ctx.Process(target=party_caller, args=(args, out))
            proc.start()
            procs.append(proc)
        time.sleep(max(0.0, window[0] - time.time()))
        packets0 = forwarded_packets(url)
        cpu0, t0 = cpu_seconds(host.pid, children=True), time.time()
        time.sleep(max(0.0, window[1] - time.time()))
        cpu = (cpu_seconds(host.pid, children=True) - cpu0) / (time.time() - t0)
        packet_rate = (forwarded_packets(url) - packets0) / (time.time() - t0)
        parts = [out.get(timeout=180) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
    finally:
        host.terminate()
        host.wait(timeout=30)
    streams = calls * streams_per_call
    video_sent = sum(p["video_sent"] for p in parts)
    audio_sent = sum(p["audio_sent"] for p in parts)
    joins = [j for p in parts for j in p["join_ms"]]
    measured = [j for j in joins if j is not None]
    cameras = sum(p["cameras"] for p in parts)

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 2)

    return {
        "mode": "participants",
        "participants": participants,
        "calls": calls,
        "workers": workers,
        "forwarded_streams": streams,
        "relay_cpu_s_per_s": round(cpu, 4),
        "cpu_s_per_forwarded_stream_s": round(cpu / streams, 6),
        "packets_forwarded_per_s": round(packet_rate),
        "relay_us_per_packet": round(cpu / packet_rate * 1e6, 1) if packet_rate else None,
        "video_kbit_s_sent_per_camera": round(
            sum(p["video_bytes_in_window"] for p in parts) * 8 / seconds / max(1, cameras) / 1000, 1
        ),
        "video_frames_delivered_per_sent": (
            round(sum(p["video_received"] for p in parts) / video_sent, 4) if video_sent else None
        ),
        "audio_packets_delivered_per_sent": (
            round(sum(p["audio_received"] for p in parts) / audio_sent, 4) if audio_sent else None
        ),
        "join_to_first_frame_ms_p50": (
            round(percentile(measured, 50) or 0, 1) if measured else None
        ),
        "join_to_first_frame_ms_max": round(max(measured), 1) if measured else None,
        "joins_never_seen": len(joins) - len(measured),
        "video_one_way_ms_p50": ms([d for p in parts for d in p["video_delay"]], 50),
        "video_one_way_ms_p99": ms([d for p in parts for d in p["video_delay"]], 99),
        "audio_one_way_ms_p50": ms([d for p in parts for d in p["audio_delay"]], 50),
    }


async def loss_run(seconds: float, loss: float) -> dict[str, Any]:
    """One call through the relay with ``loss`` of one caller's packets dropped on
    its link; the other side decodes and reads the frame counters."""
    from harness.peers import CallPeer

    pool = create_relay_pool(MediaConfig(("127.0.0.1",), None, 0))
    await pool.place("loss")
    sender, receiver = CallPeer(), CallPeer()
    try:
        await sender.accept(await pool.connect("loss", "kiosk", await sender.offer(), LEGS))
        await receiver.accept(await pool.connect("loss", "expert", await receiver.offer(), LEGS))
        await asyncio.sleep(2)
        sender.drop_outgoing_rtp(loss)
        start = len(receiver.received.counters)
        await asyncio.sleep(seconds)
        window = receiver.received.counters[start:]
    finally:
        await sender.close()
        await receiver.close()
        await pool.close()
    expected = list(range(window[0], window[0] + len(window))) if window else []
    return {
        "mode": "loss",
        "injected_loss": loss,
        "packets_dropped": sender.dropped,
        "frames_decoded": len(window),
        "frames_complete_and_in_order": window == expected,
        "frames_sent_in_window": (window[-1] - window[0] + 1) if window else 0,
    }


# ---- recording on and off in one run (issue 23) --------------------------------

RECORDING_WARMUP = 3.0
"""Seconds from the callers' start (all connected) to the first phase."""
RECORDING_TARGET = 1.3
"""A recorded call's relay CPU at most this many times an unrecorded one's."""


def _looped(n: int, warm: int, clip: int) -> int:
    """The media payload sent as number ``n``: the first ``warm`` once, then the next
    ``clip`` over and over, so that every phase sends the same."""
    return n if n < warm else warm + (n - warm) % clip


async def run_recorded_calls(
    url: str,
    call_ids: list[str],
    media_file: str,
    keyframes_file: str,
    start: float,
    end: float,
    phase_seconds: float,
) -> list[dict[str, Any]]:
    """Both sides of each call, through the relay, from ``start`` to ``end``: each side
    sends the camera-like video (a keyframe of the next frame when asked for one, as a
    camera's encoder does) and Opus, the same ``phase_seconds`` of it in every phase
    after the warm-up; per side, what it sent (when, how many bytes) and which of the
    other side's frames and audio packets arrived (by number in the schedule)."""
    restrict_host_addresses(["127.0.0.1"])
    media = pickle.loads(Path(media_file).read_bytes())  # noqa: S301 - our file, once
    keyframes = pickle.loads(Path(keyframes_file).read_bytes())  # noqa: S301 - ours
    period = {VIDEO_PT: 1 / FPS, AUDIO_PT: AUDIO_PERIOD}
    ticks = {VIDEO_PT: 90000 // FPS, AUDIO_PT: round(48000 * AUDIO_PERIOD)}
    warm = {pt: round(RECORDING_WARMUP / period[pt]) for pt in period}
    clip = {pt: round(phase_seconds / period[pt]) for pt in period}
    total = {pt: int((end - start) / period[pt]) + 2 * FPS for pt in period}
    video = [
        media["video"][_looped(n, warm[VIDEO_PT], clip[VIDEO_PT])] for n in range(total[VIDEO_PT])
    ]
    video_keyframes = [
        keyframes[_looped(n, warm[VIDEO_PT], clip[VIDEO_PT])] for n in range(total[VIDEO_PT])
    ]
    audio = [
        media["audio"][_looped(n, warm[AUDIO_PT], clip[AUDIO_PT])] for n in range(total[AUDIO_PT])
    ]
    # A payload's tail tells which media payload it is (not yet which repetition).
    index = {
        VIDEO_PT: {fingerprint(p): i for i, p in enumerate(media["video"])},
        AUDIO_PT: {fingerprint(p): i for i, p in enumerate(media["audio"])},
    }
    index[VIDEO_PT].update({fingerprint(p): i for i, p in enumerate(keyframes)})
    sides: list[dict[str, Any]] = []
    counting = True

    def on_rtp(side: dict[str, Any]) -> Any:
        origins: dict[int, int] = {}
        """Per payload type: the RTP time of payload number 0."""

        async def handle(data: bytes, _arrival: int) -> None:
            if not counting:
                return
            packet = RtpPacket.parse(data)
            pt = packet.payload_type
            if pt not in index or (pt == VIDEO_PT and not packet.marker):
                return  # a frame counts once it is whole
            if pt not in origins:
                found = index[pt].get(fingerprint(packet.payload))
                if found is None:
                    return
                if found >= warm[pt]:
                    # Which repetition: the last one scheduled before it arrived.
                    first = start + found * period[pt]
                    repeat = max(0, int((time.time() - first) // (clip[pt] * period[pt])))
                    found += repeat * clip[pt]
                origins[pt] = (packet.timestamp - found * ticks[pt]) % (1 << 32)
            # The RTP time tells the number from then on (the sender's clock is ours).
            number = ((packet.timestamp - origins[pt]) % (1 << 32)) // ticks[pt]
            side["video_received" if pt == VIDEO_PT else "audio_received"].add(number)

        return handle

    def on_rtcp(video: PacketTrack, side: dict[str, Any]) -> Any:
        async def handle(data: bytes) -> None:
            try:
                packets = RtcpPacket.parse(data)
            except ValueError:
                return
            for packet in packets:
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (
                    RTCP_PSFB_PLI,
                    RTCP_PSFB_FIR,
                ):
                    video.keyframe_wanted = True
                    side["keyframe_requests"] += 1

        return handle

    peers: list[tuple[RTCPeerConnection, PacketTrack, PacketTrack, dict[str, Any]]] = []
    async with ClientSession() as http:
        for call_id in call_ids:
            for name in LEGS:
                pc = RTCPeerConnection()
                audio_track = PacketTrack("audio", audio, start)
                video_track = PacketTrack("video", video, start, video_keyframes)
                pc.addTrack(audio_track)
                pc.addTrack(video_track)
                side: dict[str, Any] = {
                    "call": call_id,
                    "side": name,
                    "video_received": set(),
                    "audio_received": set(),
                    "keyframe_requests": 0,
                }
                await pc.setLocalDescription(await pc.createOffer())
                async with http.post(
                    f"{url}/calls/{call_id}/{name}", data=pc.localDescription.sdp
                ) as response:
                    answer = await response.text()
                await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                for transport in dtls_transports(pc):
                    intercept(transport, on_rtp(side), on_rtcp(video_track, side))
                peers.append((pc, audio_track, video_track, side))
                sides.append(side)
        await asyncio.sleep(max(0.0, end - time.time()))
        counting = False
        for pc, audio_track, video_track, side in peers:
            side["start"] = start
            side["video_sent"] = video_track.sent
            side["audio_sent"] = audio_track.sent
            side["video_sizes"] = video_track.sizes
            side["video_received"] = sorted(side["video_received"])
            side["audio_received"] = sorted(side["audio_received"])
            await pc.close()
    return sides


def recorded_caller(args: tuple[str, list[str], str, str, float, float, float], out: Any) -> None:
    out.put(asyncio.run(run_recorded_calls(*args)))


def _numbers_in(start: float, period: float, sent: int, window: tuple[float, float]) -> range:
    """The numbers of the payloads a track scheduled from ``start`` sent within ``window``."""
    first = max(0, int(-(-(window[0] - start) // period)))
    last = min(sent - 1, int((window[1] - start) // period))
    return range(first, last + 1)


def _phase_figures(
    sides: list[dict[str, Any]], window: tuple[float, float]
) -> dict[str, float | None]:
    """What the cameras sent within ``window`` and what of it the other sides got."""
    by_call: dict[str, dict[str, dict[str, Any]]] = {}
    for side in sides:
        by_call.setdefault(side["call"], {})[side["side"]] = side
    seconds = window[1] - window[0]
    video_sent = video_got = audio_sent = audio_got = video_bytes = cameras = 0
    for pair in by_call.values():
        for name, side in pair.items():
            other = pair.get(LEGS[1] if name == LEGS[0] else LEGS[0])
            cameras += 1
            video_bytes += sum(s for at, s in side["video_sizes"] if window[0] <= at <= window[1])
            videos = _numbers_in(side["start"], 1 / FPS, side["video_sent"], window)
            audios = _numbers_in(side["start"], AUDIO_PERIOD, side["audio_sent"], window)
            video_sent += len(videos)
            audio_sent += len(audios)
            if other is not None:
                video_got += sum(1 for n in other["video_received"] if n in videos)
                audio_got += sum(1 for n in other["audio_received"] if n in audios)
    return {
        "video_kbit_s_sent_per_camera": (
            round(video_bytes * 8 / seconds / cameras / 1000, 1) if cameras else None
        ),
        "video_frames_sent": video_sent,
        "video_frames_delivered": video_got,
        "video_frames_delivered_per_sent": round(video_got / video_sent, 4) if video_sent else None,
        "audio_packets_delivered_per_sent": (
            round(audio_got / audio_sent, 4) if audio_sent else None
        ),
    }


def run_recording(
    calls: int, seconds: float, rounds: int, workers: int, processes: int
) -> list[dict[str, Any]]:
    """The same two-party calls, recording off and on in turn (``rounds`` times each,
    ``seconds`` each): one line per phase, then one comparing them; last, one of the
    dumps remuxed (bench/remux.py's timing, on a dump the relay wrote)."""
    from bench.remux import new_target, time_remux_apart

    phases = ["off", "on"] * rounds
    length = RECORDING_WARMUP + len(phases) * seconds + 2.0
    # The callers send the warm-up, then the same phase's worth of media over and over.
    media_file = str(prepare_media(RECORDING_WARMUP + seconds))
    frames = int((RECORDING_WARMUP + seconds) * FPS) + FPS * 5  # as prepare_media's
    keyframes_file = str(prepare_keyframes(frames))
    emit({"mode": "media", **media_bitrates(media_file)})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    host = start_host("rtp", port, workers, os.urandom(16).hex())
    directory = Path(tempfile.mkdtemp(prefix="wl-bench-recording-"))
    rows: list[dict[str, Any]] = []
    dumps: list[tuple[int, Path, DumpTarget]] = []
    try:
        time.sleep(2.0 if workers else 0.2)
        start = time.time() + 3.0 + 0.4 * calls
        end = start + length
        ids = [f"rec{i}" for i in range(calls)]
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = []
        for p in range(min(processes, calls)):
            args = (url, ids[p::processes], media_file, keyframes_file, start, end, seconds)
            proc = ctx.Process(target=recorded_caller, args=(args, out))
            proc.start()
            procs.append(proc)
        windows: list[tuple[float, float]] = []
        for number, phase in enumerate(phases):
            boundary = start + RECORDING_WARMUP + number * seconds
            time.sleep(max(0.0, boundary - time.time()))
            packets0 = forwarded_packets(url)
            cpu0, t0 = cpu_seconds(host.pid, children=True), time.time()
            # Starting and stopping count in the phase recorded (opening the dump, the
            # keyframe requests; the last chunk, the fsync).
            if phase == "on":
                for call_id in ids:
                    target = new_target(directory / f"{call_id}-{number}.dump", Suite.AES_256_GCM)
                    dumps.append((number, Path(target.path), target))
                    set_recording(url, call_id, target)
            time.sleep(max(0.0, boundary + seconds - time.time()))
            if phase == "on":
                for call_id in ids:
                    set_recording(url, call_id, None)
            cpu = cpu_seconds(host.pid, children=True) - cpu0
            t1 = time.time()
            packets = forwarded_packets(url) - packets0
            windows.append((t0, t1))
            streams = calls * len(LEGS)  # one side's audio and video to the other
            written = sum(p.stat().st_size for n, p, _ in dumps if n == number)
            rows.append(
                {
                    "mode": "recording",
                    "recording": phase,
                    "phase": number,
                    "calls": calls,
                    "workers": workers,
                    "seconds": round(t1 - t0, 2),
                    "forwarded_streams": streams,
                    "relay_cpu_s_per_s": round(cpu / (t1 - t0), 4),
                    "cpu_s_per_forwarded_stream_s": round(cpu / (t1 - t0) / streams, 6),
                    "packets_forwarded_per_s": round(packets / (t1 - t0)),
                    "relay_us_per_packet": round(cpu / packets * 1e6, 1) if packets else None,
                    "dump_bytes": written if phase == "on" else 0,
                    "dump_bytes_per_call_minute": (
                        round(written / calls / (t1 - t0) * 60) if phase == "on" else 0
                    ),
                }
            )
        sides = [side for _ in procs for side in out.get(timeout=180)]
        for proc in procs:
            proc.join(timeout=30)
        for row, window in zip(rows, windows, strict=True):
            row.update(_phase_figures(sides, window))
            emit(row)
        answered = sum(s["keyframe_requests"] for s in sides)
    finally:
        host.terminate()
        host.wait(timeout=30)
    try:
        summary = {**_compare_recording(rows), "keyframe_requests_answered": answered}
        emit(summary)
        if dumps:
            # One call's last dump, as the relay wrote it: what its remux costs.
            _number, path, target = dumps[-1]
            made = time_remux_apart(path, target)
            recorded = made["recorded_seconds"]
            emit(
                {
                    "mode": "recording_remux",
                    "dump_bytes": made["dump_bytes"],
                    "dump_complete": made["dump_complete"],
                    "recorded_seconds": recorded,
                    "cpu_s": made["cpu_s"],
                    "wall_s": made["wall_s"],
                    "cpu_s_per_recorded_minute": (
                        round(made["cpu_s"] / recorded * 60, 3) if recorded else None
                    ),
                    "webm_bytes": made["webm_bytes"],
                    "webm_bytes_per_recorded_minute": (
                        round(made["webm_bytes"] / recorded * 60) if recorded else None
                    ),
                    "tracks": made["tracks"],
                }
            )
        return [*rows, summary]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def set_recording(url: str, call_id: str, target: DumpTarget | None) -> None:
    """The host's relay records the call into ``target`` (None: stops)."""
    request = urllib.request.Request(  # noqa: S310 - ours
        f"{url}/recording/{call_id}",
        data=None if target is None else target.to_json().encode(),
        method="DELETE" if target is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - ours
        response.read()


def _compare_recording(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Recording on against off: the means' ratio and each on phase against the off
    phase before it."""
    phases = [r for r in rows if r["mode"] == "recording"]
    on = [r["cpu_s_per_forwarded_stream_s"] for r in phases if r["recording"] == "on"]
    off = [r["cpu_s_per_forwarded_stream_s"] for r in phases if r["recording"] == "off"]
    pairs = [
        round(b["cpu_s_per_forwarded_stream_s"] / a["cpu_s_per_forwarded_stream_s"], 3)
        for a, b in itertools.pairwise(phases)
        if a["recording"] == "off" and b["recording"] == "on" and a["cpu_s_per_forwarded_stream_s"]
    ]
    ratio = (sum(on) / len(on)) / (sum(off) / len(off)) if on and off and sum(off) else None
    dumped = [r["dump_bytes_per_call_minute"] for r in phases if r["recording"] == "on"]
    delivered = [r["video_frames_delivered_per_sent"] or 0 for r in phases]

    def on_per_off(field: str) -> float | None:
        """The mean of ``field`` over the phases recorded against the others."""
        values = {
            state: [r[field] for r in phases if r["recording"] == state and r[field] is not None]
            for state in ("on", "off")
        }
        if not values["on"] or not values["off"] or not sum(values["off"]):
            return None
        mean_on = sum(values["on"]) / len(values["on"])
        return round(float(mean_on / (sum(values["off"]) / len(values["off"]))), 3)

    return {
        "mode": "compare_recording",
        "calls": phases[0]["calls"] if phases else None,
        "cpu_per_stream_off": round(sum(off) / len(off), 6) if off else None,
        "cpu_per_stream_on": round(sum(on) / len(on), 6) if on else None,
        "on_per_off": round(ratio, 3) if ratio is not None else None,
        "on_per_off_pairwise": pairs,
        # The same load in both (each phase sends the same media): these stay near 1.
        "video_kbit_s_on_per_off": on_per_off("video_kbit_s_sent_per_camera"),
        "packets_forwarded_on_per_off": on_per_off("packets_forwarded_per_s"),
        "us_per_packet_on_per_off": on_per_off("relay_us_per_packet"),
        "dump_bytes_per_call_minute": round(sum(dumped) / len(dumped)) if dumped else None,
        "frames_delivered_per_sent_min": min(delivered, default=None),
        "target_on_per_off": RECORDING_TARGET,
        "target_met": ratio is not None and ratio <= RECORDING_TARGET,
    }


def run_anchor(target: str, calls: str, reps: int, seconds: float) -> None:
    """The relay and Janus VideoRoom under the same load in one run, each server in
    a network namespace this creates and removes (bench/anchor, as root)."""
    if target != "janus":
        raise SystemExit("--anchor: only janus")
    if os.geteuid() != 0:
        raise SystemExit("--anchor needs root: it creates network namespaces")
    if shutil.which("janus") is None:
        subprocess.run(["/usr/bin/apt-get", "install", "-y", "-qq", "janus"], check=True)
    here = ROOT / "bench" / "anchor"
    work = Path(tempfile.mkdtemp(prefix="wl-anchor-"))
    env = {**os.environ, "ANCHOR_CACHE": str(work / "cache")}
    out = work / "results.jsonl"

    # Plain HTTP on a namespace address: --behind-proxy, with no proxy (none on
    # loopback there) whose forwarded headers would count.
    def server(path: str) -> str:
        return (
            f'sh -c "rm -rf {work}/data-run && cp -a {work}/seed {work}/data-run && '
            f"exec {{py}} {ROOT}/server.py --host {{ip}} --port {{port}} --behind-proxy "
            f"--trusted-proxies 127.0.0.1 --relay-datapath {path} "
            f'--data-dir {work}/data-run --media-address {{ip}}"'
        )

    # Each data path is a target of its own in the same run (Janus, native, Python:
    # the same load, alternating), unless --datapath names one.
    chosen = os.environ.get("WINDOWLINK_RELAY_DATAPATH")
    paths = [chosen] if chosen else ["native", "python"]
    targets = [
        arg
        for path in paths
        for arg in (
            "--target",
            f"windowlink-{path}",
            f"{here}/windowlink_adapter.py:setup_call",
            server(path),
        )
    ]
    try:
        seed = [sys.executable, str(here / "seed_windowlink.py"), str(ROOT), str(work / "seed")]
        subprocess.run([*seed, "10"], check=True, env=env)
        namespaces = ["/bin/sh", str(here / "netns.sh")]
        subprocess.run([*namespaces, "up"], check=True, stdout=subprocess.DEVNULL)
        try:
            subprocess.run(
                [
                    sys.executable,
                    str(here / "bench.py"),
                    "--python",
                    sys.executable,
                    "--logs",
                    str(work / "logs"),
                    "--out",
                    str(out),
                    "--targets",
                    "janus",
                    *targets,
                    "--ns",
                    calls,
                    "--reps",
                    str(reps),
                    "--duration",
                    str(seconds),
                ],
                check=True,
                env=env,
            )
        finally:
            subprocess.run([*namespaces, "down"], stdout=subprocess.DEVNULL)
        for line in out.read_text().splitlines():
            emit({"mode": "anchor", **json.loads(line)})
        subprocess.run([sys.executable, str(here / "summarize.py"), str(out)], check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_all_participants(args: argparse.Namespace, media_file: str) -> None:
    """``--participants``: one line per point, then three and four against two."""
    frames = int((args.seconds + 10) * FPS) + FPS * 5  # as prepare_media's
    keyframes_file = str(prepare_keyframes(frames))
    rows: dict[int, dict[str, Any]] = {}
    for participants in [int(n) for n in args.participants.split(",")]:
        if not 2 <= participants <= MAX_PARTICIPANTS:
            raise SystemExit(f"--participants: 2 to {MAX_PARTICIPANTS} per call")
        row = run_participants(
            participants,
            args.forwarded,
            args.seconds,
            args.workers,
            media_file,
            keyframes_file,
            args.processes,
        )
        rows[participants] = row
        emit(row)
    two = rows.get(2)
    summary: dict[str, Any] = {"mode": "compare_participants"}
    for participants, row in rows.items():
        if two is not None and participants != 2 and two["cpu_s_per_forwarded_stream_s"]:
            summary[f"cpu_per_stream_{participants}_vs_2"] = round(
                row["cpu_s_per_forwarded_stream_s"] / two["cpu_s_per_forwarded_stream_s"], 3
            )
    summary["frames_delivered_min"] = min(
        (r["video_frames_delivered_per_sent"] or 0 for r in rows.values()), default=None
    )
    summary["join_to_first_frame_ms_max"] = max(
        (r["join_to_first_frame_ms_max"] or 0 for r in rows.values()), default=None
    )
    summary["targets"] = {
        "cpu_per_stream_vs_2": 1.2,
        "frames_delivered_min": 0.998,
        "join_to_first_frame_ms_max": 500,
    }
    emit(summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,2,5,10")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument(
        "--modes",
        default="direct,rtp,mediarelay",
        help="direct, rtp, rtp2 (offers through another host), mediarelay, "
        "idle (calls that send nothing)",
    )
    parser.add_argument("--workers", type=int, default=0, help="relay worker processes")
    parser.add_argument(
        "--participants",
        help="calls of more than two instead: participants per call, e.g. 2,3,4",
    )
    parser.add_argument(
        "--forwarded",
        type=int,
        default=24,
        help="forwarded A/V streams per --participants point (calls = this / (n x (n-1)))",
    )
    parser.add_argument("--processes", type=int, default=2, help="caller processes")
    parser.add_argument("--loss", type=float, default=0.02, help="loss injected in the last run")
    parser.add_argument(
        "--anchor",
        help="janus: Janus VideoRoom and the relay side by side in network namespaces (root)",
    )
    parser.add_argument("--reps", type=int, default=2, help="repetitions per point (--anchor)")
    parser.add_argument(
        "--recording",
        action="store_true",
        help="recording off and on in turn over the same calls, per --calls point",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="off/on pairs of --seconds each (--recording)"
    )
    parser.add_argument(
        "--datapath",
        choices=("auto", "native", "python"),
        help="the relay's data path (the product's --relay-datapath; it reaches every "
        "server and worker this bench starts, the --anchor one too, as "
        "WINDOWLINK_RELAY_DATAPATH)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.datapath:
        os.environ["WINDOWLINK_RELAY_DATAPATH"] = args.datapath
    if args.anchor:
        run_anchor(args.anchor, args.calls, args.reps, args.seconds)
        return
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.workers, args.secret, args.peer))
        return
    if args.recording:
        for calls in [int(c) for c in args.calls.split(",")]:
            run_recording(calls, args.seconds, args.rounds, args.workers, args.processes)
        return
    media_file = str(prepare_media(args.seconds + 10))
    emit({"mode": "media", **media_bitrates(media_file)})
    if args.participants:
        run_all_participants(args, media_file)
        return
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for calls in [int(c) for c in args.calls.split(",")]:
        for mode in args.modes.split(","):
            row = run_mode(mode, calls, args.seconds, args.workers, media_file, args.processes)
            rows[(mode, calls)] = row
            emit(row)
        rtp = rows.get(("rtp", calls))
        forwarded = rows.get(("rtp2", calls))
        base = rows.get(("mediarelay", calls))
        direct = rows.get(("direct", calls))
        summary: dict[str, Any] = {"mode": "compare", "calls": calls}
        if rtp and forwarded and rtp["cpu_s_per_stream_s"] and forwarded["cpu_s_per_stream_s"]:
            # Offers through another host: the same media path once it flows.
            summary["rtp2_cpu_per_rtp_cpu"] = round(
                forwarded["cpu_s_per_stream_s"] / rtp["cpu_s_per_stream_s"], 3
            )
        if rtp and base and rtp["cpu_s_per_stream_s"]:
            summary["mediarelay_cpu_per_rtp_cpu"] = round(
                base["cpu_s_per_stream_s"] / rtp["cpu_s_per_stream_s"], 1
            )
            # A saturated MediaRelay spends its core on fewer frames than were sent:
            # compare the cost per frame actually delivered too.
            delivered_base = base["video_frames_delivered_per_sent"] or 0
            delivered_rtp = rtp["video_frames_delivered_per_sent"] or 0
            if delivered_base and delivered_rtp:
                summary["mediarelay_cpu_per_rtp_cpu_per_delivered_frame"] = round(
                    (base["cpu_s_per_stream_s"] / delivered_base)
                    / (rtp["cpu_s_per_stream_s"] / delivered_rtp),
                    1,
                )
        if rtp and direct:
            for kind in ("video", "audio"):
                for q in ("p50", "p99"):
                    a, b = rtp[f"{kind}_one_way_ms_{q}"], direct[f"{kind}_one_way_ms_{q}"]
                    if a is not None and b is not None:
                        summary[f"{kind}_added_ms_{q}"] = round(a - b, 2)
        emit(summary)
    if args.loss > 0:
        emit(asyncio.run(loss_run(args.seconds, args.loss)))


if __name__ == "__main__":
    main()
