"""The blob-store contract, run against the local directory and an S3-compatible
server (moto's, a real process speaking the S3 protocol)."""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.object_store import ObjectStore
from harness.ports import free_port
from storage.blobs import (
    PART_SIZE,
    SUFFIX,
    BlobError,
    BlobMissing,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    S3Location,
    open_blob_store,
    parse_blob_url,
)
from tests.conftest import ServerFactory
from web.keys import FILES


@pytest.fixture(params=["local", "s3"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        store: BlobStore = LocalBlobStore(tmp_path / "blobs")
    else:
        server: ObjectStore = request.getfixturevalue("object_store")
        store = S3BlobStore(S3Location(server.new_bucket(), "docs/"), endpoint=server.endpoint)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def staged(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / f"staged-{os.urandom(4).hex()}"
    path.write_bytes(content)
    return path


async def read_back(store: BlobStore, name: str, spool: Path) -> bytes:
    handle = await store.fetch(name, spool)
    with handle:
        return handle.read()


async def test_a_blob_put_reads_back_whole_and_its_source_is_consumed(
    blobs: BlobStore, tmp_path: Path
) -> None:
    content = os.urandom(100_000)
    source = staged(tmp_path, content)
    await blobs.put("file1", source)
    assert not source.exists()
    assert await read_back(blobs, "file1", tmp_path) == content
    handle = await blobs.fetch("file1", tmp_path)
    with handle:
        handle.seek(50_000)
        assert handle.read(10) == content[50_000:50_010]


async def test_a_blob_larger_than_a_part_goes_in_parts_and_reads_back(
    blobs: BlobStore, tmp_path: Path
) -> None:
    content = os.urandom(PART_SIZE * 2 + 12345)
    await blobs.put("big", staged(tmp_path, content))
    assert await read_back(blobs, "big", tmp_path) == content
    [info] = [b for b in await blobs.listing() if b.name == "big"]
    assert info.size == len(content)


async def test_missing_and_deleted_blobs(blobs: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(BlobMissing):
        await blobs.fetch("nothing", tmp_path)
    await blobs.delete("nothing")  # no error
    await blobs.put("gone", staged(tmp_path, b"x" * 10))
    await blobs.delete("gone")
    with pytest.raises(BlobMissing):
        await blobs.fetch("gone", tmp_path)
    assert "gone" not in {b.name for b in await blobs.listing()}


async def test_listing_names_only_this_stores_blobs(blobs: BlobStore, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        await blobs.put(name, staged(tmp_path, name.encode() * 7))
    listed = {b.name: b for b in await blobs.listing()}
    assert set(listed) == {"a", "b", "c"}
    assert all(b.size == 7 and b.modified_at > 0 for b in listed.values())


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "x.wlf", "名", "a" * 129, ".hidden"])
async def test_names_that_are_not_file_ids_are_refused(
    blobs: BlobStore, tmp_path: Path, name: str
) -> None:
    source = staged(tmp_path, b"data")
    with pytest.raises(BlobError):
        await blobs.put(name, source)
    assert source.exists()
    with pytest.raises(BlobError):
        await blobs.fetch(name, tmp_path)
    with pytest.raises(BlobError):
        await blobs.delete(name)


async def test_many_puts_at_once_all_land_intact(blobs: BlobStore, tmp_path: Path) -> None:
    contents = {f"n{i}": os.urandom(20_000 + i) for i in range(16)}
    await asyncio.gather(
        *(blobs.put(name, staged(tmp_path, data)) for name, data in contents.items())
    )
    backs = await asyncio.gather(*(read_back(blobs, name, tmp_path) for name in contents))
    assert dict(zip(contents, backs, strict=True)) == contents


@pytest.mark.slow
async def test_an_unreachable_object_store_is_a_clear_error_and_keeps_the_source(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    store = S3BlobStore(
        S3Location("nowhere", ""), endpoint=f"http://127.0.0.1:{free_port()}", timeout=2.0
    )
    await store.start()
    try:
        source = staged(tmp_path, b"payload")
        with pytest.raises(BlobError):
            await store.put("f", source)
        assert source.exists()
        with pytest.raises(BlobError):
            await store.fetch("f", tmp_path)
        assert not await store.reachable()
        assert list(tmp_path.iterdir()) == [source]  # no spooled copy left behind
    finally:
        await store.close()


def test_blob_urls() -> None:
    assert parse_blob_url("s3://bucket/some/prefix") == S3Location("bucket", "some/prefix/")
    assert parse_blob_url("s3://bucket") == S3Location("bucket", "")
    assert parse_blob_url("file:///srv/docs") == Path("/srv/docs")
    for bad in ("s3:///prefix", "ftp://host/x"):
        with pytest.raises(ValueError):
            parse_blob_url(bad)
    local = open_blob_store(None, Path("/d"), None)
    assert isinstance(local, LocalBlobStore) and local.directory == Path("/d/files")
    assert SUFFIX == ".wlf"


async def test_health_names_an_unreachable_object_store(
    start_server: ServerFactory, object_store: ObjectStore
) -> None:
    import aiohttp

    bucket = object_store.new_bucket()
    server = await start_server(blob_url=f"s3://{bucket}/p", s3_endpoint=object_store.endpoint)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 200
        server.app[FILES].blobs.location = S3Location("no-such-bucket", "p/")  # type: ignore[attr-defined]
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 503
            body = await response.json()
    assert any("document store" in p for p in body["problems"])
