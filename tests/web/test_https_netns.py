"""A production-like journey: ``python server.py --tls-self-signed`` on a
non-loopback address of one network namespace ("the server"), the browsers in
another ("a kiosk or an office PC"), joined by a veth pair.

This is what loopback tests cannot see: the page's real ``Origin`` is
``https://ADDR:PORT`` (socket.io once refused it with 400, taking the scheme
for http, and no expert could turn available), media must cross a real
interface (Firefox gathers no loopback candidates), and the certificate is
the generated one.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from harness.chromium import CHROMIUM, chat_from, launch_chromium, wait_remote_videos
from harness.netns import Host, HostPair, host_pair, kill_everything_in, unavailable_reason
from harness.servers import STOP_TIMEOUT, seed_demo_accounts, stop_server
from storage.demo import DEMO_PASSWORD

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
PORT = 8443
FIREFOX = "/usr/bin/firefox-esr"
START_TIMEOUT = 60.0
MEDIA_TIMEOUT = 60.0
STEP_MS = 20000

# One request from the client host, trusting exactly the generated certificate
# (so it also checks that the certificate names the address the browsers use).
HEALTH_PROBE = """
import ssl, sys, urllib.request
try:
    context = ssl.create_default_context(cafile=sys.argv[2])
    with urllib.request.urlopen(sys.argv[1], context=context, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except (OSError, ssl.SSLError) as exc:
    print(repr(exc), file=sys.stderr)
    sys.exit(1)
"""

# Keeps every RTCPeerConnection a page makes, to read which candidate pair carried
# the media (an init script: not subject to the page's Content-Security-Policy).
TRACK_PEER_CONNECTIONS = """(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || window.__testPeerConnections) return;
  const made = [];
  Object.defineProperty(window, "__testPeerConnections", { value: made });
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); made.push(this); }
  };
})();"""

SELECTED_PAIR = """async () => {
  const made = window.__testPeerConnections || [];
  const pc = made[made.length - 1];
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = stats.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  return {
    local: `${local.candidateType} ${local.protocol} ${local.address}:${local.port}`,
    remote: `${remote.candidateType} ${remote.protocol} ${remote.address}:${remote.port}`,
    localAddress: local.address,
    remoteAddress: remote.address,
  };
}"""

# What the page's last connection did, for a failure's message.
PEER_STATE = """async () => {
  const made = window.__testPeerConnections || [];
  const pc = made[made.length - 1];
  if (!pc) return { connections: 0 };
  const state = {
    connections: made.length,
    connection: pc.connectionState,
    ice: pc.iceConnectionState,
    signaling: pc.signalingState,
    streams: [],
  };
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" || s.type === "outbound-rtp") {
      state.streams.push(
        `${s.type} ${s.kind} mid=${s.mid} packets=${s.packetsReceived ?? s.packetsSent}` +
          (s.kind === "video" ? ` frames=${s.framesDecoded ?? s.framesEncoded}` : "") +
          (s.type === "inbound-rtp" ? ` plis=${s.pliCount} nacks=${s.nackCount}` : ""),
      );
    }
  });
  return state;
}"""

REMOTE_MEDIA = """() => {
  const video = document.querySelector("[data-testid=remote-video]");
  return {
    framesDecoded: Number(video?.dataset.framesDecoded || 0),
    audioPackets: Number(video?.dataset.audioPackets || 0),
    readyState: video?.readyState ?? 0,
    currentTime: video?.currentTime ?? 0,
  };
}"""


@dataclass
class HttpsServer:
    """``server.py`` running in the server namespace."""

    base: str
    host: Host
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def hosts() -> Iterator[HostPair]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with host_pair() as pair:
        yield pair


def wait_empty(host: Host, timeout: float) -> list[int]:
    """The processes still in ``host``'s namespace after at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (pids := host.pids()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


@pytest.fixture
def https_server(hosts: HostPair, tmp_path: Path) -> Iterator[HttpsServer]:
    data_dir = tmp_path / "data"
    seed_demo_accounts(data_dir)
    address = hosts.server.address
    log = tmp_path / "server.log"
    command = hosts.server.command(
        sys.executable, "server.py",
        "--host", address, "--port", str(PORT), "--tls-self-signed",
        "--extra-host", address, "--media-address", address,
        "--data-dir", str(data_dir),
    )  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = HttpsServer(f"https://{address}:{PORT}", hosts.server, process, log)
    try:
        wait_healthy(server, hosts.client, data_dir / "tls" / "cert.pem")
        yield server
    finally:
        stop_server(process)
        # A node's relay workers never outlive it.
        leftovers = wait_empty(hosts.server, STOP_TIMEOUT)
        kill_everything_in(hosts.server)
        assert not leftovers, f"processes outlived the server: {leftovers}"


