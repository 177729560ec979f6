"""Client address, scheme and origin behind proxies: tables of the pure rules, then
the throttle and the audit log through a real server that believes a proxy."""

import aiohttp
import pytest

from tests.conftest import ServerFactory
from web.forwarded import ProxyTrust, client_address, origin_allowed, public_scheme

ONE_HOP = ProxyTrust.of(True, ())
TWO_HOPS = ProxyTrust.of(True, ("2",))
NETWORKS = ProxyTrust.of(True, ("10.0.0.0/8", "192.0.2.7"))
NONE = ProxyTrust.of(False, ("10.0.0.0/8",))


@pytest.mark.parametrize(
    ("peer", "header", "trust", "expected"),
    [
        # No proxy configured: the header is the client's own words.
        ("203.0.113.5", "1.1.1.1", NONE, "203.0.113.5"),
        # One hop (a proxy on this machine): it appended the real peer; what the client
        # wrote is to its left.
        ("127.0.0.1", "6.6.6.6, 203.0.113.5", ONE_HOP, "203.0.113.5"),
        ("127.0.0.1", "203.0.113.5", ONE_HOP, "203.0.113.5"),
        ("::1", "203.0.113.5", ONE_HOP, "203.0.113.5"),
        ("::ffff:127.0.0.1", "203.0.113.5", ONE_HOP, "203.0.113.5"),
        ("127.0.0.1", "", ONE_HOP, "127.0.0.1"),
        # Two hops: CDN -> nginx on this machine -> us.
        ("127.0.0.1", "6.6.6.6, 203.0.113.5, 10.9.9.9", TWO_HOPS, "203.0.113.5"),
        # A hop count names no proxy: a peer from elsewhere reached the port directly,
        # and what it writes is its own words (it once opened /metrics as 127.0.0.1).
        ("10.0.0.2", "127.0.0.1", ONE_HOP, "10.0.0.2"),
        ("203.0.113.9", "6.6.6.6, 127.0.0.1", TWO_HOPS, "203.0.113.9"),
        # Networks: walk from the right past the proxies.
        ("10.0.0.2", "6.6.6.6, 203.0.113.5, 10.1.1.1", NETWORKS, "203.0.113.5"),
        ("10.0.0.2", "6.6.6.6, 203.0.113.5, 192.0.2.7", NETWORKS, "203.0.113.5"),
        # A peer that is not a trusted proxy: its header is ignored.
        ("203.0.113.9", "6.6.6.6", NETWORKS, "203.0.113.9"),
        ("203.0.113.9", "127.0.0.1", NETWORKS, "203.0.113.9"),
        ("127.0.0.1", "203.0.113.5", NETWORKS, "127.0.0.1"),
        ("::ffff:10.0.0.2", "6.6.6.6, 203.0.113.5", NETWORKS, "203.0.113.5"),
        # Everything was a proxy: the left-most is the best there is.
        ("10.0.0.2", "10.3.3.3", NETWORKS, "10.3.3.3"),
    ],
)
def test_client_address_believes_only_what_trusted_proxies_appended(
    peer: str, header: str, trust: ProxyTrust, expected: str
) -> None:
    assert client_address(peer, header, trust) == expected


@pytest.mark.parametrize(
    ("tls", "peer", "proto", "trust", "expected"),
    [
        (True, "127.0.0.1", "", NONE, "https"),
        (False, "127.0.0.1", "https", NONE, "http"),
        (False, "127.0.0.1", "http, https", ONE_HOP, "https"),
        (False, "127.0.0.1", "", ONE_HOP, "https"),
        (False, "127.0.0.1", "http", ONE_HOP, "http"),
        (False, "10.0.0.2", "https", ONE_HOP, "http"),
        (False, "203.0.113.9", "https", NETWORKS, "http"),
        (False, "10.0.0.2", "gopher", NETWORKS, "https"),
    ],
)
def test_public_scheme_follows_what_the_app_really_serves(
    tls: bool, peer: str, proto: str, trust: ProxyTrust, expected: str
) -> None:
    assert public_scheme(tls, peer, proto, trust) == expected


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "names", "allowed"),
    [
        (None, "https", "10.1.1.1:8443", (), True),
        ("https://10.1.1.1:8443", "https", "10.1.1.1:8443", (), True),
        # The defect: an HTTPS page refused because the server assumed http.
        ("https://hall.example:8443", "https", "hall.example:8443", (), True),
        ("http://hall.example:8443", "https", "hall.example:8443", (), False),
        ("https://evil.example:8443", "https", "hall.example:8443", (), False),
        ("https://hall.example", "https", "hall.example:443", (), True),
        ("https://hall.example:444", "https", "hall.example", (), False),
        ("https://hall.example:8443", "https", "10.0.0.5:8443", ("hall.example",), True),
        ("https://[::1]:8443", "https", "[::1]:8443", (), True),
        ("null", "https", "hall.example", (), False),
        ("https://hall.example:99999", "https", "hall.example", (), False),
    ],
)
def test_origin_must_be_this_server_as_the_browser_sees_it(
    origin: str | None, scheme: str, host: str, names: tuple[str, ...], allowed: bool
) -> None:
    assert origin_allowed(origin, scheme, host, names) is allowed


async def test_fresh_forwarded_for_values_do_not_escape_the_throttle(
    start_server: ServerFactory,
) -> None:
    """Behind one proxy (here: the test itself on loopback), the left-most entries are
    the client's: writing a new one per guess used to reset the throttle."""
    server = await start_server(behind_proxy=True, login_attempts=3)
    statuses = []
    async with aiohttp.ClientSession() as http:
        for i in range(5):
            async with http.post(
                f"{server.url}/api/v1/login",
                json={"username": "admin", "password": "wrong-pass"},
                headers={"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.5"},
            ) as response:
                statuses.append(response.status)
    assert statuses == [401, 401, 401, 429, 429]
    remotes = {e.remote for e in await server.storage.audit.entries() if e.action == "login.failed"}
    assert remotes == {"203.0.113.5"}
