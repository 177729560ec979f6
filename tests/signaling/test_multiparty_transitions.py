"""Calls of more than two as a table (``multiparty_table``): first the pure
transitions, each row's state and event with a plain float for the clock; then the
same rows through the executor and the services, on the in-process store and on
Redis, with SQLite records: what the live state, the records' audit and the
notifications show afterwards."""

import asyncio
import gc
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from signaling.effects import Decision, Notify
from signaling.errors import InvalidState, SignalingError
from signaling.executor import Executor
from signaling.live import (
    ExpertPresence,
    Live,
    LiveCall,
    LiveInvitation,
    OpenCall,
    Phase,
    PresenceStatus,
    call_key,
    invitation_key,
    open_key,
    presence_key,
)
from signaling.memory_store import InProcessStore
from signaling.messages import ConsultationView, ServerPayload
from signaling.redis_store import RedisStore
from signaling.service import ConsultationService, PresenceService
from signaling.store import Commit, LiveStore
from signaling.transitions import GRACE_KEYS, deadline_key
from storage.errors import RecordConflict, RecordNotFound
from storage.records import AuditEvent, DepartmentKind, LegEnd, Role
from storage.sessions import SessionPolicy
from storage.store import Storage
from tests.signaling.multiparty_table import (
    CALL,
    CAST_ACCOUNTS,
    CAST_NAMES,
    CONFIG,
    DEPT,
    FIXED_CAST,
    INV,
    LAND,
    NOW,
    POOL,
    ROWS,
    SAME,
    STATES,
    T_ACTIVE,
    T_DROP,
    T_JOIN,
    T_TRANSFER,
    T_WAIT,
    Cast,
    Outcome,
    Row,
    Services,
    apply,
    audit_of,
    call_label,
    change_tokens,
    effect_token,
    invitation_label,
    presence_changes,
    record_token,
    seed_commit,
    snapshot,
    state_of,
    the_call,
    the_invitation,
)
from tests.signaling.test_store_contract import SHARED_REDIS, delete_keys


@pytest.fixture(autouse=True, scope="module")
def frozen_heap() -> Iterator[None]:
    """As in test_transitions: each row's garbage collection looks only at what it made."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


# ==== the pure transitions ================================================================


def decide(row: Row, values: Mapping[str, Live]) -> Decision:
    return row.event.decide(snapshot(values, row.event.now), FIXED_CAST, False)


def outcome(values: Mapping[str, Live], decision: Decision, cast: Cast = FIXED_CAST) -> Outcome:
    after = apply(values, decision.commit)
    before_call = call_label(the_call(values), cast)
    if call_key(CALL) in decision.commit.put and the_call(after) is None:
        assert isinstance(decision.reply, ConsultationView)
        call_after = f"ended {decision.reply.end_reason}"
    else:
        call_after = call_label(the_call(after), cast)
    before_invitation = invitation_label(the_invitation(values), cast)
    invitation_after = invitation_label(the_invitation(after), cast)
    return Outcome(
        call=SAME if call_after == before_call else call_after,
        invitation=SAME if invitation_after == before_invitation else invitation_after,
        presences=presence_changes(values, after, cast),
        changes=change_tokens(decision, cast),
        effects=sorted(effect_token(e, cast) for e in decision.effects),
        record=record_token(decision.record),
    )


def expected(row: Row) -> Outcome:
    return Outcome(
        call=row.call,
        invitation=row.invitation,
        presences=sorted(row.presences),
        changes=sorted(row.changes),
        effects=sorted(row.effects),
        record=row.record,
    )


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_transition(row: Row) -> None:
    values = state_of(row.state, FIXED_CAST)
    if row.refused is not None:
        with pytest.raises(SignalingError) as info:
            decide(row, values)
        assert type(info.value) is row.refused, info.value
        return
    decision = decide(row, values)
    if row == Row(row.state, row.event):
        assert decision.changes_nothing and decision.effects == [], decision
        return
    assert outcome(values, decision) == expected(row)


def test_the_table_covers_every_state_and_names_rows_once() -> None:
    assert {r.state for r in ROWS} == set(STATES)
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_everyone_in_the_call_is_told_as_they_see_it() -> None:
    """After a join, each participant's view has its own position and media token."""
    values = state_of("ringing outsider", FIXED_CAST)
    row = next(r for r in ROWS if r.id == "ringing outsider + outsider accepts the invitation")
    decision = decide(row, values)
    seen = {
        FIXED_CAST.name_of(e.account_id): e.payload
        for e in decision.effects
        if isinstance(e, Notify) and isinstance(e.payload, ConsultationView)
    }
    assert {name: (v.you, v.media.token if v.media else None) for name, v in seen.items()} == {
        "kiosk": (0, "tok-kiosk"),
        "expert": (1, "tok-expert"),
        "outsider": (2, "tok-new"),
    }


