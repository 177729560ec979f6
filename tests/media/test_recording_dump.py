"""A recorded call's dump and its remux (issue 23): the packets of two participants'
VP8 video and Opus tone written encrypted as they pass (nothing of them in clear on
disk), read back, remuxed into one WebM file without re-encoding, and decoded by
PyAV to the frames each participant sent (their brightness counts the frames) and
their tone; packets out of order or twice change nothing, a lost one costs its frame
only; a dump cut short by a lost node still gives a recording up to its last chunk."""

import fractions
import io
import itertools
import math
import os
import random
from pathlib import Path

import av
import numpy as np
from aiortc.codecs import opus, vpx
from aiortc.rtp import RtpPacket

from media.recording_dump import DumpWriter, read_dump
from media.remux import remux
from storage.filecrypt import Suite

FRAMES = 40
KEY = bytes(range(32))
VIDEO_PT, AUDIO_PT = 96, 111


def video_packets(ssrc: int, brightness_step: int) -> list[bytes]:
    """RTP packets of FRAMES frames, frame i of brightness 20 + i * step (capped)."""
    encoder = vpx.Vp8Encoder()
    packets: list[bytes] = []
    seq = random.Random(ssrc).randrange(65536 - 50, 65536)  # wraps within the call
    for i in range(FRAMES):
        level = min(235, 20 + i * brightness_step)
        frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), level, np.uint8), format="rgb24")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame, force_keyframe=i == 0)
        for n, payload in enumerate(payloads):
            rtp = RtpPacket(
                payload_type=VIDEO_PT,
                marker=int(n == len(payloads) - 1),
                sequence_number=seq % 65536,
                timestamp=timestamp,
                ssrc=ssrc,
                payload=payload,
            )
            seq += 1
            packets.append(rtp.serialize())
    return packets


