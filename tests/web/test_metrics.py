"""/metrics: prometheus-client text for the operator only, with the figures a city
system is run with."""

import asyncio
import contextlib
import logging

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ClientFactory, RunningServer, ServerFactory, active_call, login_session
from web.metrics import CLOSED_UNANSWERED, Metrics, metrics_middleware
from web.request_context import request_context


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/metrics", headers=headers or {}) as response,
    ):
        return response.status, await response.text()


async def test_metrics_show_queues_experts_calls_events_and_requests(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, call_id = await active_call(sqlite_server, connect)
    waiting = await connect(sqlite_server, "kiosk02")
    await waiting.request("market")
    await kiosk.chat(call_id, "hello")
    session = await login_session(sqlite_server, "clerk")
    await session.close()
    async with aiohttp.ClientSession() as http:
        await http.post(
            f"{sqlite_server.url}/api/v1/login", json={"username": "clerk", "password": "wrong-1"}
        )
    status, text = await scrape(sqlite_server.url)
    assert status == 200
    found = samples(text)
    names = {name for name, _ in found}
    assert all(name.startswith("windowlink_") for name in names)
    assert found[("windowlink_queue_length", (("department", "market"),))] == 1
    assert found[("windowlink_active_calls", (("department", "market"),))] == 1
    assert found[("windowlink_experts", (("department", "market"), ("status", "busy")))] == 1
    assert found[("windowlink_longest_wait_seconds", (("department", "market"),))] >= 0
    assert found[("windowlink_socket_connections", ())] == 3
    assert found[("windowlink_login_failures_total", ())] == 1
    events = {
        dict(labels)["event"]
        for name, labels in found
        if name == "windowlink_event_duration_seconds_count"
    }
    assert {"request_consultation", "accept_offer", "send_chat"} <= events
    routes = {
        dict(labels)["route"]
        for name, labels in found
        if name == "windowlink_http_request_duration_seconds_count"
    }
    assert "/api/v1/login" in routes
    assert (
        "windowlink_errors_total",
        (("channel", "http"), ("code", "invalid_credentials")),
    ) in found
    # The relay's figures (in-process pool here; the relay starts with the first offer).
    assert found[("windowlink_relay_calls", (("worker", "local"),))] == 0
    assert ("windowlink_relay_packets_forwarded_total", (("worker", "local"),)) in found
    await expert.end(call_id)


async def test_metrics_are_for_the_operator_only(start_server: ServerFactory) -> None:
    server = await start_server(behind_proxy=True, metrics_token="s3cret-scrape-token")
    # A client behind the proxy is not loopback, whatever the proxy's own address.
    proxied = {"X-Forwarded-For": "203.0.113.9"}
    assert (await scrape(server.url, proxied))[0] == 404
    assert (await scrape(server.url, {**proxied, "Authorization": "Bearer wrong"}))[0] == 404
    status, text = await scrape(
        server.url, {**proxied, "Authorization": "Bearer s3cret-scrape-token"}
    )
    assert status == 200 and "windowlink_queue_length" in text
    # A loopback client needs no token.
    assert (await scrape(server.url))[0] == 200


async def test_wrong_metrics_tokens_are_throttled_per_address(start_server: ServerFactory) -> None:
    token = "a-scrape-token-of-32-characters!"
    server = await start_server(behind_proxy=True, metrics_token=token, login_attempts=3)

    def client(address: str, bearer: str) -> dict[str, str]:
        return {"X-Forwarded-For": address, "Authorization": f"Bearer {bearer}"}

    # The right token takes its attempt back: a scraper is never throttled by itself.
    for _ in range(5):
        assert (await scrape(server.url, client("203.0.113.9", token)))[0] == 200
    guesses = [await scrape(server.url, client("203.0.113.9", f"guess-{i}")) for i in range(4)]
    assert [status for status, _ in guesses] == [404, 404, 404, 429]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/metrics", headers=client("203.0.113.9", token)) as response,
    ):
        # Until the window passes even the right token waits: a guess cannot tell.
        assert response.status == 429
        assert int(response.headers["Retry-After"]) > 0
    # Another address is not held back; concurrent guesses get no more than the limit.
    assert (await scrape(server.url, client("203.0.113.10", token)))[0] == 200
    burst = await asyncio.gather(
        *(scrape(server.url, client("203.0.113.11", f"burst-{i}")) for i in range(12))
    )
    assert sorted(status for status, _ in burst) == [404] * 3 + [429] * 9


async def test_a_request_cancelled_at_the_stop_is_not_counted_as_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp cancels the requests still open when the stop's grace ends: that is
    the stop, not a failure of ours, and must not feed the dashboards' 5xx."""
    metrics = Metrics()
    started = asyncio.Event()

    async def blocked(request: web.Request) -> web.Response:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    app = web.Application(middlewares=[metrics_middleware(lambda _: metrics), request_context])
    app.router.add_get("/blocked", blocked)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/blocked"))
        await started.wait()
        with caplog.at_level(logging.DEBUG, logger="windowlink.http"):
            await runner.cleanup()
        with contextlib.suppress(aiohttp.ClientError):
            (await request).release()
    statuses = {
        dict(labels)["status"]
        for name, labels in samples(metrics.exposition().decode())
        if name == "windowlink_http_request_duration_seconds_count"
    }
    assert statuses == {str(CLOSED_UNANSWERED)}
    lines = [r for r in caplog.records if r.name == "windowlink.http"]
    assert lines and all(r.levelno < logging.WARNING for r in lines)
    assert "-> 500" not in caplog.text