def test_a_transferred_call_waits_at_the_head_of_the_target_queue() -> None:
    values = state_of("with interpreter", FIXED_CAST)
    row = next(r for r in ROWS if r.id == "with interpreter + expert transfers to land")
    decision = decide(row, values)
    [(department, call_id, score)] = decision.commit.queue_add
    assert (department, call_id) == (LAND, CALL)
    # Ahead of anyone queued the usual way (by when they started waiting), now or before.
    assert score < 0.0
    moved = apply(values, decision.commit)[call_key(CALL)]
    assert isinstance(moved, LiveCall)
    assert (moved.waiting_since, moved.case_number) == (T_WAIT, "SL-21")


# ==== through the executor ==================================================================


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, ServerPayload]] = []

    async def to_account(
        self, account_id: str, event: str, payload: ServerPayload, skip_sid: str | None = None
    ) -> None:
        self.sent.append((account_id, event, payload))

    async def to_department(self, department: str, event: str, payload: ServerPayload) -> None:
        pass


class RecordingExecutor(Executor):
    """The executor with the effects it hands on recorded in the table's tokens;
    routing is recorded, not run, so that a row's outcome is its own transition's."""

    def __init__(
        self, store: LiveStore, storage: Storage, notifier: RecordingNotifier, clock: Clock
    ) -> None:
        self.done: list[str] = []

        async def close_relay(call_id: str, relay: str | None) -> None:
            self.done.append("close-relay")

        async def close_leg(call_id: str, relay: str | None, position: int) -> None:
            self.done.append(f"close-leg:{position}")

        async def discard_uploads(call_id: str) -> None:
            self.done.append("discard-uploads")

        def publish_queue(department: str) -> None:
            self.done.append(f"publish:{department}")

        async def participant_changed(account_id: str, up: bool) -> None:
            self.done.append(f"participant:{FIXED_CAST.name_of(account_id)}{'+' if up else '-'}")

        super().__init__(
            store,
            storage,
            notifier,
            CONFIG,
            clock,
            close_relay=close_relay,
            discard_uploads=discard_uploads,
            publish_queue=publish_queue,
            participant_changed=participant_changed,
            close_leg=close_leg,
        )

    async def dispatch(self, department: str) -> None:
        self.done.append(f"dispatch:{department}")

    async def arm_no_expert(self, department: str) -> None:
        self.done.append("arm-no-expert")


