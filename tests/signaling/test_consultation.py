"""The consultation state machine end to end, with real socket.io clients
against the real server, on SQLite and on PostgreSQL."""

import asyncio

from signaling.client import ClientError, ExpertClient, KioskClient
from signaling.messages import (
    ChatView,
    ConsultationView,
    OfferRevoked,
    OfferView,
    PeerStatus,
    PresenceView,
    QueuePosition,
)
from storage.records import ConsultationState, EndReason, Outcome, Role
from tests.conftest import ClientFactory, RunningServer, ServerFactory, active_call


async def ended(client: KioskClient | ExpertClient, consultation_id: str) -> ConsultationView:
    return await client.next_event(
        "consultation",
        ConsultationView,
        where=lambda v: v.consultation_id == consultation_id and v.state == "ended",
    )


async def test_full_path_request_to_rating_is_recorded_and_audited(
    server: RunningServer, connect: ClientFactory
) -> None:
    expert: ExpertClient = await connect(server, "expert_market")
    kiosk: KioskClient = await connect(server, "kiosk01")
    assert (await expert.set_presence("available")).status == "available"

    view = await kiosk.request("market", case_number="SL-2026-0042")
    offer = await expert.next_event("offer", OfferView)
    assert offer.consultation_id == view.consultation_id
    assert offer.case_number == "SL-2026-0042"
    assert offer.hall == "city"

    active = await expert.accept(offer.consultation_id)
    assert active.state == "active" and active.expert == "expert_market"
    kiosk_view = await kiosk.next_event(
        "consultation", ConsultationView, where=lambda v: v.state == "active"
    )
    assert kiosk_view.expert == "expert_market"
    busy = await expert.next_event("presence", PresenceView, where=lambda p: p.status == "busy")
    assert busy.status == "busy"

    await kiosk.chat(view.consultation_id, "我想咨询营业执照变更")
    await expert.chat(view.consultation_id, "请出示原执照")
    seen_by_expert = await expert.next_event(
        "chat_message", ChatView, where=lambda m: m.sender == "kiosk"
    )
    seen_by_kiosk = await kiosk.next_event(
        "chat_message", ChatView, where=lambda m: m.sender == "expert"
    )
    assert seen_by_expert.text == "我想咨询营业执照变更"
    assert seen_by_kiosk.text == "请出示原执照"

    done = await expert.end(view.consultation_id)
    assert done.state == "ended" and done.end_reason == "completed"
    assert (await ended(kiosk, view.consultation_id)).end_reason == "completed"
    await expert.save_outcome(view.consultation_id, "follow_up", "需补充股东会决议")
    await kiosk.rate(view.consultation_id, 5)
    await expert.next_event("presence", PresenceView, where=lambda p: p.status == "available")

    record = await server.storage.consultations.get(view.consultation_id)
    assert record.state is ConsultationState.ENDED
    assert record.end_reason is EndReason.COMPLETED
    assert record.case_number == "SL-2026-0042"
    assert record.outcome is Outcome.FOLLOW_UP and record.notes == "需补充股东会决议"
    assert record.rating == 5
    assert record.ended_by == "expert_market"
    assert record.waiting_at <= record.offered_at <= record.active_at <= record.ended_at
    chat = await server.storage.consultations.chat(view.consultation_id)
    assert [(m.sender_role.value, m.text) for m in chat] == [
        ("kiosk", "我想咨询营业执照变更"),
        ("expert", "请出示原执照"),
    ]
    actions = [
        (e.actor, e.action)
        for e in await server.storage.audit.entries()
        if e.subject == view.consultation_id
    ]
    assert actions == [
        ("kiosk01", "consultation.request"),
        ("expert_market", "consultation.accept"),
        ("expert_market", "consultation.end"),
        ("expert_market", "consultation.outcome"),
        ("kiosk01", "consultation.rate"),
    ]
    assert await server.storage.audit.verify() > 5
    # The case number is personal data: it is kept in the record, not in the audit log.
    assert not any("SL-2026-0042" in e.detail for e in await server.storage.audit.entries())


