"""Two real nodes behind nginx with TLS, configured with the repo's sample
(deploy/nginx/windowlink.conf): the pages' whole journey through the proxy with
the kiosk and the expert on different nodes and the call's relay on a third node
that served neither page (forced by the test: the two others are draining),
media both ways, a document each way, the clerk attaching one to the case."""

import signal
from pathlib import Path
from typing import Any, cast

import pytest

from harness.chromium import (
    go_available,
    open_logged_in,
    request_from_kiosk,
    wait_for_js,
    wait_media_both_ways,
)
from tests.cluster.nginx import running_nginx
from tests.cluster.processes import (
    Deployment,
    ServerProcess,
    eventually,
    relay_reports,
    samples,
    scrape,
)
from tests.cluster.test_cluster import relay_connections
from tests.conftest import RunningServer

pytestmark = [pytest.mark.postgres, pytest.mark.browser]

KIOSK_PDF = b"%PDF-1.4\n% kiosk's licence through the proxy\n" + b"% x\n" * 3000 + b"%%EOF\n"
EXPERT_PDF = b"%PDF-1.4\n% expert's form through the proxy\n" + b"% y\n" * 2000 + b"%%EOF\n"


async def sockets_on(node: ServerProcess) -> int:
    return int(sum(samples(await scrape(node.url), "windowlink_socket_connections")))


async def test_browser_journey_through_nginx_with_kiosk_and_expert_on_different_nodes(
    deployment: Deployment, browser: Any, tmp_path: Path
) -> None:
    # As docs/DEPLOY.md says: the nodes believe forwarded headers from nginx only.
    a, b, c = await deployment.start_nodes(3, "--behind-proxy", "--trusted-proxies", "127.0.0.1")
    # C is behind no proxy: it only lends its relay worker. A and B drain, so that
    # their workers take no calls and C's is the only one left.
    for node in (a, b):
        node.send(signal.SIGUSR1)

    async def two_draining() -> bool:
        return sum(1 for r in await relay_reports(deployment) if r["draining"]) == 2

    await eventually(two_draining, 30, "A and B report draining")
    async with running_nginx(tmp_path / "nginx", [a.port, b.port]) as proxy:
        site = cast(RunningServer, proxy)
        expert = await open_logged_in(
            browser, site, "expert", "expert_market", ignore_https_errors=True
        )
        await go_available(expert)

        async def one_socket() -> bool:
            return await sockets_on(a) + await sockets_on(b) == 1

        await eventually(one_socket, 30, "the expert page's socket is open")
        expert_node = a if await sockets_on(a) == 1 else b
        kiosk_node = b if expert_node is a else a
        # nginx sends a new connection to the node with the fewest open ones
        # (least_conn in the sample): the kiosk's socket lands on the other node.
        kiosk = await open_logged_in(browser, site, "kiosk", "kiosk01", ignore_https_errors=True)

        async def two_sockets() -> bool:
            return await sockets_on(kiosk_node) == 1 and await sockets_on(expert_node) == 1

        await eventually(two_sockets, 30, "the kiosk's socket is on the other node")

        await kiosk.get_by_test_id("case-number").fill("PX-1357")
        await request_from_kiosk(kiosk, "market")
        await expert.get_by_test_id("accept-call").click()
        await kiosk.wait_for_selector("[data-testid=call-status]:has-text('正在与专家通话')")
        await wait_media_both_ways(kiosk, expert, more_than=10)
        relayed = [await relay_connections(n) for n in (a, b, c)]
        assert relayed == [0, 0, 2], relayed

        licence = tmp_path / "营业执照.pdf"
        licence.write_bytes(KIOSK_PDF)
        form = tmp_path / "申请表.pdf"
        form.write_bytes(EXPERT_PDF)
        await kiosk.get_by_test_id("file-input").set_input_files(str(licence))
        await expert.wait_for_selector("[data-testid=file-list] li:has-text('营业执照.pdf')")
        await expert.get_by_test_id("file-input").set_input_files(str(form))
        await kiosk.wait_for_selector("[data-testid=file-list] li:has-text('申请表.pdf')")

        await expert.get_by_test_id("end-call").click()
        await expert.get_by_test_id("confirm-yes").click()
        await expert.get_by_test_id("outcome").select_option("answered")
        await expert.get_by_test_id("save-outcome").click()
        await expert.wait_for_selector("[data-testid=outcome-saved]:has-text('已保存')")
        await kiosk.evaluate("window.beforeWipe = true")
        await kiosk.get_by_test_id("rating-very-satisfied").click()
        await wait_for_js(kiosk, "window.beforeWipe === undefined", timeout=15000)

        clerk = await open_logged_in(browser, site, "clerk", "clerk", ignore_https_errors=True)
        await clerk.get_by_test_id("case-search").fill("PX-1357")
        await clerk.get_by_test_id("case-search").press("Enter")
        await clerk.get_by_test_id("consultation-row").first.click()
        row = "[data-testid=file-list] li:has-text('营业执照.pdf')"
        await clerk.wait_for_selector(row)
        await clerk.locator(f"{row} [data-testid=attach-category]").select_option("application")
        await clerk.locator(f"{row} [data-testid=attach-file]").click()
        link = clerk.get_by_test_id("download-file").first
        await link.wait_for()
        async with clerk.expect_download() as info:
            await link.click()
        saved = tmp_path / "attached"
        await (await info.value).save_as(str(saved))
        assert saved.read_bytes() == KIOSK_PDF

    rows = await deployment.query(
        "SELECT state, end_reason, outcome, rating, case_number FROM consultations"
    )
    assert [tuple(r) for r in rows] == [("ended", "completed", "answered", 5, "PX-1357")]
    files = await deployment.query("SELECT name, uploader_role FROM files ORDER BY created_at")
    assert [tuple(f) for f in files] == [("营业执照.pdf", "kiosk"), ("申请表.pdf", "expert")]
    (attached,) = await deployment.query("SELECT category FROM case_attachments")
    assert attached["category"] == "application"
    # The proxy's X-Forwarded-For was believed (from nginx): the audit log names the
    # browser's address, not a node's view of nginx.
    remotes = {r["remote"] for r in await deployment.query("SELECT remote FROM audit_log")}
    assert remotes <= {"127.0.0.1", ""}