@dataclass
class World:
    store: LiveStore
    storage: Storage
    cast: Cast
    clock: Clock
    notifier: RecordingNotifier
    executor: RecordingExecutor
    services: Services

    async def seed(self, state: str) -> None:
        """The state in the store, and its consultation in the records as the
        transitions that led there would have written it."""
        values = state_of(state, self.cast)
        call = the_call(values)
        assert call is not None
        kiosk, expert = self.cast.named("kiosk"), self.cast.named("expert")
        consultations = self.storage.consultations
        audit = AuditEvent("seed", "seed", CALL, {})
        await consultations.create(
            kiosk.id,
            call.hall,
            DEPT,
            call.case_number,
            audit=audit,
            consultation_id=CALL,
            at=T_WAIT,
        )
        await consultations.mark_active(CALL, expert.id, T_WAIT, T_ACTIVE, audit=audit)
        for seat in call.seats:
            if seat.account_id != expert.id:
                account = await self.storage.accounts.get(seat.account_id)
                await consultations.join(
                    CALL,
                    seat.account_id,
                    account.role,
                    seat.department,
                    seat.position,
                    T_JOIN,
                    invitation=f"i-seed{seat.position}",
                    invited_by=expert.username,
                    note=None,
                    audit=audit,
                )
        if call.transfer is not None:
            await consultations.transfer(CALL, expert.id, LAND, T_TRANSFER, audit=audit)
        assert await self.store.commit(seed_commit(values.values()))

    def keys(self) -> list[str]:
        ids = [self.cast.named(n).id for n in CAST_NAMES]
        return [
            call_key(CALL),
            invitation_key(INV),
            *(presence_key(i) for i in ids),
            *(open_key(i) for i in ids),
        ]

    async def values(self) -> dict[str, Live]:
        found = await self.store.read(self.keys())
        call = found.get(call_key(CALL))
        if isinstance(call, LiveCall):
            # An invitation the event made (the service picks its id).
            refs = [invitation_key(r.id) for r in call.invitations]
            found.update(await self.store.read(refs))
        return dict(found)

    async def queues(self) -> dict[str, list[str]]:
        return {d: await self.store.queue(d) for d in (DEPT, LAND, POOL)}

    async def audit(self) -> list[str]:
        return [e.action for e in await self.storage.audit.entries()]

    def effects(self) -> list[str]:
        told = [f"{self.cast.name_of(a)}:{event}" for a, event, _ in self.notifier.sent]
        return sorted(told + self.executor.done)

    async def call_after(self) -> str:
        values = await self.values()
        live = the_call(values)
        if live is not None:
            return call_label(live, self.cast)
        try:
            record = await self.storage.consultations.get(CALL)
        except RecordNotFound:
            return "none"
        assert record.end_reason is not None
        return f"ended {record.end_reason.value}"

    async def holds(self, token: str, before: Mapping[str, list[str]]) -> bool:
        """Whether a row's change token holds in the store now."""
        if token.startswith(("members", "handle")):
            return True  # counted in the pure table; the store's own contract covers them
        sign, what = token[0], token[1:]
        values = await self.values()
        queues = await self.queues()
        if token.startswith("queue"):
            department = token.split(":")[1]
            ours = [i for i in queues[department] if i == CALL or i.startswith("i-")]
            if token.startswith("queue+"):
                return any(i not in before[department] for i in ours)
            if INV in before[department]:
                return INV not in queues[department]
            return CALL not in queues[department]
        if what.startswith("open:"):
            key = open_key(self.cast.named(what.removeprefix("open:")).id)
            found = values.get(key)
            return (found is None) if sign == "-" else isinstance(found, OpenCall)
        if what == "invite":
            present = any(isinstance(v, LiveInvitation) for v in values.values())
            return present == (sign == "+")
        if what.startswith("grace:"):
            which = what.removeprefix("grace:")
            names = GRACE_KEYS if which == "*" else (which,)
            graces = [await self.store.deadline(deadline_key("grace", CALL, k)) for k in names]
            return (graces == [None] * len(names)) if sign == "-" else None not in graces
        if what.startswith(("wrapup:", "offline:")):
            kind, name = what.split(":")
            own = await self.store.deadline(deadline_key(kind, self.cast.named(name).id))
            return (own is None) == (sign == "-")
        if what in ("iring", "iwait"):
            ids = [INV] + [i for q in queues.values() for i in q if i.startswith("i-")]
            dues = [await self.store.deadline(deadline_key(what, i)) for i in ids]
            if sign == "-":
                return await self.store.deadline(deadline_key(what, INV)) is None
            return any(d is not None for d in dues)
        due = await self.store.deadline(deadline_key(what, CALL))
        return (due is None) == (sign == "-")


async def create_cast(storage: Storage) -> Cast:
    await storage.departments.create(LAND, "不动产", "Land")
    await storage.departments.create(DEPT, "税务", "Tax", transfers_to=[LAND])
    await storage.departments.create(POOL, "翻译", "Interpreting", kind=DepartmentKind.INTERPRETER)
    await storage.halls.create("hall-21", "二十一号大厅", "Hall 21")
    accounts = {}
    for name in CAST_NAMES:
        username, role, department, hall, display = CAST_ACCOUNTS[name]
        accounts[name] = await storage.accounts.create(
            username,
            "unused",
            role,
            department=department,
            hall=hall if role is Role.KIOSK else None,
            display_name=display,
            password_hash="x",
        )
    return Cast(accounts)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LiveStore]:
    if request.param == "memory":
        yield InProcessStore(Clock(0.0))
        return
    prefix = f"wl-test:{secrets.token_hex(8)}:"
    redis = RedisStore(SHARED_REDIS, prefix=prefix)
    await redis.start()
    try:
        yield redis
    finally:
        await redis.close()
        await delete_keys(SHARED_REDIS, prefix)


