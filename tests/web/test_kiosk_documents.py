"""Documents on the shared kiosk (issue 20): previews drawn by the page itself,
with nothing on the page that saves a file onto the kiosk; the file chooser only
where the kiosk's hall allows it; photos from the citizen's own phone through a
one-time QR code."""

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import segno

from harness.chromium import open_logged_in, request_from_kiosk, wait_for_js
from signaling.messages import FileView, OfferView
from storage.records import Role
from tests.conftest import ClientFactory, RunningServer, login_session, upload_file
from tests.web.documents import pdf_with_pages, png
from tests.web.test_pages_browser import assert_switches_language
from web.keys import FILES

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 1080, "height": 1920}

# What on the page could put a document onto the kiosk's disk or show it in the
# browser's own viewer (with its download button).
SAVING_CONTROLS = """() => ({
  frames: document.querySelectorAll('embed, object, iframe, frame, portal').length,
  downloads: [...document.querySelectorAll('a[download], a[href]')]
    .filter((a) => a.hasAttribute('download') || a.getAttribute('href').includes('/api/v1/files/'))
    .map((a) => a.outerHTML),
  images: [...document.querySelectorAll('img')].filter((i) => i.src && i.checkVisibility()).length,
})"""

# Whether the preview's canvas holds a drawing: dark pixels (the text, the frame)
# on white, not an empty or blank canvas.
CANVAS_INKED = """() => {
  const canvas = document.querySelector('#preview-dialog [data-testid=preview-canvas]');
  if (!canvas || canvas.width < 100) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let dark = 0;
  for (let i = 0; i < data.length; i += 4 * 7) if (data[i] < 80 && data[i + 3] > 200) dark += 1;
  return dark;
}"""


async def kiosk_in_call(
    browser: Any, server: RunningServer, connect: ClientFactory
) -> tuple[Any, Any, str]:
    """The kiosk's page in an active call with an expert client; the consultation id."""
    expert = await connect(server, "expert_market")
    await expert.set_presence("available")
    kiosk = await open_logged_in(
        browser, server, "kiosk", "kiosk01", viewport={"width": 1080, "height": 1920}
    )
    await request_from_kiosk(kiosk, "market")
    offer = await expert.next_event("offer", OfferView)
    await expert.accept(offer.consultation_id)
    await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")
    return kiosk, expert, offer.consultation_id


