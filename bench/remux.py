"""Remux benchmark (issue 23): what a recorded call costs after it ends, when its
dumps are made into WebM (media.remux, no re-encoding), and what it takes to keep.

The dump is written the way the relay writes one, without a relay: the camera-like
VP8 640x480@30 (about 1 Mbit/s, a keyframe every 2 s) and Opus packets of
``bench/relay.py`` (libvpx and libopus through PyAV, encoded once and cached in
the temp directory), put into RTP by aiortc's own packetizers (``Vp8Encoder.pack``
and ``OpusEncoder.pack``, what its sender does with a pre-encoded frame) with
the header and extensions its sender writes (sequence numbers, timestamps,
marker, ``mid``, ``abs-send-time``), for the two sides of a call (kiosk and
expert: different SSRCs, sequence and timestamp origins, picture ids; the same
pictures), interleaved by arrival time as they pass the relay, into
``DumpWriter`` (sealed with a fresh data key, as ``web/call_recorder.py`` makes
one). The dumps are cut into segments of ``--segment-seconds`` (the product's
``SEGMENT_SECONDS``, 300: a ten-minute call makes two recordings), each starting
on a keyframe as the relay's keyframe request at a segment's start makes it.

Each segment is then timed in a fresh process, doing what ``CallRecorder``'s job
does: ``read_dump`` (decrypt and parse the dump) and ``remux`` into memory; CPU by
``resource.getrusage`` (user + system) around that work only, wall time, the
WebM's bytes, the job's peak RSS growth. The WebM is then demuxed (not timed) to
check that every frame and audio packet is in it. The last line sums the call:
CPU against the target (under 10 s for a ten-minute call), and bytes per
recorded minute of the dump (transient, on the relay's disk) and of the WebM (what
is kept; the store's encryption adds 16 bytes per 64 KiB).

    python bench/remux.py --call-seconds 600
"""

import argparse
import fractions
import gc
import heapq
import io
import multiprocessing as mp
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
from aiortc.codecs.opus import OpusEncoder  # noqa: E402
from aiortc.codecs.vpx import Vp8Encoder  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters  # noqa: E402
from aiortc.rtp import HeaderExtensionsMap, RtpPacket  # noqa: E402

from bench import measure  # noqa: E402
from bench.relay import AUDIO_PERIOD, AUDIO_PT, FPS, LEGS, VIDEO_PT, prepare_media  # noqa: E402
from media.recording_dump import DumpTarget, DumpWriter, read_dump  # noqa: E402
from media.remux import remux  # noqa: E402
from storage.filecrypt import FILE_ID_SIZE, Suite  # noqa: E402
from web.call_recorder import SEGMENT_SECONDS  # noqa: E402

TARGET_CPU_S = 10.0
"""The remux of a ten-minute call, CPU seconds (issue 23)."""
SUITES = {"aes-256-gcm": Suite.AES_256_GCM, "sm4-gcm": Suite.SM4_GCM}
# The extension ids aiortc offers (aiortc.codecs.HEADER_EXTENSIONS); its pre-encoded
# audio carries no audio level.
MID, ABS_SEND_TIME = (
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
)


def emit(record: dict[str, Any]) -> None:
    measure.emit("remux", record)


def new_target(path: Path, suite: Suite) -> DumpTarget:
    """A dump's target with a fresh data key, as ``CallRecorder.start`` makes one (the
    key's wrapping, which only the database sees, is left out)."""
    return DumpTarget(str(path), int(suite), os.urandom(suite.key_size), os.urandom(FILE_ID_SIZE))


@dataclass(frozen=True)
class _Source:
    participant: str
    place: str
    codec: str
    clock_rate: int


def _extensions_map(kind: str) -> HeaderExtensionsMap:
    extensions = [RTCRtpHeaderExtensionParameters(id=1, uri=MID)]
    if kind == "video":
        extensions.append(RTCRtpHeaderExtensionParameters(id=3, uri=ABS_SEND_TIME))
    mapping = HeaderExtensionsMap()
    mapping.configure(RTCRtpParameters(headerExtensions=extensions))
    return mapping


