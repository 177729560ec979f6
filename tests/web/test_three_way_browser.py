"""More than two in a call (issue 21), driven as people do in headless Chromium
against the real server: an expert invites a second department, whose expert
answers on their own desk, and the kiosk and both experts each see the two
others; a shared screen (Chromium's fake screen capture) shows large on the
kiosk; a transfer from start to end, the kiosk staying on its call screen; an
interpreter joins from the staff desk."""

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from harness.chromium import (
    SHARED_SCREEN_FRAMES,
    chat_from,
    go_available,
    open_logged_in,
    request_from_kiosk,
    wait_for_js,
    wait_media_both_ways,
    wait_remote_videos,
)
from media.pool import LocalRelayPool
from tests.conftest import RunningServer, ServerFactory
from tests.web.test_pages_browser import assert_switches_language
from web.keys import MEDIA

pytestmark = pytest.mark.browser

DESK = {"width": 1366, "height": 768}
KIOSK = {"width": 1080, "height": 1920}
STEP_MS = 20000
# The start screen seen at any moment of the page (an init script, not subject to
# the page's Content-Security-Policy): a transfer must never show it.
WATCH_START_SCREEN = """(() => {
  const seen = () => {
    const start = document.getElementById("start-screen");
    if (start && !start.hidden && document.getElementById("call-screen")?.dataset.seen) {
      window.__startAfterCall = true;
    }
    const call = document.getElementById("call-screen");
    if (call && !call.hidden) call.dataset.seen = "true";
  };
  new MutationObserver(seen).observe(document, {
    subtree: true, attributes: true, attributeFilter: ["hidden"],
  });
})();"""


# Every WebSocket the page opens, kept where a test can close one: a network blip.
KEEP_SOCKETS = """(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sockets.push(this);
    }
  };
})();"""


async def call_of_two(
    browser: Any, server: RunningServer, *, kiosk_init: str | None = None
) -> tuple[Any, Any]:
    """The market expert (available first) in a call with kiosk01, media flowing."""
    expert = await open_logged_in(browser, server, "expert", "expert_market", viewport=DESK)
    await go_available(expert)
    kiosk = await open_logged_in(
        browser, server, "kiosk", "kiosk01", viewport=KIOSK, init_script=kiosk_init
    )
    await request_from_kiosk(kiosk, "market")
    await expect(expert.get_by_test_id("offer-panel")).to_have_attribute(
        "data-kind", "consultation"
    )
    await expert.get_by_test_id("accept-call").click()
    await wait_media_both_ways(kiosk, expert)
    return kiosk, expert


async def invite(expert: Any, department: str, note: str = "") -> None:
    """The expert opens the chooser, writes the note and invites ``department``."""
    await expert.get_by_test_id("invite-department").click()
    if note:
        await expert.get_by_test_id("invite-note").fill(note)
    await expert.get_by_test_id(f"invite-{department}").click()
    await expect(
        expert.locator(f"[data-testid=invitation][data-department={department}]")
    ).to_be_visible()


async def answer_invitation(desk: Any, inviter_name: str, note: str = "") -> None:
    """A ringing invitation on ``desk``: who invites and the note, then accepted."""
    panel = desk.get_by_test_id("offer-panel")
    await expect(panel).to_have_attribute("data-kind", "invite", timeout=STEP_MS)
    await expect(desk.get_by_test_id("offer-by")).to_contain_text(inviter_name)
    if note:
        await expect(desk.get_by_test_id("offer-note")).to_contain_text(note)
    await desk.get_by_test_id("accept-call").click()


def whose(videos: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(v["participant"], v["department"]) for v in videos]


