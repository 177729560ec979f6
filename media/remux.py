"""A recorded call's dump (media.recording_dump) remuxed into one Matroska/WebM file:
one track per source stream (each participant's audio and video, a shared screen),
VP8 and Opus as they were sent, never re-encoded (PyAV's muxer only).

Per stream: packets in sequence order (16-bit numbers unwrapped; duplicates
dropped), video frames put together from the packets of one RTP timestamp (VP8
payload descriptors removed) and kept only when no packet of theirs is missing,
from the first keyframe on; each Opus packet is one frame. Timestamps become the
track's presentation times, every track starting from the call's first packet so
that they stay in step. Streams of codecs this does not put together (H.264 for
now) are left out, and counted as such.

The file is written to ``out``, any writable file object: the caller's is an
encrypting one (storage), never a plaintext file.
"""

import fractions
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import av
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RtpPacket

from media.recording_dump import Dump, DumpPacket, DumpStream

SEQ_MOD = 1 << 16


@dataclass
class TrackFigures:
    participant: str
    place: str
    codec: str
    frames: int = 0
    """Frames written."""
    incomplete: int = 0
    """Video frames left out: a packet of theirs never arrived (or came before the
    first keyframe)."""


@dataclass
class RemuxReport:
    tracks: list[TrackFigures] = field(default_factory=list)
    skipped_streams: int = 0
    """Streams of a codec this does not write (H.264)."""


@dataclass(frozen=True)
class _Frame:
    timestamp: int
    data: bytes
    keyframe: bool


def _ordered(packets: Iterable[DumpPacket]) -> list[RtpPacket]:
    """The stream's packets in sequence order, each once."""
    parsed: list[tuple[int, RtpPacket]] = []
    last: int | None = None
    cycles = 0
    for packet in packets:
        try:
            rtp = RtpPacket.parse(packet.rtp)
        except ValueError:
            continue
        seq = rtp.sequence_number
        if last is not None:
            if seq < last and last - seq > SEQ_MOD // 2:
                cycles += 1
            elif seq > last and seq - last > SEQ_MOD // 2:
                # A late packet from before the last wrap.
                parsed.append((seq + (cycles - 1) * SEQ_MOD, rtp))
                continue
        last = seq
        parsed.append((seq + cycles * SEQ_MOD, rtp))
    unique = dict(sorted(parsed, key=lambda item: item[0]))
    return [unique[key] for key in sorted(unique)]


def _starts_frame(payload: bytes) -> bool:
    """The VP8 payload descriptor's S bit with partition 0 (RFC 7741, 4.2)."""
    return bool(payload) and bool(payload[0] & 0x10) and (payload[0] & 0x0F) == 0


def _vp8_frames(packets: list[RtpPacket], figures: TrackFigures) -> list[_Frame]:
    """The frames whose packets all arrived: one RTP timestamp, consecutive sequence
    numbers from the frame's start to its marker."""
    groups: list[list[RtpPacket]] = []
    for packet in packets:
        if groups and groups[-1][0].timestamp == packet.timestamp:
            groups[-1].append(packet)
        else:
            groups.append([packet])
    frames: list[_Frame] = []
    for group in groups:
        whole = (
            _starts_frame(group[0].payload)
            and group[-1].marker
            and all(
                (b.sequence_number - a.sequence_number) % SEQ_MOD == 1
                for a, b in itertools.pairwise(group)
            )
        )
        data = b""
        if whole:
            try:
                data = b"".join(vp8_depayload(p.payload) for p in group)
            except ValueError:
                data = b""
        if not data:
            figures.incomplete += 1
            continue
        # VP8 frame tag: bit 0 of the first byte is 0 for a keyframe.
        frames.append(_Frame(group[0].timestamp, data, not data[0] & 0x01))
    # From the first keyframe on: nothing before it can be decoded.
    for index, frame in enumerate(frames):
        if frame.keyframe:
            figures.incomplete += index
            return frames[index:]
    figures.incomplete += len(frames)
    return []