def _rtp_stream(
    source: _Source,
    payloads: list[bytes],
    count: int,
    first_arrival: float,
    mid: str,
    seed: int,
) -> Iterator[tuple[float, _Source, bytes]]:
    """``count`` of ``payloads`` as aiortc's sender puts them into RTP (its packetizer,
    header and extensions), each packet with the time it reaches the relay."""
    video = source.place == "video"
    encoder: Vp8Encoder | OpusEncoder = Vp8Encoder() if video else OpusEncoder()
    period = 1 / FPS if video else AUDIO_PERIOD
    rate = source.clock_rate
    mapping = _extensions_map(source.place)
    sequence = (seed * 7919) % 32768
    origin = (seed * 2654435761) % (1 << 32)
    for n in range(count):
        packet = av.Packet(payloads[n])
        packet.pts = round(n * period * rate)
        packet.time_base = fractions.Fraction(1, rate)
        parts, timestamp = encoder.pack(packet)
        sent = first_arrival + n * period
        for i, part in enumerate(parts):
            rtp = RtpPacket(
                payload_type=VIDEO_PT if video else AUDIO_PT,
                marker=int(i == len(parts) - 1),
                sequence_number=sequence,
                timestamp=(origin + timestamp) % (1 << 32),
                ssrc=0x10000 + seed,
                payload=part,
            )
            rtp.extensions.mid = mid
            if video:
                rtp.extensions.abs_send_time = (int(sent * (1 << 18))) & 0xFFFFFF
            sequence = (sequence + 1) % (1 << 16)
            # A frame's packets leave the sender back to back.
            yield sent + i * 0.00005, source, rtp.serialize(mapping)


def write_call_dumps(
    directory: Path, call_seconds: float, segment_seconds: float, suite: Suite
) -> tuple[list[tuple[Path, DumpTarget]], dict[str, Any]]:
    """A two-party call's dumps, one per segment, as the relay writes them; and what
    went in."""
    media = pickle.loads(Path(prepare_media(call_seconds)).read_bytes())  # noqa: S301 - ours
    frames = int(call_seconds * FPS)
    audio_packets = int(call_seconds / AUDIO_PERIOD)
    if frames > len(media["video"]) or audio_packets > len(media["audio"]):
        raise SystemExit("the cached media is shorter than the call")
    start = 1_700_000_000.0
    streams = []
    for index, participant in enumerate(LEGS):
        # The two sides' packets interleave rather than arrive in step.
        offset = start + index * 0.011
        audio = _Source(participant, "audio", "opus", 48000)
        video = _Source(participant, "video", "VP8", 90000)
        streams.append(_rtp_stream(audio, media["audio"], audio_packets, offset, "0", 2 * index))
        streams.append(_rtp_stream(video, media["video"], frames, offset, "1", 2 * index + 1))
    dumps: list[tuple[Path, DumpTarget]] = []
    writer: DumpWriter | None = None
    # A millisecond early: the new segment's first video frame is a keyframe (every
    # 2 s), as the relay's request at a segment's start makes it.
    segment_end = start - 0.001
    packets = rtp_bytes = 0
    for arrival, source, rtp in heapq.merge(*streams, key=lambda item: item[0]):
        if writer is None or arrival >= segment_end:
            if writer is not None:
                writer.close()
            target = new_target(directory / f"segment{len(dumps)}.dump", suite)
            dumps.append((Path(target.path), target))
            writer = target.writer()
            segment_end += segment_seconds
        stream = writer.stream(source.participant, source.place, source.codec, source.clock_rate)
        if stream is not None:
            writer.packet(stream, arrival, rtp)
        packets += 1
        rtp_bytes += len(rtp)
    if writer is not None:
        writer.close()
    video_bytes = sum(map(len, media["video"][:frames]))
    return dumps, {
        "call_seconds": call_seconds,
        "participants": len(LEGS),
        "video_kbit_s_per_camera": round(video_bytes * 8 / call_seconds / 1000, 1),
        "audio_kbit_s_per_participant": round(
            sum(map(len, media["audio"][:audio_packets])) * 8 / call_seconds / 1000, 1
        ),
        "rtp_packets": packets,
        "rtp_bytes": rtp_bytes,
        "segments": len(dumps),
    }


