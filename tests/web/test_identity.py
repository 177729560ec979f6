"""The citizen as one person across halls and visits (issue 22): the identity
number given at the kiosk (with consent), the expert's view of the earlier
consultations with their own department (only with the citizen's consent), the
clerk's search across halls and audited reveal, a lookup-key rotation after which
lookups still work, and the number never in clear anywhere the server writes."""

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from signaling.client import ClientError, ExpertClient, KioskClient
from signaling.messages import ConsultationView
from storage.records import Role
from storage.schema import metadata
from tests.conftest import ClientFactory, RunningServer, ServerFactory, active_call, login_session
from web.keys import SENSITIVE, STORAGE

NUMBER = "11010519491231002X"
TYPED = "110105 19491231 002x"  # how a person (or a card reader) may type it
OTHER_NUMBER = "440304199001011233"
COLLEAGUE_PASSWORD = "colleague-pass-2026"


async def visit(
    server: RunningServer,
    connect: ClientFactory,
    *,
    kiosk: str,
    expert: str = "expert_market",
    department: str = "market",
    number: str | None = NUMBER,
    consent: bool = True,
) -> tuple[KioskClient, ExpertClient, str]:
    k, e, call_id = await active_call(
        server, connect, kiosk=kiosk, expert=expert, department=department
    )
    if number is not None:
        given = await k.give_identity(call_id, number, history_consent=consent)
        assert given["masked"] == "110***********002X" or number != NUMBER
    return k, e, call_id


async def finish(kiosk: KioskClient, expert: ExpertClient, call_id: str, notes: str) -> None:
    await expert.end(call_id)
    await expert.save_outcome(call_id, "follow_up", notes)
    await kiosk.close()
    await expert.close()


async def history(expert: ExpertClient, call_id: str) -> dict[str, Any]:
    return await expert.api("GET", f"/api/v1/consultations/{call_id}/history")