def wait_healthy(server: HttpsServer, client: Host, cert: Path) -> None:
    """``/healthz`` answers over HTTPS from the client host (bounded wait)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        exited = server.process.poll()
        assert exited is None, f"server.py exited with {exited}:\n{server.log_tail()}"
        probe = subprocess.run(
            client.command(sys.executable, "-c", HEALTH_PROBE, f"{server.base}/healthz", str(cert)),
            capture_output=True,
            text=True,
            timeout=15,
        )
        if probe.returncode == 0:
            return
        assert time.monotonic() < deadline, (
            f"server not healthy over HTTPS from the client host: {probe.stderr}\n"
            f"{server.log_tail()}"
        )
        time.sleep(0.3)


def chromium_wrapper(host: Host, directory: Path) -> Path:
    """An executable that runs Debian's Chromium inside ``host``'s namespace
    (Playwright talks to it over inherited pipes, which ``ip netns exec`` keeps)."""
    wrapper = directory / "chromium-in-netns"
    argv = " ".join(host.command(CHROMIUM))
    wrapper.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
async def client_chromium(hosts: HostPair, tmp_path: Path) -> AsyncIterator[Browser]:
    """Headless Chromium on the client host, media over real interfaces only."""
    wrapper = chromium_wrapper(hosts.client, tmp_path)
    async with async_playwright() as playwright:
        browser: Browser = await launch_chromium(
            playwright, loopback_media=False, executable=str(wrapper)
        )
        try:
            yield browser
        finally:
            await browser.close()


async def until(page: Page, function: str, what: str, timeout: float = 30.0) -> Any:
    """Poll ``function`` in the page until it returns something truthy (bounded).
    ``page.evaluate`` rather than ``wait_for_function``: the pages' CSP is kept."""
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(function)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {value!r})")
        await asyncio.sleep(0.25)


async def open_logged_in(browser: Browser, server: HttpsServer, page_name: str, user: str) -> Page:
    context = await browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(20000)
    await context.add_init_script(TRACK_PEER_CONNECTIONS)
    page = await context.new_page()
    await page.goto(f"{server.base}/{page_name}")
    await page.wait_for_selector("body[data-ready]")
    await page.get_by_test_id("login-username").fill(user)
    await page.get_by_test_id("login-password").fill(DEMO_PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.locator("#app-view")).to_be_visible(timeout=STEP_MS)
    return page


async def expert_goes_available(
    browser: Browser, server: HttpsServer, user: str = "expert_market"
) -> Page:
    """The expert's desk, available. The button's text and ``aria-pressed`` come
    from the server's answers over socket.io (``get_state``, then ``set_presence``):
    when socket.io refuses the page's HTTPS origin they never arrive."""
    expert = await open_logged_in(browser, server, "expert", user)
    availability = expert.get_by_test_id("availability")
    await expect(
        availability, "socket.io never answered the expert page (origin refused?)"
    ).not_to_be_empty(timeout=STEP_MS)
    await availability.click()
    await expect(
        availability, "the server did not set the expert's presence to available"
    ).to_have_attribute("aria-pressed", "true", timeout=STEP_MS)
    await expect(expert.locator("#connection")).to_be_hidden(timeout=STEP_MS)
    return expert


async def kiosk_requests_market(kiosk: Page) -> None:
    await kiosk.get_by_test_id("department-market").click()
    proceed = kiosk.get_by_test_id("device-check-continue")
    position = kiosk.get_by_test_id("queue-position")
    # Tiles read before the expert's presence arrived: the kiosk asks first.
    asked = kiosk.locator("#confirm-dialog[open] [data-testid=confirm-yes]")
    await expect(proceed.or_(position).or_(asked).first).to_be_visible(timeout=10000)
    if await asked.is_visible():
        await asked.click()
        await expect(proceed.or_(position).first).to_be_visible(timeout=10000)
    if await proceed.is_visible():
        await expect(kiosk.get_by_test_id("device-message")).to_have_attribute(
            "data-state", "ok", timeout=STEP_MS
        )
        await proceed.click()
    await expect(position).not_to_be_empty(timeout=STEP_MS)


