"""Documents through the HTTP API: encrypted at rest, typed by content, resumable,
readable by the right people only, attached to the case record."""

import base64
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.object_store import ObjectStore
from signaling.client import ExpertClient, KioskClient
from signaling.messages import FileView
from storage.attachments import attach_refusal
from tests.conftest import (
    ClientFactory,
    RunningServer,
    ServerFactory,
    active_call,
    login_session,
    upload_file,
)

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
PDF = b"%PDF-1.7\n" + os.urandom(200_000) + b"\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(5000)


def ofd_package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr("OFD.xml", "<ofd:OFD xmlns:ofd='http://www.ofdspec.org/2016'/>")
        package.writestr("Doc_0/Document.xml", "<ofd:Document/>")
    return buffer.getvalue()


async def call_with_sessions(
    server: RunningServer, connect: ClientFactory
) -> tuple[KioskClient, ExpertClient, str, aiohttp.ClientSession, aiohttp.ClientSession]:
    kiosk, expert, call_id = await active_call(server, connect)
    return (
        kiosk,
        expert,
        call_id,
        await login_session(server, "kiosk01"),
        await login_session(server, "expert_market"),
    )


async def download(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    async with session.get(url, headers=headers or {}) as response:
        return response.status, await response.read(), dict(response.headers)


async def test_upload_notifies_the_other_side_and_reads_back_exactly(
    server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, call_id, kiosk_http, expert_http = await call_with_sessions(server, connect)
    async with kiosk_http, expert_http:
        status, body = await upload_file(
            server, kiosk_http, call_id, "营业执照.pdf", PDF, part_size=64 * 1024 + 7
        )
        assert status == 201, body
        assert body["media_type"] == "application/pdf" and body["size"] == len(PDF)
        assert body["digest"] == hashlib.sha256(PDF).hexdigest()
        seen = await expert.next_event("file_added", FileView)
        assert (seen.name, seen.uploaded_by) == ("营业执照.pdf", "kiosk")
        status, content, headers = await download(expert_http, server.url + body["url"])
        assert status == 200 and content == PDF
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Security-Policy"] == "sandbox"
        assert headers["Content-Disposition"].startswith("attachment;")
        assert "filename*=UTF-8''" in headers["Content-Disposition"]
        # A preview reads a range; only those bytes come back.
        status, content, headers = await download(
            expert_http, server.url + body["url"] + "?inline=1", {"Range": "bytes=100-70099"}
        )
        assert status == 206 and content == PDF[100:70100]
        assert headers["Content-Range"] == f"bytes 100-70099/{len(PDF)}"
        assert headers["Content-Disposition"].startswith("inline;")
        async with kiosk_http.get(f"{server.url}/api/v1/consultations/{call_id}/files") as r:
            assert [f["name"] for f in (await r.json())["files"]] == ["营业执照.pdf"]
    actions = [e.action for e in await server.storage.audit.entries()]
    assert "file.upload" in actions and "file.download" in actions
    assert kiosk is not None


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("photo.png", PNG),
        ("scan.jpg", JPEG),
        ("scan.JPEG", JPEG),
        ("form.ofd", ofd_package()),
        ("empty-name-ok.pdf", b"%PDF-1.4\n%%EOF\n"),
    ],
    # Named by the file name only: the content is random, and test ids must be the
    # same in every process that collects them (pytest-xdist).
    ids=["photo.png", "scan.jpg", "scan.JPEG", "form.ofd", "empty-name-ok.pdf"],
)
async def test_each_allowed_type_is_accepted(
    sqlite_server: RunningServer, connect: ClientFactory, name: str, content: bytes
) -> None:
    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(sqlite_server, connect)
    async with kiosk_http, expert_http:
        status, body = await upload_file(sqlite_server, expert_http, call_id, name, content)
        assert status == 201, body


