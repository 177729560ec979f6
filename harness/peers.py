"""Test peers: aiortc clients whose video frames carry a frame counter in their
pixels and whose audio is a tone, and a receiver that reads both back, per slot
of issue 21's fixed m-lines (media/slots.py) when it offers them."""

import asyncio
import copy
import fractions
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiortc.codecs as aiortc_codecs
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
from aiortc.rtp import is_rtcp

from media.aiortc_private import dtls_transports, restrict_host_addresses, tap_outgoing

WIDTH, HEIGHT = 320, 240
BITS = 16
CELL_W = WIDTH // 8
CELL_H = HEIGHT // 4  # 8 x 2 cells carry 16 bits; the lower half stays grey


class CounterVideoTrack(MediaStreamTrack):
    """Frames whose pixels spell their own number (16 black/white cells), from
    ``first`` on (a screen counts from SCREEN_FIRST, so that a receiver tells it
    from a camera)."""

    kind = "video"

    def __init__(self, fps: int = 15, first: int = 0) -> None:
        super().__init__()
        self.fps = fps
        self.first = first
        self.count = first
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + (self.count - self.first) / self.fps
        await asyncio.sleep(max(0.0, target - time.monotonic()))
        image = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
        for bit in range(BITS):
            on = (self.count >> bit) & 1
            row, col = divmod(bit, 8)
            image[row * CELL_H : (row + 1) * CELL_H, col * CELL_W : (col + 1) * CELL_W] = (
                255 if on else 0
            )
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.count * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.count += 1
        return frame


def read_counter(frame: av.VideoFrame) -> int:
    image = frame.to_ndarray(format="rgb24")
    h, w = image.shape[:2]
    cw, ch = w // 8, h // 4
    value = 0
    for bit in range(BITS):
        row, col = divmod(bit, 8)
        y, x = row * ch + ch // 2, col * cw + cw // 2
        if image[y, x].mean() > 128:
            value |= 1 << bit
    return value


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames at 48 kHz."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self.samples / 48000
        await asyncio.sleep(max(0.0, target - time.monotonic()))
        t = (np.arange(960) + self.samples) / 48000
        wave = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, 48000)
        self.samples += 960
        return frame


SCREEN_FIRST = 40_000
"""A shared screen's first frame number (cameras count from 0)."""
TS_MOD = 1 << 32


@dataclass
class Received:
    """What arrived on one slot's m-lines (or the screen's)."""

    counters: list[int] = field(default_factory=list)
    video_pts: list[int] = field(default_factory=list)
    """Each decoded frame's RTP timestamp (90 kHz), as the relay forwarded it."""
    audio_pts: list[int] = field(default_factory=list)
    audio_frames: int = 0
    loud_audio_frames: int = 0
    first_video_at: float | None = None

    def largest_gap(self, start: int = 0) -> float:
        """The longest time between two frames received one after the other, from
        ``start`` on, in seconds of the media's own clock: a frame lost or held back
        in the relay shows as a gap whatever the speed of the machine."""
        pts = self.video_pts[start:]
        return max((((b - a) % TS_MOD) / 90000 for a, b in itertools.pairwise(pts)), default=0.0)