# On both data paths of the relay: steady packets forwarded in C (media._native,
# the default where it is built) and in Python (--relay-datapath python).
@pytest.mark.parametrize("relay_datapath", ["native", "python"])
async def test_kiosk_and_two_experts_each_see_the_two_others(
    browser: Any, start_server: ServerFactory, relay_datapath: str
) -> None:
    server = await start_server(ring_timeout=30.0, grace_period=30.0, relay_datapath=relay_datapath)
    kiosk, market = await call_of_two(browser, server)
    housing = await open_logged_in(browser, server, "expert", "expert_housing", viewport=DESK)
    await go_available(housing)

    note = "请协助核实住房补贴条件"
    await invite(market, "housing", note)
    # The kiosk is told someone is being asked to join.
    await expect(kiosk.get_by_test_id("participant-list")).to_contain_text("住房保障")
    await expect(housing.get_by_test_id("offer-panel")).to_be_visible(timeout=STEP_MS)
    await assert_switches_language(housing)
    await answer_invitation(housing, "市场监管", note)

    # The inviter is told at once (the line shows for a few seconds).
    await expect(market.locator("[data-testid=invitation][data-state=accepted]")).to_be_visible()
    kiosk_sees = await wait_remote_videos(kiosk, 2)
    market_sees = await wait_remote_videos(market, 2)
    housing_sees = await wait_remote_videos(housing, 2)
    assert whose(kiosk_sees) == [("expert", "market"), ("expert", "housing")]
    assert whose(market_sees) == [("kiosk", None), ("expert", "housing")]
    assert whose(housing_sees) == [("kiosk", None), ("expert", "market")]
    # Frames keep coming to everyone (not one frame and a frozen picture).
    for page, seen in ((kiosk, kiosk_sees), (market, market_sees), (housing, housing_sees)):
        await wait_remote_videos(page, 2, more_than=min(v["frames"] for v in seen) + 20)
    # ... forwarded on the data path asked for (in C: the forwarder's own count).
    pool = server.app[MEDIA]
    assert isinstance(pool, LocalRelayPool)
    (relay,) = pool.relays.values()
    assert relay.datapath == relay_datapath
    native = relay.stats()["native"]
    assert isinstance(native, dict)
    assert (native.get("queued", 0) > 0) == (relay_datapath == "native"), native
    # Each tile says whose picture it is; the kiosk lists who is in the call.
    participants = kiosk.get_by_test_id("participant-list")
    await expect(participants.locator("li")).to_have_count(2)
    await expect(participants).to_contain_text("住房保障")
    await expect(participants).to_contain_text("市场监管")

    # Chat reaches everyone, each line saying whose it is.
    await chat_from(housing, kiosk, "您好，我是住房保障局的专家")
    await expect(market.get_by_test_id("chat-list")).to_contain_text("住房保障局的专家")
    await expect(housing.locator("#chat-list li.chat-mine")).to_have_count(1)
    await expect(market.locator("#chat-list li.chat-mine")).to_have_count(0)

    # One tap makes the second expert's tile large on the kiosk, another small again.
    tile = kiosk.locator(".tile:has(> [data-testid=remote-video][data-department=housing])")
    await tile.click()
    await expect(tile).to_have_class("tile featured")
    assert await kiosk.locator(".videos").get_attribute("data-layout") == "featured"
    big = await tile.bounding_box()
    other = await kiosk.locator(
        ".tile:has(> [data-testid=remote-video][data-department=market])"
    ).bounding_box()
    assert big and other and big["width"] * big["height"] > 4 * other["width"] * other["height"]
    await tile.click()
    assert await kiosk.locator(".videos").get_attribute("data-layout") == "grid"

    # The language switch covers the new states.
    await assert_switches_language(kiosk)
    await assert_switches_language(market)

    # The second expert leaves: the call goes on for the two others; their record waits.
    await housing.get_by_test_id("leave-call").click()
    await expect(housing.get_by_test_id("outcome")).to_be_visible(timeout=STEP_MS)
    assert whose(await wait_remote_videos(kiosk, 1)) == [("expert", "market")]
    assert whose(await wait_remote_videos(market, 1)) == [("kiosk", None)]
    await expect(kiosk.locator("#call-screen")).to_be_visible()
    # The last expert does not "leave" a citizen alone: end-call (asked) is the way.
    await expect(market.get_by_test_id("leave-call")).to_be_hidden()


async def test_a_shared_screen_shows_large_on_the_kiosk_until_it_is_stopped(
    browser: Any, sqlite_server: RunningServer
) -> None:
    kiosk, expert = await call_of_two(browser, sqlite_server)
    share = expert.get_by_test_id("share-screen")
    await expect(share).to_have_attribute("aria-pressed", "false")
    await share.click()
    await expect(share).to_have_attribute("aria-pressed", "true")
    await wait_for_js(kiosk, f"{SHARED_SCREEN_FRAMES} > 10", timeout=STEP_MS)
    screen = kiosk.get_by_test_id("shared-screen")
    await expect(screen).to_be_visible()
    # Large, with the expert's face beside it.
    assert await kiosk.locator(".videos").get_attribute("data-layout") == "featured"
    shown = await screen.bounding_box()
    face = await kiosk.get_by_test_id("remote-video").bounding_box()
    assert shown and face and shown["width"] * shown["height"] > 4 * face["width"] * face["height"]
    await expect(kiosk.get_by_test_id("remote-video")).to_be_visible()
    # The face made large with one tap; the screen goes beside it.
    await kiosk.locator(".tile:has(> [data-testid=remote-video])").click()
    await expect(kiosk.locator(".tile:has(> [data-testid=remote-video])")).to_have_class(
        "tile featured"
    )
    await kiosk.locator(".tile:has(> [data-testid=remote-video])").click()

    # The expert's own picture keeps going to the kiosk meanwhile.
    seen = await kiosk.evaluate(
        "Number(document.querySelector('[data-testid=remote-video]').dataset.framesDecoded)"
    )
    await wait_remote_videos(kiosk, 1, more_than=seen + 20)

    await share.click()
    await expect(share).to_have_attribute("aria-pressed", "false")
    await expect(kiosk.get_by_test_id("shared-screen")).to_have_count(0, timeout=STEP_MS)
    assert await kiosk.locator(".videos").get_attribute("data-layout") == "single"