async def open_storage(data_dir: Path) -> Storage:
    return await Storage.open(None, data_dir, SessionPolicy(3600, 7200))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Cast]:
    data_dir = tmp_path_factory.mktemp("multiparty")

    async def make() -> Cast:
        storage = await open_storage(data_dir)
        try:
            return await create_cast(storage)
        finally:
            await storage.close()

    return data_dir, asyncio.run(make())


@pytest.fixture
async def world(
    store: LiveStore, template: tuple[Path, Cast], tmp_path: Path
) -> AsyncIterator[World]:
    template_dir, cast = template
    shutil.copytree(template_dir, tmp_path, dirs_exist_ok=True)
    storage = await open_storage(tmp_path)
    try:
        clock = Clock(0.0)
        notifier = RecordingNotifier()
        executor = RecordingExecutor(store, storage, notifier, clock)
        services = Services(
            executor,
            ConsultationService(executor, storage, CONFIG, clock),
            PresenceService(executor, CONFIG),
        )
        yield World(store, storage, cast, clock, notifier, executor, services)
        assert await executor.idle(30)
    finally:
        await storage.close()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
async def test_transition_through_the_executor(world: World, row: Row) -> None:
    world.clock.now = T_JOIN
    await world.seed(row.state)
    world.clock.now = row.event.now
    before_values = await world.values()
    before_queues = await world.queues()
    before_audit = await world.audit()
    before_call = await world.call_after()
    if row.refused is not None:
        with pytest.raises(SignalingError) as info:
            await row.event.run(world.services, world.cast)
        assert type(info.value) is row.refused, info.value
        assert await world.executor.idle(30)
        assert await world.values() == before_values
        assert await world.queues() == before_queues
        assert await world.audit() == before_audit
        assert world.effects() == []
        return
    await row.event.run(world.services, world.cast)
    assert await world.executor.idle(30)
    if row == Row(row.state, row.event):
        assert await world.values() == before_values and world.effects() == []
        return
    after_values = await world.values()
    call_after = await world.call_after()
    assert (call_after if call_after != before_call else SAME) == row.call
    invitation_before = invitation_label(the_invitation(before_values), world.cast)
    invitation_after = invitation_label(the_invitation(after_values), world.cast)
    assert (invitation_after if invitation_after != invitation_before else SAME) == row.invitation
    assert presence_changes(before_values, after_values, world.cast) == sorted(row.presences)
    for token in row.changes:
        assert await world.holds(token, before_queues), token
    assert world.effects() == sorted(row.effects)
    assert (await world.audit())[len(before_audit) :] == audit_of(row.record)


async def test_a_join_is_recorded_once_with_its_leg(world: World) -> None:
    """The records hold who joined, where, invited by whom, with the note."""
    world.clock.now = T_JOIN
    await world.seed("ringing outsider")
    world.clock.now = T_JOIN + 1
    outsider = world.cast.named("outsider")
    view = await world.services.consultations.accept_invitation(outsider, INV, "192.0.2.1")
    assert view.you == 2
    legs = await world.storage.legs.of(CALL)
    joined = legs[-1]
    assert (joined.username, joined.position, joined.invited_by, joined.note) == (
        "expert_land",
        2,
        "expert_tax",
        "请会商",
    )
    with pytest.raises(SignalingError):
        await world.services.consultations.accept_invitation(outsider, INV, "192.0.2.1")
    assert len(await world.storage.legs.of(CALL)) == len(legs)


