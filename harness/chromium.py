"""The one browser set-up: Debian's Chromium (never a downloaded one), headless,
fake camera and microphone, media allowed on loopback. Used by the browser
tests, bench/pages.py and docs/screenshots/take.py alike."""

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from harness.debian_tools import debian_tool
from storage.demo import DEMO_PASSWORD as DEMO_PASSWORD  # the tests and benches log in with it

CHROMIUM = "/usr/bin/chromium"
FRAMES_DECODED = (
    "Number(document.querySelector('[data-testid=remote-video]').dataset.framesDecoded || 0)"
)
AUDIO_PACKETS = (
    "Number(document.querySelector('[data-testid=remote-video]').dataset.audioPackets || 0)"
)
REMOTE_VIDEOS = """[...document.querySelectorAll('[data-testid=remote-video]')].map((v) => ({
  participant: v.dataset.participant ?? null,
  department: v.dataset.department ?? null,
  frames: Number(v.dataset.framesDecoded || 0),
  audio: Number(v.dataset.audioPackets || 0),
  visible: v.checkVisibility(),
}))"""
"""Every ``remote-video`` of a page (one per other participant in a call of more
than two): whose, and what its slot received."""
SHARED_SCREEN_FRAMES = (
    "Number(document.querySelector('[data-testid=shared-screen]')?.dataset.framesDecoded || 0)"
)
FAKE_PERMISSION_UI = "--use-fake-ui-for-media-stream"
LOOPBACK_MEDIA = "--allow-loopback-in-peer-connection"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    FAKE_PERMISSION_UI,
    LOOPBACK_MEDIA,
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def launch_chromium(
    playwright: Any,
    *,
    grant_devices: bool = True,
    loopback_media: bool = True,
    executable: str = CHROMIUM,
) -> Any:
    """A headless Chromium; without ``grant_devices`` nobody answers the camera
    and microphone prompt, so pages are refused them. Without ``loopback_media``
    media goes over real interfaces only, as on a kiosk; ``executable`` may be a
    wrapper that runs Debian's Chromium somewhere else (another network namespace)."""
    left_out: set[str] = set()
    if not grant_devices:
        left_out.add(FAKE_PERMISSION_UI)
    if not loopback_media:
        left_out.add(LOOPBACK_MEDIA)
    args = [a for a in CHROMIUM_ARGS if a not in left_out]
    if executable == CHROMIUM:
        debian_tool("chromium")
    return await playwright.chromium.launch(executable_path=executable, headless=True, args=args)


async def wait_for_js(page: Any, expression: str, timeout: float = 15000) -> None:
    """Until ``expression`` is true in the page, polled through ``page.evaluate``.

    Playwright's ``wait_for_function`` evaluates its string inside the page, which
    the pages' Content-Security-Policy (no 'unsafe-eval') forbids; ``evaluate``
    goes through the debugging protocol, which the policy does not restrict. A
    navigation in between (the kiosk's wipe reloads it) is waited out."""
    import asyncio

    from playwright.async_api import Error as PlaywrightError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout / 1000
    while True:
        try:
            if await page.evaluate(expression):
                return
        except PlaywrightError as exc:
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
        if loop.time() > deadline:
            raise TimeoutError(f"not true within {timeout:.0f} ms: {expression}")
        await asyncio.sleep(0.1)


def keeping_connections(*, relay_only: bool = False) -> str:
    """An init script that keeps every RTCPeerConnection a page makes in
    ``window.__pcs`` (to read its stats), forced to relay-only ICE if asked."""
    config = '{ ...(config || {}), iceTransportPolicy: "relay" }' if relay_only else "config"
    return f"""
(() => {{
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (config) {{
    const pc = new Native({config});
    window.__pcs.push(pc);
    return pc;
  }};
  window.RTCPeerConnection.prototype = Native.prototype;
}})();
"""


KEEP_CONNECTIONS = keeping_connections()


