"""Calls of more than two (issue 21) end to end, with the typed client against the real
server: a second department and an interpreter invited into a call, four at most,
invitations that ring out, are declined, cancelled or find nobody, leaving, the lead
passing on, transfers to another department's queue, screen sharing, and documents
an interpreter reads only once shared."""

from typing import Any

import aiohttp

from signaling.client import ClientError, ExpertClient, KioskClient
from signaling.messages import (
    ChatView,
    ConsultationView,
    FileView,
    InvitationView,
    OfferRevoked,
    OfferView,
    PresenceView,
)
from storage.records import ConsultationState, EndReason, LegEnd, Outcome
from tests.conftest import ClientFactory, RunningServer, ServerFactory, active_call, login_session
from tests.web.documents import png

PNG = png(8, 8, (10, 120, 200))


async def _view(
    client: KioskClient | ExpertClient, call_id: str, *, where: Any = None
) -> ConsultationView:
    """The next consultation view of ``call_id`` (that ``where`` accepts)."""
    return await client.next_event(
        "consultation",
        ConsultationView,
        where=lambda v: v.consultation_id == call_id and (where is None or where(v)),
    )


def _people(view: ConsultationView) -> list[tuple[int, str, str]]:
    return [(p.position, p.role, p.username) for p in view.participants]


async def _join(
    server: RunningServer,
    connect: ClientFactory,
    inviter: ExpertClient,
    call_id: str,
    username: str,
    department: str,
    note: str = "",
) -> tuple[ExpertClient, ConsultationView, OfferView]:
    """``inviter`` invites ``department``; ``username`` (available) accepts."""
    staff: ExpertClient = await connect(server, username)
    await staff.set_presence("available")
    invitation = await inviter.invite(call_id, department, note)
    offer = await staff.next_event(
        "offer", OfferView, where=lambda o: o.invitation_id == invitation.invitation_id
    )
    view = await staff.accept_offer(offer)
    return staff, view, offer


async def test_a_second_expert_joins_and_everyone_sees_the_same_call(
    server: RunningServer, connect: ClientFactory
) -> None:
    kiosk, market, call_id = await active_call(server, connect, case_number="SL-2026-0042")
    housing: ExpertClient = await connect(server, "expert_housing")
    await housing.set_presence("available")

    invitation = await market.invite(call_id, "housing", "住房补贴是否可叠加")
    assert (invitation.state, invitation.department, invitation.kind) == (
        "waiting",
        "housing",
        "invite",
    )
    offer = await housing.next_event("offer", OfferView)
    # Who invites, the case and the note ring with it, like any offer.
    assert offer.kind == "invite" and offer.invitation_id == invitation.invitation_id
    assert offer.consultation_id == call_id and offer.case_number == "SL-2026-0042"
    assert offer.inviter is not None and offer.inviter.username == "expert_market"
    assert offer.inviter.department == "market" and offer.note == "住房补贴是否可叠加"
    ringing = await market.next_event(
        "invitation", InvitationView, where=lambda i: i.state == "ringing"
    )
    assert ringing.invitation_id == invitation.invitation_id

    joined = await housing.accept_offer(offer)
    assert joined.state == "active" and joined.you == 2
    accepted = await market.next_event(
        "invitation", InvitationView, where=lambda i: i.state == "accepted"
    )
    assert accepted.invitation_id == invitation.invitation_id
    seen_by_kiosk = await _view(kiosk, call_id, where=lambda v: len(v.participants) == 3)
    seen_by_market = await _view(market, call_id, where=lambda v: len(v.participants) == 3)
    everyone = [
        (0, "kiosk", "kiosk01"),
        (1, "expert", "expert_market"),
        (2, "expert", "expert_housing"),
    ]
    # One call, the same for all three; each sees its own position and media token.
    for view, you in ((seen_by_kiosk, 0), (seen_by_market, 1), (joined, 2)):
        assert _people(view) == everyone
        assert view.you == you and view.invitations == [] and view.state == "active"
        assert view.expert == "expert_market"
    tokens = {v.media.token for v in (seen_by_kiosk, seen_by_market, joined) if v.media}
    assert len(tokens) == 3
    housing_seat = joined.participants[2]
    assert (housing_seat.department, housing_seat.department_name_zh) == ("housing", "住房保障局")
    await housing.next_event("presence", PresenceView, where=lambda p: p.status == "busy")

    # Chat reaches everyone, saying whose it is.
    await housing.chat(call_id, "可以叠加，请提供租赁合同")
    line = await kiosk.next_event("chat_message", ChatView)
    assert (line.sender, line.sender_name) == ("expert", "住房保障专家")
    await market.next_event("chat_message", ChatView)

    legs = await server.storage.legs.of(call_id)
    assert [(leg.username, leg.position, leg.invited_by) for leg in legs] == [
        ("expert_market", 1, None),
        ("expert_housing", 2, "expert_market"),
    ]
    assert legs[1].note == "住房补贴是否可叠加"
    actions = [e.action for e in await server.storage.audit.entries()]
    assert actions.count("consultation.invite") == 1
    assert actions.count("consultation.join") == 1


