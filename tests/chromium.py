"""The one browser set-up: Debian's Chromium (never a downloaded one), headless,
fake camera and microphone, media allowed on loopback. Used by the browser
tests, bench/pages.py and docs/screenshots/take.py alike."""

from typing import Any

CHROMIUM = "/usr/bin/chromium"
FAKE_PERMISSION_UI = "--use-fake-ui-for-media-stream"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    FAKE_PERMISSION_UI,
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def launch_chromium(playwright: Any, *, grant_devices: bool = True) -> Any:
    """A headless Chromium; without ``grant_devices`` nobody answers the camera
    and microphone prompt, so pages are refused them."""
    args = CHROMIUM_ARGS if grant_devices else [a for a in CHROMIUM_ARGS if a != FAKE_PERMISSION_UI]
    return await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