@pytest.mark.parametrize(
    ("name", "content", "status", "code"),
    [
        ("photo.pdf", PNG, 415, "type_mismatch"),
        ("setup.jpg", b"MZ\x90\x00" + os.urandom(500), 415, "unsupported_type"),
        ("script.png", b"#!/bin/sh\nrm -rf /\n", 415, "unsupported_type"),
        ("../../etc/passwd.pdf", PDF, 400, "bad_name"),
        ("a\\b.pdf", PDF, 400, "bad_name"),
        # No JSON text field may hold NUL (PostgreSQL cannot store it): the body is refused.
        ("nul\x00.pdf", PDF, 400, "invalid_body"),
        ("x" * 300 + ".pdf", PDF, 400, "bad_name"),
    ],
    ids=["type-mismatch", "executable", "script", "traversal", "backslash", "nul", "long"],
)
async def test_bad_files_are_refused_and_nothing_is_stored(
    sqlite_server: RunningServer,
    connect: ClientFactory,
    name: str,
    content: bytes,
    status: int,
    code: str,
) -> None:
    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(sqlite_server, connect)
    async with kiosk_http, expert_http:
        got, body = await upload_file(sqlite_server, kiosk_http, call_id, name, content)
        assert (got, body["error"]["code"]) == (status, code)
        async with kiosk_http.get(
            f"{sqlite_server.url}/api/v1/consultations/{call_id}/files"
        ) as response:
            assert (await response.json())["files"] == []
    data = sqlite_server.settings.data_dir
    # No document, no part (only the store's owner marker).
    assert list((data / "files").glob("*.wl[fp]")) == [] and list((data / "tmp").iterdir()) == []


