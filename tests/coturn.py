"""coturn (Debian's ``turnserver``, installed by .ci/run) on loopback, configured
with the repo's sample (deploy/coturn/turnserver.conf) rendered as docs/DEPLOY.md
says; and TURN REST credentials for it."""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from harness.debian_tools import debian_tool
from harness.ports import free_port
from tests.deploy_samples import DEPLOY, render_sample

SAMPLE = DEPLOY / "coturn" / "turnserver.conf"


def credentials(secret: str, expiry: float, user: str = "test") -> tuple[str, str]:
    """A user name expiring at ``expiry`` and its password under ``secret``."""
    username = f"{int(expiry)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def running_coturn(
    directory: Path, secret: str, relay_peers: str = "127.0.0.1"
) -> AsyncIterator[int]:
    """coturn listening on 127.0.0.1 (its port is yielded), relaying only to
    ``relay_peers`` (WL_RELAY_PEERS); stopped, and its log printed, after."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    low = 49152 + (port % 400) * 40
    values = {
        "WL_TURN_LISTEN_IP": "127.0.0.1",
        "WL_TURN_PORT": str(port),
        "WL_TURN_RELAY_IP": "127.0.0.1",
        "WL_TURN_MIN_PORT": str(low),
        "WL_TURN_MAX_PORT": str(low + 39),
        "WL_TURN_REALM": "windowlink.test",
        "WL_TURN_SECRET": secret,
        "WL_RELAY_PEERS": relay_peers,
        "WL_TURN_STATE": str(directory),
    }
    rendered = await asyncio.to_thread(render_sample, SAMPLE, values)
    config = directory / "turnserver.conf"
    config.write_text(rendered)
    # The one addition for tests: the relay listens on loopback here, which coturn
    # refuses as a peer unless told otherwise (the sample's denied ranges still apply).
    process = await asyncio.create_subprocess_exec(
        debian_tool("turnserver"),
        "-c",
        str(config),
        "--allow-loopback-peers",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Its pid file is written before it listens: wait for its TCP listener too.
        deadline = time.monotonic() + 20
        while not (directory / "turnserver.pid").exists() or not await _listening(port):
            assert process.returncode is None, "coturn exited"
            assert time.monotonic() < deadline, "coturn did not start"
            await asyncio.sleep(0.1)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        with contextlib.suppress(OSError):
            print((directory / "turnserver.log").read_text(errors="replace")[-4000:])