def _vp8_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe's header (RFC 6386, 9.1)."""
    if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
        return 640, 480
    width = int.from_bytes(keyframe[6:8], "little") & 0x3FFF
    height = int.from_bytes(keyframe[8:10], "little") & 0x3FFF
    return width or 640, height or 480


def _packet(
    data: bytes,
    pts: int,
    time_base: fractions.Fraction,
    stream: "av.video.stream.VideoStream | av.audio.stream.AudioStream",
    keyframe: bool,
) -> "av.Packet[Any]":
    packet = av.Packet(data)
    packet.pts = packet.dts = pts
    packet.time_base = time_base
    packet.stream = stream
    if keyframe:
        packet.is_keyframe = True
    return packet


def _video_times(frames: list[_Frame], offset: int) -> list[tuple[int, bytes, bool]]:
    base = frames[0].timestamp
    return [(offset + (f.timestamp - base) % (1 << 32), f.data, f.keyframe) for f in frames]


def _audio_times(packets: list[RtpPacket], offset: int) -> list[tuple[int, bytes]]:
    """Each Opus packet once, at its time (a duplicate time is a repeated packet)."""
    base = packets[0].timestamp
    seen: set[int] = set()
    times: list[tuple[int, bytes]] = []
    for rtp in packets:
        pts = offset + (rtp.timestamp - base) % (1 << 32)
        if rtp.payload and pts not in seen:
            seen.add(pts)
            times.append((pts, rtp.payload))
    return times


def remux(dump: Dump, out: BinaryIO) -> RemuxReport:
    """Write the dump's streams to ``out`` as WebM; what was written, per track."""
    report = RemuxReport()
    by_stream: dict[int, list[DumpPacket]] = {}
    for packet in dump.packets:
        by_stream.setdefault(packet.stream, []).append(packet)
    start = min((p.arrival for p in dump.packets), default=0.0)
    plans: list[tuple[DumpStream, list[RtpPacket], list[_Frame] | None, TrackFigures]] = []
    for stream_id, stream in sorted(dump.streams.items()):
        packets = _ordered(by_stream.get(stream_id, []))
        codec = stream.codec.lower()
        if codec not in ("vp8", "opus") or not packets:
            report.skipped_streams += codec not in ("vp8", "opus")
            continue
        figures = TrackFigures(stream.participant, stream.place, codec)
        frames = _vp8_frames(packets, figures) if codec == "vp8" else None
        if frames is not None and not frames:
            continue
        plans.append((stream, packets, frames, figures))
    container = av.open(out, mode="w", format="webm")
    try:
        muxed: list[tuple[av.Packet[Any], TrackFigures]] = []
        for stream, packets, frames, figures in plans:
            first_arrival = min(p.arrival for p in by_stream[stream.id])
            # Each track's clock starts where its first packet came in the call.
            offset = round((first_arrival - start) * stream.clock_rate)
            time_base = fractions.Fraction(1, stream.clock_rate)
            if frames is not None:
                video = container.add_stream("libvpx", rate=30)
                video.width, video.height = _vp8_size(frames[0].data)
                video.pix_fmt = "yuv420p"
                for pts, data, keyframe in _video_times(frames, offset):
                    muxed.append((_packet(data, pts, time_base, video, keyframe), figures))
            else:
                audio = container.add_stream("libopus", rate=stream.clock_rate)
                audio.layout = "stereo"
                for pts, data in _audio_times(packets, offset):
                    muxed.append((_packet(data, pts, time_base, audio, False), figures))
            report.tracks.append(figures)
        # Interleaved by time, as a player reads them.
        muxed.sort(key=lambda item: float((item[0].pts or 0) * (item[0].time_base or 1)))
        for ready, figures in muxed:
            container.mux(ready)
            figures.frames += 1
    finally:
        container.close()
    return report
