"""Debian's Firefox ESR as a kiosk, driven over Marionette, for the browser tests.

Marionette listens on 127.0.0.1 of the network namespace Firefox runs in, so
this driver runs there too, as its own process:

    ip netns exec NS python -m tests.firefox_kiosk --base https://ADDR:PORT --workdir DIR \\
        --kiosk-line TEXT --expert-line TEXT

It walks the kiosk's side of one consultation and reports each step as one JSON
object per line on stdout (``{"step": ...}``); the test drives the experts and
waits for these steps. After media flows with the first expert, the test brings
in a second staff member (an invitation): the kiosk waits for two remote videos
(``three``), then for one again once the second has left (``two_again``).

It exits 0 after the privacy wipe, 1 after reporting ``{"step": "error",
"message": ...}``. Firefox's profile and log live in ``--workdir``, which the
caller removes; Firefox is stopped on every exit.
"""

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FIREFOX = "/usr/bin/firefox-esr"
PREFS: dict[str, object] = {
    # A fake camera and microphone, granted without a prompt.
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    # Not "media.navigator.permission.fake": with fake devices Firefox then hides
    # its host candidates behind mDNS names (<uuid>.local), which the relay cannot
    # resolve across networks, as any browser does that is not capturing. The
    # relay must connect anyway, from the browser's own connectivity checks
    # (media/aiortc_private.accept_hidden_candidates).
}
STEP_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
# From the first expert's picture to the second's: the test opens another desk,
# makes it available, invites, and the invitation is accepted meanwhile.
THREE_TIMEOUT = 120.0

VISIBLE = "const el = document.querySelector(arguments[0]); return !!el && el.checkVisibility();"
ATTRIBUTE = (
    "const el = document.querySelector(arguments[0]);"
    " return el ? el.getAttribute(arguments[1]) : null;"
)
REMOTE_MEDIA = """
const video = document.querySelector('[data-testid=remote-video]');
if (!video) return null;
return {
  framesDecoded: Number(video.getAttribute('data-frames-decoded') || 0),
  audioPackets: Number(video.getAttribute('data-audio-packets') || 0),
  readyState: video.readyState,
  currentTime: video.currentTime,
  videoWidth: video.videoWidth,
};
"""
REMOTE_VIDEOS = """
return [...document.querySelectorAll('[data-testid=remote-video]')].map((v) => ({
  participant: v.getAttribute('data-participant'),
  department: v.getAttribute('data-department'),
  frames: Number(v.getAttribute('data-frames-decoded') || 0),
  audio: Number(v.getAttribute('data-audio-packets') || 0),
  visible: v.checkVisibility(),
}));
"""
# Every remote-video once there are exactly arguments[0], each visible with more
# frames decoded than arguments[1][its participant and department] (0 if absent)
# and some audio; null until then.
VIDEOS_FLOWING = (
    "const v = (() => {" + REMOTE_VIDEOS + "})();"
    " const seen = arguments[1];"
    " return v.length === arguments[0] && v.every((x) => x.visible && x.audio > 0"
    " && x.frames > (seen[`${x.participant}/${x.department ?? ''}`] ?? 0)) ? v : null;"
)
TEXT_OF = "const el = document.querySelector(arguments[0]); return el ? el.textContent : '';"


def report(step: str, **details: object) -> None:
    print(json.dumps({"step": step, **details}, ensure_ascii=False), flush=True)


def testid(name: str) -> str:
    return f'[data-testid="{name}"]'


