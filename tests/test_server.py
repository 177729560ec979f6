"""The entry point as an operator runs it: a real process, real TLS."""

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from harness.ports import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_plain_http_on_a_public_address_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "server.py", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to serve plain HTTP on 0.0.0.0" in result.stderr
    assert "--behind-proxy" in result.stderr


async def start(args: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def wait_healthy(url: str, context: ssl.SSLContext | bool) -> dict[str, str]:
    # A bound, not a timing claim: a server process imports the whole app (about
    # 2.4 s here alone); on two cores shared with browsers 10 s was not enough.
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(f"{url}/healthz", ssl=context) as response:
                    return dict(await response.json())
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError("server did not come up")


async def stop(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    await asyncio.wait_for(process.wait(), 20)


async def test_self_signed_tls_is_generated_once_and_reused(tmp_path: Path) -> None:
    port = free_port()
    args = ["--port", str(port), "--data-dir", str(tmp_path), "--tls-self-signed"]
    url = f"https://127.0.0.1:{port}"
    process = await start(args)
    try:
        cert_path = tmp_path / "tls" / "cert.pem"
        for _ in range(100):
            if cert_path.exists():
                break
            await asyncio.sleep(0.1)
        context = ssl.create_default_context(cafile=str(cert_path))
        assert (await wait_healthy(url, context))["status"] == "ok"
    finally:
        await stop(process)
    first = cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(first)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert (tmp_path / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    process = await start(args)
    try:
        await wait_healthy(url, ssl.create_default_context(cafile=str(cert_path)))
    finally:
        await stop(process)
    assert cert_path.read_bytes() == first


async def test_given_certificate_and_key_are_served(tmp_path: Path) -> None:
    from web.tls import ensure_self_signed

    cert, key = ensure_self_signed(tmp_path / "made", ["localhost", "127.0.0.1"])
    port = free_port()
    process = await start(
        [
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ]
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        health = await wait_healthy(f"https://127.0.0.1:{port}", context)
        assert health["status"] == "ok"
    finally:
        await stop(process)


async def test_the_data_directory_and_everything_in_it_is_owner_only(tmp_path: Path) -> None:
    """The SQLite database (case numbers, password hashes, wrapped keys) was 0644 in a
    0755 directory."""
    data = tmp_path / "nested" / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await start(["--port", str(port), "--data-dir", str(data), "--demo"])
    try:
        await wait_healthy(url, False)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{url}/api/v1/login", json={"username": "admin", "password": "demo1234"}
            ) as response,
        ):
            assert response.status == 200
        entries = [data, *data.rglob("*")]
        assert any(p.name.endswith("-wal") for p in entries)
        loose = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in entries}
        assert {p: m for p, m in loose.items() if int(m, 8) & 0o077} == {}
    finally:
        await stop(process)
