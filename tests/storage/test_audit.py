"""The audit hash chain, and the `audit verify` command naming the first broken entry."""

import itertools
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from storage.audit import GENESIS_HASH, ChainVerifier, entry_hash, entry_mac
from storage.audit_keys import AuditKey, ChainAnchor, directory_audit_keys, master_audit_keys
from storage.database import Database, database_url
from storage.errors import AuditChainBroken
from storage.filecrypt import Suite
from storage.records import AuditEntry, AuditEvent
from storage.sessions import SessionPolicy
from storage.store import Storage

ROOT = Path(__file__).resolve().parents[2]


async def open_storage(data_dir: Path, database_url: str | None) -> Storage:
    return await Storage.open(database_url, data_dir, SessionPolicy(3600, 7200))


async def write_entries(storage: Storage, count: int) -> None:
    for i in range(count):
        await storage.audit.append(
            AuditEvent(f"user{i}", "test.action", f"subject{i}", {"n": i}, "127.0.0.1")
        )


def verify_cli(
    data_dir: Path, database_url: str | None, *flags: str
) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "server.py", "--data-dir", str(data_dir), *flags]
    if database_url:
        args += ["--database-url", database_url]
    return subprocess.run(
        [*args, "audit", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_intact_chain_verifies(tmp_path: Path, database_url: str | None) -> None:
    storage = await open_storage(tmp_path, database_url)
    await write_entries(storage, 5)
    assert await storage.audit.verify() == 5
    entries = await storage.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    await storage.close()
    result = verify_cli(tmp_path, database_url)
    assert result.returncode == 0, result.stderr
    assert "intact: 5 entries" in result.stdout


@pytest.mark.parametrize(
    ("statement", "broken", "reason"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", 3, "content does not match"),
        ("UPDATE audit_log SET detail = '[]' WHERE seq = 2", 2, "content does not match"),
        ("DELETE FROM audit_log WHERE seq = 4", 4, "entry missing"),
        ("DELETE FROM audit_log WHERE seq = 6", 6, "missing"),
        ("UPDATE audit_log SET prev_hash = 'x' WHERE seq = 5", 5, "does not link"),
    ],
)
async def test_an_edited_entry_breaks_the_chain_and_is_named(
    tmp_path: Path, database_url: str | None, statement: str, broken: int, reason: str
) -> None:
    storage = await open_storage(tmp_path, database_url)
    await write_entries(storage, 6)
    await storage.db.write(lambda conn: conn.execute(text(statement)))
    with pytest.raises(AuditChainBroken) as info:
        await storage.audit.verify()
    assert info.value.seq == broken and reason in info.value.reason
    await storage.close()
    result = verify_cli(tmp_path, database_url)
    assert result.returncode == 1
    assert f"entry {broken}" in result.stderr


async def test_an_entry_recomputed_without_the_key_is_caught_at_that_entry(
    tmp_path: Path,
) -> None:
    """Someone who edits an entry and recomputes its hash the unkeyed way (SHA-256,
    all they can do without the audit key) is caught at that very entry."""
    storage = await open_storage(tmp_path, None)
    await write_entries(storage, 3)
    entry = (await storage.audit.entries())[1]
    forged = entry_hash(
        entry.seq,
        entry.at,
        "mallory",
        entry.action,
        entry.subject,
        entry.detail,
        entry.remote,
        entry.prev_hash,
    )
    await storage.db.write(
        lambda conn: conn.execute(
            text("UPDATE audit_log SET actor = 'mallory', hash = :h WHERE seq = 2"), {"h": forged}
        )
    )
    with pytest.raises(AuditChainBroken) as info:
        await storage.audit.verify()
    assert info.value.seq == 2 and "does not match its MAC" in info.value.reason
    await storage.close()


async def rewrite_unkeyed(storage: Storage, drop: set[int], actor: str) -> None:
    """The attack of issue 19 on the records themselves: entries removed, actors
    rewritten, and the whole chain recomputed the unkeyed way (as the code before
    keyed chains made it), head included."""
    entries = [e for e in await storage.audit.entries() if e.seq not in drop]

    def unit(conn: Connection) -> None:
        conn.execute(text("DELETE FROM audit_log"))
        prev = GENESIS_HASH
        for seq, e in enumerate(entries, start=1):
            digest = entry_hash(seq, e.at, actor, e.action, e.subject, e.detail, e.remote, prev)
            conn.execute(
                text(
                    "INSERT INTO audit_log (seq, at, actor, action, subject, detail, remote, "
                    "prev_hash, hash, key_id) VALUES (:seq, :at, :actor, :action, :subject, "
                    ":detail, :remote, :prev, :hash, '')"
                ),
                {
                    "seq": seq,
                    "at": e.at,
                    "actor": actor,
                    "action": e.action,
                    "subject": e.subject,
                    "detail": e.detail,
                    "remote": e.remote,
                    "prev": prev,
                    "hash": digest,
                },
            )
            prev = digest
        conn.execute(
            text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"),
            {"s": len(entries), "h": prev},
        )

    await storage.db.write(unit)


async def test_a_chain_rewritten_whole_the_unkeyed_way_is_broken(
    tmp_path: Path, database_url: str | None
) -> None:
    storage = await open_storage(tmp_path, database_url)
    await write_entries(storage, 8)
    await rewrite_unkeyed(storage, {3, 4, 5}, "someone")
    with pytest.raises(AuditChainBroken) as info:
        await storage.audit.verify()
    assert info.value.seq == 1 and "unkeyed" in info.value.reason
    await storage.close()
    result = verify_cli(tmp_path, database_url)
    assert result.returncode == 1
    assert "BROKEN at entry 1" in result.stderr


async def test_verify_names_the_audit_key_and_how_many_entries_it_verified(
    tmp_path: Path,
) -> None:
    storage = await open_storage(tmp_path, None)
    await write_entries(storage, 4)
    key = signing_key(storage)
    assert key.algorithm == "hmac-sha256" and key.id.startswith("audit-")
    assert all(e.key_id == key.id for e in await storage.audit.entries())
    report = await storage.audit.check()
    assert (report.entries, report.unkeyed, dict(report.by_key)) == (4, 0, {key.id: 4})
    await storage.close()
    result = verify_cli(tmp_path, None)
    assert result.returncode == 0, result.stderr
    assert "intact: 4 entries" in result.stdout
    assert f"4 entries verified with audit key {key.id} (HMAC-SHA-256)" in result.stdout
    # The key is a file of the key directory, owner-only; never in the database.
    path = tmp_path / "keys" / f"{key.id}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(tmp_path / "windowlink.db") as conn:
        dump = "\n".join(conn.iterdump())
    conn.close()
    assert key.key.hex() not in dump


async def test_without_its_audit_key_the_chain_is_not_verified(tmp_path: Path) -> None:
    storage = await open_storage(tmp_path, None)
    await write_entries(storage, 2)
    key_id = signing_key(storage).id
    await storage.close()
    (tmp_path / "keys" / f"{key_id}.key").rename(tmp_path / "elsewhere.key")
    result = verify_cli(tmp_path, None)
    assert result.returncode == 1
    assert f"BROKEN at entry 1: made with the audit key {key_id}, which is not in" in (
        result.stderr
    )
    # Verifying made no key of its own.
    assert not list((tmp_path / "keys").glob("audit-*.key"))


async def test_an_upgraded_chain_keeps_its_unkeyed_beginning_and_is_keyed_from_there(
    tmp_path: Path, database_url: str | None
) -> None:
    """A database written before keyed chains: its entries stay verifiable as they
    are, the first keyed entry chains over the last of them, and this node's record
    of that beginning catches an edit of it."""
    url = db_url(tmp_path, database_url)
    legacy = await Database.open(url)
    await legacy.write(lambda conn: write_legacy_entries(conn, 3))
    await legacy.close()

    storage = await open_storage(tmp_path, database_url)
    await write_entries(storage, 2)
    entries = await storage.audit.entries()
    key_id = signing_key(storage).id
    assert [e.key_id for e in entries] == ["", "", "", key_id, key_id]
    assert entries[3].prev_hash == entries[2].hash
    report = await storage.audit.check()
    assert (report.unkeyed, dict(report.by_key), report.anchored) == (3, {key_id: 2}, True)
    await storage.close()
    result = verify_cli(tmp_path, database_url)
    assert result.returncode == 0, result.stderr
    assert "entries 1-3: unkeyed" in result.stdout
    assert f"2 entries verified with audit key {key_id} (HMAC-SHA-256), from entry 4" in (
        result.stdout
    )

    # Rewriting the unkeyed beginning (and relinking the first keyed entry is
    # impossible without the key): caught at the last unkeyed entry.
    storage = await open_storage(tmp_path, database_url)
    await rewrite_unkeyed_prefix(storage, 3, "mallory")
    with pytest.raises(AuditChainBroken) as info:
        await storage.audit.verify()
    assert info.value.seq in (3, 4)
    await storage.close()


async def test_the_sm_suite_keys_the_chain_with_hmac_sm3(tmp_path: Path) -> None:
    keys = directory_audit_keys(tmp_path / "keys", Suite.SM4_GCM, create=True)
    storage = await Storage.open(None, tmp_path, SessionPolicy(3600, 7200), keys)
    await write_entries(storage, 3)
    assert keys.active is not None and keys.active.algorithm == "hmac-sm3"
    entry = (await storage.audit.entries())[0]
    assert entry.hash == entry_mac(
        keys.active,
        entry.seq,
        entry.at,
        entry.actor,
        entry.action,
        entry.subject,
        entry.detail,
        entry.remote,
        entry.prev_hash,
    )
    await storage.close()
    result = verify_cli(tmp_path, None, "--crypto-suite", "sm4-gcm")
    assert result.returncode == 0, result.stderr
    assert f"3 entries verified with audit key {keys.active.id} (HMAC-SM3)" in result.stdout


async def test_with_a_master_key_every_node_derives_the_same_audit_key(tmp_path: Path) -> None:
    master = os.urandom(32)
    first = master_audit_keys(master, Suite.AES_256_GCM, tmp_path / "node1" / "keys")
    second = master_audit_keys(master, Suite.AES_256_GCM, tmp_path / "node2" / "keys")
    other = master_audit_keys(os.urandom(32), Suite.AES_256_GCM, tmp_path / "node3" / "keys")
    assert first.active is not None and second.active is not None and other.active is not None
    assert first.active == second.active and first.active.id.startswith("master-sha256-")
    assert other.active.id != first.active.id and other.active.key != first.active.key
    # Its own label: not the key that seals the KEKs, nor the master key itself.
    assert first.active.key != master
    assert not (tmp_path / "node1" / "keys").exists() or not list(
        (tmp_path / "node1" / "keys").glob("audit-*.key")
    )


@pytest.mark.parametrize(
    ("seqs", "anchor", "broken"),
    [
        # (key ids per entry: '' unkeyed, 'k' keyed), node's anchor, first broken
        (["", "", "k", "k"], None, None),
        (["", "", "k", "k"], (2, True), None),
        (["k", "k"], (0, True), None),
        (["", ""], None, None),
        (["", ""], (0, True), 1),
        (["", "", "k"], (1, True), 2),
        (["", "", "k"], (3, True), 3),
        (["", "", ""], (2, True), 3),
        (["", "", "k"], (2, False), 2),
        (["k", "", "k"], None, 2),
        (["k", "x"], None, 2),
        (["", ""], (3, True), 3),
    ],
)
def test_where_keyed_and_unkeyed_entries_may_stand(
    seqs: list[str], anchor: tuple[int, bool] | None, broken: int | None
) -> None:
    """The verifier's rules as a table: unkeyed entries only before the first keyed
    one and never past this node's record; every keyed one under a key it holds."""
    key = AuditKey("k", "hmac-sha256", b"k" * 32, 0.0)
    chain: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq, key_id in enumerate(seqs, start=1):
        fields = (seq, 1.0, "a", "b", "c", "{}", "", prev)
        if key_id == "":
            digest = entry_hash(*fields)
        else:
            signer = key if key_id == "k" else AuditKey(key_id, "hmac-sha256", b"x" * 32, 0.0)
            digest = entry_mac(signer, *fields)
        chain.append(AuditEntry(*fields, digest, key_id))
        prev = digest
    node_anchor = None
    if anchor is not None:
        count, right = anchor
        head = chain[count - 1].hash if 0 < count <= len(chain) else ""
        node_anchor = ChainAnchor(count, head if right else "f" * 64)
    verifier = ChainVerifier({"k": key}, node_anchor)
    try:
        for entry in chain:
            verifier.feed(entry)
        verifier.finish(len(chain), prev)
    except AuditChainBroken as exc:
        assert exc.seq == broken, exc
    else:
        assert broken is None


def signing_key(storage: Storage) -> AuditKey:
    keys = storage.db.audit_keys
    assert keys is not None and keys.active is not None
    return keys.active


def db_url(tmp_path: Path, url: str | None) -> str:
    return database_url(url, tmp_path)


COLUMNS = ("seq", "at", "actor", "action", "subject", "detail", "remote")


def write_legacy_entries(conn: Connection, count: int) -> None:
    """Entries as the code before keyed chains made them."""
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        fields = (seq, 1000.0 + seq, f"old{seq}", "old.action", "s", "{}", "")
        digest = entry_hash(*fields, prev)
        conn.execute(
            text(
                "INSERT INTO audit_log (seq, at, actor, action, subject, detail, remote, "
                "prev_hash, hash) VALUES (:seq, :at, :actor, :action, :subject, :detail, "
                ":remote, :prev, :hash)"
            ),
            dict(
                zip(
                    ("seq", "at", "actor", "action", "subject", "detail", "remote"),
                    fields,
                    strict=True,
                ),
                prev=prev,
                hash=digest,
            ),
        )
        prev = digest
    conn.execute(
        text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"), {"s": count, "h": prev}
    )


async def rewrite_unkeyed_prefix(storage: Storage, count: int, actor: str) -> None:
    entries = (await storage.audit.entries())[:count]

    def unit(conn: Connection) -> None:
        prev = GENESIS_HASH
        for e in entries:
            digest = entry_hash(e.seq, e.at, actor, e.action, e.subject, e.detail, e.remote, prev)
            conn.execute(
                text("UPDATE audit_log SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"a": actor, "p": prev, "h": digest, "s": e.seq},
            )
            prev = digest
        conn.execute(
            text("UPDATE audit_log SET prev_hash = :p WHERE seq = :s"),
            {"p": prev, "s": count + 1},
        )

    await storage.db.write(unit)
