"""An upload across nodes: begun through node A, A killed with SIGKILL in the middle
of a part, resumed and finished through node B. What A had verified is kept (not
sent again), the file is byte-exact, and nothing partial is ever listed. Run with
the documents in the shared data directory and in an S3-compatible store."""

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from harness.object_store import ObjectStore
from signaling.client import part_headers
from signaling.messages import ConsultationView, OfferView
from tests.cluster.processes import Clients, Deployment
from tests.web.test_upload_limits import begin

pytestmark = pytest.mark.postgres

PART = 1024 * 1024
CONTENT = b"%PDF-1.7\n" + os.urandom(3 * PART + 12_345) + b"\n%%EOF\n"


def session(cookie: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Cookie": f"wl_session={cookie}"})


async def listed(http: aiohttp.ClientSession, base: str, call_id: str) -> list[str]:
    async with http.get(f"{base}/api/v1/consultations/{call_id}/files") as response:
        assert response.status == 200
        return [f["name"] for f in (await response.json())["files"]]


@pytest.mark.parametrize("store", ["shared directory", "object store"])
async def test_an_upload_begun_on_a_node_killed_mid_part_is_resumed_on_another(
    deployment: Deployment, store: str, request: pytest.FixtureRequest
) -> None:
    extra: list[str] = []
    if store == "object store":
        objects: ObjectStore = request.getfixturevalue("object_store")
        bucket = objects.new_bucket()
        extra = ["--blob-url", f"s3://{bucket}/docs", "--s3-endpoint", objects.endpoint]
    a, b = await deployment.start_nodes(2, *extra)
    async with Clients() as clients:
        expert = await clients.expert(b.url, "expert_market")
        await expert.set_presence("available")
        kiosk = await clients.kiosk(b.url, "kiosk01")
        call_id = (await kiosk.request("market")).consultation_id
        await expert.next_event("offer", OfferView, timeout=20)
        await expert.accept(call_id)
        await kiosk.next_event(
            "consultation", ConsultationView, where=lambda v: v.state == "active", timeout=20
        )
        http = session(kiosk.session_cookie)
        async with http:
            status, created = await begin(http, a.url, call_id, len(CONTENT), "材料.pdf")
            assert status == 201, created
            path = str(created["url"])
            first = CONTENT[:PART]
            async with http.patch(a.url + path, data=first, headers=part_headers(0, first)) as r:
                assert r.status == 204

            # The second part stops half-way; A is killed while it waits for the rest.
            second = CONTENT[PART : 2 * PART]
            half_sent = asyncio.Event()

            async def stalls() -> AsyncIterator[bytes]:
                yield second[: PART // 2]
                half_sent.set()
                await asyncio.Event().wait()

            cut = asyncio.create_task(
                http.patch(a.url + path, data=stalls(), headers=part_headers(PART, second))
            )
            await asyncio.wait_for(half_sent.wait(), 20)
            await asyncio.sleep(0.5)
            a.send(signal.SIGKILL)
            await a.wait_exit()
            with pytest.raises(aiohttp.ClientError):
                await cut
            assert await listed(http, b.url, call_id) == []

            # B knows the upload and where it stands: the first part is not sent again.
            async with http.head(b.url + path) as r:
                assert r.status == 200 and r.headers["Upload-Offset"] == str(PART)
            offset = PART
            while offset < len(CONTENT):
                part = CONTENT[offset : offset + PART]
                async with http.patch(
                    b.url + path, data=part, headers=part_headers(offset, part)
                ) as r:
                    assert r.status == 204, await r.text()
                    offset = int(r.headers["Upload-Offset"])
                assert await listed(http, b.url, call_id) == []
            async with http.post(f"{b.url}{path}/finish") as r:
                assert r.status == 201, await r.text()
                view = await r.json()
            # Node B saw only the rest: the digest comes from reading the whole back.
            assert view["digest"] == hashlib.sha256(CONTENT).hexdigest()
            async with http.get(b.url + view["url"]) as r:
                assert r.status == 200 and await r.read() == CONTENT
            assert await listed(http, b.url, call_id) == ["材料.pdf"]
    (left,) = await deployment.query("SELECT count(*) AS n FROM uploads")
    assert left["n"] == 0
    if store == "shared directory":
        # The upload's parts are gone with it; only the document is stored.
        # (beside the store's owner marker, deployment.wlo)
        assert sorted(p.suffix for p in (deployment.data_dir / "files").iterdir()) == [
            ".wlf",
            ".wlo",
        ]
