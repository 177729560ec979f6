"""Screenshots of each page in its main states, for the README.

    python docs/screenshots/take.py [--out docs/screenshots] [--url URL]

Each picture is one screen as it really is, nothing scrolled: the kiosk on a
portrait standing terminal (1080 x 1920; its call also on a landscape one,
1920 x 1080), the expert's and the clerk's office laptop (1366 x 768; the
expert's call also at 1920 x 1080), the admin at 1920 x 1080.

Starts its own server (demo data in a temporary directory, media on loopback)
unless --url is given, and drives Debian's Chromium with fake camera and
microphone, the same set-up as the browser tests. Not part of the test run:
the pictures are committed, so that they show what a release looks like.
Any error printed by a page's script stops the run.
"""

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.measure import wait_for_http  # noqa: E402
from harness.chromium import choose_department, launch_chromium, wait_for_js  # noqa: E402
from harness.ports import free_port  # noqa: E402

KIOSK = {"width": 1080, "height": 1920}
KIOSK_LANDSCAPE = {"width": 1920, "height": 1080}
OFFICE = {"width": 1366, "height": 768}
WIDE = {"width": 1920, "height": 1080}
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\n" + b"% form\n" * 200 + b"%%EOF\n"


class Shots:
    def __init__(self, browser: Any, url: str, out: Path) -> None:
        self.browser = browser
        self.url = url
        self.out = out
        self.errors: list[str] = []

    async def page(
        self, name: str, username: str | None, viewport: dict[str, int], *, lang: str = "zh-CN"
    ) -> Any:
        context = await self.browser.new_context(viewport=viewport, locale=lang)
        context.set_default_timeout(15000)
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))
        page.on("response", lambda response: self.check(name, response))
        await page.goto(f"{self.url}/{name}")
        await page.wait_for_selector("body[data-ready]")
        if username:
            await page.get_by_test_id("login-username").fill(username)
            await page.get_by_test_id("login-password").fill("demo1234")
            await page.get_by_test_id("login-submit").click()
            await page.wait_for_selector("#app-view:not([hidden])")
        return page

    def check(self, name: str, response: Any) -> None:
        # Before logging in, /api/v1/me answers 401: that is how a page learns it.
        expected = response.status == 401 and response.url.endswith("/api/v1/me")
        if response.status >= 400 and not expected:
            self.errors.append(
                f"{name}: {response.request.method} {response.url} {response.status}"
            )

    async def shot(self, page: Any, name: str, viewport: dict[str, int] | None = None) -> None:
        """The page's screen as it is (nothing scrolled), at ``viewport`` if given
        (then the page's own size again)."""
        before = page.viewport_size
        if viewport:
            await page.set_viewport_size(viewport)
        await page.wait_for_timeout(400)
        await page.screenshot(path=str(self.out / f"{name}.png"))
        if viewport:
            await page.set_viewport_size(before)
        print(f"{name}.png", flush=True)


