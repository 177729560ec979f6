"""Key-encryption keys shared by a cluster: kept in PostgreSQL sealed under the
operator's master key; `keys rotate` run as its own process is followed by two
running nodes that share nothing else on disk, and documents stored in an
S3-compatible store by one node are read back by the other."""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from harness.object_store import ObjectStore
from storage.schema import files, keks, period_keys
from tests.conftest import (
    ClientFactory,
    RunningServer,
    ServerFactory,
    active_call,
    create_database,
    drop_database,
    login_session,
    upload_file,
)
from web.keys import FILES

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
PDF = b"%PDF-1.7\n" + os.urandom(300_000) + b"\n%%EOF\n"


@pytest.fixture
async def shared_database() -> AsyncIterator[str]:
    url = await create_database("wl_keys")
    yield url
    await drop_database(url)


def master_key(path: Path, mode: int = 0o600) -> Path:
    path.write_text(os.urandom(32).hex())
    path.chmod(mode)
    return path


def keys_cli(flags: list[str], *action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "server.py", *flags, "keys", *action],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def download(server: RunningServer, url: str) -> bytes:
    clerk = await login_session(server, "clerk")
    async with clerk, clerk.get(server.url + url) as response:
        assert response.status == 200, await response.text()
        return await response.read()


async def test_keys_rotate_on_one_node_is_followed_by_the_running_nodes(
    start_server: ServerFactory,
    connect: ClientFactory,
    object_store: ObjectStore,
    shared_database: str,
    tmp_path: Path,
) -> None:
    key_file = master_key(tmp_path / "master.key")
    bucket = object_store.new_bucket()
    shared = {
        "database_url": shared_database,
        "master_key_file": key_file,
        "blob_url": f"s3://{bucket}/city",
        "s3_endpoint": object_store.endpoint,
    }
    node_a = await start_server(data_dir=tmp_path / "a", **shared)
    node_b = await start_server(data_dir=tmp_path / "b", **shared)
    ring_a, ring_b = node_a.app[FILES].keyring, node_b.app[FILES].keyring
    first = ring_a.active_id
    assert ring_b.active_id == first  # one KEK for the cluster, not one per node

    _, _, call_a = await active_call(node_a, connect)
    kiosk_a = await login_session(node_a, "kiosk01")
    async with kiosk_a:
        status, before = await upload_file(node_a, kiosk_a, call_a, "before.png", PNG)
        assert status == 201, before

    flags = [
        "--data-dir",
        str(tmp_path / "operator"),
        "--database-url",
        shared_database,
        "--master-key-file",
        str(key_file),
        "--blob-url",
        f"s3://{bucket}/city",
        "--s3-endpoint",
        object_store.endpoint,
    ]
    rotated = await asyncio.to_thread(keys_cli, flags, "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "1 keys re-wrapped" in rotated.stdout  # the key of today's period

    # Node B, running all along, wraps its next document with the new KEK ...
    _, _, call_b = await active_call(
        node_b, connect, kiosk="kiosk02", expert="expert_housing", department="housing"
    )
    kiosk_b = await login_session(node_b, "kiosk02")
    async with kiosk_b:
        status, after = await upload_file(node_b, kiosk_b, call_b, "after.pdf", PDF)
        assert status == 201, after
    assert ring_b.active_id != first
    # ... and each node reads what the other stored, old KEK and new.
    assert await download(node_a, after["url"]) == PDF
    assert await download(node_b, before["url"]) == PNG

    # Both data keys are wrapped under the key of today's period, and that one (not
    # a row per document) by the new KEK.
    used = await node_a.storage.db.read(
        lambda conn: {r.id: r.kek_id for r in conn.execute(select(files.c.id, files.c.kek_id))}
    )
    [period] = set(used.values())
    assert set(used) == {before["id"], after["id"]} and period.startswith("pk-")
    wrapping = await node_a.storage.db.read(
        lambda conn: conn.execute(select(period_keys.c.id, period_keys.c.kek_id)).all()
    )
    assert [tuple(r) for r in wrapping] == [(period, ring_b.active_id)]
    retired = await asyncio.to_thread(keys_cli, flags, "retire", first)
    assert retired.returncode == 0, retired.stderr
    assert await download(node_a, before["url"]) == PNG
    assert await download(node_b, before["url"]) == PNG

    # The database holds the KEKs sealed only; the nodes' key directories hold none.
    rows = await node_a.storage.db.read(lambda conn: conn.execute(select(keks)).all())
    assert {r.id for r in rows} == {ring_b.active_id}
    await ring_a.refresh()
    kek = ring_a._keks[ring_a.active_id].key
    assert all(kek.hex() not in r.sealed for r in rows)
    for node in ("a", "b", "operator"):
        assert not list((tmp_path / node).rglob("*.kek"))


async def test_a_wrong_or_exposed_master_key_is_refused_clearly(
    start_server: ServerFactory, shared_database: str, tmp_path: Path
) -> None:
    good = master_key(tmp_path / "good.key")
    await start_server(data_dir=tmp_path / "a", database_url=shared_database, master_key_file=good)
    other = master_key(tmp_path / "other.key")
    base = ["--data-dir", str(tmp_path / "x"), "--database-url", shared_database]
    wrong = await asyncio.to_thread(keys_cli, [*base, "--master-key-file", str(other)], "rotate")
    assert wrong.returncode != 0
    assert "master key does not open" in wrong.stderr
    exposed = master_key(tmp_path / "exposed.key", 0o644)
    refused = await asyncio.to_thread(
        keys_cli, [*base, "--master-key-file", str(exposed)], "rotate"
    )
    assert refused.returncode != 0 and "chmod 600" in refused.stderr
    short = tmp_path / "short.key"
    short.write_text("abcd")
    short.chmod(0o600)
    bad = await asyncio.to_thread(keys_cli, [*base, "--master-key-file", str(short)], "rotate")
    assert bad.returncode != 0 and "64 hex digits" in bad.stderr


async def test_a_key_directory_moves_into_the_database_and_its_files_stay_readable(
    start_server: ServerFactory,
    connect: ClientFactory,
    shared_database: str,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "node"
    before_move = await start_server(data_dir=data_dir, database_url=shared_database)
    old_kek = before_move.app[FILES].keyring.active_id
    _, _, call = await active_call(before_move, connect)
    kiosk = await login_session(before_move, "kiosk01")
    async with kiosk:
        status, stored = await upload_file(before_move, kiosk, call, "a.png", PNG)
        assert status == 201
    key_file = master_key(tmp_path / "master.key")
    after_move = await start_server(
        data_dir=data_dir, database_url=shared_database, master_key_file=key_file
    )
    assert after_move.app[FILES].keyring.active_id == old_kek
    assert await download(after_move, stored["url"]) == PNG