async def test_a_transfer_takes_the_citizen_to_the_other_department_without_the_start_screen(
    browser: Any, start_server: ServerFactory, tmp_path: Path
) -> None:
    server = await start_server(ring_timeout=30.0, grace_period=30.0)
    kiosk, market = await call_of_two(browser, server, kiosk_init=WATCH_START_SCREEN)
    document = tmp_path / "租赁合同.pdf"
    document.write_bytes(b"%PDF-1.4\n" + b"% lease\n" * 200 + b"%%EOF\n")
    await kiosk.get_by_test_id("file-input").set_input_files(str(document))
    await expect(market.get_by_test_id("file-list")).to_contain_text("租赁合同.pdf")
    await chat_from(kiosk, market, "我想问住房补贴的事")

    await market.get_by_test_id("transfer-department").click()
    chooser = market.get_by_test_id("transfer-chooser")
    await expect(chooser).to_be_visible()
    # Only where the admin allows (the demo: market -> housing, social).
    await expect(chooser.locator("[data-testid^=transfer-]:is(button)")).to_have_count(2)
    await expect(market.get_by_test_id("transfer-interpret")).to_have_count(0)
    # The reason is mandatory: without it nothing happens but the question.
    await market.get_by_test_id("transfer-housing").click()
    await expect(market.get_by_test_id("call-actions-message")).to_contain_text("转接原因")
    await expect(market.get_by_test_id("end-call")).to_be_visible()
    reason = "住房补贴属住房保障局办理"
    await market.get_by_test_id("transfer-reason").fill(reason)
    await market.get_by_test_id("transfer-housing").click()
    # The transferring expert is out of the call, with their record to write.
    await expect(market.get_by_test_id("outcome")).to_be_visible(timeout=STEP_MS)
    await expect(market.locator("#call-view")).to_be_hidden()

    # The kiosk says in plain words what happens, on its call screen.
    await expect(kiosk.get_by_test_id("call-status")).to_contain_text("正在为您转接到")
    await expect(kiosk.get_by_test_id("call-status")).to_contain_text("住房保障")
    await expect(kiosk.get_by_test_id("transfer-note")).to_be_visible()
    await expect(kiosk.get_by_test_id("chat-list")).to_contain_text("我想问住房补贴的事")

    housing = await open_logged_in(browser, server, "expert", "expert_housing", viewport=DESK)
    await go_available(housing)
    await expect(housing.get_by_test_id("offer-panel")).to_have_attribute(
        "data-kind", "transfer", timeout=STEP_MS
    )
    await expect(housing.get_by_test_id("offer-note")).to_contain_text(reason)
    await expect(housing.get_by_test_id("offer-by")).to_contain_text("市场监管")
    await housing.get_by_test_id("accept-call").click()

    assert whose(await wait_remote_videos(kiosk, 1)) == [("expert", "housing")]
    assert whose(await wait_remote_videos(housing, 1)) == [("kiosk", None)]
    await expect(kiosk.get_by_test_id("transfer-note")).to_be_hidden()
    await expect(kiosk.get_by_test_id("call-status")).to_have_text("正在与专家通话")
    # What was exchanged before the transfer is there for the new expert.
    await expect(housing.get_by_test_id("file-list")).to_contain_text("租赁合同.pdf")
    await expect(housing.get_by_test_id("chat-list")).to_contain_text("我想问住房补贴的事")
    assert not await kiosk.evaluate("window.__startAfterCall === true")

    record = (await server.storage.consultations.find())[0]
    assert record.department == "housing" and record.state.value == "active"

    # The clerk of the kiosk's hall sees both parts: who handed over, who took over.
    clerk = await open_logged_in(browser, server, "clerk", "clerk", viewport=DESK)
    await clerk.get_by_test_id("today-list").get_by_test_id("consultation-row").first.click()
    await clerk.wait_for_selector("#consultation-panel[data-loaded]")
    legs = clerk.get_by_test_id("consultation-leg")
    await expect(legs).to_have_count(2)
    await expect(legs.nth(0)).to_have_attribute("data-department", "market")
    await expect(legs.nth(0)).to_have_attribute("data-reason", "transferred")
    await expect(legs.nth(0)).to_contain_text("转接给其他部门")
    await expect(legs.nth(1)).to_have_attribute("data-department", "housing")
    await expect(legs.nth(1)).to_contain_text(reason)


