"""Documents on the shared kiosk (issue 20): previews drawn by the page itself,
with nothing on the page that saves a file onto the kiosk; the file chooser only
where the kiosk's hall allows it."""

from typing import Any

import pytest

from signaling.messages import OfferView
from tests.chromium import open_logged_in, request_from_kiosk, wait_for_js
from tests.conftest import ClientFactory, RunningServer, login_session, upload_file
from tests.web.documents import pdf_with_pages

pytestmark = pytest.mark.browser

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