async def test_four_take_part_and_a_fifth_is_refused_call_full(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    await _join(server, connect, market, call_id, "expert_housing", "housing")
    interpreter, view, offer = await _join(
        server, connect, market, call_id, "interpreter01", "interpret", "维吾尔语"
    )
    assert offer.kind == "invite" and view.you == 3
    full = await _view(kiosk, call_id, where=lambda v: len(v.participants) == 4)
    assert [p.role for p in full.participants] == ["kiosk", "expert", "expert", "interpreter"]
    try:
        await market.invite(call_id, "social", "")
        raise AssertionError("a fifth was invited")
    except ClientError as error:
        assert error.code == "call_full"
    assert interpreter is not None


async def test_participants_and_open_invitations_are_four_at_most(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """Three in the call and one invitation ringing: no more invitations (nor a second
    to the same department)."""
    server = sqlite_server
    _kiosk, market, call_id = await active_call(server, connect)
    await _join(server, connect, market, call_id, "expert_housing", "housing")
    await market.invite(call_id, "interpret", "")
    for department, code in (("social", "call_full"), ("interpret", "invalid_state")):
        try:
            await market.invite(call_id, department, "")
            raise AssertionError(f"invited {department}")
        except ClientError as error:
            assert error.code == code


async def test_an_invitation_declined_by_everyone_available_expires_and_the_call_goes_on(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    housing: ExpertClient = await connect(server, "expert_housing")
    await housing.set_presence("available")
    invitation = await market.invite(call_id, "housing", "")
    offer = await housing.next_event("offer", OfferView)
    kiosk.drain("consultation")
    await housing.decline(invitation_id=offer.invitation_id)
    expired = await market.next_event(
        "invitation", InvitationView, where=lambda i: i.state == "expired"
    )
    assert expired.invitation_id == invitation.invitation_id
    after = await _view(kiosk, call_id, where=lambda v: v.invitations == [])
    assert after.state == "active" and len(after.participants) == 2
    # The one who declined takes calls again (a decline counts as no miss).
    presence = await housing.state()
    assert presence.presence is not None and presence.presence.status == "available"


async def test_an_invitation_that_rings_out_expires_and_the_inviter_is_told(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, market, call_id = await active_call(server, connect)
    housing: ExpertClient = await connect(server, "expert_housing")
    await housing.set_presence("available")
    invitation = await market.invite(call_id, "housing", "")
    await housing.next_event("offer", OfferView)
    revoked = await housing.next_event("offer_revoked", OfferRevoked)
    assert (revoked.reason, revoked.invitation_id) == ("timeout", invitation.invitation_id)
    expired = await market.next_event(
        "invitation", InvitationView, where=lambda i: i.state == "expired"
    )
    assert expired.invitation_id == invitation.invitation_id
    view = await market.state()
    assert view.consultation is not None and view.consultation.state == "active"


async def test_the_inviter_cancels_and_the_one_rung_is_told(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    _kiosk, market, call_id = await active_call(server, connect)
    housing: ExpertClient = await connect(server, "expert_housing")
    await housing.set_presence("available")
    invitation = await market.invite(call_id, "housing", "")
    offer = await housing.next_event("offer", OfferView)
    cancelled = await market.cancel_invite(invitation.invitation_id)
    assert cancelled.state == "cancelled"
    revoked = await housing.next_event("offer_revoked", OfferRevoked)
    assert (revoked.reason, revoked.invitation_id) == ("cancelled", offer.invitation_id)
    try:
        await housing.accept(invitation_id=invitation.invitation_id)
        raise AssertionError("accepted a cancelled invitation")
    except ClientError as error:
        assert error.code == "not_found"
    actions = [e.action for e in await server.storage.audit.entries()]
    assert "consultation.invite_cancel" in actions


async def test_an_invitation_with_nobody_online_expires_after_the_wait(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await start_server(no_expert_wait=1.0)
    _kiosk, market, call_id = await active_call(server, connect)
    invitation = await market.invite(call_id, "social", "")
    expired = await market.next_event(
        "invitation", InvitationView, where=lambda i: i.state == "expired", timeout=15
    )
    assert expired.invitation_id == invitation.invitation_id


async def test_an_interpreter_sees_the_chat_and_reads_a_document_only_once_shared(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    document = await kiosk.upload(call_id, "身份证.png", PNG)
    await market.next_event("file_added", FileView)
    interpreter, view, _ = await _join(
        server, connect, market, call_id, "interpreter01", "interpret", "手语"
    )
    assert view.you == 2 and view.media is not None
    await kiosk.chat(call_id, "我需要手语翻译")
    line = await interpreter.next_event("chat_message", ChatView)
    assert (line.sender, line.text) == ("kiosk", "我需要手语翻译")
    await interpreter.chat(call_id, "我在")
    said = await kiosk.next_event("chat_message", ChatView, where=lambda m: m.text == "我在")
    assert said.sender == "interpreter"

    session = await login_session(server, "interpreter01")
    async with session:
        url = f"{server.url}{document.url}"
        files = f"{server.url}/api/v1/consultations/{call_id}/files"
        async with session.get(url) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "forbidden"
        async with session.get(files) as response:
            assert (response.status, (await response.json())["files"]) == (200, [])
        await market.share_document(call_id, document.id)
        shared = await interpreter.next_event("document_shared", FileView)
        assert shared.id == document.id
        async with session.get(url) as response:
            assert response.status == 200 and await response.read() == PNG
        async with session.get(files) as response:
            assert [f["id"] for f in (await response.json())["files"]] == [document.id]
        # The interpreter sends no documents.
        async with session.post(
            f"{server.url}/api/v1/consultations/{call_id}/uploads",
            json={"name": "x.png", "size": len(PNG)},
        ) as response:
            assert response.status == 403
    actions = [e.action for e in await server.storage.audit.entries()]
    assert "document.share" in actions
    # Nothing of the consultation once the call is over.
    await market.end(call_id)
    session = await login_session(server, "interpreter01")
    async with session, session.get(f"{server.url}{document.url}") as response:
        assert response.status == 404


async def test_the_lead_leaves_and_the_second_expert_goes_on_with_the_citizen(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    housing, _, _ = await _join(server, connect, market, call_id, "expert_housing", "housing")
    left = await market.leave(call_id)
    assert (left.state, left.end_reason, left.you, left.media) == ("ended", "left", None, None)
    for client in (kiosk, housing):
        view = await _view(
            client, call_id, where=lambda v: [p.position for p in v.participants] == [0, 2]
        )
        assert view.state == "active" and view.expert == "expert_housing"
        assert _people(view) == [(0, "kiosk", "kiosk01"), (2, "expert", "expert_housing")]
    # The one who left completes their own record; their wrap-up ends with it.
    await market.next_event("presence", PresenceView, where=lambda p: p.status == "wrap_up")
    await market.save_outcome(call_id, "referred", "转住房保障局")
    await market.next_event("presence", PresenceView, where=lambda p: p.status == "available")
    done = await housing.end(call_id)
    assert done.end_reason == "completed"
    await housing.save_outcome(call_id, "answered", "已说明补贴")
    legs = await server.storage.legs.of(call_id)
    assert [(leg.username, leg.reason, leg.outcome) for leg in legs] == [
        ("expert_market", LegEnd.LEFT, Outcome.REFERRED),
        ("expert_housing", LegEnd.ENDED, Outcome.ANSWERED),
    ]
    record = await server.storage.consultations.get(call_id)
    # The consultation's own outcome stays its first expert's.
    assert (record.outcome, record.notes) == (Outcome.REFERRED, "转住房保障局")
    assert (record.end_reason, record.ended_by) == (EndReason.COMPLETED, "expert_housing")


async def test_the_last_expert_leaving_ends_the_call(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """An interpreter alone with the citizen does not keep the call."""
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    interpreter, _, _ = await _join(server, connect, market, call_id, "interpreter01", "interpret")
    ended = await market.leave(call_id)
    assert (ended.state, ended.end_reason) == ("ended", "completed")
    for client in (kiosk, interpreter):
        view = await _view(client, call_id, where=lambda v: v.state == "ended")
        assert view.end_reason == "completed"
    # Interpreters write no record: free at once.
    await interpreter.next_event("presence", PresenceView, where=lambda p: p.status == "available")
    record = await server.storage.consultations.get(call_id)
    assert record.state is ConsultationState.ENDED


async def test_an_interpreter_leaves_and_the_call_goes_on(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    interpreter, _, _ = await _join(server, connect, market, call_id, "interpreter01", "interpret")
    left = await interpreter.leave(call_id)
    assert (left.state, left.end_reason) == ("ended", "left")
    view = await _view(kiosk, call_id, where=lambda v: len(v.participants) == 2)
    assert view.state == "active"
    actions = [e.action for e in await server.storage.audit.entries()]
    assert actions.count("consultation.leave") == 1


async def test_one_screen_is_shared_at_a_time_and_the_one_taken_over_is_told(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    housing, _, _ = await _join(server, connect, market, call_id, "expert_housing", "housing")
    assert (await market.share_screen(call_id, True)).screen == 1
    assert (await _view(kiosk, call_id, where=lambda v: v.screen is not None)).screen == 1
    assert (await housing.share_screen(call_id, True)).screen == 2
    assert (await _view(market, call_id, where=lambda v: v.screen == 2)).screen == 2
    # Stopping someone else's share changes nothing; one's own, everyone sees it stop.
    assert (await market.share_screen(call_id, False)).screen == 2
    assert (await housing.share_screen(call_id, False)).screen is None
    assert (await _view(kiosk, call_id, where=lambda v: v.screen is None)).screen is None


async def test_a_transfer_lands_at_the_head_of_the_target_queue_with_case_and_documents(
    server: RunningServer, connect: ClientFactory, http: aiohttp.ClientSession
) -> None:
    kiosk, market, call_id = await active_call(server, connect, case_number="SL-2026-0042")
    document = await kiosk.upload(call_id, "租赁合同.png", PNG)
    # A citizen already waits in housing, where nobody is available yet.
    other: KioskClient = await connect(server, "kiosk02")
    waiting = await other.request("housing")

    moved = await market.transfer(call_id, "housing", "需住房保障局办理补贴")
    assert (moved.state, moved.end_reason, moved.you) == ("ended", "transferred", None)
    told = await _view(kiosk, call_id, where=lambda v: v.transfer is not None)
    # The kiosk keeps its call (and its media) and is told where it goes, not why.
    assert told.state == "waiting" and told.department == "housing" and told.media is not None
    assert told.transfer is not None and told.transfer.reason is None
    assert told.transfer.from_department == "market"
    await market.next_event("presence", PresenceView, where=lambda p: p.status == "wrap_up")

    housing: ExpertClient = await connect(server, "expert_housing")
    await housing.set_presence("available")
    offer = await housing.next_event("offer", OfferView)
    # At the head of the queue, ahead of the citizen who waited there first.
    assert offer.consultation_id == call_id != waiting.consultation_id
    assert (offer.kind, offer.note, offer.case_number) == (
        "transfer",
        "需住房保障局办理补贴",
        "SL-2026-0042",
    )
    assert offer.inviter is not None and offer.inviter.username == "expert_market"
    taken = await housing.accept_offer(offer)
    assert (taken.state, taken.you, taken.case_number) == ("active", 1, "SL-2026-0042")
    back = await _view(kiosk, call_id, where=lambda v: v.state == "active")
    assert back.transfer is None and _people(back)[1] == (1, "expert", "expert_housing")
    # The documents so far are the new expert's to read.
    session = await login_session(server, "expert_housing")
    async with session, session.get(f"{server.url}{document.url}") as response:
        assert response.status == 200 and await response.read() == PNG

    legs = await server.storage.legs.of(call_id)
    assert [(leg.username, leg.department, leg.reason, leg.note) for leg in legs] == [
        ("expert_market", "market", LegEnd.TRANSFERRED, None),
        ("expert_housing", "housing", None, "需住房保障局办理补贴"),
    ]
    record = await server.storage.consultations.get(call_id)
    assert (record.state, record.department) == (ConsultationState.ACTIVE, "housing")
    actions = [e.action for e in await server.storage.audit.entries()]
    assert actions.count("consultation.transfer") == 1
    # The clerk sees both legs.
    await http.post(
        f"{server.url}/api/v1/login", json={"username": "clerk", "password": "demo1234"}
    )
    async with http.get(f"{server.url}/api/v1/consultations/{call_id}") as response:
        body = await response.json()
    assert [(leg["username"], leg["reason"]) for leg in body["legs"]] == [
        ("expert_market", "transferred"),
        ("expert_housing", None),
    ]


async def test_a_transfer_to_a_department_not_allowed_is_refused(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    await server.storage.departments.create("tax", "税务局", "Taxation")
    _kiosk, market, call_id = await active_call(server, connect)
    for department in ("tax", "interpret", "nowhere"):
        try:
            await market.transfer(call_id, department, "试试")
            raise AssertionError(f"transferred to {department}")
        except ClientError as error:
            assert error.code == "forbidden", department
    try:
        await market.transfer(call_id, "housing", "")
        raise AssertionError("transferred without a reason")
    except ClientError as error:
        assert error.code == "invalid_payload"
    view = await market.state()
    assert view.consultation is not None and view.consultation.state == "active"
    assert await server.storage.legs.of(call_id) != []


async def test_a_transfer_with_an_interpreter_keeps_the_interpreter_in_the_call(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    interpreter, _, _ = await _join(server, connect, market, call_id, "interpreter01", "interpret")
    await market.transfer(call_id, "social", "社保问题")
    staying = await _view(interpreter, call_id, where=lambda v: v.transfer is not None)
    assert staying.you == 2 and staying.media is not None
    assert staying.transfer is not None and staying.transfer.reason == "社保问题"
    # Chat goes on meanwhile.
    await interpreter.chat(call_id, "请稍候")
    await kiosk.next_event("chat_message", ChatView, where=lambda m: m.text == "请稍候")
    social: ExpertClient = await connect(server, "expert_social")
    await social.set_presence("available")
    offer = await social.next_event("offer", OfferView)
    taken = await social.accept_offer(offer)
    assert _people(taken) == [
        (0, "kiosk", "kiosk01"),
        (1, "expert", "expert_social"),
        (2, "interpreter", "interpreter01"),
    ]


async def test_a_kiosk_may_not_call_an_interpreting_pool_directly(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    kiosk: KioskClient = await connect(sqlite_server, "kiosk01")
    try:
        await kiosk.request("interpret")
        raise AssertionError("a kiosk called the interpreting pool")
    except ClientError as error:
        assert error.code == "invalid_state"


async def test_a_joined_expert_completes_their_own_record_of_the_call(
    sqlite_server: RunningServer, connect: ClientFactory
) -> None:
    """The second expert's record is theirs: listed among their unfinished ones once
    their part ends, with their own draft; saving it leaves the first expert's alone."""
    server = sqlite_server
    kiosk, market, call_id = await active_call(server, connect)
    kiosk_doc = await kiosk.upload(call_id, "合同.png", PNG)
    housing, _, _ = await _join(server, connect, market, call_id, "expert_housing", "housing")
    await housing.leave(call_id)
    await housing.defer_outcome(call_id, "草稿：补贴可叠加")
    session = await login_session(server, "expert_housing")
    async with session:
        # While the call goes on without them, its record and documents stay theirs
        # to read (as after its end).
        async with session.get(f"{server.url}/api/v1/consultations/{call_id}") as response:
            assert response.status == 200
        async with session.get(f"{server.url}{kiosk_doc.url}") as response:
            assert response.status == 200
        url = f"{server.url}/api/v1/me/consultations?unfinished=true"
        async with session.get(url) as response:
            rows = (await response.json())["consultations"]
        assert [(r["id"], r["notes"], r["outcome"]) for r in rows] == [
            (call_id, "草稿：补贴可叠加", None)
        ]
        await housing.save_outcome(call_id, "answered", "补贴可叠加")
        async with session.get(url) as response:
            assert (await response.json())["consultations"] == []
        async with session.get(f"{server.url}/api/v1/me/consultations") as response:
            mine = (await response.json())["consultations"]
        assert [(r["id"], r["outcome"]) for r in mine] == [(call_id, "answered")]
    record = await server.storage.consultations.get(call_id)
    assert (record.outcome, record.notes) == (None, None)