async def media_flows_into(page: Page, server: HttpsServer, client: Host) -> dict[str, Any]:
    """The remote video decodes and plays, carried between the client's and the
    server's addresses (the veth pair, no loopback)."""
    try:
        media: dict[str, Any] = await until(
            page,
            f"() => {{ const m = ({REMOTE_MEDIA})(); return m.framesDecoded > 0"
            " && m.audioPackets > 0 && m.readyState >= 2 && m.currentTime > 0 ? m : null; }",
            f"remote video and audio in the {page.url.rsplit('/', 1)[-1]} page",
            timeout=MEDIA_TIMEOUT,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await page.evaluate(PEER_STATE)}") from None
    pair: dict[str, Any] = await until(page, SELECTED_PAIR, "a selected candidate pair")
    assert pair["remoteAddress"] == server.host.address, pair
    assert pair["localAddress"] == client.address, pair
    return {**media, **pair}


async def second_expert_joins(inviter: Page, invited: Page, department: str) -> None:
    """``inviter`` asks ``department`` in through the chooser; the invitation rings
    on ``invited``'s desk (available), which accepts it."""
    await inviter.get_by_test_id("invite-department").click()
    await inviter.get_by_test_id("invite-note").fill("请协助核实住房补贴条件")
    await inviter.get_by_test_id(f"invite-{department}").click()
    offer = invited.get_by_test_id("offer-panel")
    await expect(offer).to_have_attribute("data-kind", "invite", timeout=STEP_MS)
    await invited.get_by_test_id("accept-call").click()


async def expert_leaves_the_call(expert: Page) -> None:
    """A staff member who is not the last expert leaves; the call goes on."""
    await expert.get_by_test_id("leave-call").click()
    outcome = expert.get_by_test_id("outcome")
    asked = expert.locator("#confirm-dialog[open] [data-testid=confirm-yes]")
    await expect(outcome.or_(asked).first).to_be_visible(timeout=STEP_MS)
    if await asked.is_visible():
        await asked.click()
    await expect(outcome).to_be_visible(timeout=STEP_MS)


def whose(videos: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Whose each remote video is (role, department), in a stable order."""
    return sorted((v["participant"], v["department"] or "") for v in videos)


async def expert_ends_the_call(expert: Page) -> None:
    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await expect(expert.get_by_test_id("outcome")).to_be_visible(timeout=STEP_MS)


async def test_chromium_kiosk_and_expert_over_https_on_another_host(
    hosts: HostPair, https_server: HttpsServer, client_chromium: Browser
) -> None:
    server = https_server
    expert = await expert_goes_available(client_chromium, server)
    kiosk = await open_logged_in(client_chromium, server, "kiosk", "kiosk01")
    await kiosk_requests_market(kiosk)

    await expect(expert.get_by_test_id("accept-call")).to_be_visible(timeout=STEP_MS)
    await expert.get_by_test_id("accept-call").click()
    kiosk_media = await media_flows_into(kiosk, server, hosts.client)
    expert_media = await media_flows_into(expert, server, hosts.client)
    print(f"kiosk: {kiosk_media}\nexpert: {expert_media}")

    await chat_from(kiosk, expert, "请问需要带原件吗")
    await chat_from(expert, kiosk, "需要带身份证原件")

    await expert_ends_the_call(expert)
    await kiosk.get_by_test_id("rating-very-satisfied").click()
    # The privacy wipe: the start screen again, the chat gone.
    await expect(kiosk.get_by_test_id("department-market")).to_be_visible(timeout=15000)
    await expect(kiosk.get_by_test_id("chat-list")).to_be_empty(timeout=STEP_MS)


@dataclass
class FirefoxKiosk:
    """``tests/firefox_kiosk.py`` running in the client namespace; its JSON lines."""

    process: asyncio.subprocess.Process
    stderr: Path
    steps: list[dict[str, Any]]

    async def step(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        """The next reported step, which must be ``name``."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"Firefox kiosk: no {name!r} within {timeout:g} s\n{self.diagnosis()}"
            ) from None
        if not line:
            raise AssertionError(f"Firefox kiosk exited before {name!r}: {self.diagnosis()}")
        report: dict[str, Any] = json.loads(line)
        self.steps.append(report)
        if report["step"] != name:
            raise AssertionError(f"Firefox kiosk: {report} instead of {name!r}\n{self.diagnosis()}")
        return report

    def diagnosis(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:] if self.stderr.exists() else ""