def tone_packets(ssrc: int, hertz: float) -> list[bytes]:
    encoder = opus.OpusEncoder()
    packets: list[bytes] = []
    for i in range(50):  # one second of 20 ms frames
        t = (np.arange(960) + i * 960) / 48000
        wave = (np.sin(2 * math.pi * hertz * t) * 12000).astype(np.int16)
        stereo = np.repeat(wave, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * 960
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, timestamp = encoder.encode(frame)
        for payload in payloads:
            rtp = RtpPacket(
                payload_type=AUDIO_PT,
                sequence_number=i,
                timestamp=timestamp,
                ssrc=ssrc,
                payload=payload,
            )
            packets.append(rtp.serialize())
    return packets


def write_call(path: Path, *, drop_one: bool = False, close: bool = True) -> DumpWriter:
    writer = DumpWriter(path, Suite.AES_256_GCM, KEY, os.urandom(16), chunk_size=4096)

    streams = [
        (writer.stream("p0", "video", "VP8", 90000), video_packets(1001, 5)),
        (writer.stream("p1", "video", "VP8", 90000), video_packets(2002, 4)),
        (writer.stream("p0", "audio", "opus", 48000), tone_packets(3003, 440.0)),
        (writer.stream("p1", "audio", "opus", 48000), tone_packets(4004, 880.0)),
    ]
    arrival = 1000.0
    events: list[tuple[float, int, bytes]] = []
    for stream_id, packets in streams:
        assert stream_id is not None
        for n, packet in enumerate(packets):
            events.append((arrival + n * 0.01, stream_id, packet))
    events.sort(key=lambda e: e[0])
    # The network's order: neighbours swapped now and then, one packet twice.
    for i in range(0, len(events) - 1, 9):
        events[i], events[i + 1] = events[i + 1], events[i]
    events.insert(20, events[19])
    if drop_one:
        # A packet in the middle of the first participant's video, lost for good.
        lost = next(i for i, e in enumerate(events) if e[1] == 1 and i > len(events) // 2)
        del events[lost]
    for at, stream_id, packet in events:
        writer.packet(stream_id, at, packet)
    if close:
        writer.close()
    return writer


def decode(data: bytes) -> dict[str, list[float]]:
    """Per track (by index): each decoded video frame's mean brightness, or audio
    frames' dominant frequency."""
    container = av.open(io.BytesIO(data), mode="r")
    found: dict[str, list[float]] = {}
    for stream in container.streams:
        found[f"{stream.type}{stream.index}"] = []
    for packet in container.demux():
        for frame in packet.decode():
            key = f"{packet.stream.type}{packet.stream.index}"
            if isinstance(frame, av.VideoFrame):
                found[key].append(float(frame.to_ndarray(format="gray").mean()))
            elif isinstance(frame, av.AudioFrame):
                samples = frame.to_ndarray()[0]
                spectrum = np.abs(np.fft.rfft(samples[:960]))
                found[key].append(float(np.argmax(spectrum) * 48000 / min(960, len(samples))))
    return found


def test_a_recorded_call_remuxes_to_the_frames_and_tones_each_side_sent(tmp_path: Path) -> None:
    dump_path = tmp_path / "call.dump"
    write_call(dump_path)
    # Nothing of the media in clear on disk: not one payload's bytes.
    stored = dump_path.read_bytes()
    for packet in video_packets(1001, 5)[:5] + tone_packets(3003, 440.0)[:5]:
        assert packet[12:40] not in stored
    with dump_path.open("rb") as source:
        dump = read_dump(source, KEY)
    assert dump.complete and len(dump.streams) == 4
    out = io.BytesIO()
    report = remux(dump, out)
    assert [(t.participant, t.place, t.frames) for t in report.tracks] == [
        ("p0", "video", FRAMES),
        ("p1", "video", FRAMES),
        ("p0", "audio", 50),
        ("p1", "audio", 50),
    ]
    tracks = decode(out.getvalue())
    videos = [v for k, v in tracks.items() if k.startswith("video")]
    audios = [v for k, v in tracks.items() if k.startswith("audio")]
    assert [len(v) for v in videos] == [FRAMES, FRAMES]
    # The frame counter each side sent, in order: brightness rising frame by frame.
    for levels in videos:
        assert all(b > a for a, b in itertools.pairwise(levels))
    # Each side's tone, in its own track (after the encoder's first frames).
    assert [len(a) >= 45 for a in audios] == [True, True]
    assert abs(np.median(audios[0][5:]) - 440) < 60
    assert abs(np.median(audios[1][5:]) - 880) < 60


def test_a_lost_packet_costs_its_frame_only(tmp_path: Path) -> None:
    dump_path = tmp_path / "call.dump"
    write_call(dump_path, drop_one=True)
    with dump_path.open("rb") as source:
        report = remux(read_dump(source, KEY), io.BytesIO())
    # (A frame of one packet leaves nothing to count as incomplete: it is not there.)
    first = report.tracks[0]
    assert first.frames == FRAMES - 1 and first.incomplete <= 1
    assert [t.frames for t in report.tracks[1:]] == [FRAMES, 50, 50]


def test_a_dump_cut_short_gives_a_recording_up_to_its_last_chunk(tmp_path: Path) -> None:
    dump_path = tmp_path / "call.dump"
    writer = write_call(dump_path, close=False)
    # The node dies: nothing closes the dump, and its last chunk is torn.
    os.close(writer._fd)
    whole = dump_path.read_bytes()
    dump_path.write_bytes(whole[: len(whole) - 100])
    with dump_path.open("rb") as source:
        dump = read_dump(source, KEY)
    assert not dump.complete
    assert 0 < len(dump.packets) < writer.packets
    out = io.BytesIO()
    report = remux(dump, out)
    assert report.tracks and all(t.frames > 0 for t in report.tracks)
    assert sum(len(v) for v in decode(out.getvalue()).values()) > 0


def test_a_wrong_key_reads_nothing(tmp_path: Path) -> None:
    dump_path = tmp_path / "call.dump"
    write_call(dump_path)
    with dump_path.open("rb") as source:
        dump = read_dump(source, bytes(32))
    assert dump.packets == [] and dump.streams == {} and not dump.complete