async def test_two_kiosks_see_positions_one_and_two_and_move_up(
    server: RunningServer, connect: ClientFactory
) -> None:
    first: KioskClient = await connect(server, "kiosk01")
    second: KioskClient = await connect(server, "kiosk02")
    one = await first.request("housing")
    await first.next_event("queue_position", QueuePosition, where=lambda p: p.position == 1)
    two = await second.request("housing")
    pos = await second.next_event("queue_position", QueuePosition)
    assert (pos.position, pos.queue_length, pos.consultation_id) == (2, 2, two.consultation_id)
    # Nobody of the department is online, so no estimate can be given.
    assert pos.estimated_wait_s is None and pos.experts_online == 0

    await first.cancel(one.consultation_id)
    moved = await second.next_event(
        "queue_position", QueuePosition, where=lambda p: p.position == 1
    )
    assert moved.queue_length == 1


async def test_wait_estimate_follows_online_experts(
    server: RunningServer, connect: ClientFactory
) -> None:
    expert: ExpertClient = await connect(server, "expert_social")
    await expert.set_presence("available")
    first: KioskClient = await connect(server, "kiosk01")
    second: KioskClient = await connect(server, "kiosk02")
    call = await first.request("social")
    await expert.accept((await expert.next_event("offer", OfferView)).consultation_id)
    await second.request("social")
    pos = await second.next_event(
        "queue_position", QueuePosition, where=lambda p: p.experts_online == 1
    )
    # One busy expert and the default 300 s call: half a call on average.
    assert pos.position == 1 and pos.estimated_wait_s == 150
    await expert.end(call.consultation_id)


