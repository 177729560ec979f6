"""Firefox ESR as a kiosk on the server's own machine, over loopback (issue 20).

Across machines over HTTPS, where a kiosk really is, Firefox gets the whole call
(tests/web/test_https_netns.py). On loopback it pairs no candidates with the
relay there, so no picture can come: the kiosk says so, and why, instead of a
black picture and "in a call"."""

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from harness.chromium import go_available, open_logged_in
from tests.conftest import RunningServer, ServerFactory
from tests.web.test_https_netns import FIREFOX, FirefoxKiosk

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 15.0

FirefoxFactory = Callable[[RunningServer, str, str], Awaitable[FirefoxKiosk]]


@pytest.fixture
async def firefox_on_loopback(tmp_path: Path) -> AsyncIterator[FirefoxFactory]:
    """The Firefox kiosk driver on this machine; stopped and its profile removed after."""
    if not shutil.which(FIREFOX):
        pytest.fail(f"{FIREFOX} is missing: apt-get install firefox-esr (.ci/run does)")
    started: list[tuple[FirefoxKiosk, Path]] = []

    async def start(server: RunningServer, kiosk_line: str, expert_line: str) -> FirefoxKiosk:
        workdir = Path(tempfile.mkdtemp(prefix="wl-firefox-"))
        stderr = tmp_path / "firefox-kiosk.stderr"
        with stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.firefox_kiosk", "--base", server.url,
                "--workdir", str(workdir),
                "--kiosk-line", kiosk_line, "--expert-line", expert_line, "--expect-told",
                cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=err, start_new_session=True,
            )  # fmt: skip
        kiosk = FirefoxKiosk(process, stderr, [])
        started.append((kiosk, workdir))
        return kiosk

    yield start
    for kiosk, workdir in started:
        process = kiosk.process
        if process.returncode is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with suppress(ProcessLookupError):
                    # The driver's own session: Firefox goes with it.
                    os.killpg(process.pid, sig)
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
                    break
                except TimeoutError:
                    continue
        if process.stdout is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(process.stdout.read(), STOP_TIMEOUT)
        shutil.rmtree(workdir, ignore_errors=True)
        assert not workdir.exists()


async def test_a_firefox_kiosk_on_loopback_is_told_why_there_is_no_picture(
    browser: Any, start_server: ServerFactory, firefox_on_loopback: FirefoxFactory
) -> None:
    server = await start_server(ring_timeout=60.0)
    expert = await open_logged_in(browser, server, "expert", "expert_market")
    await go_available(expert)
    firefox = await firefox_on_loopback(server, "-", "-")
    await firefox.step("started")
    await firefox.step("logged_in")
    await firefox.step("waiting")
    await expert.get_by_test_id("accept-call").click()
    told = await firefox.step("told")
    assert "Firefox" in told["text"] and "HTTPS" in told["text"] and "127.0.0.1" in told["text"]
    await firefox.step("ended")
    assert await asyncio.wait_for(firefox.process.wait(), STOP_TIMEOUT) == 0
