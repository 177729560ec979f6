"""Recording with the citizen's consent (issue 23): only where the department
records; the expert asks, the kiosk's citizen accepts or declines with the text
version they were shown, everyone's view says so, either side stops; the requests,
answers and stops are on the record and in the audit log."""

import pytest

from signaling.client import ClientError
from signaling.messages import ConsultationView
from tests.conftest import ClientFactory, RunningServer, active_call


async def _recording(client: object, call_id: str, state: str) -> ConsultationView:
    return await client.next_event(  # type: ignore[attr-defined,no-any-return]
        "consultation",
        ConsultationView,
        where=lambda v: v.consultation_id == call_id and v.recording == state,
    )


async def test_the_citizen_consents_everyone_sees_it_and_either_side_stops(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, expert, call_id = await active_call(server, connect)
    # Off by default: the department does not record.
    with pytest.raises(ClientError) as off:
        await expert.request_recording(call_id)
    assert off.value.code == "forbidden"
    await server.storage.departments.change("market", {"recording": True})

    asked = await expert.request_recording(call_id)
    assert asked.recording == "asked"
    await _recording(kiosk, call_id, "asked")
    # Asked twice: refused while the citizen is being asked.
    with pytest.raises(ClientError) as twice:
        await expert.request_recording(call_id)
    assert twice.value.code == "invalid_state"
    # Only the citizen answers.
    with pytest.raises(ClientError):
        await expert.emit(
            "answer_recording", {"consultation_id": call_id, "accept": True, "text_version": "v1"}
        )
    on = await kiosk.answer_recording(call_id, True, "rec-2026-12")
    assert on.recording == "on"
    await _recording(expert, call_id, "on")
    off_view = await kiosk.stop_recording(call_id)
    assert off_view.recording == "off"
    await _recording(expert, call_id, "off")

    # Asked again and declined: nothing changes but the record.
    await expert.request_recording(call_id)
    declined = await kiosk.answer_recording(call_id, False, "rec-2026-12")
    assert declined.recording == "off"

    consents = await server.storage.recording_consents.of(call_id)
    assert [(c.accepted, c.text_version) for c in consents] == [
        (True, "rec-2026-12"),
        (False, "rec-2026-12"),
    ]
    assert consents[0].stopped_by == "kiosk01" and consents[0].stopped_at is not None
    actions = [e.action for e in await server.storage.audit.entries()]
    for action in ("recording.request", "recording.consent", "recording.stop", "recording.decline"):
        assert action in actions, action


async def test_the_expert_stops_and_a_call_s_end_leaves_nothing_recording(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    await server.storage.departments.change("market", {"recording": True})
    kiosk, expert, call_id = await active_call(server, connect)
    await expert.request_recording(call_id)
    await kiosk.answer_recording(call_id, True)
    stopped = await expert.stop_recording(call_id)
    assert stopped.recording == "off"
    # Nothing to answer any more.
    with pytest.raises(ClientError) as late:
        await kiosk.answer_recording(call_id, True)
    assert late.value.code == "invalid_state"
    ended = await expert.end(call_id)
    assert ended.recording == "off"
