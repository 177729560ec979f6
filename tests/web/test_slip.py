"""The citizen's slip and the materials still required (issue 22): what the kiosk
prints after the call, only for its own ended consultation and only for a while;
the admin's checklists of materials."""

import pytest

from signaling.client import ClientError, KioskClient
from tests.conftest import ClientFactory, RunningServer, active_call, login_session
from web import slip_api


async def test_the_slip_carries_outcome_materials_and_the_masked_number(
    sqlite_server: RunningServer, connect: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = sqlite_server
    kiosk, expert, call_id = await active_call(server, connect, case_number="SL-7788")
    await kiosk.give_identity(call_id, "11010519491231002X", history_consent=False)
    slip_path = f"/api/v1/consultations/{call_id}/slip"
    with pytest.raises(ClientError) as during:
        await kiosk.api("GET", slip_path)
    assert (during.value.status, during.value.code) == (409, "invalid_state")

    await expert.end(call_id)
    slip = await kiosk.api("GET", slip_path)
    # Printed before the expert saved: the outcome is still to come.
    assert slip["outcome"] is None and slip["materials"] == []
    await expert.emit(
        "save_outcome",
        {
            "consultation_id": call_id,
            "outcome": "follow_up",
            "notes": "内部备注不上凭条",
            "materials": ["营业执照正本 / Business licence (original)", " 租赁合同 ", "租赁合同"],
        },
    )
    slip = await kiosk.api("GET", slip_path)
    assert slip["outcome"] == "follow_up"
    assert slip["materials"] == ["营业执照正本 / Business licence (original)", "租赁合同"]
    assert slip["id_number"] == "110***********002X"
    assert slip["case_number"] == "SL-7788"
    assert slip["hall"]["name_zh"] == "市民中心"
    assert [e["name"] for e in slip["experts"]] == ["市场监管专家"]
    assert slip["qr"]["size"] >= 21 and len(slip["qr"]["rows"]) == slip["qr"]["size"]
    assert "内部备注" not in str(slip)

    # Another kiosk sees nothing of it; and the kiosk itself not after the window.
    other: KioskClient = await connect(server, "kiosk02")
    with pytest.raises(ClientError) as hidden:
        await other.api("GET", slip_path)
    assert hidden.value.status == 404
    monkeypatch.setattr(slip_api, "SLIP_WINDOW", -1.0)
    with pytest.raises(ClientError) as late:
        await kiosk.api("GET", slip_path)
    assert late.value.status == 404


async def test_the_admin_keeps_a_department_s_checklist_of_materials(
    sqlite_server: RunningServer,
) -> None:
    server = sqlite_server
    admin = await login_session(server, "admin")
    async with admin:
        departments = f"{server.url}/api/v1/departments"
        async with admin.get(departments) as response:
            seeded = {d["code"]: d for d in (await response.json())["departments"]}
        assert "营业执照正本 / Business licence (original)" in seeded["market"]["materials"]
        checklist = ["身份证原件", "申请表（签字）"]
        async with admin.patch(f"{departments}/social", json={"materials": checklist}) as response:
            assert response.status == 200
            assert (await response.json())["materials"] == checklist
        async with admin.patch(
            f"{departments}/social", json={"materials": ["x" * 201]}
        ) as response:
            assert response.status == 400
    actions = [e.action for e in await server.storage.audit.entries()]
    assert "department.materials" in actions