async def test_an_interpreter_joins_from_the_staff_desk_and_is_seen_large(
    browser: Any, start_server: ServerFactory, tmp_path: Path
) -> None:
    # A grace far longer than a starved test process's silences: three pages with
    # cameras on two cores and the relay in this process can hold a socket's pings
    # back past socket.io's 10 s, and a desk away for longer than the 1 s of
    # start_server's default is out of the call by design.
    server = await start_server(ring_timeout=30.0, grace_period=30.0)
    kiosk, market = await call_of_two(browser, server)
    document = tmp_path / "身份证复印件.pdf"
    document.write_bytes(b"%PDF-1.4\n" + b"% id card\n" * 200 + b"%%EOF\n")
    await kiosk.get_by_test_id("file-input").set_input_files(str(document))
    await expect(market.get_by_test_id("file-list")).to_contain_text("身份证复印件.pdf")
    # Nobody to show it to yet.
    await expect(market.get_by_test_id("share-document")).to_have_count(0)
    interpreter = await open_logged_in(
        browser, server, "expert", "interpreter01", viewport=DESK, init_script=KEEP_SOCKETS
    )
    refused: list[str] = []

    def note_refused(response: Any) -> None:
        if response.status >= 400:
            refused.append(f"{response.status} {response.url}")

    interpreter.on("response", note_refused)
    # The interpreter's desk: taking calls, nothing of the experts' after-call work
    # and no list of records (an interpreter keeps none).
    await expect(interpreter.locator(".topbar h1")).to_have_text("翻译工作台")
    await expect(interpreter.locator("#unfinished-section")).to_be_hidden()
    await expect(interpreter.locator("#history-section")).to_be_hidden()
    await go_available(interpreter)

    await market.get_by_test_id("invite-department").click()
    # An interpreting pool names its languages in the chooser.
    await expect(market.get_by_test_id("invite-interpret")).to_contain_text("手语")
    await assert_switches_language(market)
    await market.get_by_test_id("invite-note").fill("市民需要手语翻译")
    await market.get_by_test_id("invite-interpret").click()
    await answer_invitation(interpreter, "市场监管", "市民需要手语翻译")

    assert whose(await wait_remote_videos(kiosk, 2)) == [
        ("expert", "market"),
        ("interpreter", "interpret"),
    ]
    assert whose(await wait_remote_videos(interpreter, 2)) == [
        ("kiosk", None),
        ("expert", "market"),
    ]
    for control in ("invite-department", "transfer-department", "share-screen", "end-call"):
        await expect(interpreter.get_by_test_id(control)).to_be_hidden()
    await expect(interpreter.get_by_test_id("leave-call")).to_be_visible()
    # Documents reach the interpreter only when an expert shows them (least privilege).
    await expect(interpreter.get_by_test_id("file-list")).not_to_contain_text("身份证复印件")
    share = market.locator(
        "[data-testid=file-list] li", has_text="身份证复印件.pdf"
    ).get_by_test_id("share-document")
    await share.click()
    await expect(share).to_have_text("翻译可以看")
    await expect(interpreter.get_by_test_id("file-list")).to_contain_text("身份证复印件.pdf")

    # A network blip on the interpreter's desk: back in the same call, not out of it.
    await interpreter.evaluate("window.__sockets.at(-1).close()")
    await wait_for_js(
        interpreter, "window.__sockets.length === 2 && window.__sockets[1].readyState === 1"
    )
    # (Its status line may speak of the citizen's own drop on a starved machine.)
    await expect(interpreter.locator("#call-view")).to_be_visible()
    await expect(interpreter.get_by_test_id("leave-call")).to_be_visible()
    # The interpreter sees the chat, and their lines say who wrote them.
    await chat_from(kiosk, interpreter, "我需要手语翻译")
    await chat_from(interpreter, kiosk, "您好，我是手语翻译")
    await expect(kiosk.locator("#chat-list li", has_text="您好，我是手语翻译")).to_contain_text(
        "翻译"
    )

    # The citizen makes the interpreter's tile large with one tap.
    tile = kiosk.locator(".tile:has(> [data-testid=remote-video][data-participant=interpreter])")
    await tile.click()
    box = await tile.bounding_box()
    videos = await kiosk.locator(".videos").bounding_box()
    assert box and videos
    assert box["width"] * box["height"] > 0.5 * videos["width"] * videos["height"]

    await interpreter.get_by_test_id("leave-call").click()
    await expect(interpreter.locator("#call-view")).to_be_hidden(timeout=STEP_MS)
    # No after-call record for an interpreter.
    await expect(interpreter.get_by_test_id("outcome-view")).to_be_hidden()
    assert whose(await wait_remote_videos(kiosk, 1)) == [("expert", "market")]
    assert await kiosk.locator(".videos").get_attribute("data-layout") == "single"

    # The privacy wipe takes what the bigger call showed too: names, the note, chat.
    await market.get_by_test_id("end-call").click()
    await market.get_by_test_id("confirm-yes").click()
    await kiosk.evaluate("window.beforeWipe = true")
    await kiosk.get_by_test_id("rating-very-satisfied").click()
    await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=15000)
    await kiosk.wait_for_selector("[data-testid=department-market]")
    html = await kiosk.content()
    for trace in ("手语翻译", "市场监管专家", "我需要手语翻译", "市民需要手语翻译"):
        assert trace not in html
    # An interpreting pool is no department a citizen queues for.
    await expect(kiosk.get_by_test_id("department-interpret")).to_have_count(0)
    # Nothing the interpreter's desk asked for was refused (it asks for nothing of
    # an expert's, and a document only once shown to it).
    assert refused == []


