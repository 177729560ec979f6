"""Malformed events get an error ack, change nothing, and the server keeps serving."""

from typing import Any

import pytest

from signaling.client import ClientError, ExpertClient, KioskClient
from signaling.messages import ChatView
from tests.conftest import ClientFactory, RunningServer, active_call

LONG = "x" * 5000
BAD_KIOSK_PAYLOADS: list[tuple[str, Any]] = [
    ("request_consultation", {}),
    ("request_consultation", {"department": 7}),
    ("request_consultation", {"department": "market", "extra": 1}),
    ("request_consultation", {"department": LONG}),
    ("request_consultation", {"department": "../etc"}),
    ("request_consultation", {"department": "market", "case_number": LONG}),
    ("request_consultation", {"department": "market", "case_number": "<script>"}),
    ("request_consultation", "market"),
    ("request_consultation", [1, 2]),
    ("cancel_request", {}),
    ("cancel_request", {"consultation_id": 12}),
    ("cancel_request", {"consultation_id": "not-hex"}),
    ("rate_consultation", {"consultation_id": "0123456789abcdef", "rating": 6}),
    ("rate_consultation", {"consultation_id": "0123456789abcdef", "rating": "5"}),
    ("rate_consultation", {"consultation_id": "0123456789abcdef", "rating": 0}),
    ("send_chat", {"consultation_id": "0123456789abcdef"}),
    ("send_chat", {"consultation_id": "0123456789abcdef", "text": ""}),
    ("send_chat", {"consultation_id": "0123456789abcdef", "text": "   "}),
    ("send_chat", {"consultation_id": "0123456789abcdef", "text": LONG}),
    ("end_consultation", {"consultation_id": None}),
]
BAD_EXPERT_PAYLOADS: list[tuple[str, Any]] = [
    ("set_presence", {"status": "busy"}),
    ("set_presence", {"status": 1}),
    ("set_presence", {}),
    ("accept_offer", {}),
    ("accept_offer", {"consultation_id": LONG}),
    ("save_outcome", {"consultation_id": "0123456789abcdef", "outcome": "great"}),
    ("save_outcome", {"consultation_id": "0123456789abcdef", "outcome": "answered", "notes": LONG}),
    ("get_queue", {"department": "housing"}),
]
UNKNOWN_IDS: list[tuple[str, dict[str, Any]]] = [
    ("cancel_request", {"consultation_id": "0123456789abcdef"}),
    ("end_consultation", {"consultation_id": "0123456789abcdef"}),
    ("rate_consultation", {"consultation_id": "0123456789abcdef", "rating": 3}),
    ("request_consultation", {"department": "nosuchdept"}),
]


@pytest.mark.parametrize(("event", "payload"), BAD_KIOSK_PAYLOADS)
async def test_kiosk_event_with_bad_payload_is_refused(
    sqlite_server: RunningServer, connect: ClientFactory, event: str, payload: Any
) -> None:
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    with pytest.raises(ClientError) as info:
        await kiosk.emit(event, payload)
    assert info.value.code == "invalid_payload"
    assert info.value.message
    assert (await kiosk.state()).consultation is None
    assert await sqlite_server.storage.consultations.open_consultations() == []


@pytest.mark.parametrize(("event", "payload"), BAD_EXPERT_PAYLOADS)
async def test_expert_event_with_bad_payload_is_refused(
    sqlite_server: RunningServer, connect: ClientFactory, event: str, payload: Any
) -> None:
    expert: ExpertClient = await connect(sqlite_server, "expert_market")
    with pytest.raises(ClientError) as info:
        await expert.emit(event, payload)
    assert info.value.code == "invalid_payload"
    assert (await expert.state()).presence.status == "away"  # type: ignore[union-attr]


@pytest.mark.parametrize(("event", "payload"), UNKNOWN_IDS)
async def test_unknown_ids_answer_not_found(
    sqlite_server: RunningServer, connect: ClientFactory, event: str, payload: dict[str, Any]
) -> None:
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    with pytest.raises(ClientError) as info:
        await kiosk.emit(event, payload)
    assert info.value.code == "not_found"


async def test_garbage_does_not_disturb_a_call_in_progress(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, call_id = await active_call(sqlite_server, connect)
    vandal: KioskClient = await connect(sqlite_server, "kiosk02")
    for event, payload in BAD_KIOSK_PAYLOADS + UNKNOWN_IDS:
        with pytest.raises(ClientError):
            await vandal.emit(event, payload)
    # Extra positional arguments and unknown events do not break the connection.
    answer = await vandal.sio.call("get_state", ({}, {}), timeout=5)
    assert answer["error"]["code"] == "invalid_payload"
    await vandal.sio.emit("no_such_event", {"a": 1})
    with pytest.raises(ClientError) as info:
        await vandal.emit("get_state", "nope")
    assert info.value.code == "invalid_payload"
    await kiosk.chat(call_id, "仍然在线")
    assert (await expert.next_event("chat_message", ChatView)).text == "仍然在线"
    assert (await vandal.state()).username == "kiosk02"


async def test_nul_in_chat_and_notes_is_refused_on_every_database(
    server: RunningServer, connect: ClientFactory
) -> None:
    """PostgreSQL cannot store U+0000: it answered `internal` there."""
    kiosk, expert, call_id = await active_call(server, connect)
    with pytest.raises(ClientError) as info:
        await kiosk.chat(call_id, "hello\x00there")
    assert info.value.code == "invalid_payload"
    await expert.end(call_id)
    with pytest.raises(ClientError) as info:
        await expert.save_outcome(call_id, "answered", "notes\x00")
    assert info.value.code == "invalid_payload"
    await expert.save_outcome(call_id, "answered", "fine notes")
