"""nginx in front of test nodes, configured with the repo's sample
(``deploy/nginx/windowlink.conf``) rendered exactly as docs/DEPLOY.md says
(envsubst of the ``${WL_*}`` variables only), on a free loopback port with a
self-signed certificate. Stopped (and its whole process group killed) after."""

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.debian_tools import debian_tool
from harness.ports import free_port
from tests.cluster.processes import eventually
from tests.deploy_samples import DEPLOY, render_sample
from web.tls import ensure_self_signed

SAMPLE = DEPLOY / "nginx" / "windowlink.conf"


@dataclass(frozen=True)
class Proxy:
    url: str
    directory: Path


def render(upstreams: Sequence[int], port: int, cert: Path, key: Path, state: Path) -> str:
    servers = " ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams)
    return render_sample(
        SAMPLE,
        {
            "WL_LISTEN": f"127.0.0.1:{port}",
            "WL_SERVER_NAME": "localhost",
            "WL_CERT": str(cert),
            "WL_KEY": str(key),
            "WL_UPSTREAMS": servers,
            "WL_STATE": str(state),
        },
    )


@contextlib.asynccontextmanager
async def running_nginx(directory: Path, upstreams: Sequence[int]) -> AsyncIterator[Proxy]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = ensure_self_signed(directory / "tls", ["localhost", "127.0.0.1"])
    port = free_port()
    (directory / "windowlink.conf").write_text(render(upstreams, port, cert, key, directory))
    main = directory / "nginx.conf"
    main.write_text(
        f"""
user root;
worker_processes 1;
error_log {directory}/error.log info;
pid {directory}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    include {directory}/windowlink.conf;
}}
"""
    )
    process = await asyncio.create_subprocess_exec(
        debian_tool("nginx"),
        "-p",
        str(directory),
        "-c",
        str(main),
        "-g",
        "daemon off; master_process on;",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        async def listening() -> bool:
            if process.returncode is not None:
                log = (directory / "error.log").read_text(errors="replace")
                raise AssertionError(f"nginx exited:\n{log}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            return True

        await eventually(listening, 30, "nginx listens")
        yield Proxy(f"https://127.0.0.1:{port}", directory)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        with contextlib.suppress(OSError):
            # Shown by pytest when the test failed.
            print("--- nginx error.log\n" + (directory / "error.log").read_text(errors="replace"))