async def test_an_expert_going_away_while_an_invitation_rings_lets_it_ring_the_next(
    world: World,
) -> None:
    world.clock.now = T_JOIN
    await world.seed("ringing outsider, outsider2 available")
    outsider = world.cast.named("outsider")
    await world.services.presence.set_status(outsider, PresenceStatus.AWAY)
    values = await world.values()
    invitation = values[invitation_key(INV)]
    assert isinstance(invitation, LiveInvitation)
    assert invitation.phase is Phase.WAITING and outsider.id in invitation.rung
    presence = values[presence_key(outsider.id)]
    assert isinstance(presence, ExpertPresence) and presence.offer is None


async def test_two_experts_leaving_at_once_leave_the_call_with_one_of_them(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both experts of a call of three leave at once (two nodes). The outsider's leave
    is recorded; before its live commit, the expert's leave is decided on the call as
    it still looks (two experts): the records refuse to end the last expert's part
    alone, so the expert is told to end the call instead, and records and live state
    agree: the call goes on with the expert. (Before: both parts ended in the records,
    and the outsider's retry ended the live call without a record, or left a call with
    no expert.)"""
    world.clock.now = T_JOIN
    await world.seed("three")
    world.clock.now = T_JOIN + 1
    consultations = world.services.consultations
    commit = world.store.commit
    refused: list[BaseException] = []

    async def racing(change: Commit) -> bool:
        if not refused:
            refused.append(RuntimeError("not refused"))
            try:
                await consultations.leave(world.cast.named("expert"), CALL, "192.0.2.2")
            except SignalingError as error:
                refused[0] = error
        return await commit(change)

    monkeypatch.setattr(world.store, "commit", racing)
    left = await consultations.leave(world.cast.named("outsider"), CALL, "192.0.2.1")
    assert left.end_reason == "left"
    assert isinstance(refused[0], InvalidState), refused
    live = (await world.values())[call_key(CALL)]
    assert isinstance(live, LiveCall)
    assert call_label(live, world.cast) == "active 0,1"
    legs = {leg.username: leg.left_at for leg in await world.storage.legs.of(CALL)}
    assert legs["expert_tax"] is None and legs["expert_land"] is not None
    record = await world.storage.consultations.get(CALL)
    assert record.ended_at is None


async def test_a_staff_members_grace_running_out_as_the_other_expert_leaves_ends_the_call(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outsider's grace runs out while the expert leaves on another node: the
    outsider's part was to end alone, but by its records' turn the expert's part has
    ended; the records refuse to leave a call without an expert, and the grace is
    decided again: the call ends dropped, in the records and the live state alike.
    (Before: the refusal lost the deadline, leaving a call of a citizen and a
    staff member who is gone.)"""
    world.clock.now = T_JOIN
    await world.seed("three, outsider offline")
    world.clock.now = T_DROP + CONFIG.grace_period
    records = world.storage.consultations
    real_leave = records.leave
    expert, outsider = world.cast.named("expert"), world.cast.named("outsider")
    raced: list[bool] = []

    async def leave(
        consultation_id: str, account_id: str, at: float, reason: LegEnd, *, audit: AuditEvent
    ) -> None:
        if account_id == outsider.id and not raced:
            raced.append(True)
            await world.services.consultations.leave(expert, CALL, "192.0.2.2")
        await real_leave(consultation_id, account_id, at, reason, audit=audit)

    monkeypatch.setattr(records, "leave", leave)
    await world.services.consultations.on_deadline(deadline_key("grace", CALL, "p2"))
    assert raced and await world.call_after() == "ended dropped"
    assert the_call(await world.values()) is None


async def test_a_transfer_is_refused_by_the_records_while_another_expert_is_in_the_call(
    world: World,
) -> None:
    """Records first: another expert's join recorded (its live commit still on its
    way) keeps the citizen in the call; the transfer of the one the live state still
    shows alone is refused, and nothing changes."""
    world.clock.now = T_JOIN
    await world.seed("three")
    with pytest.raises(RecordConflict):
        await world.storage.consultations.transfer(
            CALL,
            world.cast.named("expert").id,
            LAND,
            NOW,
            audit=AuditEvent("expert_tax", "consultation.transfer", CALL, {}),
        )
    record = await world.storage.consultations.get(CALL)
    assert (record.state.value, record.department) == ("active", DEPT)