async def test_a_second_visit_at_another_hall_starts_where_the_first_ended(
    start_server: ServerFactory,
    connect: ClientFactory,
    database_url: str | None,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(database_url=database_url, grace_period=30.0)
    # The first visit, at the city hall: outcome and notes, a document.
    k, e, first = await visit(server, connect, kiosk="kiosk01")
    await k.upload(first, "户口簿.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    await finish(k, e, first, "请下次带户口簿原件")

    # The second, at the district hall, the number typed differently: the expert of
    # the same department sees the first, with its notes and document.
    k, e, second = await visit(server, connect, kiosk="kiosk02", number=TYPED)
    seen = await history(e, second)
    assert seen["consented"] is True and seen["masked"] == "110***********002X"
    assert [c["record"]["id"] for c in seen["consultations"]] == [first]
    assert seen["consultations"][0]["record"]["notes"] == "请下次带户口簿原件"
    assert [d["name"] for d in seen["consultations"][0]["documents"]] == ["户口簿.png"]
    await finish(k, e, second, "已核对")

    # Another department's expert sees nothing of the market's consultations.
    k, e, third = await visit(
        server, connect, kiosk="kiosk02", expert="expert_housing", department="housing"
    )
    assert (await history(e, third))["consultations"] == []
    await finish(k, e, third, "")

    # Without the citizen's consent, nothing (the number is still kept for the clerk).
    k, e, fourth = await visit(server, connect, kiosk="kiosk01", consent=False)
    assert await history(e, fourth) == {"consented": False, "masked": None, "consultations": []}
    # Only the expert in the call: a colleague of the department is told nothing.
    await server.storage.accounts.create(
        "expert_market2", COLLEAGUE_PASSWORD, Role.EXPERT, department="market"
    )
    colleague: ExpertClient = await connect(server, "expert_market2", COLLEAGUE_PASSWORD)
    with pytest.raises(ClientError) as refused:
        await history(colleague, fourth)
    assert refused.value.status == 404
    await finish(k, e, fourth, "")

    # A different citizen at the same kiosk: nothing of the first.
    k, e, fifth = await visit(server, connect, kiosk="kiosk01", number=OTHER_NUMBER)
    assert (await history(e, fifth))["consultations"] == []
    await finish(k, e, fifth, "")

    # The clerk finds every consultation of the number, at both halls, masked.
    clerk = await login_session(server, "clerk")
    async with clerk:
        async with clerk.post(
            f"{server.url}/api/v1/identity/search", json={"id_number": NUMBER.lower()}
        ) as response:
            found = await response.json()
        assert response.status == 200, found
        assert [c["record"]["id"] for c in found["consultations"]] == [fourth, third, second, first]
        assert {c["record"]["hall"] for c in found["consultations"]} == {"city", "district"}
        assert found["masked"] == "110***********002X"
        async with clerk.get(f"{server.url}/api/v1/consultations/{first}/identity") as response:
            assert (await response.json())["masked"] == "110***********002X"
        # A wrong number says which part is wrong, never the number.
        async with clerk.post(
            f"{server.url}/api/v1/identity/search", json={"id_number": "110105194912310021"}
        ) as response:
            error = (await response.json())["error"]
        assert (response.status, error["code"]) == (400, "invalid_id_number.check")
        assert "110105" not in error["message"]
        # The reveal needs a reason and is audited with it.
        async with clerk.post(
            f"{server.url}/api/v1/consultations/{first}/identity/reveal", json={}
        ) as response:
            assert response.status == 400
        async with clerk.post(
            f"{server.url}/api/v1/consultations/{first}/identity/reveal",
            json={"reason": "核对办件申请人"},
        ) as response:
            assert (await response.json())["id_number"] == NUMBER

        # The lookup key rotated: the stored lookups follow, the search still finds them.
        assert await server.app[SENSITIVE].rotate_lookup() == 5
        async with clerk.post(
            f"{server.url}/api/v1/identity/search", json={"id_number": NUMBER}
        ) as response:
            assert len((await response.json())["consultations"]) == 4
        async with clerk.get(f"{server.url}/metrics") as response:
            metrics = await response.text()

    entries = await server.storage.audit.entries()
    actions = [entry.action for entry in entries]
    assert actions.count("identity.give") == 5
    assert "identity.search" in actions and "identity.reveal" in actions
    reveal = next(entry for entry in entries if entry.action == "identity.reveal")
    assert json.loads(reveal.detail)["reason"] == "核对办件申请人"

    # Never in clear: not in any table, the data directory, the logs, the metrics.
    clear = {NUMBER, NUMBER.lower(), NUMBER[:17], OTHER_NUMBER}
    rows = await server.app[STORAGE].db.read(
        lambda conn: [
            json.dumps([list(map(str, row)) for row in conn.execute(select(table)).all()])
            for table in metadata.sorted_tables
        ]
    )
    everything = "\n".join(rows) + caplog.text + metrics
    everything += "".join(entry.detail for entry in entries)
    for value in clear:
        assert value not in everything
    for path in Path(server.settings.data_dir).rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for value in clear:
                assert value.encode() not in content, path


async def test_a_kiosk_gives_a_number_only_for_its_own_open_consultation(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, expert, call_id = await active_call(server, connect)
    with pytest.raises(ClientError) as wrong:
        await kiosk.give_identity(call_id, "11010519491231002", history_consent=True)
    assert (wrong.value.status, wrong.value.code) == (400, "invalid_id_number.length")
    other: KioskClient = await connect(server, "kiosk02")
    with pytest.raises(ClientError) as hidden:
        await other.give_identity(call_id, NUMBER, history_consent=True)
    assert hidden.value.status == 404
    ended: ConsultationView = await expert.end(call_id)
    assert ended.state == "ended"
    with pytest.raises(ClientError) as late:
        await kiosk.give_identity(call_id, NUMBER, history_consent=True)
    assert late.value.status == 404
