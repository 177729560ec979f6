"""After a call, its record: the expert is offered nobody until the outcome is saved
or put off (稍后填写), records put off wait among the expert's unfinished ones with
their notes, a wrap-up that runs out sets the expert away and says why, and a
participant whose page was reloaded gets the call's chat back. Real server, real
socket.io clients."""

from signaling.client import ClientError, ExpertClient, KioskClient
from signaling.messages import ConsultationView, OfferView, PresenceView
from storage.records import Outcome
from tests.conftest import (
    ClientFactory,
    RunningServer,
    ServerFactory,
    active_call,
    login_session,
)


async def call_ended_by_kiosk(
    server: RunningServer, connect: ClientFactory, **options: str
) -> tuple[KioskClient, ExpertClient, str]:
    kiosk, expert, call_id = await active_call(server, connect, **options)
    await kiosk.end(call_id)
    return kiosk, expert, call_id


async def wrapping_up(expert: ExpertClient, call_id: str) -> PresenceView:
    return await expert.next_event(
        "presence", PresenceView, where=lambda p: p.status == "wrap_up" and p.wrap_up == call_id
    )


async def get(server: RunningServer, username: str, path: str) -> tuple[int, object]:
    """``path`` read as ``username``: the status and the JSON body."""
    async with await login_session(server, username) as http, http.get(server.url + path) as r:
        return r.status, await r.json()


async def unfinished(server: RunningServer, username: str) -> list[dict[str, object]]:
    status, body = await get(server, username, "/api/v1/me/consultations?unfinished=true")
    assert status == 200 and isinstance(body, dict), body
    return list(body["consultations"])