async def test_a_pdf_previewed_on_the_kiosk_is_drawn_by_the_page_with_nothing_to_save(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, _expert, call_id = await kiosk_in_call(browser, server, connect)
    http = await login_session(server, "expert_market")
    async with http:
        status, _ = await upload_file(
            server, http, call_id, "申请表.pdf", pdf_with_pages(["PAGE ONE", "PAGE TWO"])
        )
    assert status == 201
    name = kiosk.locator("[data-testid=file-list] .file-name", has_text="申请表.pdf")
    await name.click()
    await kiosk.wait_for_selector("#preview-dialog[open] .preview-body[data-rendered=true]")
    assert await kiosk.get_by_test_id("preview-page").inner_text() == "第 1 / 2 页"
    assert await kiosk.evaluate(CANVAS_INKED) > 100
    saving = await kiosk.evaluate(SAVING_CONTROLS)
    assert saving == {"frames": 0, "downloads": [], "images": 0}
    # Page turns as large as every kiosk control, and they turn.
    for control in ("preview-prev", "preview-next", "preview-close"):
        box = await kiosk.get_by_test_id(control).bounding_box()
        assert box is not None and box["width"] >= 72 and box["height"] >= 72, control
    assert await kiosk.get_by_test_id("preview-prev").is_disabled()
    await kiosk.get_by_test_id("preview-next").click()
    await kiosk.wait_for_selector("[data-testid=preview-canvas][data-page='2']")
    assert await kiosk.get_by_test_id("preview-page").inner_text() == "第 2 / 2 页"
    assert await kiosk.get_by_test_id("preview-next").is_disabled()
    assert await kiosk.evaluate(CANVAS_INKED) > 100
    # No context menu (a browser's "save image as" for a canvas).
    prevented = await kiosk.evaluate(
        """() => {
          const canvas = document.querySelector('[data-testid=preview-canvas]');
          const event = new MouseEvent('contextmenu', {bubbles: true, cancelable: true});
          return !canvas.dispatchEvent(event);
        }"""
    )
    assert prevented
    await kiosk.get_by_test_id("preview-close").click()
    await wait_for_js(kiosk, "!document.querySelector('#preview-dialog').open")
    assert await kiosk.evaluate("document.querySelectorAll('#preview-dialog canvas').length") == 0


# The QR code as drawn: each module's centre sampled on the canvas, "1" dark.
QR_DRAWN = """(size) => {
  const canvas = document.querySelector('[data-testid=phone-qr]');
  const quiet = 4;
  const scale = canvas.width / (size + 2 * quiet);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const rows = [];
  for (let y = 0; y < size; y++) {
    let row = '';
    for (let x = 0; x < size; x++) {
      const px = Math.floor((x + quiet + 0.5) * scale), py = Math.floor((y + quiet + 0.5) * scale);
      row += data[(py * canvas.width + px) * 4] < 128 ? '1' : '0';
    }
    rows.push(row);
  }
  return rows;
}"""
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


async def open_phone(browser: Any, url: str) -> Any:
    context = await browser.new_context(**PHONE)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector("body[data-ready]")
    return page


async def test_a_phone_sends_a_photo_into_the_call_once_through_the_kiosks_qr_code(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory, tmp_path: Path
) -> None:
    server = sqlite_server
    kiosk, expert, call_id = await kiosk_in_call(browser, server, connect)
    await kiosk.get_by_test_id("phone-upload").click()
    await kiosk.wait_for_selector("[data-testid=phone-qr][data-url]")
    url = await kiosk.get_by_test_id("phone-qr").get_attribute("data-url")
    assert url is not None and url.startswith(f"{server.url}/phone/")
    # The code on screen says exactly that address.
    code = segno.make(url, error="m", micro=False)
    expected = ["".join("1" if m else "0" for m in row) for row in code.matrix]
    assert await kiosk.evaluate(QR_DRAWN, len(expected)) == expected

    # Every string of the code's panel and of the phone's page in both languages.
    await assert_switches_language(kiosk)
    phone = await open_phone(browser, url)
    await phone.wait_for_selector("[data-testid=phone-state][data-state=ready]")
    await assert_switches_language(phone)
    # Nothing of the consultation on the phone: no department, kiosk, hall or id.
    text = await phone.inner_text("body")
    for secret in ("市场监管", "market", "kiosk01", "市民中心", "city", call_id):
        assert secret not in text
    photo = tmp_path / "身份证正面.png"
    photo.write_bytes(png(640, 400, (200, 180, 160)))
    await phone.get_by_test_id("phone-file-input").set_input_files(str(photo))
    await phone.get_by_test_id("phone-send").click()
    await phone.wait_for_selector("[data-testid=phone-state][data-state=done]")

    # In the call: the expert is told, both file lists show it, as from the kiosk.
    added = await expert.next_event("file_added", FileView)
    assert (added.name, added.uploaded_by) == ("身份证正面.png", "kiosk")
    await kiosk.wait_for_selector("[data-testid=file-list] li:has-text('身份证正面.png')")
    await kiosk.wait_for_selector("[data-testid=phone-status]:has-text('已收到')")

    # A second use is refused, with a page that says so.
    again = await open_phone(browser, url)
    await again.wait_for_selector("[data-testid=phone-state][data-state=gone]")
    assert "已经用过" in await again.get_by_test_id("phone-message").inner_text()
    token = url.rsplit("/", 1)[1]
    async with aiohttp.ClientSession() as http:
        claim = {"files": [{"name": "again.png", "size": 10}]}
        async with http.post(f"{server.url}/api/v1/phone-links/{token}/claim", json=claim) as r:
            assert r.status == 410
            assert (await r.json())["error"]["code"] == "link_used"
    files = await server.app[FILES].of_consultation(call_id)
    assert [f.name for f in files] == ["身份证正面.png"]
    assert files[0].uploader_role == "kiosk"


async def test_the_wipe_leaves_no_preview_no_phone_code_and_no_reference(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, expert, call_id = await kiosk_in_call(browser, server, connect)
    http = await login_session(server, "expert_market")
    async with http:
        status, _ = await upload_file(server, http, call_id, "答复意见.pdf", pdf_with_pages(["X"]))
    assert status == 201
    await kiosk.get_by_test_id("phone-upload").click()
    await kiosk.wait_for_selector("[data-testid=phone-qr][data-url]")
    url = await kiosk.get_by_test_id("phone-qr").get_attribute("data-url")
    assert url is not None
    await kiosk.locator("[data-testid=file-list] .file-name", has_text="答复意见.pdf").click()
    await kiosk.wait_for_selector("#preview-dialog[open] .preview-body[data-rendered=true]")

    # The call ends under the open preview: the citizen sees the short reference.
    await expert.end(call_id)
    await kiosk.wait_for_selector("[data-testid=reference-box]:visible")
    record = await server.storage.consultations.get(call_id)
    reference = record.reference
    shown = await kiosk.get_by_test_id("reference").inner_text()
    assert shown.replace(" ", "") == reference and shown == f"{reference[:3]} {reference[3:]}"
    assert not await kiosk.evaluate("document.querySelector('#preview-dialog').open")
    await assert_switches_language(kiosk)
    # The link ended with the call.
    token = url.rsplit("/", 1)[1]
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(f"{server.url}/api/v1/phone-links/{token}") as response,
    ):
        assert (await response.json())["state"] == "expired"

    await kiosk.evaluate("window.beforeWipe = true")
    await kiosk.get_by_test_id("rating-very-satisfied").click()
    await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=15000)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    html = await kiosk.content()
    for trace in (reference, f"{reference[:3]} {reference[3:]}", token, "答复意见"):
        assert trace not in html
    leftovers = await kiosk.evaluate(
        "[...document.querySelectorAll('canvas')].filter((c) => c.width > 0).length"
    )
    assert leftovers == 0