FirefoxKioskFactory = Callable[[HttpsServer, str, str], Awaitable[FirefoxKiosk]]


@pytest.fixture
async def firefox_kiosk_factory(
    hosts: HostPair, tmp_path: Path
) -> AsyncIterator[FirefoxKioskFactory]:
    """Start the Firefox kiosk driver; it is stopped and its profile removed after."""
    if not shutil.which(FIREFOX):
        pytest.fail(f"{FIREFOX} is missing: apt-get install firefox-esr (.ci/run does)")
    started: list[tuple[FirefoxKiosk, Path]] = []

    async def start(server: HttpsServer, kiosk_line: str, expert_line: str) -> FirefoxKiosk:
        workdir = Path(tempfile.mkdtemp(prefix="wl-firefox-"))
        stderr = tmp_path / "firefox-kiosk.stderr"
        with stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                *hosts.client.command(
                    sys.executable, "-m", "tests.firefox_kiosk", "--base", server.base,
                    "--workdir", str(workdir),
                    "--kiosk-line", kiosk_line, "--expert-line", expert_line,
                ),
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
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
                    break
                except TimeoutError:
                    continue
        # A Firefox its driver could not stop (Chromium, also there, is Playwright's).
        kill_everything_in(hosts.client, matching="firefox")
        if process.stdout is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(process.stdout.read(), STOP_TIMEOUT)
        shutil.rmtree(workdir, ignore_errors=True)
        assert not workdir.exists()


async def test_firefox_kiosk_and_chromium_expert_over_https_on_another_host(
    hosts: HostPair,
    https_server: HttpsServer,
    client_chromium: Browser,
    firefox_kiosk_factory: FirefoxKioskFactory,
) -> None:
    """Firefox ESR as the kiosk, the experts in Chromium: a call of two, then of
    three (the market expert invites housing, who leaves again), chat, end, wipe."""
    server = https_server
    expert = await expert_goes_available(client_chromium, server)
    kiosk_line, expert_line = "请问需要带原件吗", "需要带身份证原件"
    firefox = await firefox_kiosk_factory(server, kiosk_line, expert_line)
    started = await firefox.step("started")
    await firefox.step("logged_in")
    await firefox.step("waiting")

    await expect(expert.get_by_test_id("accept-call")).to_be_visible(timeout=STEP_MS)
    await expert.get_by_test_id("accept-call").click()
    kiosk_media = await firefox.step("media")
    kiosk_playing = await firefox.step("playing")
    expert_media = await media_flows_into(expert, server, hosts.client)
    print(f"firefox: {started}\nkiosk: {kiosk_media} {kiosk_playing}\nexpert: {expert_media}")

    # A second department joins (issue 21): the kiosk in Firefox and each expert
    # see and hear the two others, over the veth pair too.
    housing = await expert_goes_available(client_chromium, server, "expert_housing")
    await second_expert_joins(expert, housing, "housing")
    wait_ms = MEDIA_TIMEOUT * 1000
    market_sees = await wait_remote_videos(expert, 2, timeout=wait_ms)
    assert whose(market_sees) == [("expert", "housing"), ("kiosk", "")], market_sees
    housing_sees = await wait_remote_videos(housing, 2, timeout=wait_ms)
    assert whose(housing_sees) == [("expert", "market"), ("kiosk", "")], housing_sees
    three = await firefox.step("three", timeout=180.0)
    assert whose(three["videos"]) == [("expert", "housing"), ("expert", "market")], three
    housing_media = await media_flows_into(housing, server, hosts.client)
    print(f"kiosk sees {three['videos']}\nhousing: {housing_media}")

    # The second expert leaves; the kiosk and the first expert go on as two.
    await expert_leaves_the_call(housing)
    two_again = await firefox.step("two_again")
    assert whose(two_again["videos"]) == [("expert", "market")], two_again
    assert whose(await wait_remote_videos(expert, 1, timeout=wait_ms)) == [("kiosk", "")]

    await firefox.step("chat_sent")
    await expect(expert.get_by_test_id("chat-list")).to_contain_text(kiosk_line, timeout=STEP_MS)
    await expert.get_by_test_id("chat-input").fill(expert_line)
    await expert.get_by_test_id("chat-send").click()
    await firefox.step("chat_received")

    await expert_ends_the_call(expert)
    await firefox.step("ended")
    await firefox.step("wiped")
    assert await asyncio.wait_for(firefox.process.wait(), STOP_TIMEOUT) == 0
