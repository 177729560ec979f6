"""A narrow downlink on the expert's side slows the kiosk's camera through the
relay: Chromium kiosk and expert each in a network namespace of their own, the
server in a third, the expert's downlink limited to 300 kbit/s by tbf (the
set-up of bench/congestion.py, which measures how well; here only that the
relay measured the expert's link from their transport feedback and told the
kiosk's camera, and the call still decodes)."""

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from bench.congestion import (
    Hosts,
    four_namespaces,
    relay_call,
    server_in,
    shaped,
    wrapper,
)
from harness.chromium import FRAMES_DECODED, launch_chromium, wait_for_js
from harness.debian_tools import debian_tool
from harness.netns import unavailable_reason

pytestmark = pytest.mark.browser

TOKEN = secrets.token_hex(16)
LIMITS = "windowlink_relay_downlink_limits_total"


def downlink_limits(hosts: Hosts, base: str) -> float:
    """The relay's count of limits sent to cameras, read from /metrics as a scraper
    on the expert's host would (the test process has no address in these
    namespaces: it asks curl to run there)."""
    done = subprocess.run(
        hosts.expert.command(
            "curl", "-sk", "-H", f"Authorization: Bearer {TOKEN}", f"{base}/metrics"
        ),
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return sum(
        float(line.split()[-1]) for line in done.stdout.splitlines() if line.startswith(LIMITS)
    )


@pytest.fixture
async def congested(tmp_path: Path) -> AsyncIterator[tuple[Hosts, str, list[Any]]]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    debian_tool("ethtool")
    with (
        four_namespaces() as hosts,
        server_in(hosts, "--metrics-token", TOKEN) as base,
        shaped(hosts, {"down_kbit": 300}),
    ):
        async with async_playwright() as playwright:
            browsers = [
                await launch_chromium(
                    playwright, loopback_media=False, executable=wrapper(host, tmp_path)
                )
                for host in (hosts.kiosk, hosts.expert)
            ]
            try:
                yield hosts, base, browsers
            finally:
                for browser in browsers:
                    await browser.close()


async def test_a_narrow_expert_downlink_limits_the_kiosk_camera_through_the_relay(
    congested: tuple[Hosts, str, list[Any]],
) -> None:
    hosts, base, (kiosk_browser, expert_browser) = congested
    kiosk, expert = await relay_call(kiosk_browser, expert_browser, base)
    await wait_for_js(expert, f"{FRAMES_DECODED} > 30", timeout=60000)
    limits = 0.0
    for _ in range(60):
        limits = await asyncio.to_thread(downlink_limits, hosts, base)
        if limits > 0:
            break
        await asyncio.sleep(1)
    assert limits > 0
    before = await expert.evaluate(FRAMES_DECODED)
    await wait_for_js(expert, f"{FRAMES_DECODED} > {before + 30}", timeout=60000)
    await wait_for_js(kiosk, f"{FRAMES_DECODED} > 30", timeout=60000)
