"""TURN: coturn on loopback, configured with the repo's sample
(deploy/coturn/turnserver.conf, rendered as docs/DEPLOY.md says), and both pages
forced to relay-only ICE (``iceTransportPolicy: "relay"``, as a kiosk behind a
strict firewall has it): video both ways through TURN, with credentials that
expire; the pages never see a static password."""

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.chromium import (
    go_available,
    keeping_connections,
    open_logged_in,
    request_from_kiosk,
    wait_for_js,
    wait_media_both_ways,
)
from tests.conftest import RunningServer, ServerFactory, login_session
from tests.coturn import running_coturn

pytestmark = pytest.mark.browser

SECRET = "turn-secret-for-tests-" + os.urandom(8).hex()

# Test code, run in each page before its own scripts: every peer connection is
# relay-only, and kept where the test can ask it for its selected candidates.
FORCE_RELAY = keeping_connections(relay_only=True)
SELECTED_CANDIDATE_TYPE = """
(async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  const stats = await pc.getStats();
  for (const report of stats.values()) {
    if (report.type === "transport" && report.selectedCandidatePairId) {
      const pair = stats.get(report.selectedCandidatePairId);
      return stats.get(pair.localCandidateId).candidateType;
    }
  }
  return null;
})()
"""


async def test_video_both_ways_through_turn_with_credentials_that_expire(
    browser: Any, start_server: ServerFactory, tmp_path: Path
) -> None:
    async with running_coturn(tmp_path / "coturn", SECRET) as turn_port:
        turn = f"turn:127.0.0.1:{turn_port}?transport=udp"
        server: RunningServer = await start_server(ice_servers=(turn,), turn_secret=SECRET)

        async def given_to_kiosk() -> Any:
            kiosk_http = await login_session(server, "kiosk01")
            async with kiosk_http, kiosk_http.get(f"{server.url}/api/v1/ice-servers") as response:
                assert response.status == 200
                return await response.json()

        # Outside a call, nobody is given TURN credentials.
        assert await given_to_kiosk() == {"ice_servers": [], "expires_at": None}
        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.get(f"{server.url}/api/v1/ice-servers") as response,
        ):
            assert response.status == 401

        expert = await open_logged_in(browser, server, "expert", "expert_market")
        await expert.add_init_script(FORCE_RELAY)
        await expert.reload()
        await expert.wait_for_selector("#app-view:not([hidden])")
        await go_available(expert)
        kiosk = await open_logged_in(browser, server, "kiosk", "kiosk01")
        await kiosk.add_init_script(FORCE_RELAY)
        await kiosk.reload()
        await kiosk.wait_for_selector("#app-view:not([hidden])")
        await request_from_kiosk(kiosk, "market")
        await expert.get_by_test_id("accept-call").click()
        await wait_media_both_ways(kiosk, expert, more_than=10)
        for page in (kiosk, expert):
            await wait_for_js(page, "window.__pcs.length > 0")
            assert await page.evaluate(SELECTED_CANDIDATE_TYPE) == "relay"
        # What a page in a call is given: the TURN URL, a name carrying its expiry
        # and the HMAC of it under the shared secret; no static password.
        given = await given_to_kiosk()
        (entry,) = given["ice_servers"]
        assert entry["urls"] == [turn]
        expiry, _, user = entry["username"].partition(":")
        assert int(expiry) == int(given["expires_at"]) and user and SECRET not in str(given)
        expected = hmac.new(SECRET.encode(), entry["username"].encode(), hashlib.sha1).digest()
        assert entry["credential"] == base64.b64encode(expected).decode()
