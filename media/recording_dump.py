"""A recorded call's dump: the RTP packets the relay forwards, as they pass, per
source stream, in the encrypted file format (storage.filecrypt) and never in clear
on disk.

Records, in the plaintext the format encrypts:

- a stream, declared before its first packet: ``1, stream id (u8), length (u16)``
  and JSON ``{"participant", "place", "codec", "clock_rate"}``;
- a packet: ``2, stream id (u8), arrival time (f64), length (u16)`` and the RTP
  packet as it arrived, unprotected (no decoding: the relay has these bytes anyway).

The writer seals and writes each full chunk as soon as it has one, so a node lost
mid-call leaves a dump readable up to its last written chunk: ``read_dump`` takes
every chunk that authenticates and stops at the first that does not (the torn end),
dropping a record cut in two. Only a dump closed properly ends with the format's
last-chunk mark; ``complete`` says which it was.
"""

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from storage.filecrypt import (
    CHUNK_SIZE,
    HEADER_SIZE,
    DecryptionError,
    FileEncryptor,
    Header,
    Suite,
    open_sealed,
)

STREAM = 1
PACKET = 2
_STREAM_HEAD = struct.Struct("!BBH")
_PACKET_HEAD = struct.Struct("!BBdH")
MAX_STREAMS = 255


@dataclass(frozen=True)
class DumpTarget:
    """Where a relay writes a recording's dump, and with which key (signaling keeps
    the key wrapped beside it, so that the dump outlives the relay)."""

    path: str
    suite: int
    key: bytes
    file_id: bytes

    def to_json(self) -> str:
        return json.dumps(
            {
                "path": self.path,
                "suite": self.suite,
                "key": self.key.hex(),
                "file_id": self.file_id.hex(),
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> "DumpTarget":
        data = json.loads(raw)
        return cls(
            str(data["path"]),
            int(data["suite"]),
            bytes.fromhex(data["key"]),
            bytes.fromhex(data["file_id"]),
        )

    def writer(self) -> "DumpWriter":
        return DumpWriter(Path(self.path), Suite(self.suite), self.key, self.file_id)


@dataclass(frozen=True)
class DumpStream:
    id: int
    participant: str
    place: str
    """"audio", "video" or "screen"."""
    codec: str
    """The codec's name as negotiated ("VP8", "H264", "opus")."""
    clock_rate: int


@dataclass(frozen=True)
class DumpPacket:
    stream: int
    arrival: float
    rtp: bytes


@dataclass(frozen=True)
class Dump:
    streams: dict[int, DumpStream]
    packets: list[DumpPacket]
    complete: bool
    """Closed properly (else cut short: a node lost mid-call)."""


class DumpWriter:
    """Appends a call's packets to its dump; cheap per packet (a struct and a
    buffer append), a chunk sealed and written every ``chunk_size`` bytes."""

    def __init__(
        self,
        path: Path,
        suite: Suite,
        key: bytes,
        file_id: bytes,
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.path = path
        self._encryptor = FileEncryptor(suite, key, file_id, chunk_size=chunk_size)
        self._chunk = chunk_size
        # Owner-only, never an existing file: a dump is written once, by one relay.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(self._fd, self._encryptor.header_bytes())
        self._buffer = bytearray()
        self._streams: dict[tuple[str, str, str, int], int] = {}
        self.packets = 0
        self.closed = False

    def stream(self, participant: str, place: str, codec: str, clock_rate: int) -> int | None:
        """The id of this source stream in the dump, declared the first time (None
        once the dump has as many streams as it can name)."""
        key = (participant, place, codec, clock_rate)
        found = self._streams.get(key)
        if found is not None:
            return found
        if len(self._streams) >= MAX_STREAMS:
            return None
        stream_id = len(self._streams) + 1
        self._streams[key] = stream_id
        body = json.dumps(
            {"participant": participant, "place": place, "codec": codec, "clock_rate": clock_rate}
        ).encode()
        self._append(_STREAM_HEAD.pack(STREAM, stream_id, len(body)) + body)
        return stream_id

    def packet(self, stream_id: int, arrival: float, rtp: bytes) -> None:
        if self.closed or len(rtp) > 0xFFFF:
            return
        self._buffer += _PACKET_HEAD.pack(PACKET, stream_id, arrival, len(rtp))
        self._buffer += rtp
        self.packets += 1
        if len(self._buffer) > self._chunk:
            self._flush()

    def _append(self, record: bytes) -> None:
        self._buffer += record
        if len(self._buffer) > self._chunk:
            self._flush()

    def _flush(self) -> None:
        sealed = self._encryptor.update(bytes(self._buffer))
        self._buffer.clear()
        if sealed:
            os.write(self._fd, sealed)

    def close(self) -> None:
        """The rest sealed, the last chunk marked, the file synced and closed."""
        if self.closed:
            return
        self.closed = True
        try:
            self._flush()
            os.write(self._fd, self._encryptor.finalize())
            os.fsync(self._fd)
        finally:
            os.close(self._fd)


def _chunks(source: BinaryIO, key: bytes) -> tuple[list[bytes], bool]:
    """Every chunk that authenticates, in order, and whether the last one carried
    the format's last-chunk mark."""
    header = Header.unpack(source.read(HEADER_SIZE))
    if len(key) != header.suite.key_size:
        raise DecryptionError("cannot decrypt")
    sealed_size = header.sealed_chunk_size
    plain: list[bytes] = []
    index = 0
    while True:
        sealed = source.read(sealed_size)
        if not sealed:
            return plain, False
        for last in (False, True):
            try:
                chunk = open_sealed(
                    header.suite, key, header.nonce(index, last), sealed, header.aad(index, last)
                )
            except DecryptionError:
                continue
            plain.append(chunk)
            if last:
                return plain, True
            break
        else:
            # A torn chunk (the node went down while writing it): the dump ends here.
            return plain, False
        index += 1


def _records(data: bytes) -> Iterator[tuple[int, int, float, bytes]]:
    """(kind, stream, arrival, body) of each whole record; a record cut short ends it."""
    position = 0
    while position < len(data):
        kind = data[position]
        if kind == STREAM and position + _STREAM_HEAD.size <= len(data):
            _, stream_id, size = _STREAM_HEAD.unpack_from(data, position)
            start = position + _STREAM_HEAD.size
            arrival = 0.0
        elif kind == PACKET and position + _PACKET_HEAD.size <= len(data):
            _, stream_id, arrival, size = _PACKET_HEAD.unpack_from(data, position)
            start = position + _PACKET_HEAD.size
        else:
            return
        if start + size > len(data):
            return
        yield kind, stream_id, arrival, data[start : start + size]
        position = start + size


def read_dump(source: BinaryIO, key: bytes) -> Dump:
    chunks, complete = _chunks(source, key)
    streams: dict[int, DumpStream] = {}
    packets: list[DumpPacket] = []
    for kind, stream_id, arrival, body in _records(b"".join(chunks)):
        if kind == STREAM:
            fields = json.loads(body)
            streams[stream_id] = DumpStream(
                stream_id,
                str(fields["participant"]),
                str(fields["place"]),
                str(fields["codec"]),
                int(fields["clock_rate"]),
            )
        elif stream_id in streams:
            packets.append(DumpPacket(stream_id, arrival, body))
    return Dump(streams, packets, complete)
