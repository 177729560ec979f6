"""The pages' part size rule (nextPartSize in web/static/js/files.js), run in
Chromium as the page runs it: parts grow from 1 MiB, doubling, up to 8 MiB while
each takes under two seconds, and shrink with the link. bench/files.py copies
the rule; the table holds both to it."""

from typing import Any

import pytest

from bench.files import next_part_size
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

MiB = 1024 * 1024
# (current part size, bytes the part carried, seconds it took) -> next size
TABLE = [
    (MiB, MiB, 0.01, 2 * MiB),  # a LAN: double
    (4 * MiB, 4 * MiB, 0.05, 8 * MiB),
    (8 * MiB, 8 * MiB, 0.05, 8 * MiB),  # never above 8 MiB
    (MiB, MiB, 1.0, 2 * MiB),  # 1 MiB/s: 2 MiB fit in two seconds
    (2 * MiB, 2 * MiB, 2.0, 2 * MiB),
    (8 * MiB, 8 * MiB, 8.0, 2 * MiB),  # the link slowed: shrink at once
    (MiB, MiB, 10.0, MiB),  # a slow uplink stays at the 1 MiB floor
    (MiB, 500_000, 0.0, 2 * MiB),  # a part that took no measurable time
]


async def test_parts_grow_on_a_fast_link_and_stay_small_on_a_slow_one(
    browser: Any, sqlite_server: RunningServer
) -> None:
    page = await browser.new_page()
    await page.goto(f"{sqlite_server.url}/kiosk")
    await page.wait_for_selector("body[data-ready]")
    rows = [[current, sent, seconds] for current, sent, seconds, _ in TABLE]
    in_page = await page.evaluate(
        """async (rows) => {
            const { nextPartSize } = await import("/static/js/files.js");
            return rows.map(([current, sent, seconds]) => nextPartSize(current, sent, seconds));
        }""",
        rows,
    )
    expected = [size for *_, size in TABLE]
    assert in_page == expected
    assert [next_part_size(c, s, t) for c, s, t, _ in TABLE] == expected
