"""The encrypted file format: round trips, tampering, the test vector, key rotation."""

import io
import itertools
import json
import os
import struct
import tracemalloc
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import filecrypt
from storage.filecrypt import (
    CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    DecryptionError,
    FileEncryptor,
    Suite,
    decrypt_all,
    decrypt_batches,
    decrypt_range,
)
from storage.keyring import DirectoryKeks, Keyring, KeyringError

VECTORS = Path(__file__).parent / "vectors" / "filecrypt-v1.json"


def encrypt(
    plaintext: bytes,
    suite: Suite = Suite.AES_256_GCM,
    *,
    chunk_size: int = CHUNK_SIZE,
    feed: int = 10_000,
) -> tuple[bytes, bytes]:
    key = os.urandom(suite.key_size)
    encryptor = FileEncryptor(suite, key, os.urandom(16), chunk_size=chunk_size)
    out = bytearray(encryptor.header_bytes())
    for i in range(0, len(plaintext), feed):
        out += encryptor.update(plaintext[i : i + feed])
    out += encryptor.finalize()
    return bytes(out), key


def decrypt(stored: bytes, key: bytes) -> bytes:
    return b"".join(decrypt_all(io.BytesIO(stored), key))


@pytest.mark.parametrize("suite", list(Suite))
@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * 1024 * 1024 + 17]
)
def test_round_trip_is_byte_exact(suite: Suite, size: int) -> None:
    plaintext = os.urandom(size)
    stored, key = encrypt(plaintext, suite)
    assert plaintext not in stored or size < 16
    assert decrypt(stored, key) == plaintext


def test_range_reads_decrypt_only_what_is_asked() -> None:
    plaintext = os.urandom(5 * CHUNK_SIZE + 123)
    stored, key = encrypt(plaintext)
    for start, end in [
        (0, 10),
        (CHUNK_SIZE - 5, CHUNK_SIZE + 5),
        (3 * CHUNK_SIZE, None),
        (len(plaintext) - 1, None),
        (100, 100),
    ]:
        got = b"".join(decrypt_range(io.BytesIO(stored), key, start, end))
        assert got == plaintext[start:end]


SMALL = 64
"""A chunk size that makes files of many chunks cheap to generate."""


@settings(max_examples=150, deadline=None)
@given(
    suite=st.sampled_from(list(Suite)),
    size=st.integers(0, 23 * SMALL),
    bounds=st.tuples(st.integers(0, 24 * SMALL), st.integers(0, 24 * SMALL)),
    per_batch=st.integers(1, 6),
)
def test_batches_hand_out_exactly_the_range_asked(
    suite: Suite, size: int, bounds: tuple[int, int], per_batch: int
) -> None:
    plaintext = os.urandom(size)
    stored, key = encrypt(plaintext, suite, chunk_size=SMALL, feed=37)
    start, end = min(bounds), max(bounds)
    batches = list(decrypt_batches(io.BytesIO(stored), key, start, end, chunks=per_batch))
    assert b"".join(batches) == plaintext[start:end]
    assert all(0 < len(batch) <= per_batch * SMALL for batch in batches)
    # Each its own buffer, not to be written to: a consumer may keep them all.
    assert all(batch.readonly for batch in batches)
    assert len({id(batch.obj) for batch in batches}) == len(batches)