async def test_ring_timeout_reoffers_to_the_next_expert(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server()
    await server.storage.accounts.create(
        "expert_market2", "password123", Role.EXPERT, department="market"
    )
    slow: ExpertClient = await connect(server, "expert_market")
    await slow.set_presence("available")
    await asyncio.sleep(0.05)
    quick = await connect(server, "expert_market2", "password123", kind=ExpertClient)
    await quick.set_presence("available")
    kiosk: KioskClient = await connect(server, "kiosk01")

    view = await kiosk.request("market")
    # The longest idle expert is rung first.
    first = await slow.next_event("offer", OfferView)
    assert first.consultation_id == view.consultation_id
    revoked = await slow.next_event("offer_revoked", OfferRevoked, timeout=5)
    assert revoked.reason == "timeout"
    second = await quick.next_event("offer", OfferView, timeout=5)
    assert second.consultation_id == view.consultation_id
    # The consultation kept its place at the head of the queue meanwhile.
    position = kiosk.drain("queue_position")[-1]
    assert isinstance(position, QueuePosition) and position.position == 1
    await quick.accept(second.consultation_id)
    record = await server.storage.consultations.get(view.consultation_id)
    assert record.state is ConsultationState.ACTIVE
    assert record.expert_id == (await server.storage.accounts.get_by_username("expert_market2")).id


async def test_expert_is_set_away_after_two_missed_offers(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    expert: ExpertClient = await connect(sqlite_server, "expert_market")
    await expert.set_presence("available")
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    view = await kiosk.request("market")
    for missed in (1, 2):
        await expert.next_event("offer", OfferView, timeout=5)
        await expert.next_event("offer_revoked", OfferRevoked, timeout=5)

        def after_miss(p: PresenceView, missed: int = missed) -> bool:
            return p.missed_in_a_row == missed

        presence = await expert.next_event("presence", PresenceView, where=after_miss, timeout=5)
    assert presence.status == "away"
    state = await kiosk.state()
    assert state.consultation is not None
    assert state.consultation.consultation_id == view.consultation_id
    assert state.consultation.state == "waiting"


async def test_decline_goes_to_the_next_expert_and_not_back(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(ring_timeout=30.0)
    await server.storage.accounts.create(
        "expert_market2", "password123", Role.EXPERT, department="market"
    )
    a: ExpertClient = await connect(server, "expert_market")
    await a.set_presence("available")
    b = await connect(server, "expert_market2", "password123", kind=ExpertClient)
    await b.set_presence("available")
    kiosk: KioskClient = await connect(server, "kiosk01")
    view = await kiosk.request("market")
    offer = await a.next_event("offer", OfferView)
    await a.decline(offer.consultation_id)
    assert (await b.next_event("offer", OfferView)).consultation_id == view.consultation_id
    await b.decline(view.consultation_id)
    await asyncio.sleep(0.3)
    # Both declined: it waits for someone else rather than ringing them again.
    assert a.drain("offer") == []
    assert (await kiosk.state()).consultation.state == "waiting"  # type: ignore[union-attr]


async def test_cancel_while_waiting_ends_abandoned(
    server: RunningServer, connect: ClientFactory
) -> None:
    kiosk: KioskClient = await connect(server, "kiosk01")
    view = await kiosk.request("social", case_number="A-1")
    cancelled = await kiosk.cancel(view.consultation_id)
    assert cancelled.state == "ended" and cancelled.end_reason == "abandoned"
    record = await server.storage.consultations.get(view.consultation_id)
    assert record.end_reason is EndReason.ABANDONED
    assert (await kiosk.state()).consultation is None
    # The kiosk may start again at once.
    again = await kiosk.request("social")
    assert again.consultation_id != view.consultation_id


async def test_cancel_while_ringing_revokes_the_offer(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    expert: ExpertClient = await connect(sqlite_server, "expert_market")
    await expert.set_presence("available")
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    view = await kiosk.request("market")
    await expert.next_event("offer", OfferView)
    await kiosk.cancel(view.consultation_id)
    revoked = await expert.next_event("offer_revoked", OfferRevoked)
    assert revoked.reason == "cancelled"
    try:
        await expert.accept(view.consultation_id)
    except ClientError as exc:
        assert exc.code == "not_found"
    else:
        raise AssertionError("accepting a cancelled consultation must fail")


async def test_drop_and_return_within_grace_keeps_the_call(
    start_server: ServerFactory, connect: ClientFactory, database_url: str | None
) -> None:
    server = await start_server(grace_period=5.0, database_url=database_url)
    kiosk, expert, call_id = await active_call(
        server, connect, kiosk="kiosk02", expert="expert_housing", department="housing"
    )
    await kiosk.sio.disconnect()
    dropped = await expert.next_event("peer_status", PeerStatus)
    assert (dropped.side, dropped.status) == ("kiosk", "reconnecting")

    back = KioskClient(server.url)
    try:
        await back.login("kiosk02", "demo1234")
        state = await back.connect()
        assert state.consultation is not None
        assert state.consultation.consultation_id == call_id
        assert state.consultation.state == "active"
        returned = await expert.next_event("peer_status", PeerStatus)
        assert returned.status == "connected"
        await back.chat(call_id, "我回来了")
        assert (await expert.next_event("chat_message", ChatView)).text == "我回来了"
        await asyncio.sleep(0.2)
        record = await server.storage.consultations.get(call_id)
        assert record.state is ConsultationState.ACTIVE
    finally:
        await back.close()


async def test_drop_past_grace_ends_the_call_dropped(
    server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, expert, call_id = await active_call(
        server, connect, kiosk="kiosk02", expert="expert_housing", department="housing"
    )
    await expert.sio.disconnect()
    done = await ended(kiosk, call_id)
    assert done.end_reason == "dropped"
    record = await server.storage.consultations.get(call_id)
    assert record.end_reason is EndReason.DROPPED and record.ended_by == "system"


async def test_nobody_online_for_the_configured_wait_ends_no_expert(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(no_expert_wait=1.0)
    kiosk: KioskClient = await connect(server, "kiosk01")
    view = await kiosk.request("market")
    done = await ended(kiosk, view.consultation_id)
    assert done.end_reason == "no_expert"


async def test_a_kiosk_has_one_open_consultation_at_a_time(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    await kiosk.request("market")
    try:
        await kiosk.request("housing")
    except ClientError as exc:
        assert exc.code == "already_in_consultation"
    else:
        raise AssertionError("a second request must be refused")
