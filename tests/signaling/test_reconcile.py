"""Records and live state made to agree again (``signaling.reconcile``).

First the decision as a table: which disagreement gets which repair, and when it
is too recent to be one. Then the transitions that apply a repair and withdraw a
consultation only the records hold. Last the defect as it was seen: a
``request_consultation`` whose row and audit entry were committed while its live
commit failed (Redis paused for writes at that moment, on a Redis of the test's
own), after which the kiosk was refused every request for good and the admin's
withdraw answered 404; now the admin can withdraw it, the reconciliation ends it,
and the kiosk's own next request repairs it.
"""

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from harness.redis import PrivateRedis
from signaling import transitions
from signaling.client import ClientError, KioskClient
from signaling.effects import DiscardUploads, MarkEnded
from signaling.errors import NotFound
from signaling.live import LiveCall, Phase, call_key
from signaling.messages import ConsultationView
from signaling.reconcile import Mismatch, Repair, plan_repairs
from signaling.transitions import Snapshot
from storage.records import ConsultationRecord, ConsultationState, EndReason
from tests.cluster.processes import eventually
from tests.conftest import (
    ClientFactory,
    ServerFactory,
    create_database,
    drop_database,
    login_session,
)
from tests.pg_locks import table_locked, waiting_on_locks
from tests.signaling.transition_table import FIXED_CAST, NOW

ID = "c0ffee00c0ffee00"
SETTLE = 30.0