class CallPeer:
    """One client leg: sends counter video and a tone (unless receive-only), records
    what it receives. ``slots`` (1-3) receive-only slot pairs and ``screen`` give
    issue 21's fixed m-lines: slots=3, screen=True is a page's seven. Its camera's
    frames are numbered from ``first_frame`` (so that a receiver tells senders apart)."""

    def __init__(
        self,
        *,
        send_video: bool = True,
        send_audio: bool = True,
        video_first: bool = False,
        slots: int = 1,
        screen: bool = False,
        first_frame: int = 0,
    ) -> None:
        # Tests and benchmarks talk to the relay on loopback only: a relay there
        # ignores checks from any other address, so a peer gathering on the
        # machine's other interfaces (as aioice does by default) never connects to a
        # relay in a worker process. An in-process relay sets the same (process-wide).
        restrict_host_addresses(["127.0.0.1"])
        # One transport for every m-line, as a browser bundles them (aiortc's default
        # leaves a second m-line of a kind on a transport that BUNDLE stops).
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.slots = [Received() for _ in range(slots)]
        """What arrives in each slot (slot 0 also as ``received``)."""
        self.screen = Received()
        """What arrives on the screen's m-line."""
        self.dropped = 0
        self.video = CounterVideoTrack(first=first_frame) if send_video else None
        self.sharing: CounterVideoTrack | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._places: dict[Any, Received] = {}
        kinds = ["video", "audio"] if video_first else ["audio", "video"]
        for kind in kinds:
            if kind == "audio" and send_audio:
                transceiver = self.pc.addTransceiver(ToneTrack(), direction="sendrecv")
            elif kind == "video" and self.video is not None:
                transceiver = self.pc.addTransceiver(self.video, direction="sendrecv")
            else:
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            self._places[transceiver] = self.slots[0]
        for slot in range(1, slots):
            for kind in ("audio", "video"):
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
                self._places[transceiver] = self.slots[slot]
        self._screen = self.pc.addTransceiver("video", direction="sendrecv") if screen else None
        if self._screen is not None:
            self._places[self._screen] = self.screen
        self.pc.on("track", self._on_track)

    @property
    def received(self) -> Received:
        return self.slots[0]

    def share_screen(self, on: bool, first: int = SCREEN_FIRST) -> None:
        """Start (frames numbered from ``first``) or stop sending on the screen's
        m-line, as a page does with replaceTrack: nothing is renegotiated."""
        assert self._screen is not None, "offer the screen's m-line first (screen=True)"
        if self.sharing is not None:
            self.sharing.stop()
        self.sharing = CounterVideoTrack(first=first) if on else None
        self._screen.sender.replaceTrack(self.sharing)

    def _on_track(self, track: MediaStreamTrack) -> None:
        received = next(
            (r for t, r in self._places.items() if t.receiver.track is track), self.slots[0]
        )
        self._tasks.append(asyncio.create_task(self._consume(track, received)))

    async def _consume(self, track: MediaStreamTrack, received: Received) -> None:
        try:
            while True:
                frame: Any = await track.recv()
                if track.kind == "video":
                    if received.first_video_at is None:
                        received.first_video_at = time.monotonic()
                    received.counters.append(read_counter(frame))
                    received.video_pts.append(int(frame.pts))
                else:
                    received.audio_frames += 1
                    received.audio_pts.append(int(frame.pts))
                    if np.abs(frame.to_ndarray()).max() > 1000:
                        received.loud_audio_frames += 1
        except MediaStreamError:
            return

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def offer_renumbered(self, pt_shift: int, extension_ids: dict[str, int]) -> str:
        """An offer whose dynamic payload types and header extension ids differ
        from aiortc's defaults (as another browser's would)."""
        saved_codecs = {k: list(v) for k, v in aiortc_codecs.CODECS.items()}
        saved_extensions = {k: list(v) for k, v in aiortc_codecs.HEADER_EXTENSIONS.items()}
        try:
            for kind, codecs in saved_codecs.items():
                renumbered = []
                for codec in codecs:
                    codec = copy.deepcopy(codec)
                    if codec.payloadType is not None and codec.payloadType >= 96:
                        codec.payloadType += pt_shift
                        if "apt" in codec.parameters:
                            codec.parameters["apt"] = int(str(codec.parameters["apt"])) + pt_shift
                    renumbered.append(codec)
                aiortc_codecs.CODECS[kind] = renumbered
            for kind, extensions in saved_extensions.items():
                aiortc_codecs.HEADER_EXTENSIONS[kind] = [
                    RTCRtpHeaderExtensionParameters(id=extension_ids.get(e.uri, e.id), uri=e.uri)
                    for e in extensions
                ]
            return await self.offer()
        finally:
            aiortc_codecs.CODECS.update(saved_codecs)
            aiortc_codecs.HEADER_EXTENSIONS.update(saved_extensions)

    def drop_outgoing_rtp(self, fraction: float, seed: int = 7) -> None:
        """Lose ``fraction`` of this client's outgoing media packets (not RTCP)."""
        rng = random.Random(seed)

        def keep(data: bytes) -> bool:
            if is_rtcp(data) or rng.random() >= fraction:
                return True
            self.dropped += 1
            return False

        for transport in dtls_transports(self.pc):
            tap_outgoing(transport, keep)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sharing is not None:
            self.sharing.stop()
        await self.pc.close()


async def wait_until(predicate: Any, timeout: float = 20.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


def in_order(counters: list[int]) -> bool:
    """Strictly increasing frame counters: nothing out of order or repeated."""
    return all(b > a for a, b in itertools.pairwise(counters))


def in_order_wrapping(timestamps: list[int]) -> bool:
    """Strictly increasing RTP timestamps (32 bits, which may wrap)."""
    return all(0 < (b - a) % TS_MOD < TS_MOD // 2 for a, b in itertools.pairwise(timestamps))