class Kiosk:
    """The kiosk page in one Firefox, seen through Marionette."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def script(self, source: str, *args: object) -> Any:
        return self.client.execute_script(source, script_args=list(args))

    def videos_flowing(self, what: str, count: int, timeout: float) -> list[dict[str, Any]]:
        """Until exactly ``count`` remote videos, each decoding with audio; then
        until each has decoded more frames again (a moving picture, not one frame)."""
        try:
            first: list[dict[str, Any]] = self.until(
                what, VIDEOS_FLOWING, count, {}, timeout=timeout
            )
            seen = {f"{v['participant']}/{v['department'] or ''}": v["frames"] + 10 for v in first}
            videos: list[dict[str, Any]] = self.until(
                f"{what}, frames still coming", VIDEOS_FLOWING, count, seen
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; the remote videos: {self.script(REMOTE_VIDEOS)}") from None
        return videos

    def until(self, what: str, source: str, *args: object, timeout: float = STEP_TIMEOUT) -> Any:
        """Poll ``source`` until it returns something truthy (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.script(source, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:g} s (last: {value!r})")
            time.sleep(0.25)

    def visible(self, selector: str, timeout: float = STEP_TIMEOUT) -> None:
        self.until(f"{selector} visible", VISIBLE, selector, timeout=timeout)

    def is_visible(self, selector: str) -> bool:
        return bool(self.script(VISIBLE, selector))

    def click(self, selector: str) -> None:
        from marionette_driver.by import By  # type: ignore[import-untyped]

        self.visible(selector)
        self.client.find_element(By.CSS_SELECTOR, selector).click()

    def type(self, selector: str, text: str) -> None:
        from marionette_driver.by import By

        self.visible(selector)
        element = self.client.find_element(By.CSS_SELECTOR, selector)
        element.clear()
        element.send_keys(text)


def journey(
    client: Any, base: str, kiosk_line: str, expert_line: str, expect_told: bool = False
) -> None:
    page = Kiosk(client)
    client.navigate(f"{base}/kiosk")
    page.until("page ready", "return document.body.hasAttribute('data-ready');")
    page.type(testid("login-username"), "kiosk01")
    page.type(testid("login-password"), "demo1234")
    page.click(testid("login-submit"))
    page.visible("#app-view")
    report("logged_in")

    page.click(testid("department-market"))
    # With nobody of the department online (its tile read before the expert's
    # presence arrived) the kiosk first asks; the citizen waits anyway.
    asked = f"#confirm-dialog[open] {testid('confirm-yes')}"
    shown = page.until(
        "device check, queue or question",
        "return [arguments[0], arguments[1], arguments[2]].find("
        "(s) => document.querySelector(s)?.checkVisibility());",
        testid("device-check-continue"),
        testid("queue-position"),
        asked,
        timeout=10.0,
    )
    if shown == asked:
        page.click(asked)
        page.until(
            "device check or queue",
            "return [arguments[0], arguments[1]].some("
            "(s) => document.querySelector(s)?.checkVisibility());",
            testid("device-check-continue"),
            testid("queue-position"),
            timeout=10.0,
        )
    device_state = None
    if page.is_visible(testid("device-check-continue")):
        device_state = page.until(
            "device check finished",
            "const s = document.querySelector(arguments[0])?.getAttribute('data-state');"
            " return s && s !== 'checking' ? s : null;",
            testid("device-message"),
        )
        page.click(testid("device-check-continue"))
    page.until("queue position shown", TEXT_OF, testid("queue-position"))
    report("waiting", device=device_state)

    if expect_told:
        # Firefox on the server's own machine: no media path (it pairs no loopback
        # candidates); the kiosk must say so rather than show a black picture.
        told = page.until(
            "the kiosk says why", TEXT_OF, testid("media-notice"), timeout=CALL_TIMEOUT
        )
        report("told", text=told)
        page.click(testid("end-call"))
        page.click(testid("confirm-yes"))
        page.visible(testid("rating-very-satisfied"), timeout=CALL_TIMEOUT)
        report("ended")
        return

    media = page.until(
        "remote video and audio decoded",
        "const m = (() => {" + REMOTE_MEDIA + "})();"
        " return m && m.framesDecoded > 0 && m.audioPackets > 0 ? m : null;",
        timeout=CALL_TIMEOUT,
    )
    report("media", **media)
    playing = page.until(
        "remote video playing",
        "const m = (() => {" + REMOTE_MEDIA + "})();"
        " return m && m.readyState >= 2 && m.currentTime > 0 ? m : null;",
    )
    report("playing", **playing)

    # A second staff member joins (the test has the expert invite one): a picture
    # and sound from each; then they leave and the first expert's stays.
    three = page.videos_flowing("two remote videos", 2, timeout=THREE_TIMEOUT)
    report("three", videos=three)
    two = page.videos_flowing("one remote video again", 1, timeout=CALL_TIMEOUT)
    report("two_again", videos=two)

    page.type(testid("chat-input"), kiosk_line)
    page.click(testid("chat-send"))
    report("chat_sent")
    page.until(
        "the expert's chat line",
        "return document.querySelector('#chat-list')?.textContent.includes(arguments[0]);",
        expert_line,
    )
    report("chat_received")

    page.visible(testid("rating-very-satisfied"), timeout=CALL_TIMEOUT)
    report("ended")
    page.click(testid("rating-very-satisfied"))
    page.until(
        "start screen after the wipe",
        "return !document.querySelector('#chat-list')?.textContent.trim()"
        " && !!document.querySelector(arguments[0])?.checkVisibility();",
        testid("department-market"),
    )
    report("wiped")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True, help="https://ADDR:PORT of the server")
    parser.add_argument("--workdir", required=True, type=Path, help="profile and log go here")
    parser.add_argument("--kiosk-line", required=True)
    parser.add_argument("--expert-line", required=True)
    parser.add_argument(
        "--expect-told",
        action="store_true",
        help="a server on this machine (loopback): expect no picture and the kiosk "
        "saying why (step 'told'), then leave the call",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    from marionette_driver.marionette import Marionette  # type: ignore[import-untyped]

    gecko_log = args.workdir / "gecko.log"
    client: Any = None
    try:
        client = Marionette(
            bin=FIREFOX,
            headless=True,
            prefs=PREFS,
            workspace=str(args.workdir),
            gecko_log=str(gecko_log),
            startup_timeout=60,
        )
        capabilities = client.start_session({"acceptInsecureCerts": True})
        report(
            "started",
            browser=capabilities.get("browserName"),
            version=capabilities.get("browserVersion"),
        )
        client.timeout.page_load = STEP_TIMEOUT
        journey(client, args.base.rstrip("/"), args.kiosk_line, args.expert_line, args.expect_told)
    except Exception as exc:
        report("error", message=f"{type(exc).__name__}: {exc}")
        if gecko_log.exists():
            print(gecko_log.read_text(errors="replace")[-4000:], file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