def record(state: ConsultationState, at: float, **changes: object) -> ConsultationRecord:
    base = ConsultationRecord(
        id=ID,
        kiosk_id=FIXED_CAST.kiosk.id,
        hall="hall-1",
        department="tax",
        expert_id=None,
        case_number=None,
        state=state,
        waiting_at=at,
        offered_at=None,
        active_at=None,
        ended_at=None,
        end_reason=None,
        ended_by=None,
        outcome=None,
        notes=None,
        rating=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def live(phase: Phase, since: float) -> LiveCall:
    return LiveCall(
        id=ID,
        department="tax",
        kiosk_id=FIXED_CAST.kiosk.id,
        kiosk_username=FIXED_CAST.kiosk.username,
        hall="hall-1",
        case_number=None,
        phase=phase,
        waiting_since=since,
        expert_id=FIXED_CAST.expert.id if phase is not Phase.WAITING else None,
        offered_at=since if phase is not Phase.WAITING else None,
        active_at=since if phase is Phase.ACTIVE else None,
    )


OLD = NOW - SETTLE - 1
RECENT = NOW - SETTLE + 1
W, A, E = ConsultationState.WAITING, ConsultationState.ACTIVE, ConsultationState.ENDED
ENDED_OLD = {"ended_at": OLD, "end_reason": EndReason.COMPLETED}
ENDED_RECENT = {"ended_at": RECENT, "end_reason": EndReason.COMPLETED}

# (what the records hold, what the live state holds) -> the repair, or None.
PLANS: list[tuple[str, ConsultationRecord | None, LiveCall | None, Repair | None]] = [
    ("both agree: waiting", record(W, OLD), live(Phase.WAITING, OLD), None),
    ("both agree: ringing", record(W, OLD), live(Phase.OFFERED, OLD), None),
    ("both agree: active", record(A, OLD, active_at=OLD), live(Phase.ACTIVE, OLD), None),
    ("both agree: ended", record(E, OLD, **ENDED_OLD), None, None),
    (
        "a waiting record without live state",
        record(W, OLD),
        None,
        Repair(ID, Mismatch.NO_LIVE_STATE, EndReason.DROPPED, True),
    ),
    ("... too recent: a request on its way", record(W, RECENT), None, None),
    (
        "an active record without live state keeps its offer time",
        record(A, OLD, offered_at=OLD - 5, active_at=OLD),
        None,
        Repair(ID, Mismatch.NO_LIVE_STATE, EndReason.DROPPED, True, OLD - 5),
    ),
    (
        "a live call whose record has ended",
        record(E, OLD, **ENDED_OLD),
        live(Phase.ACTIVE, OLD),
        Repair(ID, Mismatch.RECORD_ENDED, EndReason.COMPLETED, False),
    ),
    (
        "... ended too recently: an end on its way",
        record(E, OLD, **ENDED_RECENT),
        live(Phase.ACTIVE, OLD),
        None,
    ),
    (
        "a live call without any record",
        None,
        live(Phase.WAITING, OLD),
        Repair(ID, Mismatch.NO_RECORD, EndReason.DROPPED, False),
    ),
    ("... too recent", None, live(Phase.WAITING, RECENT), None),
    (
        "an accepted record whose call still rings",
        record(A, OLD, active_at=OLD),
        live(Phase.OFFERED, OLD),
        Repair(ID, Mismatch.NOT_ACTIVE_LIVE, EndReason.DROPPED, True),
    ),
    ("... accepted too recently", record(A, OLD, active_at=RECENT), live(Phase.OFFERED, OLD), None),
]


@pytest.mark.parametrize(
    ("records", "call", "expected"), [p[1:] for p in PLANS], ids=[p[0] for p in PLANS]
)
def test_plan_repairs(
    records: ConsultationRecord | None, call: LiveCall | None, expected: Repair | None
) -> None:
    found = plan_repairs({ID: records}, {ID: call} if call else {}, NOW, SETTLE)
    assert found == ([expected] if expected else [])


def test_a_repair_without_live_state_ends_the_record_with_an_audit_entry_saying_why() -> None:
    planned = Repair(ID, Mismatch.NO_LIVE_STATE, EndReason.DROPPED, True, 990.0)
    decision = transitions.repair(Snapshot(now=NOW), planned)
    assert isinstance(decision.record, MarkEnded)
    assert (decision.record.reason, decision.record.ended_by) == (EndReason.DROPPED, "system")
    assert decision.record.offered_at == 990.0
    assert decision.record.audit.detail == {"reason": "dropped", "repair": "no_live_state"}
    assert decision.effects == [DiscardUploads(ID)]
    # Nothing live is put: the commit only checks that the call is still absent.
    assert decision.commit.put == {}
    # Applied already (its commit found a live call appeared): that call is ended.
    racing = transitions.repair(
        Snapshot(now=NOW, call=live(Phase.WAITING, OLD)), planned, recorded=True
    )
    assert racing.record is None and call_key(ID) in racing.commit.put
    # Not applied yet and the live call is there after all: nothing disagrees.
    assert transitions.repair(
        Snapshot(now=NOW, call=live(Phase.WAITING, OLD)), planned
    ).changes_nothing


def test_a_repair_of_a_live_call_whose_record_ended_only_removes_the_live_state() -> None:
    planned = Repair(ID, Mismatch.RECORD_ENDED, EndReason.COMPLETED, False)
    decision = transitions.repair(Snapshot(now=NOW, call=live(Phase.ACTIVE, OLD)), planned)
    assert decision.record is None
    assert decision.commit.put[call_key(ID)] is None
    assert transitions.repair(Snapshot(now=NOW), planned).changes_nothing


def test_withdraw_ends_a_consultation_only_the_records_hold() -> None:
    admin = FIXED_CAST.admin
    held = record(W, OLD)
    decision = transitions.withdraw(Snapshot(now=NOW), admin, "10.0.0.9", held, "kiosk01")
    assert isinstance(decision.record, MarkEnded)
    assert (decision.record.reason, decision.record.ended_by) == (
        EndReason.CANCELLED,
        admin.username,
    )
    assert isinstance(decision.reply, ConsultationView)
    assert (decision.reply.state, decision.reply.end_reason) == ("ended", "cancelled")
    for gone in (None, record(E, OLD, **ENDED_OLD)):
        with pytest.raises(NotFound):
            transitions.withdraw(Snapshot(now=NOW), admin, "10.0.0.9", gone, "kiosk01")


# ---- the defect as it was seen -------------------------------------------------------


async def redis_command(redis: PrivateRedis, *words: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", redis.port)
    try:
        encoded = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        writer.write(encoded.encode())
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


async def request_losing_its_live_commit(
    kiosk: KioskClient, database_url: str, redis: PrivateRedis
) -> None:
    """The kiosk's request writes its row and audit entry, then finds the live state
    refusing writes: the record is committed, the live commit fails."""
    async with table_locked(database_url, "consultations") as holder:
        pending = asyncio.create_task(
            kiosk.emit("request_consultation", {"department": "market"}, timeout=60)
        )

        async def blocked() -> bool:
            return await waiting_on_locks(holder) > 0

        await eventually(blocked, 20, "the request waits for the table lock")
        # Long enough for the live commit to time out (2 s), short enough to end.
        assert await redis_command(redis, "CLIENT", "PAUSE", "6000", "WRITE") == b"+OK\r\n"
    try:
        with pytest.raises(ClientError) as refused:
            await pending
        assert refused.value.code == "unavailable"
    finally:
        await redis_command(redis, "CLIENT", "UNPAUSE")


async def open_record_of(database_url: str, username: str) -> tuple[str, str]:
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT c.id, c.state FROM consultations c JOIN accounts a ON a.id = c.kiosk_id"
            " WHERE a.username = $1 AND c.state <> 'ended'",
            username,
        )
        assert row is not None
        return row["id"], row["state"]
    finally:
        await connection.close()


async def audit_of(
    database_url: str, consultation_id: str
) -> list[tuple[str, str, dict[str, object]]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT actor, action, detail FROM audit_log WHERE subject = $1 ORDER BY seq",
            consultation_id,
        )
        return [(r["actor"], r["action"], json.loads(r["detail"])) for r in rows]
    finally:
        await connection.close()


async def locked_out(kiosk: KioskClient, consultation_id: str) -> None:
    """What the kiosk met, for good, before the fix."""
    assert (await kiosk.state()).consultation is None
    with pytest.raises(ClientError) as info:
        await kiosk.request("market")
    assert info.value.code == "already_in_consultation"
    for attempt in (kiosk.cancel, kiosk.end):
        with pytest.raises(ClientError) as info:
            await attempt(consultation_id)
        assert info.value.code == "not_found"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_request_committed_to_the_records_but_not_the_live_state_is_repaired(
    postgres_url: str,
    private_redis: PrivateRedis,
    start_server: ServerFactory,
    connect: ClientFactory,
) -> None:
    database_url, redis = postgres_url, private_redis
    server = await start_server(
        database_url=database_url, redis_url=redis.url, redis_prefix="wl-reconcile:"
    )
    first: KioskClient = await connect(server, "kiosk01")
    second: KioskClient = await connect(server, "kiosk02")
    orphans = {}
    for kiosk in (first, second):
        await request_losing_its_live_commit(kiosk, database_url, redis)
        orphans[kiosk.username], state = await open_record_of(database_url, kiosk.username)
        assert state == "waiting"
        assert [a[1] for a in await audit_of(database_url, orphans[kiosk.username])] == [
            "consultation.request"
        ]
        await locked_out(kiosk, orphans[kiosk.username])

    # The admin withdraws one (it answered 404): it ends as cancelled.
    admin = await login_session(server, "admin")
    withdraw = f"{server.url}/api/v1/consultations/{orphans['kiosk01']}/withdraw"
    async with admin, admin.post(withdraw) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert (body["state"], body["end_reason"], body["kiosk"]) == (
        "ended",
        "cancelled",
        "kiosk01",
    )
    assert (await first.request("market")).state in ("waiting", "offered")

    # The reconciliation (at start and every 30 s) ends the other as dropped, with
    # an audit entry saying why; the kiosk's consultation that agrees is left.
    assert await server.hub.reconcile(settle=0.0) == 1
    trail = await audit_of(database_url, orphans["kiosk02"])
    assert trail[-1] == (
        "system",
        "consultation.end",
        {"reason": "dropped", "repair": "no_live_state"},
    )
    again = await second.request("market")
    assert again.state in ("waiting", "offered")

    # A kiosk refused by such a record repairs it by asking again, once the record
    # is older than a request on its way could be.
    await second.cancel(again.consultation_id)
    await request_losing_its_live_commit(second, database_url, redis)
    stale, _ = await open_record_of(database_url, "kiosk02")
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE consultations SET waiting_at = waiting_at - 60 WHERE id = $1", stale
        )
    finally:
        await connection.close()
    assert (await second.request("market")).state in ("waiting", "offered")
    assert (await audit_of(database_url, stale))[-1][2] == {
        "reason": "dropped",
        "repair": "no_live_state",
    }


async def test_a_process_starting_without_redis_ends_what_the_records_left_open(
    start_server: ServerFactory, connect: ClientFactory
) -> None:
    """Without a shared live state, a (re)started process holds no live call: every
    open record was left by a stop or crash, and ends as dropped at its start."""
    before = await start_server()
    kiosk: KioskClient = await connect(before, "kiosk01")
    left_open = (await kiosk.request("market")).consultation_id
    await kiosk.close()
    await before.hub.stop(within=1.0)  # as the process ended: its live state is gone
    after = await start_server(data_dir=before.settings.data_dir)
    record = await after.storage.consultations.get(left_open)
    assert (record.state, record.end_reason, record.ended_by) == (
        ConsultationState.ENDED,
        EndReason.DROPPED,
        "system",
    )
    again: KioskClient = await connect(after, "kiosk01")
    assert (await again.request("market")).state in ("waiting", "offered")