class Served(Protocol):
    """Anything that serves the pages at ``url`` (a test server, a proxy, a node)."""

    @property
    def url(self) -> str: ...


async def open_logged_in(
    browser: Any,
    server: Served | str,
    page_name: str,
    username: str,
    password: str = DEMO_PASSWORD,
    *,
    init_script: str | None = None,
    timeout_ms: float = 15000,
    prepare: Callable[[Any], Awaitable[None]] | None = None,
    wait_for_app: bool = True,
    **context_options: Any,
) -> Any:
    """A page of a new browser context (``server``: what serves the pages, or their
    base URL), logged in through the page's own form; ``init_script`` runs in it
    before any of the page's own, ``prepare(page)`` before it opens (a request
    route, say). Returns once the page shows its app (``wait_for_app``) or once
    the login is sent."""
    context = await browser.new_context(**context_options)
    context.set_default_timeout(timeout_ms)
    page = await context.new_page()
    if init_script is not None:
        await page.add_init_script(init_script)
    if prepare is not None:
        await prepare(page)
    base = server if isinstance(server, str) else server.url
    await page.goto(f"{base}/{page_name}")
    await page.wait_for_selector("body[data-ready]")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()
    if wait_for_app:
        await page.wait_for_selector("#app-view:not([hidden])")
    return page


async def chat_from(sender: Any, receiver: Any, line: str, timeout_ms: float = 20000) -> None:
    """``sender`` types ``line`` into the chat; it appears in ``receiver``'s list."""
    from playwright.async_api import expect

    await sender.get_by_test_id("chat-input").fill(line)
    await sender.get_by_test_id("chat-send").click()
    await expect(receiver.get_by_test_id("chat-list")).to_contain_text(line, timeout=timeout_ms)


async def go_available(expert: Any) -> None:
    await expert.wait_for_selector("[data-testid=availability]:not(:empty)")
    await expert.get_by_test_id("availability").click()
    await expert.wait_for_selector("[data-testid=availability][aria-pressed=true]")


async def choose_department(kiosk: Any, department: str) -> None:
    """Tap a department's tile. With nobody of it online the kiosk first says so and
    asks (``confirm-yes``: wait anyway), which the citizen here always accepts."""
    await kiosk.get_by_test_id(f"department-{department}").click()
    asked = kiosk.locator("#confirm-dialog[open]")
    await asked.or_(kiosk.locator("#device-screen:not([hidden])")).first.wait_for()
    if await asked.count():
        await asked.get_by_test_id("confirm-yes").click()


async def request_from_kiosk(kiosk: Any, department: str) -> None:
    await choose_department(kiosk, department)
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await kiosk.get_by_test_id("device-check-continue").click()


async def wait_remote_videos(
    page: Any, count: int, *, more_than: int = 0, timeout: float = 30000
) -> list[dict[str, Any]]:
    """Until ``page`` shows exactly ``count`` remote videos, each visible with more
    than ``more_than`` frames decoded and some audio; their figures (REMOTE_VIDEOS)."""
    condition = (
        f"(() => {{ const v = {REMOTE_VIDEOS}; return v.length === {count}"
        f" && v.every((x) => x.visible && x.frames > {more_than} && x.audio > 0); }})()"
    )
    try:
        await wait_for_js(page, condition, timeout=timeout)
    except TimeoutError as exc:
        # What the page shows instead: which tile is missing, frozen or silent.
        raise TimeoutError(f"{exc}; the page shows {await page.evaluate(REMOTE_VIDEOS)}") from None
    videos: list[dict[str, Any]] = await page.evaluate(REMOTE_VIDEOS)
    return videos


async def wait_media_both_ways(*pages: Any, more_than: int = 0) -> None:
    for page in pages:
        await wait_for_js(
            page, f"{FRAMES_DECODED} > {more_than} && {AUDIO_PACKETS} > 0", timeout=30000
        )