def time_remux(path: str, key: bytes) -> dict[str, Any]:
    """What ``CallRecorder``'s job does with one dump (read it, remux it into memory),
    timed; then the WebM demuxed (not timed) to count what it holds. Run it in a
    fresh process: its CPU and peak RSS are then the job's alone."""
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    with open(path, "rb") as source:
        dump = read_dump(source, key)
    read = resource.getrusage(resource.RUSAGE_SELF)
    out = io.BytesIO()
    report = remux(dump, out)
    after = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - wall0

    def cpu(a: resource.struct_rusage, b: resource.struct_rusage) -> float:
        return (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)

    arrivals = [p.arrival for p in dump.packets]
    recorded = (max(arrivals) - min(arrivals)) if arrivals else 0.0
    counted: dict[int, int] = {}
    seconds: dict[int, float] = {}
    with av.open(io.BytesIO(out.getvalue()), mode="r") as container:
        for packet in container.demux():
            if packet.size and packet.stream.time_base is not None:
                index = packet.stream.index
                counted[index] = counted.get(index, 0) + 1
                if packet.pts is not None:
                    seconds[index] = float(packet.pts * packet.stream.time_base)
    return {
        "dump_bytes": os.path.getsize(path),
        "dump_complete": dump.complete,
        "recorded_seconds": round(recorded, 2),
        "read_cpu_s": round(cpu(before, read), 3),
        "remux_cpu_s": round(cpu(read, after), 3),
        "cpu_s": round(cpu(before, after), 3),
        "wall_s": round(wall, 3),
        "peak_rss_growth_mib": round((after.ru_maxrss - before.ru_maxrss) / 1024, 1),
        "webm_bytes": out.tell(),
        "tracks": [
            {
                "participant": t.participant,
                "place": t.place,
                "codec": t.codec,
                "frames": t.frames,
                "incomplete": t.incomplete,
            }
            for t in report.tracks
        ],
        "skipped_streams": report.skipped_streams,
        "webm_packets_per_track": [counted.get(i, 0) for i in range(len(report.tracks))],
        "webm_seconds_per_track": [
            round(seconds.get(i, 0.0), 2) for i in range(len(report.tracks))
        ],
    }


def time_remux_apart(path: Path, target: DumpTarget) -> dict[str, Any]:
    """``time_remux`` in a process of its own (spawned: nothing inherited)."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(time_remux, str(path), target.key).result()


def per_minute(value: float, seconds: float) -> int | None:
    return round(value / seconds * 60) if seconds > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--call-seconds", type=float, default=600, help="the recorded call's length"
    )
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=SEGMENT_SECONDS,
        help="one dump (one recording) per this many seconds, as CallRecorder cuts them",
    )
    parser.add_argument("--suite", choices=sorted(SUITES), default="aes-256-gcm")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="wl-bench-remux-"))
    try:
        wall0 = time.perf_counter()
        dumps, made = write_call_dumps(
            directory, args.call_seconds, args.segment_seconds, SUITES[args.suite]
        )
        emit(
            {
                "mode": "dump_written",
                **made,
                "seconds_to_write": round(time.perf_counter() - wall0, 1),
            }
        )
        rows = []
        for index, (path, target) in enumerate(dumps):
            row = time_remux_apart(path, target)
            rows.append(row)
            emit({"mode": "segment", "segment": index, "suite": args.suite, **row})
        seconds = args.call_seconds
        cpu = sum(r["cpu_s"] for r in rows)
        webm = sum(r["webm_bytes"] for r in rows)
        dump_bytes = sum(r["dump_bytes"] for r in rows)
        frames = sum(t["frames"] for r in rows for t in r["tracks"] if t["place"] == "video")
        emit(
            {
                "mode": "remux",
                "call_seconds": seconds,
                "segments": len(rows),
                "suite": args.suite,
                "video_kbit_s_per_camera": made["video_kbit_s_per_camera"],
                "cpu_s": round(cpu, 2),
                "read_cpu_s": round(sum(r["read_cpu_s"] for r in rows), 2),
                "remux_cpu_s": round(sum(r["remux_cpu_s"] for r in rows), 2),
                "wall_s": round(sum(r["wall_s"] for r in rows), 2),
                "cpu_s_per_recorded_minute": round(cpu / seconds * 60, 3),
                "peak_rss_growth_mib_max": max((r["peak_rss_growth_mib"] for r in rows), default=0),
                "webm_bytes": webm,
                "webm_bytes_per_recorded_minute": per_minute(webm, seconds),
                "dump_bytes_per_recorded_minute": per_minute(dump_bytes, seconds),
                "video_frames_written_per_sent": round(frames / (len(LEGS) * seconds * FPS), 4),
                "target_cpu_s": TARGET_CPU_S * seconds / 600,
                "target_met": cpu < TARGET_CPU_S * seconds / 600,
            }
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
