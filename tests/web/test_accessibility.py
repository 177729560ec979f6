"""axe-core (tests/vendor/axe-core) finds no WCAG 2.1 A or AA violation on any page
in its main states: the login form, the kiosk from start to rating, the expert's
ringing offer, call and after-call, the clerk with today's list and with a result,
every admin tab, and the states of calls of more than two (page_tour.three_way,
page_tour.transfer)."""

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClientFactory, RunningServer, ServerFactory
from tests.web import page_tour

pytestmark = pytest.mark.browser

AXE = (Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js").read_text(
    encoding="utf-8"
)
RUN_AXE = """async () => {
  const result = await axe.run(document, {
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
  });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({target: n.target.join(' '), summary: n.failureSummary})),
  }));
}"""


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now. The script goes in through the
    debugging protocol, as ``evaluate`` does: the pages' Content-Security-Policy
    (no inline script) stays as in production."""
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.evaluate(AXE)
    violations: list[dict[str, Any]] = await page.evaluate(RUN_AXE)
    return violations


def readable(state: str, violations: list[dict[str, Any]]) -> list[str]:
    lines = []
    for v in violations:
        lines.append(f"{state}: {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:5]:
            summary = " / ".join(node["summary"].splitlines()[1:3])
            lines.append(f"    {node['target']}: {summary}")
    return lines


class AxeVisits:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.states: list[str] = []

    async def __call__(self, state: str, page: Any) -> None:
        self.states.append(state)
        self.problems += readable(state, await axe_violations(page))


async def test_kiosk_and_expert_states_have_no_wcag_violations(
    browser: Any, start_server: ServerFactory, tmp_path: Path
) -> None:
    server = await start_server(ring_timeout=120.0)
    visits = AxeVisits()
    kiosk = await page_tour.consultation(browser, server, tmp_path, visits)
    await kiosk.context.close()
    assert len(visits.states) == 18
    assert not visits.problems, "\n".join(visits.problems)


async def test_login_clerk_and_admin_have_no_wcag_violations(
    browser: Any, sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    visits = AxeVisits()
    await page_tour.login_form(browser, sqlite_server, visits)
    await page_tour.clerk_window(browser, sqlite_server, connect, visits)
    await page_tour.admin_tabs(browser, sqlite_server, visits)
    assert visits.states == [
        "login",
        "clerk-today",
        "clerk",
        "admin-board",
        "admin-departments",
        "admin-halls",
        "admin-accounts",
        "admin-audit",
    ]
    assert not visits.problems, "\n".join(visits.problems)


async def test_a_staff_call_alert_has_no_wcag_violations(
    browser: Any, sqlite_server: RunningServer
) -> None:
    visits = AxeVisits()
    await page_tour.staff_call(browser, sqlite_server, visits)
    assert visits.states == ["clerk-staff-alert"]
    assert not visits.problems, "\n".join(visits.problems)


async def test_the_desks_unhappy_states_have_no_wcag_violations(
    browser: Any, start_server: ServerFactory, tmp_path: Path
) -> None:
    visits = AxeVisits()
    server = await start_server(ring_timeout=120.0)
    await page_tour.expert_desk(browser, server, tmp_path, visits)
    await page_tour.login_locked(browser, server, visits)
    await page_tour.ring_out(browser, await start_server(), visits)
    assert visits.states == [
        "expert-decline-confirm",
        "expert-media-failed",
        "kiosk-media-failed",
        "expert-upload",
        "kiosk-upload",
        "expert-wrap-up",
        "expert-unfinished",
        "login-locked",
        "kiosk-rang-out",
        "expert-away-notice",
    ]
    assert not visits.problems, "\n".join(visits.problems)


async def test_calls_of_more_than_two_have_no_wcag_violations(
    browser: Any, start_server: ServerFactory
) -> None:
    visits = AxeVisits()
    await page_tour.three_way(
        browser, await start_server(ring_timeout=120.0, grace_period=30.0), visits
    )
    await page_tour.transfer(browser, await start_server(ring_timeout=120.0), visits)
    assert visits.states == [
        "expert-invite-chooser",
        "expert-invite-offer",
        "kiosk-three-way",
        "kiosk-tile-large",
        "kiosk-peer-reconnecting",
        "expert-peer-reconnecting",
        "expert-three-way",
        "interpreter-call",
        "expert-sharing",
        "expert-transfer-chooser",
        "kiosk-transferring",
        "expert-transfer-offer",
    ]
    assert not visits.problems, "\n".join(visits.problems)