async def test_the_admin_sets_transfers_and_creates_an_interpreting_pool_with_its_interpreter(
    browser: Any, sqlite_server: RunningServer
) -> None:
    server = sqlite_server
    admin = await open_logged_in(browser, server, "admin", "admin", viewport=DESK)
    await admin.get_by_test_id("tab-departments").click()
    market = admin.get_by_test_id("department-row-market")
    await expect(market).to_contain_text("可转接到")
    await market.get_by_test_id("department-transfers").click()
    # The demo lets market hand citizens to housing and social; the admin keeps housing.
    await expect(market.get_by_test_id("transfer-target-social")).to_be_checked()
    await expect(market.get_by_test_id("transfer-target-interpret")).to_have_count(0)
    await market.get_by_test_id("transfer-target-social").uncheck()
    await market.get_by_test_id("department-save").click()
    await expect(market.locator(".dept-editor")).to_have_count(0)
    await expect(market).not_to_contain_text("人力资源和社会保障局")
    assert (await server.storage.departments.get("market")).transfers_to == ("housing",)

    await admin.get_by_test_id("department-code").fill("cantonese")
    await admin.get_by_test_id("department-name-zh").fill("粤语翻译")
    await admin.get_by_test_id("department-name-en").fill("Cantonese interpreting")
    await admin.get_by_test_id("department-kind").select_option("interpreter")
    await admin.get_by_test_id("department-languages").fill("粤语 / Cantonese、潮汕话")
    await admin.get_by_test_id("department-create").click()
    pool = admin.get_by_test_id("department-row-cantonese")
    await expect(pool.get_by_test_id("department-languages-list")).to_have_text(
        "粤语 / Cantonese、潮汕话"
    )
    created = await server.storage.departments.get("cantonese")
    assert created.kind.value == "interpreter"
    assert created.languages == ("粤语 / Cantonese", "潮汕话")

    await admin.get_by_test_id("tab-accounts").click()
    await admin.get_by_test_id("account-role").select_option("interpreter")
    # An interpreter belongs to an interpreting pool: only pools are offered.
    options = admin.get_by_test_id("account-department").locator("option")
    await expect(options).to_have_count(2)
    await admin.get_by_test_id("account-department").select_option("cantonese")
    await admin.get_by_test_id("account-username").fill("interpreter02")
    await admin.get_by_test_id("account-display-name").fill("粤语翻译员")
    await admin.get_by_test_id("account-password").fill("Yue-speaking-2026")
    await admin.get_by_test_id("account-create").click()
    await expect(admin.get_by_test_id("account-row-interpreter02")).to_contain_text("翻译")
    account = await server.storage.accounts.get_by_username("interpreter02")
    assert account.role.value == "interpreter" and account.department == "cantonese"