async def test_after_a_call_the_expert_is_offered_nobody_until_its_record_is_saved(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, expert, call_a = await call_ended_by_kiosk(server, connect)
    presence = await wrapping_up(expert, call_a)
    assert presence.wrap_up_until is not None
    # The expert's desk still counts: the next citizen is told an expert is there.
    second: KioskClient = await connect(server, "kiosk02")
    waiting = await second.request("market", case_number="NEXT-1")
    queue = await expert.queue()
    assert [e.consultation_id for e in queue.entries] == [waiting.consultation_id]
    assert [(x.username, x.status) for x in queue.experts] == [("expert_market", "wrap_up")]
    state = await second.state()
    assert state.consultation is not None and state.consultation.state == "waiting"
    assert expert.drain("offer") == []

    await expert.save_outcome(call_a, "answered", "已说明")
    offer = await expert.next_event("offer", OfferView)
    assert offer.consultation_id == waiting.consultation_id
    record = await server.storage.consultations.get(call_a)
    assert (record.outcome, record.notes) == (Outcome.ANSWERED, "已说明")


async def test_put_off_the_record_keeps_its_notes_on_it_and_lists_it_until_saved(
    server: RunningServer, connect: ClientFactory
) -> None:
    _kiosk, expert, call_a = await call_ended_by_kiosk(server, connect, case_number="A-1")
    await wrapping_up(expert, call_a)
    second: KioskClient = await connect(server, "kiosk02")
    waiting = await second.request("market", case_number="B-2")

    after = await expert.defer_outcome(call_a, "还差一份证明")
    assert (after.status, after.wrap_up) == ("available", None)
    offer = await expert.next_event("offer", OfferView)
    assert offer.consultation_id == waiting.consultation_id
    record = await server.storage.consultations.get(call_a)
    assert (record.outcome, record.notes) == (None, "还差一份证明")
    rows = await unfinished(server, "expert_market")
    assert [(r["id"], r["notes"], r["case_number"]) for r in rows] == [
        (call_a, "还差一份证明", "A-1")
    ]

    # Call B, taken before A's record is done, leaves A's notes where they are.
    await expert.accept(offer.consultation_id)
    await second.end(offer.consultation_id)
    await expert.save_outcome(offer.consultation_id, "referred", "B 的备注")
    assert (await server.storage.consultations.get(call_a)).notes == "还差一份证明"
    await expert.save_outcome(call_a, "follow_up", "还差一份证明，已约补交")
    assert await unfinished(server, "expert_market") == []
    a = await server.storage.consultations.get(call_a)
    b = await server.storage.consultations.get(offer.consultation_id)
    assert (a.outcome, a.notes) == (Outcome.FOLLOW_UP, "还差一份证明，已约补交")
    assert (b.outcome, b.notes) == (Outcome.REFERRED, "B 的备注")
    # A draft never replaces a saved record's notes.
    try:
        await expert.defer_outcome(call_a, "草稿")
    except ClientError as error:
        assert error.code == "invalid_state"
    else:
        raise AssertionError("a saved record was put off")
    assert (await server.storage.consultations.get(call_a)).notes == "还差一份证明，已约补交"
    actions = [e.action for e in await server.storage.audit.entries()]
    assert "consultation.outcome_deferred" in actions


async def test_only_the_expert_who_answered_may_put_a_record_off(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, _expert, call_a = await call_ended_by_kiosk(server, connect)
    other: ExpertClient = await connect(server, "expert_housing")
    try:
        await other.defer_outcome(call_a, "不是我的")
    except ClientError as error:
        assert error.code == "not_found"
    else:
        raise AssertionError("another expert put the record off")
    assert (await server.storage.consultations.get(call_a)).notes is None


async def test_away_during_the_wrap_up_ends_it_and_the_record_waits(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, expert, call_a = await call_ended_by_kiosk(server, connect)
    await wrapping_up(expert, call_a)
    # Available does not skip the record ...
    assert (await expert.set_presence("available")).status == "wrap_up"
    # ... away ends the wrap-up; the record is among those to complete.
    away = await expert.set_presence("away")
    assert (away.status, away.wrap_up, away.away_reason) == ("away", None, None)
    assert [r["id"] for r in await unfinished(server, "expert_market")] == [call_a]


async def test_a_wrap_up_that_runs_out_sets_the_expert_away_saying_why(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(wrap_up_limit=1.0)
    _kiosk, expert, call_a = await call_ended_by_kiosk(server, connect)
    await wrapping_up(expert, call_a)
    away = await expert.next_event(
        "presence", PresenceView, where=lambda p: p.status == "away", timeout=10
    )
    assert (away.away_reason, away.wrap_up) == ("wrap_up_expired", None)
    # Saving afterwards still writes the record, and changes nothing of the presence.
    await expert.save_outcome(call_a, "answered")
    state = await expert.state()
    assert state.presence is not None and state.presence.status == "away"
    # Choosing to take calls again says nothing of why any more.
    back = await expert.set_presence("available")
    assert (back.status, back.away_reason) == ("available", None)


async def test_a_reloaded_expert_page_is_still_wrapping_up_that_call(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, expert, call_a = await call_ended_by_kiosk(server, connect)
    await wrapping_up(expert, call_a)
    await expert.close()
    again: ExpertClient = await connect(server, "expert_market")
    state = await again.state()
    assert state.presence is not None
    assert (state.presence.status, state.presence.wrap_up) == ("wrap_up", call_a)


async def test_without_a_wrap_up_limit_the_next_citizen_is_offered_at_once(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(wrap_up_limit=0.0)
    _kiosk, expert, _call_a = await call_ended_by_kiosk(server, connect)
    second: KioskClient = await connect(server, "kiosk02")
    waiting = await second.request("market")
    offer = await expert.next_event("offer", OfferView)
    assert offer.consultation_id == waiting.consultation_id


async def test_two_missed_offers_set_the_expert_away_saying_why_and_the_kiosk_is_told(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    expert: ExpertClient = await connect(sqlite_server, "expert_market")
    await expert.set_presence("available")
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    await kiosk.request("market")
    away = await expert.next_event(
        "presence", PresenceView, where=lambda p: p.missed_in_a_row == 2, timeout=10
    )
    assert (away.status, away.away_reason) == ("away", "missed_offers")
    back = await kiosk.next_event(
        "consultation",
        ConsultationView,
        where=lambda v: v.state == "waiting" and v.rung_unanswered == 2,
    )
    assert back.expert is None


async def test_a_participant_gets_the_calls_chat_back_and_nobody_else(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, expert, call_id = await active_call(server, connect)
    await kiosk.chat(call_id, "第一句")
    await expert.chat(call_id, "第二句")
    await kiosk.chat(call_id, "第三句")
    path = f"/api/v1/consultations/{call_id}/chat"
    for username in ("expert_market", "kiosk01"):
        status, body = await get(server, username, path)
        assert status == 200 and isinstance(body, dict), body
        assert [(m["sender"], m["text"]) for m in body["messages"]] == [
            ("kiosk", "第一句"),
            ("expert", "第二句"),
            ("kiosk", "第三句"),
        ]
    assert (await get(server, "kiosk02", path))[0] == 404
    await expert.end(call_id)
    # The call is over: a public kiosk shows nothing of it any more.
    assert (await get(server, "kiosk01", path))[0] == 404