async def journey(shots: Shots, tmp: Path) -> None:
    login = await shots.page("expert", None, OFFICE)
    await shots.shot(login, "login")
    await login.context.close()

    expert = await shots.page("expert", "expert_market", OFFICE)
    await expert.wait_for_selector("[data-testid=availability]:not(:empty)")
    kiosk = await shots.page("kiosk", "kiosk01", KIOSK)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    await kiosk.get_by_test_id("case-number").fill("SL-2026-0042")
    await shots.shot(kiosk, "kiosk-start")
    await kiosk.get_by_test_id("text-size-toggle").click()
    await shots.shot(kiosk, "kiosk-larger-text")
    await kiosk.get_by_test_id("text-size-toggle").click()
    await choose_department(kiosk, "market")
    await kiosk.wait_for_selector("[data-testid=device-message][data-state=ok]")
    await kiosk.wait_for_timeout(800)
    await shots.shot(kiosk, "kiosk-device-check")
    await kiosk.get_by_test_id("device-check-continue").click()
    await kiosk.wait_for_selector("[data-testid=queue-position]:not(:empty)")
    await shots.shot(kiosk, "kiosk-waiting")
    await expert.get_by_test_id("availability").click()
    await expert.wait_for_selector("[data-testid=accept-call]:visible")
    await shots.shot(expert, "expert-offer")
    await expert.get_by_test_id("accept-call").click()
    for page in (kiosk, expert):
        await wait_for_js(
            page,
            "Number(document.querySelector('[data-testid=remote-video]')"
            ".dataset.framesDecoded || 0) > 30",
            timeout=30000,
        )
    await kiosk.get_by_test_id("chat-input").fill("您好，我想咨询营业执照变更需要哪些材料。")
    await kiosk.get_by_test_id("chat-send").click()
    await expert.wait_for_selector("#chat-list:has-text('营业执照')")
    await expert.get_by_test_id("chat-input").fill("请出示身份证和原营业执照，我发一份申请表给您。")
    await expert.get_by_test_id("chat-send").click()
    form = tmp / "变更登记申请表.pdf"
    form.write_bytes(PDF)
    await expert.get_by_test_id("file-input").set_input_files(str(form))
    await kiosk.wait_for_selector("[data-testid=file-list] >> text=变更登记申请表.pdf")
    await kiosk.get_by_test_id("show-document").click()
    await kiosk.wait_for_timeout(800)
    await kiosk.get_by_test_id("capture-take").click()
    await kiosk.wait_for_selector("[data-testid=capture-preview]:visible")
    await shots.shot(kiosk, "kiosk-show-document")
    await kiosk.get_by_test_id("capture-send").click()
    await expert.wait_for_selector("[data-testid=file-list] img.preview")
    await kiosk.wait_for_selector("[data-testid=connection-quality]:not([data-level=unknown])")
    await expert.wait_for_selector("[data-testid=latest-document] img")
    await shots.shot(kiosk, "kiosk-call")
    await shots.shot(kiosk, "kiosk-call-landscape", KIOSK_LANDSCAPE)
    await shots.shot(expert, "expert-call")
    await shots.shot(expert, "expert-call-wide", WIDE)
    await expert.get_by_test_id("end-call").click()
    await expert.get_by_test_id("confirm-yes").click()
    await kiosk.wait_for_selector("[data-testid=rating-5]:visible")
    await shots.shot(kiosk, "kiosk-rating")
    await expert.get_by_test_id("notes").fill("已告知所需材料，申请表已发送。")
    await expert.get_by_test_id("save-outcome").click()
    await expert.wait_for_selector("[data-testid=outcome-saved]:not(:empty)")
    await kiosk.get_by_test_id("rating-5").click()
    await expert.locator("[data-testid=history-row] button").first.click()
    await expert.wait_for_selector("[data-testid=history-list] .file-list li")
    await shots.shot(expert, "expert-after-call")
    await kiosk.wait_for_selector("[data-testid=department-market]", timeout=15000)

    clerk = await shots.page("clerk", "clerk", OFFICE)
    await clerk.get_by_test_id("case-search").fill("SL-2026-0042")
    await clerk.get_by_test_id("case-search").press("Enter")
    await clerk.get_by_test_id("consultation-row").first.click()
    await clerk.locator("[data-testid=attach-file]").first.click()
    await clerk.wait_for_selector("[data-testid=download-file]")
    await shots.shot(clerk, "clerk")

    admin = await shots.page("admin", "admin", WIDE)
    await admin.wait_for_selector("[data-testid=board-chart] svg")
    await shots.shot(admin, "admin-board")
    await admin.get_by_test_id("tab-accounts").click()
    await admin.wait_for_selector("[data-testid=account-row-clerk]")
    await shots.shot(admin, "admin-accounts")
    await admin.get_by_test_id("tab-audit").click()
    await admin.wait_for_selector("[data-testid=audit-status][data-state=intact]")
    await shots.shot(admin, "admin-audit")
    await admin.get_by_test_id("lang-toggle").click()
    await admin.get_by_test_id("tab-board").click()
    await shots.shot(admin, "admin-board-en")
    for page in (kiosk, expert, clerk, admin):
        await page.context.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--url", help="an already running server with --demo data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = None
        url = args.url
        if url is None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "server.py"),
                "--demo",
                "--port",
                str(port),
                "--data-dir",
                str(tmp / "data"),
                "--media-address",
                "127.0.0.1",
                cwd=ROOT,
            )
            await wait_for_http(f"{url}/healthz", attempts=300)
        try:
            async with async_playwright() as playwright:
                browser = await launch_chromium(playwright)
                shots = Shots(browser, url, args.out)
                try:
                    await journey(shots, tmp)
                finally:
                    await browser.close()
        finally:
            if server is not None:
                server.terminate()
                await asyncio.wait_for(server.wait(), 10)
    for error in shots.errors:
        print("page error:", error, file=sys.stderr)
    return 1 if shots.errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
