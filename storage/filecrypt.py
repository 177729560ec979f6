"""The encrypted file format (docs/FILE-FORMAT.md): a short header, then the
plaintext in fixed-size chunks, each sealed with an AEAD whose nonce and
associated data bind the file, the chunk's index and whether it is the last.

Reordered, dropped, duplicated, truncated or extended chunks and flipped bits
all fail authentication; a chunk's plaintext is released only after its tag
has been checked. Every failure is the same opaque ``DecryptionError``.
Memory use is one batch of chunks (1 MiB), whatever the file size.
"""

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"WLF1"
VERSION = 1
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
FILE_ID_SIZE = 16
NONCE_PREFIX_SIZE = 7
_HEADER = struct.Struct("!4sBBI16s7s")
HEADER_SIZE = _HEADER.size  # 33


class DecryptionError(Exception):
    """The file could not be decrypted (wrong key, or altered in any way)."""


class Suite(IntEnum):
    AES_256_GCM = 1
    SM4_GCM = 2

    @property
    def key_size(self) -> int:
        return 32 if self is Suite.AES_256_GCM else 16

    @property
    def digest_name(self) -> str:
        return "sha256" if self is Suite.AES_256_GCM else "sm3"


class Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...

    def copy(self) -> "Digest": ...


class _Sm3:
    def __init__(self, state: hashes.Hash | None = None) -> None:
        self._hash = state or hashes.Hash(hashes.SM3())

    def update(self, data: bytes | memoryview, /) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.copy().finalize().hex()

    def copy(self) -> "_Sm3":
        return _Sm3(self._hash.copy())


def new_digest(suite: Suite) -> Digest:
    """SHA-256 of the plaintext, or SM3 under the SM suite."""
    return hashlib.sha256() if suite is Suite.AES_256_GCM else _Sm3()


def seal(
    suite: Suite, key: bytes, nonce: bytes, plaintext: bytes | memoryview, aad: bytes
) -> bytes:
    """One-shot AEAD encryption: ciphertext followed by the 16-byte tag."""
    if suite is Suite.AES_256_GCM:
        return AESGCM(key).encrypt(nonce, plaintext, aad)
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    return encryptor.update(plaintext) + encryptor.finalize() + encryptor.tag


def open_sealed(suite: Suite, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """One-shot AEAD decryption; nothing is returned unless the tag verifies."""
    if len(sealed) < TAG_SIZE:
        raise DecryptionError("cannot decrypt")
    try:
        if suite is Suite.AES_256_GCM:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        body, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
        decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        # Held back until finalize() has checked the tag, and dropped if it fails
        # (the error's traceback keeps this frame and its variables).
        plaintext = decryptor.update(body)
        try:
            decryptor.finalize()
        except InvalidTag:
            del plaintext
            raise
        return plaintext
    except (InvalidTag, ValueError):
        raise DecryptionError("cannot decrypt") from None


@dataclass(frozen=True)
class Header:
    suite: Suite
    chunk_size: int
    file_id: bytes
    nonce_prefix: bytes

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC, VERSION, int(self.suite), self.chunk_size, self.file_id, self.nonce_prefix
        )

    @classmethod
    def unpack(cls, data: bytes) -> "Header":
        if len(data) != HEADER_SIZE:
            raise DecryptionError("cannot decrypt")
        magic, version, suite, chunk_size, file_id, prefix = _HEADER.unpack(data)
        if magic != MAGIC or version != VERSION or suite not in (1, 2) or chunk_size < 1:
            raise DecryptionError("cannot decrypt")
        return cls(Suite(suite), chunk_size, file_id, prefix)

    def nonce(self, index: int, last: bool) -> bytes:
        if index >= 1 << 32:
            raise ValueError("file too large for this format")
        return self.nonce_prefix + struct.pack("!IB", index, 1 if last else 0)

    def aad(self, index: int, last: bool) -> bytes:
        # The whole header binds version, suite, chunk size and file id.
        return self.pack() + struct.pack("!QB", index, 1 if last else 0)

    @property
    def sealed_chunk_size(self) -> int:
        return self.chunk_size + TAG_SIZE