class Trickle(io.BytesIO):
    """A file object that returns less than asked: at most 1,000 bytes a read."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(1000 if size is None or size < 0 else min(size, 1000))


class EndsEarly(io.BytesIO):
    """A file that claims its full size but whose bytes end at ``cut`` (it shrank
    while being read)."""

    def __init__(self, data: bytes, cut: int) -> None:
        super().__init__(data)
        self.cut = cut

    def read(self, size: int | None = -1) -> bytes:
        left = max(self.cut - self.tell(), 0)
        return super().read(left if size is None or size < 0 else min(size, left))


def test_a_file_object_that_returns_less_than_asked_is_read_on() -> None:
    plaintext = os.urandom(40 * SMALL + 5)
    stored, key = encrypt(plaintext, chunk_size=SMALL)
    assert b"".join(decrypt_batches(Trickle(stored), key, chunks=16)) == plaintext


@pytest.mark.parametrize("at_boundary", [True, False])
def test_a_file_that_ends_before_its_size_is_damaged_not_short(at_boundary: bool) -> None:
    plaintext = os.urandom(40 * SMALL + 5)
    stored, key = encrypt(plaintext, chunk_size=SMALL)
    sealed = SMALL + TAG_SIZE
    cut = HEADER_SIZE + 10 * sealed + (0 if at_boundary else 7)
    received: list[memoryview] = []
    with pytest.raises(DecryptionError):
        for batch in decrypt_batches(EndsEarly(stored, cut), key, chunks=4):
            received.append(batch)
    # Chunks 8-11 are the batch the file ends in.
    assert b"".join(received) == plaintext[: 8 * SMALL]


@pytest.mark.parametrize("suite", list(Suite))
def test_nothing_of_a_batch_with_a_damaged_chunk_is_handed_out(suite: Suite) -> None:
    plaintext = os.urandom(40 * SMALL + 5)
    stored, key = encrypt(plaintext, suite, chunk_size=SMALL)
    damaged = flip(stored, HEADER_SIZE + 6 * (SMALL + TAG_SIZE) + 3)  # chunk 6
    received: list[memoryview] = []
    with pytest.raises(DecryptionError):
        for batch in decrypt_batches(io.BytesIO(damaged), key, chunks=4):
            received.append(batch)
    # Chunks 0-3 were whole; 4 and 5, though authentic, share a batch with 6.
    assert b"".join(received) == plaintext[: 4 * SMALL]


@pytest.mark.parametrize("chunks", [1, 4, 16])
def test_a_range_read_of_a_file_whose_last_chunk_vanished_is_damaged(chunks: int) -> None:
    # The file ends where its last chunk should begin once its size was taken: the
    # last chunk, which proves the file whole, reads as nothing and must not pass.
    plaintext = os.urandom(40 * SMALL + 5)
    stored, key = encrypt(plaintext, chunk_size=SMALL)
    cut = HEADER_SIZE + 40 * (SMALL + TAG_SIZE)
    with pytest.raises(DecryptionError):
        list(decrypt_batches(EndsEarly(stored, cut), key, 0, SMALL, chunks=chunks))
    with pytest.raises(DecryptionError):
        list(decrypt_batches(EndsEarly(stored, cut), key, 5, 5, chunks=chunks))


def test_the_plaintext_buffer_is_not_sized_from_the_unauthenticated_chunk_size() -> None:
    # A 100-byte file whose header claims 64 MiB chunks: nothing about it is
    # authentic, and it must not cost a download 64 MiB of zeroed memory.
    stored, key = encrypt(os.urandom(50), chunk_size=SMALL)
    tampered = stored[:6] + struct.pack("!I", 64 * 1024 * 1024) + stored[10:]
    tracemalloc.start()
    try:
        with pytest.raises(DecryptionError):
            list(decrypt_batches(io.BytesIO(tampered), key))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize("suite", list(Suite))
def test_a_failed_chunk_leaves_no_plaintext_in_the_frames_of_its_error(suite: Suite) -> None:
    # decrypt_into (and SM4's update) produce a chunk's plaintext before its tag
    # fails; the error's traceback keeps the frames that hold it alive.
    plaintext = os.urandom(SMALL) + b"confidential".ljust(SMALL, b"!") + os.urandom(SMALL)
    stored, key = encrypt(plaintext, suite, chunk_size=SMALL)
    damaged = flip(stored, HEADER_SIZE + 2 * (SMALL + TAG_SIZE) - 1)  # chunk 1's tag
    with pytest.raises(DecryptionError) as info:
        list(decrypt_batches(io.BytesIO(damaged), key, chunks=4))
    seen: list[bytes] = []
    error: BaseException | None = info.value
    while error is not None:
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filecrypt.__file__:
                for value in tb.tb_frame.f_locals.values():
                    if isinstance(value, bytes | bytearray | memoryview):
                        seen.append(bytes(value))
            tb = tb.tb_next
        error = error.__context__
    assert not any(b"confidential" in value for value in seen)


def chunks(stored: bytes) -> tuple[bytes, list[bytes]]:
    size = CHUNK_SIZE + TAG_SIZE
    body = stored[HEADER_SIZE:]
    return stored[:HEADER_SIZE], [body[i : i + size] for i in range(0, len(body), size)]


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def tampered_variants(stored: bytes) -> dict[str, bytes]:
    header, parts = chunks(stored)
    return {
        "bit in header": flip(stored, 10),
        "bit in a chunk": flip(stored, HEADER_SIZE + 100),
        "bit in a tag": flip(stored, HEADER_SIZE + CHUNK_SIZE + 3),
        "bit in the last chunk": flip(stored, len(stored) - 20),
        "two chunks swapped": header + parts[1] + parts[0] + b"".join(parts[2:]),
        "last chunk dropped": header + b"".join(parts[:-1]),
        "chunk appended": stored + parts[1],
        "chunk duplicated": header + parts[0] + parts[0] + b"".join(parts[1:]),
        "truncated mid-chunk": stored[: HEADER_SIZE + CHUNK_SIZE + 500],
        "header only": header,
        "empty": b"",
    }


@pytest.mark.parametrize("suite", list(Suite))
def test_every_kind_of_tampering_fails_and_returns_nothing(suite: Suite) -> None:
    plaintext = os.urandom(3 * CHUNK_SIZE + 1000)
    stored, key = encrypt(plaintext, suite)
    for name, variant in tampered_variants(stored).items():
        received: list[memoryview] = []
        with pytest.raises(DecryptionError) as info:
            for piece in decrypt_all(io.BytesIO(variant), key):
                received.append(piece)
        assert received == [], name
        assert str(info.value) == "cannot decrypt", name
    with pytest.raises(DecryptionError):
        decrypt(stored, os.urandom(suite.key_size))


def test_the_test_vector_decrypts_and_matches_the_written_specification() -> None:
    data = json.loads(VECTORS.read_text())
    for vector in data["vectors"]:
        suite = Suite[vector["suite"]]
        key = bytes.fromhex(vector["key"])
        stored = bytes.fromhex(vector["stored"])
        plaintext = bytes.fromhex(vector["plaintext"])
        assert decrypt(stored, key) == plaintext
        encryptor = FileEncryptor(
            suite,
            key,
            bytes.fromhex(vector["file_id"]),
            chunk_size=vector["chunk_size"],
            nonce_prefix=bytes.fromhex(vector["nonce_prefix"]),
        )
        again = encryptor.header_bytes() + encryptor.update(plaintext) + encryptor.finalize()
        assert again == stored
        assert encryptor.digest.hexdigest() == vector["digest"]
    # A second implementation, written from docs/FILE-FORMAT.md alone (AES suite).
    vector = data["vectors"][0]
    stored = bytes.fromhex(vector["stored"])
    header = stored[:33]
    magic, version, suite_id, chunk_size, file_id, prefix = struct.unpack("!4sBBI16s7s", header)
    assert (magic, version, suite_id) == (b"WLF1", 1, 1)
    assert file_id.hex() == vector["file_id"]
    body, sealed_size, out, index = stored[33:], chunk_size + 16, b"", 0
    while body:
        sealed, body = body[:sealed_size], body[sealed_size:]
        last = 1 if not body else 0
        nonce = prefix + struct.pack("!IB", index, last)
        aad = header + struct.pack("!QB", index, last)
        out += AESGCM(bytes.fromhex(vector["key"])).decrypt(nonce, sealed, aad)
        index += 1
    assert out == bytes.fromhex(vector["plaintext"])


@pytest.mark.parametrize("suite", list(Suite))
async def test_rotation_rewraps_data_keys_and_frees_the_old_kek(
    tmp_path: Path, suite: Suite
) -> None:
    ring = await Keyring.open(DirectoryKeks(tmp_path / "keys"), suite)
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "keys").iterdir())
    old_id = ring.active_id
    before_plain = os.urandom(2 * CHUNK_SIZE + 5)
    before_stored, before_key = encrypt(before_plain, suite)
    before_wrapped = ring.wrap(before_key, b"file-before")
    await ring.rotate()
    assert ring.active_id != old_id
    after_plain = os.urandom(1000)
    after_stored, after_key = encrypt(after_plain, suite)
    after_wrapped = ring.wrap(after_key, b"file-after")
    # Reopened from disk, both files still read back.
    ring = await Keyring.open(DirectoryKeks(tmp_path / "keys"), suite)
    assert decrypt(before_stored, ring.unwrap(before_wrapped, b"file-before")) == before_plain
    assert decrypt(after_stored, ring.unwrap(after_wrapped, b"file-after")) == after_plain
    with pytest.raises(KeyringError):
        await ring.retire(old_id, still_used=1)
    rewrapped = ring.rewrap(before_wrapped, b"file-before")
    assert rewrapped.kek_id == ring.active_id
    await ring.retire(old_id, still_used=0)
    assert old_id not in (await Keyring.open(DirectoryKeks(tmp_path / "keys"), suite)).ids
    assert decrypt(before_stored, ring.unwrap(rewrapped, b"file-before")) == before_plain
    # A wrapped key moved to another file does not open.
    with pytest.raises(DecryptionError):
        ring.unwrap(rewrapped, b"file-after")


@given(
    size=st.integers(min_value=0, max_value=5 * 1024),
    cuts=st.lists(st.integers(min_value=0, max_value=5 * 1024), max_size=6),
)
@settings(max_examples=60, deadline=None)
def test_resuming_across_processes_at_any_offset_seals_the_same_file(
    size: int, cuts: list[int]
) -> None:
    """Uploads move between processes part by part (storage.filestore): an
    encryptor resumed from (index, pending, size) at every part boundary, knowing
    the total, writes exactly the file one encryptor would have."""
    chunk = 1024
    key, file_id, prefix = os.urandom(32), os.urandom(16), os.urandom(7)
    data = os.urandom(size)
    whole = FileEncryptor(Suite.AES_256_GCM, key, file_id, chunk_size=chunk, nonce_prefix=prefix)
    expected = whole.header_bytes() + whole.update(data) + whole.finalize()

    bounds = sorted({0, size, *(c for c in cuts if c <= size)})
    out = bytearray(whole.header_bytes())
    index, pending, fed = 0, b"", 0
    for start, end in itertools.pairwise(bounds):
        part = FileEncryptor.resumed(
            Suite.AES_256_GCM,
            key,
            file_id,
            prefix,
            index=index,
            pending=pending,
            size=fed,
            total=size,
            chunk_size=chunk,
        )
        out += part.update(data[start:end])
        index, pending, fed = part.index, part.pending, part.size
        assert len(pending) < chunk or fed == size
    last = FileEncryptor.resumed(
        Suite.AES_256_GCM,
        key,
        file_id,
        prefix,
        index=index,
        pending=pending,
        size=fed,
        total=size,
        chunk_size=chunk,
    )
    out += last.finalize()
    assert bytes(out) == expected
    assert b"".join(decrypt_all(io.BytesIO(bytes(out)), key)) == data