FILE_DIALOGS = """() => ({
  inputs: document.querySelectorAll('input[type=file]').length,
  chooser: document.querySelectorAll('[data-testid=file-input]').length,
  phone: document.querySelector('[data-testid=phone-upload]')?.checkVisibility() ?? false,
})"""


async def test_the_file_chooser_is_off_on_a_kiosk_whose_hall_does_not_allow_it(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    # A new hall keeps the file chooser off unless an admin allows it.
    await server.storage.halls.create("street9", "第九街道便民服务站", "Street 9 Service Point")
    await server.storage.accounts.create(
        "kiosk09", "Kiosk-Pass-2026", Role.KIOSK, hall="street9", display_name="街道 9 号终端"
    )
    expert = await connect(server, "expert_market")
    await expert.set_presence("available")
    kiosk = await open_logged_in(
        browser, server, "kiosk", "kiosk09", "Kiosk-Pass-2026", viewport=PORTRAIT
    )
    await request_from_kiosk(kiosk, "market")
    offer = await expert.next_event("offer", OfferView)
    await expert.accept(offer.consultation_id)
    await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")
    # Nothing on the page opens the operating system's file dialog; the phone and the
    # document camera ("show a document") remain.
    assert await kiosk.evaluate(FILE_DIALOGS) == {"inputs": 0, "chooser": 0, "phone": True}
    assert await kiosk.get_by_test_id("show-document").is_visible()

    # The demo's halls allow it: kiosk01 (hall city) has the chooser.
    other = await open_logged_in(browser, server, "kiosk", "kiosk01", viewport=PORTRAIT)
    assert await other.evaluate(FILE_DIALOGS) == {"inputs": 1, "chooser": 1, "phone": False}