async def test_size_limit_offsets_and_checksums_are_enforced_and_resume_works(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(max_file_size=100_000)
    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(server, connect)
    async with kiosk_http, expert_http:
        too_big, body = await upload_file(server, kiosk_http, call_id, "big.pdf", b"%PDF" * 30000)
        assert (too_big, body["error"]["code"]) == (413, "too_large")
        async with kiosk_http.post(
            f"{server.url}/api/v1/consultations/{call_id}/uploads",
            json={"name": "doc.pdf", "size": 90_000},
        ) as response:
            url = server.url + (await response.json())["url"]
        content = b"%PDF-1.5\n" + os.urandom(90_000 - 9)

        def headers(offset: int, part: bytes, good: bool = True) -> dict[str, str]:
            digest = hashlib.sha256(part if good else part + b"x").digest()
            return {
                "Upload-Offset": str(offset),
                "Upload-Checksum": "sha256 " + base64.b64encode(digest).decode(),
                "Content-Type": "application/offset+octet-stream",
            }

        first = content[:40_000]
        async with kiosk_http.patch(url, data=first, headers=headers(0, first)) as response:
            assert response.status == 204 and response.headers["Upload-Offset"] == "40000"
        second = content[40_000:]
        # A wrong checksum leaves the upload where it was.
        async with kiosk_http.patch(url, data=second, headers=headers(40_000, second, False)) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "checksum_mismatch"
        # A wrong offset is refused and says where to resume.
        async with kiosk_http.patch(url, data=second, headers=headers(39_000, second)) as r:
            assert r.status == 409 and r.headers["Upload-Offset"] == "40000"
        async with kiosk_http.head(url) as response:
            assert response.headers["Upload-Offset"] == "40000"
        # Someone else's session cannot touch the upload.
        async with expert_http.patch(url, data=second, headers=headers(40_000, second)) as r:
            assert r.status == 404
        async with kiosk_http.post(f"{url}/finish") as response:
            assert response.status == 409
        async with kiosk_http.patch(url, data=second, headers=headers(40_000, second)) as r:
            assert r.status == 204
        async with kiosk_http.post(f"{url}/finish") as response:
            record = await response.json()
            assert response.status == 201
        # The refused part was hashed on its way in: the recorded digest is still
        # the file's own.
        assert record["digest"] == hashlib.sha256(content).hexdigest()
        status, back, _ = await download(expert_http, server.url + record["url"])
        assert status == 200 and back == content


async def test_a_marker_in_an_uploaded_file_never_appears_in_the_data_directory(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(sqlite_server, connect)
    marker = b"MARKER-7f3a9c-do-not-store-in-clear"
    content = b"%PDF-1.7\n" + (marker + os.urandom(100)) * 2000
    async with kiosk_http, expert_http:
        status, _ = await upload_file(sqlite_server, kiosk_http, call_id, "m.pdf", content)
        assert status == 201
    for path in Path(sqlite_server.settings.data_dir).rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path


async def test_who_may_read_documents_before_and_after_the_call(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, call_id, kiosk_http, expert_http = await call_with_sessions(
        sqlite_server, connect
    )
    async with kiosk_http, expert_http:
        _, record = await upload_file(sqlite_server, kiosk_http, call_id, "p.png", PNG)
        url = sqlite_server.url + record["url"]
        others = {
            name: await login_session(sqlite_server, name)
            for name in ("kiosk02", "expert_housing", "clerk", "admin")
        }
        try:
            # During the call: the participants only (and staff who may read records).
            assert (await download(kiosk_http, url))[0] == 200
            assert (await download(others["kiosk02"], url))[0] == 404
            assert (await download(others["expert_housing"], url))[0] == 404
            status, _ = await upload_file(sqlite_server, others["kiosk02"], call_id, "x.png", PNG)
            assert status == 404
            await expert.end(call_id)
            # After it: the kiosk has lost access; department experts, clerks, admins read.
            assert (await download(kiosk_http, url))[0] == 404
            async with kiosk_http.get(
                f"{sqlite_server.url}/api/v1/consultations/{call_id}/files"
            ) as response:
                assert response.status == 404
            assert (await download(expert_http, url))[0] == 200
            assert (await download(others["clerk"], url))[0] == 200
            assert (await download(others["admin"], url))[0] == 200
            assert (await download(others["expert_housing"], url))[0] == 404
            status, _ = await upload_file(sqlite_server, kiosk_http, call_id, "late.png", PNG)
            assert status == 404
            async with aiohttp.ClientSession() as anonymous:
                assert (await download(anonymous, url))[0] == 401
        finally:
            for session in others.values():
                await session.close()
    assert kiosk is not None


async def test_clerk_attaches_a_document_to_the_case_and_downloads_it(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, call_id, kiosk_http, expert_http = await call_with_sessions(
        sqlite_server, connect
    )
    async with kiosk_http, expert_http:
        _, record = await upload_file(sqlite_server, kiosk_http, call_id, "申请书.pdf", PDF)
        await expert.end(call_id)
    clerk = await login_session(sqlite_server, "clerk")
    async with clerk:
        async with clerk.post(
            f"{sqlite_server.url}/api/v1/consultations/{call_id}/case",
            json={"case_number": "SL-2026-1", "reason": "市民补交受理单号"},
        ) as response:
            assert response.status == 204
        async with clerk.post(
            f"{sqlite_server.url}/api/v1/cases/SL-2026-1/attachments",
            json={"file_id": record["id"], "category": "application"},
        ) as r:
            assert r.status == 201
            attachments = (await r.json())["attachments"]
        assert [a["file"]["name"] for a in attachments] == ["申请书.pdf"]
        async with clerk.post(
            f"{sqlite_server.url}/api/v1/cases/SL-2026-1/attachments",
            json={"file_id": record["id"], "category": "application"},
        ) as r:
            assert r.status == 409
        status, content, _ = await download(clerk, sqlite_server.url + record["url"])
        assert status == 200 and content == PDF
    expert_session = await login_session(sqlite_server, "expert_market")
    async with (
        expert_session,
        expert_session.post(
            f"{sqlite_server.url}/api/v1/cases/SL-2026-1/attachments",
            json={"file_id": record["id"], "category": "reply"},
        ) as response,
    ):
        assert response.status == 403
    assert kiosk is not None
    actions = [e.action for e in await sqlite_server.storage.audit.entries()]
    assert "file.attach" in actions and "consultation.link_case" in actions


@pytest.mark.parametrize(
    ("case_number", "consultation_case", "code"),
    [
        ("SL-1", "SL-1", None),
        ("SL-1", "SL-2", "other_case"),
        ("SL-1", None, "no_case_number"),
        # Case numbers are compared as given: SL-1 is not sl-1.
        ("SL-1", "sl-1", "other_case"),
    ],
)
def test_which_attachments_are_refused(
    case_number: str, consultation_case: str | None, code: str | None
) -> None:
    refused = attach_refusal(case_number, consultation_case)
    assert (refused.code if refused else None) == code


async def test_a_document_joins_only_the_case_its_consultation_carries(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """The clerk could attach any file to any case number: one citizen's document
    among another citizen's papers."""
    server = sqlite_server
    _, expert_a, call_a = await active_call(server, connect, case_number="SL-A")
    _, expert_b, call_b = await active_call(
        server, connect, kiosk="kiosk02", expert="expert_housing", department="housing"
    )
    kiosk_a = await login_session(server, "kiosk01")
    kiosk_b = await login_session(server, "kiosk02")
    async with kiosk_a, kiosk_b:
        _, doc_a = await upload_file(server, kiosk_a, call_a, "a.pdf", PDF)
        _, doc_b = await upload_file(server, kiosk_b, call_b, "b.png", PNG)
    await expert_a.end(call_a)
    await expert_b.end(call_b)
    clerk = await login_session(server, "clerk")

    async def attach(case_number: str, file_id: str) -> tuple[int, Any]:
        async with clerk.post(
            f"{server.url}/api/v1/cases/{case_number}/attachments",
            json={"file_id": file_id, "category": "application"},
        ) as response:
            return response.status, await response.json()

    async def link(consultation_id: str, body: dict[str, str]) -> tuple[int, Any]:
        async with clerk.post(
            f"{server.url}/api/v1/consultations/{consultation_id}/case", json=body
        ) as response:
            return response.status, await response.json() if response.status != 204 else None

    async with clerk:
        status, body = await attach("SL-OTHER", doc_a["id"])
        assert (status, body["error"]["code"]) == (409, "other_case")
        status, body = await attach("SL-A", doc_b["id"])
        assert (status, body["error"]["code"]) == (409, "no_case_number")
        assert (await attach("SL-A", doc_a["id"]))[0] == 201
        status, body = await attach("SL-A", doc_a["id"])
        assert (status, body["error"]["code"]) == (409, "already_attached")

        # Linking takes a reason, happens once, and then the documents may follow.
        status, body = await link(call_b, {"case_number": "SL-A"})
        assert (status, body["error"]["code"]) == (400, "invalid_body")
        status, body = await link(call_b, {"case_number": "SL-A", "reason": " "})
        assert (status, body["error"]["code"]) == (400, "invalid_body")
        status, body = await link("0" * 16, {"case_number": "SL-A", "reason": "补录"})
        assert status == 404
        assert (await link(call_b, {"case_number": "SL-A", "reason": "市民当面补交单号"}))[0] == 204
        status, body = await link(call_b, {"case_number": "SL-B", "reason": "又一次"})
        assert (status, body["error"]["code"]) == (409, "already_linked")
        status, body = await link(call_a, {"case_number": "SL-B", "reason": "改号"})
        assert (status, body["error"]["code"]) == (409, "already_linked")
        assert (await attach("SL-A", doc_b["id"]))[0] == 201
        async with clerk.get(f"{server.url}/api/v1/cases/SL-A/attachments") as response:
            names = [a["file"]["name"] for a in (await response.json())["attachments"]]
        assert names == ["a.pdf", "b.png"]
        # What the other case holds: nothing of theirs.
        async with clerk.get(f"{server.url}/api/v1/cases/SL-OTHER/attachments") as response:
            assert (await response.json())["attachments"] == []
    assert (await server.storage.consultations.get(call_b)).case_number == "SL-A"
    (linked,) = [
        e for e in await server.storage.audit.entries() if e.action == "consultation.link_case"
    ]
    assert (linked.actor, linked.subject) == ("clerk", call_b)
    assert json.loads(linked.detail) == {"reason": "市民当面补交单号"}
    assert "SL-A" not in linked.detail


async def test_keys_rotate_rewraps_and_the_old_key_can_be_retired(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    import asyncio
    import subprocess
    import sys

    from web.keys import FILES

    _, expert, call_id, kiosk_http, expert_http = await call_with_sessions(sqlite_server, connect)
    keyring = sqlite_server.app[FILES].keyring
    old = keyring.active_id
    data_dir = str(sqlite_server.settings.data_dir)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "server.py", "--data-dir", data_dir, "keys", *args],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    async with kiosk_http, expert_http:
        _, before = await upload_file(sqlite_server, kiosk_http, call_id, "before.png", PNG)
        rotated = await asyncio.to_thread(cli, "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert "1 keys re-wrapped" in rotated.stdout  # the key of today's period
        assert (await asyncio.to_thread(cli, "retire", old)).returncode == 0
        _, after = await upload_file(sqlite_server, kiosk_http, call_id, "after.pdf", PDF)
        # The running server picks up the new key; both files read back.
        assert (await download(expert_http, sqlite_server.url + before["url"]))[1] == PNG
        assert (await download(expert_http, sqlite_server.url + after["url"]))[1] == PDF
        refused = await asyncio.to_thread(cli, "retire", keyring.active_id)
        assert refused.returncode == 1 and "cannot retire" in refused.stderr
    assert old not in keyring.ids
    assert expert is not None


async def test_a_damaged_stored_file_is_refused_whole_and_clerks_cannot_upload(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(sqlite_server, connect)
    async with kiosk_http, expert_http:
        _, record = await upload_file(sqlite_server, kiosk_http, call_id, "p.pdf", PDF)
        stored = sqlite_server.settings.data_dir / "files" / f"{record['id']}.wlf"
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0x01
        stored.write_bytes(bytes(data))
        status, content, _ = await download(expert_http, sqlite_server.url + record["url"])
        assert status == 500 and b"damaged" in content and PDF[:100] not in content
        clerk = await login_session(sqlite_server, "clerk")
        async with clerk:
            status, _ = await upload_file(sqlite_server, clerk, call_id, "c.pdf", PDF)
            assert status == 403


async def test_a_part_cut_off_mid_way_leaves_the_upload_at_its_last_offset(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    import asyncio
    from urllib.parse import urlparse

    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(sqlite_server, connect)
    content = b"%PDF-1.6\n" + os.urandom(300_000)
    async with kiosk_http, expert_http:
        async with kiosk_http.post(
            f"{sqlite_server.url}/api/v1/consultations/{call_id}/uploads",
            json={"name": "cut.pdf", "size": len(content)},
        ) as response:
            path = (await response.json())["url"]
        url = sqlite_server.url + path
        first = content[:100_000]
        digest = base64.b64encode(hashlib.sha256(first).digest()).decode()
        async with kiosk_http.patch(
            url,
            data=first,
            headers={
                "Upload-Offset": "0",
                "Upload-Checksum": f"sha256 {digest}",
                "Content-Type": "application/offset+octet-stream",
            },
        ) as response:
            assert response.status == 204
        # The next part's connection breaks after half of its bytes.
        rest = content[100_000:]
        digest = base64.b64encode(hashlib.sha256(rest).digest()).decode()
        cookie = kiosk_http.headers.get("Cookie") or "; ".join(
            f"{c.key}={c.value}" for c in kiosk_http.cookie_jar
        )
        target = urlparse(url)
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        writer.write(
            (
                f"PATCH {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                f"Cookie: {cookie}\r\nUpload-Offset: 100000\r\n"
                f"Upload-Checksum: sha256 {digest}\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(rest)}\r\n\r\n"
            ).encode()
            + rest[: len(rest) // 2]
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        offset = None
        for _ in range(50):
            async with kiosk_http.head(url) as response:
                offset = response.headers["Upload-Offset"]
            if offset == "100000":
                break
            await asyncio.sleep(0.1)
        assert offset == "100000"
        # Resuming from the reported offset completes the file byte for byte.
        async with kiosk_http.patch(
            url,
            data=rest,
            headers={
                "Upload-Offset": "100000",
                "Upload-Checksum": f"sha256 {digest}",
                "Content-Type": "application/offset+octet-stream",
            },
        ) as response:
            assert response.status == 204
        async with kiosk_http.post(f"{url}/finish") as response:
            record = await response.json()
        assert record["digest"] == hashlib.sha256(content).hexdigest()
        status, back, _ = await download(expert_http, sqlite_server.url + record["url"])
        assert status == 200 and back == content
        assert reader is not None


async def test_documents_in_an_object_store_read_back_exactly_and_it_never_sees_plaintext(
    start_server: ServerFactory, connect: ClientFactory, object_store: ObjectStore
) -> None:
    import boto3

    bucket = object_store.new_bucket()
    server = await start_server(blob_url=f"s3://{bucket}/hall1", s3_endpoint=object_store.endpoint)
    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(server, connect)
    marker = b"MARKER-5d1e-object-store-must-not-see"
    # Larger than one S3 part, so that it is stored in parts.
    content = b"%PDF-1.7\n" + (marker + os.urandom(1000)) * 9000
    async with kiosk_http, expert_http:
        status, record = await upload_file(
            server, kiosk_http, call_id, "big.pdf", content, part_size=1024 * 1024
        )
        assert status == 201, record
        status, back, _ = await download(expert_http, server.url + record["url"])
        assert status == 200 and back == content
        status, back, _ = await download(
            expert_http, server.url + record["url"], {"Range": "bytes=5000000-5000099"}
        )
        assert status == 206 and back == content[5_000_000:5_000_100]
    s3 = boto3.client("s3", endpoint_url=object_store.endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    # The document, and the store's owner marker (storage.ownership).
    document = f"hall1/{record['id']}.wlf"
    assert keys == {"hall1/deployment.wlo", document}
    stored = s3.get_object(Bucket=bucket, Key=document)["Body"].read()
    assert len(stored) > len(content) and marker not in stored
    assert not (server.settings.data_dir / "files").exists() or not any(
        (server.settings.data_dir / "files").iterdir()
    )
    # The spooled copies of reads are gone with their responses.
    assert not any((server.settings.data_dir / "tmp").iterdir())


async def test_damage_deep_in_a_document_cuts_the_download_off_and_sends_nothing_unchecked(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """One pass: chunks are released as they are authenticated; the first damaged
    one cuts the response off short of its length (the browser sees a failed
    download), and nothing after the last good chunk is ever sent."""
    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(sqlite_server, connect)
    content = b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024) + b"\n%%EOF\n"
    async with kiosk_http, expert_http:
        status, record = await upload_file(
            sqlite_server, kiosk_http, call_id, "big.pdf", content, part_size=1024 * 1024
        )
        assert status == 201
        stored = sqlite_server.settings.data_dir / "files" / f"{record['id']}.wlf"
        data = bytearray(stored.read_bytes())
        data[int(len(data) * 0.8)] ^= 0x01
        stored.write_bytes(bytes(data))
        received = bytearray()
        async with expert_http.get(sqlite_server.url + record["url"]) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(len(content))
            with pytest.raises(aiohttp.ClientPayloadError):
                async for piece in response.content.iter_chunked(65536):
                    received += piece
        assert 1024 * 1024 <= len(received) < int(len(content) * 0.8)
        assert content.startswith(bytes(received))


async def test_range_edge_cases_are_answered_as_rfc_9110_says(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """Headers a server may ignore (bytes=abc, another unit, several ranges) used to
    answer 416, and bytes=-0 the whole document."""
    _, _, call_id, kiosk_http, expert_http = await call_with_sessions(sqlite_server, connect)
    async with kiosk_http, expert_http:
        _, record = await upload_file(sqlite_server, kiosk_http, call_id, "r.pdf", PDF)
        url = sqlite_server.url + record["url"]
        size = len(PDF)
        for ignored in ("bytes=abc", "items=0-5", "bytes=0-1,5-6", "bytes=5-2"):
            status, content, headers = await download(expert_http, url, {"Range": ignored})
            assert (status, content == PDF) == (200, True), ignored
            assert "Content-Range" not in headers
        status, content, headers = await download(expert_http, url, {"Range": "bytes=-99999999"})
        assert (status, content == PDF) == (206, True)
        assert headers["Content-Range"] == f"bytes 0-{size - 1}/{size}"
        for nothing in ("bytes=-0", f"bytes={size}-"):
            status, content, headers = await download(expert_http, url, {"Range": nothing})
            assert status == 416, nothing
            assert headers["Content-Range"] == f"bytes */{size}"
            assert json.loads(content)["error"]["code"] == "range_not_satisfiable"
        status, content, _ = await download(expert_http, url, {"Range": "Bytes=10-19"})
        assert (status, content) == (206, PDF[10:20])
    downloads = [
        json.loads(e.detail)["range"]
        for e in await sqlite_server.storage.audit.entries()
        if e.action == "file.download"
    ]
    # Each download audited with the range served ('' for the whole document).
    assert downloads == ["", "", "", "", "bytes=-99999999", "Bytes=10-19"]
