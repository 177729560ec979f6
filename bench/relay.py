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

Mode ``rtp2`` runs two relay hosts sharing a cluster secret, as two nodes do:
each call is placed on a worker of the first, the kiosk side offers to the first
and the expert side to the second, which hands its offer to the first's worker
over the internal API (``WorkerRelayPool.adopt``); the CPU of both hosts counts.
    python bench/relay.py --calls 10,20,30,40 --seconds 15 --workers 2 --modes rtp
"""

import argparse
import asyncio
import fractions
import hashlib
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
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402

from bench import measure  # noqa: E402
from bench.measure import cpu_seconds, percentile  # noqa: E402
from harness.ports import free_port  # noqa: E402
from media.aiortc_private import dtls_transports, intercept, restrict_host_addresses  # noqa: E402
from media.config import MediaConfig  # noqa: E402
from media.pool import create_relay_pool  # noqa: E402

LEGS = ("kiosk", "expert")
"""The legs of every call the bench makes (the relay opens no other)."""
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


class PacketTrack(MediaStreamTrack):
    """Yields pre-encoded packets on a fixed schedule; aiortc only packetizes them."""

    def __init__(self, kind: str, payloads: list[bytes], start: float) -> None:
        super().__init__()
        self.kind = kind
        self.payloads = payloads
        self.start = start
        self.period = 1 / FPS if kind == "video" else AUDIO_PERIOD
        self.rate = 90000 if kind == "video" else 48000
        self.n = 0
        self.sent = 0

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        if self.n >= len(self.payloads):
            await asyncio.sleep(3600)
        await asyncio.sleep(max(0.0, self.start + self.n * self.period - time.time()))
        packet = av.Packet(self.payloads[self.n])
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
    pool = create_relay_pool(MediaConfig(("127.0.0.1",), None, workers), secret=secret)
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
        return web.Response(text=await pool.connect(call_id, side, offer, LEGS))

    async def placement(request: web.Request) -> web.Response:
        return web.Response(text=await place(request.match_info["call"]))

    async def forwarded(_request: web.Request) -> web.Response:
        figures = await pool.stats()
        return web.Response(text=str(sum(f.get("packets_forwarded", 0) for f in figures.values())))

    app = web.Application()
    app.router.add_post("/calls/{call}/{side}", connect)
    app.router.add_get("/placement/{call}", placement)
    app.router.add_get("/forwarded", forwarded)
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
    server = (
        f'sh -c "rm -rf {work}/data-run && cp -a {work}/seed {work}/data-run && '
        f"exec {{py}} {ROOT}/server.py --host {{ip}} --port {{port}} --behind-proxy "
        f"--trusted-proxies 127.0.0.1 "
        f'--data-dir {work}/data-run --media-address {{ip}}"'
    )
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
                    "--target",
                    "windowlink",
                    f"{here}/windowlink_adapter.py:setup_call",
                    server,
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
    parser.add_argument("--processes", type=int, default=2, help="caller processes")
    parser.add_argument("--loss", type=float, default=0.02, help="loss injected in the last run")
    parser.add_argument(
        "--anchor",
        help="janus: Janus VideoRoom and the relay side by side in network namespaces (root)",
    )
    parser.add_argument("--reps", type=int, default=2, help="repetitions per point (--anchor)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.anchor:
        run_anchor(args.anchor, args.calls, args.reps, args.seconds)
        return
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.workers, args.secret, args.peer))
        return
    media_file = str(prepare_media(args.seconds + 10))
    emit({"mode": "media", **media_bitrates(media_file)})
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