class FileEncryptor:
    """Streaming encryption: feed plaintext with ``update``, end with ``finalize``."""

    def __init__(
        self,
        suite: Suite,
        key: bytes,
        file_id: bytes,
        *,
        chunk_size: int = CHUNK_SIZE,
        nonce_prefix: bytes | None = None,
    ) -> None:
        if len(key) != suite.key_size or len(file_id) != FILE_ID_SIZE:
            raise ValueError("wrong key or file id size")
        self.header = Header(
            suite, chunk_size, file_id, nonce_prefix or os.urandom(NONCE_PREFIX_SIZE)
        )
        self._key = key
        self._buffer = bytearray()
        self._index = 0
        self.size = 0
        self.digest = new_digest(suite)
        self.track_digest = True
        self.total: int | None = None

    @classmethod
    def resumed(
        cls,
        suite: Suite,
        key: bytes,
        file_id: bytes,
        nonce_prefix: bytes,
        *,
        index: int,
        pending: bytes,
        size: int,
        total: int | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> "FileEncryptor":
        """Go on where another encryptor of the same file stopped (another process
        or node took the upload on): ``index`` chunks sealed, ``pending`` plaintext
        not yet sealed, ``size`` plaintext bytes fed. With ``total`` (the file's
        size, known in advance) every full chunk but the last is sealed at once, so
        that nothing but a partial chunk waits. It keeps no digest."""
        encryptor = cls(suite, key, file_id, chunk_size=chunk_size, nonce_prefix=nonce_prefix)
        encryptor._index = index
        encryptor._buffer = bytearray(pending)
        encryptor.size = size
        # A digest of the rest alone would mean nothing: the caller takes the whole
        # file's when it is complete, so none is kept (a hash pass saved).
        encryptor.track_digest = False
        encryptor.total = total
        return encryptor

    @property
    def index(self) -> int:
        """Chunks sealed so far."""
        return self._index

    @property
    def pending(self) -> bytes:
        """Plaintext not yet sealed (at most one chunk: the last is sealed at the end)."""
        return bytes(self._buffer)

    def header_bytes(self) -> bytes:
        return self.header.pack()

    def snapshot(self) -> tuple[int, bytes, int, Digest]:
        """State to return to if the bytes fed next turn out to be wrong."""
        return self._index, bytes(self._buffer), self.size, self.digest.copy()

    def restore(self, state: tuple[int, bytes, int, Digest]) -> None:
        self._index, buffer, self.size, digest = state
        self._buffer = bytearray(buffer)
        self.digest = digest.copy()

    def _seal(self, chunk: bytes | memoryview, last: bool = False) -> bytes:
        header = self.header
        sealed = seal(
            header.suite,
            self._key,
            header.nonce(self._index, last),
            chunk,
            header.aad(self._index, last),
        )
        self._index += 1
        return sealed

    def update(self, data: bytes) -> bytes:
        """Sealed chunks completed by ``data`` (the remainder waits for more)."""
        self.size += len(data)
        if self.track_digest:
            self.digest.update(data)
        pending = bytes(self._buffer) + data if self._buffer else data
        view = memoryview(pending)
        size = self.header.chunk_size
        sealed: list[bytes] = []
        position = 0
        # Keep the last chunk back: it must be sealed as last. Without the total
        # size that is any chunk not yet followed by a byte; with it, only the
        # chunk that ends the file.
        while True:
            remaining = len(pending) - position
            not_last = self.total is not None and (self._index + 1) * size < self.total
            if not (remaining > size or (remaining == size and not_last)):
                break
            sealed.append(self._seal(view[position : position + size]))
            position += size
        self._buffer = bytearray(view[position:])
        return b"".join(sealed)

    def finalize(self) -> bytes:
        """The last chunk (possibly empty), sealed with the last-chunk flag."""
        sealed = self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return sealed


def plaintext_size(header: Header, stored_size: int) -> int:
    """Plaintext length implied by the stored file's size (checked again on read)."""
    body = stored_size - HEADER_SIZE
    sealed = header.sealed_chunk_size
    if body < TAG_SIZE:
        raise DecryptionError("cannot decrypt")
    chunks = -(-body // sealed)
    last = body - (chunks - 1) * sealed
    if last < TAG_SIZE:
        raise DecryptionError("cannot decrypt")
    return (chunks - 1) * header.chunk_size + last - TAG_SIZE


def _layout(source: BinaryIO, key: bytes) -> tuple[Header, int, int]:
    """The header, the plaintext size and the index of the last chunk."""
    source.seek(0, os.SEEK_END)
    stored = source.tell()
    source.seek(0)
    header = Header.unpack(source.read(HEADER_SIZE))
    if len(key) != header.suite.key_size:
        raise DecryptionError("cannot decrypt")
    total = plaintext_size(header, stored)
    last_index = -(-(stored - HEADER_SIZE) // header.sealed_chunk_size) - 1
    return header, total, last_index


BATCH_CHUNKS = 16
"""Chunks a download decrypts at once (1 MiB of plaintext): one read and one
buffer for them all, instead of a read, a cipher object and a copy per chunk."""


class _Opener:
    """Opens a run of consecutive sealed chunks into one plaintext buffer. A
    chunk's tag is checked before anything of it may leave: the buffer is handed
    out only when every chunk in it was authenticated."""

    def __init__(self, header: Header, key: bytes, last_index: int) -> None:
        self._header = header
        self._key = key
        self._last = last_index
        # One key schedule for the whole file, not one per chunk.
        self._aead = AESGCM(key) if header.suite is Suite.AES_256_GCM else None

    def open_into(self, index: int, count: int, sealed: memoryview) -> bytearray:
        """The plaintext of the ``count`` chunks from ``index`` held in ``sealed``
        (whole sealed chunks, the file's last one possibly shorter), in a buffer
        of its own sized from the bytes read (never from the unauthenticated
        header alone). Fewer than ``count`` chunks (the file shrank while being
        read), a chunk that is short but not the file's last, or a failing tag is
        ``DecryptionError``, the buffer (which decrypt_into fills before the tag
        is checked) wiped first: an error's traceback keeps this frame."""
        size = self._header.sealed_chunk_size
        if -(-len(sealed) // size) != count:
            raise DecryptionError("cannot decrypt")
        out = bytearray(max(len(sealed) - count * TAG_SIZE, 0))
        try:
            self._open(index, sealed, memoryview(out))
        except DecryptionError:
            out[:] = bytes(len(out))
            raise
        return out

    def _open(self, index: int, sealed: memoryview, out: memoryview) -> None:
        header = self._header
        size = header.sealed_chunk_size
        written = 0
        for at in range(0, len(sealed), size):
            piece = sealed[at : at + size]
            last = index == self._last
            if len(piece) < TAG_SIZE or (not last and len(piece) != size):
                raise DecryptionError("cannot decrypt")
            length = len(piece) - TAG_SIZE
            nonce, aad = header.nonce(index, last), header.aad(index, last)
            target = out[written : written + length]
            if self._aead is not None:
                try:
                    self._aead.decrypt_into(nonce, piece, aad, target)
                except (InvalidTag, ValueError):
                    raise DecryptionError("cannot decrypt") from None
            else:
                target[:] = open_sealed(header.suite, self._key, nonce, bytes(piece), aad)
            written += length
            index += 1


def _read_at(source: BinaryIO, position: int, length: int) -> memoryview:
    """Up to ``length`` bytes from ``position`` (fewer only at the end of the file)."""
    source.seek(position)
    data = source.read(length)
    # A file object may return less than asked before its end: read on (rare).
    while len(data) < length and (more := source.read(length - len(data))):
        data += more
    return memoryview(data)


def decrypt_batches(
    source: BinaryIO,
    key: bytes,
    start: int = 0,
    end: int | None = None,
    *,
    chunks: int = BATCH_CHUNKS,
) -> Iterator[memoryview]:
    """Plaintext bytes ``start`` up to ``end`` (exclusive) in batches of up to
    ``chunks`` chunks, decrypting only the chunks they lie in (and the last one
    first, which proves the file is whole). Nothing of a batch is yielded before
    the tag of every chunk in it has been checked. Each batch is a read-only view
    of a buffer of its own, never reused: a consumer may keep it."""
    header, total, last_index = _layout(source, key)
    end = total if end is None else min(end, total)
    chunk_size, sealed_size = header.chunk_size, header.sealed_chunk_size
    first = start // chunk_size
    final = min(last_index, max(first, (end - 1) // chunk_size)) if end > start else -1
    opener = _Opener(header, key, last_index)
    if final < last_index:
        sealed = _read_at(source, HEADER_SIZE + last_index * sealed_size, sealed_size)
        opener.open_into(last_index, 1, sealed)
    index = first
    while index <= final:
        count = min(chunks, final + 1 - index)
        sealed = _read_at(source, HEADER_SIZE + index * sealed_size, count * sealed_size)
        plaintext = opener.open_into(index, count, sealed)
        length = len(plaintext)
        offset = index * chunk_size
        lo, hi = max(start, offset) - offset, min(end, offset + length) - offset
        index += count
        if hi > lo:
            yield memoryview(plaintext)[lo:hi].toreadonly()


def verify(source: BinaryIO, key: bytes) -> int:
    """Authenticate every chunk without keeping any plaintext; return the plaintext size."""
    return sum(len(batch) for batch in decrypt_batches(source, key))


def decrypt_range(
    source: BinaryIO, key: bytes, start: int = 0, end: int | None = None
) -> Iterator[memoryview]:
    """Plaintext bytes ``start`` up to ``end`` (exclusive), a chunk at a time
    (``decrypt_batches`` of one chunk)."""
    return decrypt_batches(source, key, start, end, chunks=1)


def decrypt_all(source: BinaryIO, key: bytes) -> Iterator[memoryview]:
    """The whole plaintext, chunk by chunk, after every chunk has been verified:
    an altered file yields nothing at all."""
    verify(source, key)
    yield from decrypt_range(source, key, 0, None)
