"""The consultation and presence state machines as a table (``transition_table``).

First the pure transitions: each row's state and event, a plain float for the
clock, no store, no database. The row gives the new phase and presence, the
store changes and the effects, or the error that refuses the event. Then the
same rows through the ``Executor``, on the in-process store and on Redis, with
SQLite records, a notifier that records what it is asked to send and a clock
that only moves when told. That checks what the store, the records, the audit
log and the notifications show afterwards. Last come what only the executor
does: routing, and deciding again when the versions it decided on are stale.
"""

import asyncio
import dataclasses
import gc
import secrets
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from signaling import transitions
from signaling.effects import Decision, MarkEnded, Notify
from signaling.errors import (
    AlreadyInConsultation,
    Forbidden,
    InvalidState,
    NotFound,
    SignalingError,
)
from signaling.executor import Executor
from signaling.live import (
    AwayReason,
    ExpertPresence,
    Live,
    LiveCall,
    OpenCall,
    Phase,
    call_key,
    experts_set,
    open_key,
    presence_key,
)
from signaling.memory_store import InProcessStore
from signaling.messages import ConsultationView, OfferRevoked, OfferView, ServerPayload
from signaling.redis_store import RedisStore
from signaling.service import ConsultationService, PresenceService
from signaling.store import Commit, LiveStore
from signaling.transitions import GRACE_KEYS, deadline_key
from storage.errors import RecordNotFound
from storage.records import AuditEvent, ConsultationRecord, ConsultationState
from storage.sessions import SessionPolicy
from storage.store import Storage
from tests.signaling.test_store_contract import SHARED_REDIS, delete_keys
from tests.signaling.transition_table import (
    AVAILABLE,
    AWAY,
    CALL,
    CAST_ACCOUNTS,
    CAST_NAMES,
    CONFIG,
    CONSULTATION_ROWS,
    DEPT,
    FIXED_CAST,
    NOW,
    OTHER_DEPT,
    PRESENCE_ROWS,
    RECORDED_ROWS,
    REMOTE,
    ROWS,
    SAME,
    STATES,
    T_ACTIVE,
    T_DROP,
    T_OFFER,
    Cast,
    Event,
    Row,
    Services,
    accept,
    apply,
    call,
    call_label,
    cancel,
    change_tokens,
    connected,
    decline,
    disconnected,
    effect_token,
    end,
    expected_record,
    expert_presence,
    grace_expired,
    left,
    no_expert_expired,
    offer,
    offline_expired,
    presence,
    presence_label,
    record_token,
    request,
    returned,
    ring_timeout,
    seed_commit,
    set_status,
    snapshot,
    state_of,
    the_call,
    withdraw,
    wrap_up_done,
    wrap_up_expired,
)


@pytest.fixture(autouse=True, scope="module")
def frozen_heap() -> Iterator[None]:
    """The conftest collects garbage after every test so that a leak fails the test
    that leaked it; over all the modules imported by then a full collection takes a
    third of a second here, which for hundreds of rows would be minutes. What is
    alive before this module's first test is frozen out of the collections, so each
    one looks only at what the tests made since, which is where their leaks are."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


# ==== the pure transitions ================================================================


@dataclass(frozen=True)
class Outcome:
    """A decision in the table's terms, to compare with a row as a whole."""

    call: str
    presence: str
    changes: list[str]
    effects: list[str]
    record: str | None


def decide(row: Row, values: Mapping[str, Live], cast: Cast = FIXED_CAST) -> Decision:
    return row.event.decide(snapshot(values), cast, row.recorded)


def outcome(values: Mapping[str, Live], decision: Decision, cast: Cast = FIXED_CAST) -> Outcome:
    after = apply(values, decision.commit)
    new_call = the_call(after, decision.commit)
    is_new = new_call is not None and new_call.id != CALL
    before_call = "none" if is_new else call_label(the_call(values))
    if call_key(CALL) in decision.commit.put and new_call is None:
        assert isinstance(decision.reply, ConsultationView)
        call_after = f"ended {decision.reply.end_reason}"
    else:
        call_after = call_label(new_call)
    before_presence = presence_label(expert_presence(values, cast))
    presence_after = presence_label(expert_presence(after, cast))
    return Outcome(
        call=SAME if call_after == before_call else call_after,
        presence=SAME if presence_after == before_presence else presence_after,
        changes=change_tokens(decision, cast),
        effects=sorted(effect_token(e, cast) for e in decision.effects),
        record=record_token(decision.record),
    )


def expected(row: Row, values: Mapping[str, Live], cast: Cast = FIXED_CAST) -> Outcome:
    return Outcome(
        call=row.call,
        presence=row.presence,
        changes=sorted(row.changes),
        effects=sorted(row.effects),
        record=expected_record(row, call_label(the_call(values))),
    )


@pytest.mark.parametrize("row", ROWS + RECORDED_ROWS, ids=[r.id for r in ROWS + RECORDED_ROWS])
def test_transition(row: Row) -> None:
    values = state_of(row.state, FIXED_CAST)
    if row.refused is not None:
        # A refusal is raised before anything is decided: no change, no effect.
        with pytest.raises(SignalingError) as info:
            decide(row, values)
        assert type(info.value) is row.refused, info.value
        assert info.value.code == row.refused.code
        return
    decision = decide(row, values)
    got = outcome(values, decision)
    if row.recorded:
        # Decided again, the executor writes no record (a request's is left out).
        got = dataclasses.replace(got, record=None)
    assert got == expected(row, values)
    if row.stale:
        assert decision.changes_nothing and not decision.effects


def test_every_event_has_a_row_in_every_phase_and_presence() -> None:
    """The table is a product: a row for each kind of event in each base state (a
    variant such as "active, kiosk dropped" counts for "active")."""
    phases = ("no call", "waiting", "offered", "active")
    presences = ("no presence", "available", "away", "offered", "active", "offline")

    def missing(rows: list[Row], states: tuple[str, ...]) -> list[tuple[str, str]]:
        kinds = dict.fromkeys(r.event.kind for r in rows)
        return [
            (kind, state)
            for kind in kinds
            for state in states
            if not any(r.event.kind == kind and r.state.startswith(state) for r in rows)
        ]

    assert missing(CONSULTATION_ROWS, phases) == []
    assert missing(PRESENCE_ROWS, presences) == []
    assert {r.state for r in ROWS + RECORDED_ROWS} == set(STATES)
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert len({r.id for r in RECORDED_ROWS}) == len(RECORDED_ROWS)


def test_every_end_is_recorded_with_who_ended_it_and_audited() -> None:
    for row in ROWS:
        if not row.call.startswith("ended"):
            continue
        values = state_of(row.state, FIXED_CAST)
        ended = the_call(values)
        assert ended is not None
        decision = decide(row, values)
        record = decision.record
        assert isinstance(record, MarkEnded), row.id
        actor = row.event.actor
        ended_by = FIXED_CAST.named(actor).username if actor else "system"
        assert (record.ended_by, record.at, record.offered_at) == (
            ended_by,
            NOW,
            ended.offered_at,
        ), row.id
        assert (record.audit.actor, record.audit.action, record.audit.subject) == (
            ended_by,
            "consultation.end",
            CALL,
        ), row.id
        assert record.audit.detail == {"reason": record.reason.value}
        assert record.audit.remote == (REMOTE if actor else "")
        # Whoever ended it has the view in the reply; the other sockets are told.
        assert isinstance(decision.reply, ConsultationView) and decision.reply.state == "ended"
        actor_id = FIXED_CAST.named(actor).id if actor else None
        for effect in decision.effects:
            if isinstance(effect, Notify) and effect.event == "consultation":
                assert effect.not_actor == (effect.account_id == actor_id), row.id


def test_deadlines_are_set_from_the_injected_time() -> None:
    def sets(state: str, event: Event) -> dict[str, float]:
        values = state_of(state, FIXED_CAST)
        return dict(event.decide(snapshot(values), FIXED_CAST, False).commit.deadlines_set)

    expert_id = FIXED_CAST.expert.id
    assert sets("no call", request()) == {
        deadline_key("noexpert", "c0ffee0000000002"): NOW + CONFIG.no_expert_wait
    }
    assert sets("waiting", offer()) == {deadline_key("ring", CALL): NOW + CONFIG.ring_timeout}
    assert sets("active", left("kiosk")) == {
        deadline_key("grace", CALL, "kiosk"): NOW + CONFIG.grace_period
    }
    assert sets("available", disconnected()) == {
        deadline_key("offline", expert_id): NOW + CONFIG.grace_period
    }


def test_ring_timeout_is_due_at_the_offer_plus_the_ring_time_not_before() -> None:
    values = state_of("offered", FIXED_CAST)
    due = T_OFFER + CONFIG.ring_timeout
    assert transitions.ring_timeout(snapshot(values, due - 0.01), CONFIG).changes_nothing
    assert not transitions.ring_timeout(snapshot(values, due), CONFIG).changes_nothing


def test_a_missed_offer_counts_against_the_expert_and_sends_them_to_the_back() -> None:
    values = state_of("offered", FIXED_CAST)
    decision = transitions.ring_timeout(snapshot(values), CONFIG)
    after = apply(values, decision.commit)
    back = after[call_key(CALL)]
    assert isinstance(back, LiveCall)
    assert (back.phase, back.expert_id, back.offered_at) == (Phase.WAITING, None, None)
    assert back.missed_by == (FIXED_CAST.expert.id,) and back.declined_by == ()
    assert back.waiting_since == call(FIXED_CAST, Phase.WAITING).waiting_since
    expert = expert_presence(after, FIXED_CAST)
    assert expert is not None
    assert (expert.missed_in_a_row, expert.idle_since, expert.offer) == (1, NOW, None)
    revoked = [e for e in decision.effects if isinstance(e, Notify) and e.event == "offer_revoked"]
    assert [e.payload for e in revoked] == [OfferRevoked(consultation_id=CALL, reason="timeout")]


def test_a_declined_offer_is_not_offered_to_that_expert_again() -> None:
    values = state_of("offered", FIXED_CAST)
    decision = transitions.decline(snapshot(values), FIXED_CAST.expert, CONFIG)
    after = apply(values, decision.commit)
    back = after[call_key(CALL)]
    assert isinstance(back, LiveCall) and back.declined_by == (FIXED_CAST.expert.id,)
    expert = expert_presence(after, FIXED_CAST)
    assert expert is not None and expert.missed_in_a_row == 0 and expert.free
    expert2 = after[presence_key(FIXED_CAST.expert2.id)]
    assert isinstance(expert2, ExpertPresence)
    assert transitions.plan_offers([back], [expert, expert2]) == [(CALL, FIXED_CAST.expert2.id)]
    assert transitions.plan_offers([back], [expert]) == []


def test_an_accepted_call_carries_each_sides_media_token_and_starts_now() -> None:
    values = state_of("offered", FIXED_CAST)
    tokens = {"kiosk": "k-token", "expert": "e-token"}
    decision = transitions.accept(snapshot(values), FIXED_CAST.expert, tokens, REMOTE)
    active = apply(values, decision.commit)[call_key(CALL)]
    assert isinstance(active, LiveCall)
    assert (active.active_at, active.offered_at) == (NOW, T_OFFER)
    assert active.token_of("kiosk") == "k-token" and active.token_of("expert") == "e-token"
    # Each side sees its own media access only.
    access = {}
    for effect in decision.effects:
        if isinstance(effect, Notify) and isinstance(effect.payload, ConsultationView):
            assert effect.payload.media is not None
            access[FIXED_CAST.name_of(effect.account_id)] = effect.payload.media.token
    assert access == {"kiosk": "k-token", "expert": "e-token"}


def test_a_completed_call_counts_its_handle_time() -> None:
    values = state_of("active", FIXED_CAST)
    decision = transitions.end(snapshot(values), FIXED_CAST.kiosk, REMOTE)
    assert decision.commit.handle_times == [(DEPT, NOW - T_ACTIVE, CONFIG.handle_time_samples)]


def test_an_expert_who_disconnects_in_a_call_gets_their_chosen_status_back_after_it() -> None:
    """busy, asked for away after the call -> offline -> back (busy) -> call ends: its
    record first, then away."""
    values = state_of("active, away after", FIXED_CAST)
    for step in (
        disconnected(),
        connected(),
        returned("expert"),
        end("kiosk"),
    ):
        values = apply(values, step.decide(snapshot(values), FIXED_CAST, False).commit)
    assert presence_label(expert_presence(values, FIXED_CAST)) == "wrap_up"
    values = apply(values, wrap_up_done().decide(snapshot(values), FIXED_CAST, False).commit)
    assert presence_label(expert_presence(values, FIXED_CAST)) == "away"


def test_a_call_ending_in_its_experts_grace_period_keeps_their_status_for_their_return() -> None:
    """... and its record to complete: back, the expert wraps that call up first."""
    values = state_of("active, expert offline", FIXED_CAST)
    for step in (end("kiosk"), connected()):
        values = apply(values, step.decide(snapshot(values), FIXED_CAST, False).commit)
    back = expert_presence(values, FIXED_CAST)
    assert back is not None and (back.status.value, back.wrap_up) == ("wrap_up", CALL)
    values = apply(values, wrap_up_done().decide(snapshot(values), FIXED_CAST, False).commit)
    assert presence_label(expert_presence(values, FIXED_CAST)) == "available"


def test_a_missed_second_offer_sets_the_expert_away_saying_why() -> None:
    values = state_of("offered, missed once", FIXED_CAST)
    values = apply(values, ring_timeout().decide(snapshot(values), FIXED_CAST, False).commit)
    away = expert_presence(values, FIXED_CAST)
    assert away is not None and away.away_reason is AwayReason.MISSED_OFFERS
    # Their own choice says nothing of why.
    values = apply(values, set_status(AVAILABLE).decide(snapshot(values), FIXED_CAST, False).commit)
    back = expert_presence(values, FIXED_CAST)
    assert back is not None and back.away_reason is None


def test_a_wrap_up_that_runs_out_sets_the_expert_away_saying_why() -> None:
    values = state_of("wrapping up", FIXED_CAST)
    values = apply(values, wrap_up_expired().decide(snapshot(values), FIXED_CAST, False).commit)
    away = expert_presence(values, FIXED_CAST)
    assert away is not None and away.away_reason is AwayReason.WRAP_UP_EXPIRED
    assert (away.wrap_up, away.wrap_up_until) == (None, None)


def test_a_call_that_ends_starts_its_wrap_up_with_the_limit_from_now() -> None:
    values = state_of("active", FIXED_CAST)
    decision = end("kiosk").decide(snapshot(values), FIXED_CAST, False)
    wrapping = expert_presence(apply(values, decision.commit), FIXED_CAST)
    assert wrapping is not None
    assert (wrapping.wrap_up, wrapping.wrap_up_until) == (CALL, NOW + CONFIG.wrap_up_limit)
    assert decision.commit.deadlines_set[deadline_key("wrapup", FIXED_CAST.expert.id)] == (
        NOW + CONFIG.wrap_up_limit
    )
    # Nobody free: the waiting citizens of the department are not offered to them.
    waiting = call(FIXED_CAST, Phase.WAITING, id="next")
    assert transitions.plan_offers([waiting], [wrapping]) == []


def test_without_a_wrap_up_limit_the_expert_takes_calls_as_the_call_ends() -> None:
    values = state_of("active", FIXED_CAST)
    no_wrap_up = dataclasses.replace(CONFIG, wrap_up_limit=0.0)
    decision = transitions.end(snapshot(values), FIXED_CAST.kiosk, REMOTE, config=no_wrap_up)
    after = expert_presence(apply(values, decision.commit), FIXED_CAST)
    assert after is not None and after.free and after.wrap_up is None


# -- the same event twice, and events after the fact

AGAIN: list[tuple[str, list[Event], type[SignalingError] | None]] = [
    ("offered", [accept(), accept()], InvalidState),
    ("offered", [decline(), decline()], InvalidState),
    ("waiting", [cancel(), cancel()], NotFound),
    ("active", [end("kiosk"), end("kiosk")], NotFound),
    ("active", [end("kiosk"), end("expert")], NotFound),
    ("active", [withdraw(), withdraw()], NotFound),
    ("no call", [request(), request()], AlreadyInConsultation),
    ("waiting", [offer(), offer()], None),
    ("offered", [ring_timeout(), ring_timeout()], None),
    ("offered", [accept(), ring_timeout()], None),
    ("offered", [decline(), ring_timeout()], None),
    ("active", [left("kiosk"), left("kiosk")], None),
    (
        "active",
        [
            left("kiosk", "media:kiosk"),
            returned("kiosk", "media:kiosk"),
            returned("kiosk", "media:kiosk"),
        ],
        None,
    ),
    ("active, kiosk dropped", [returned("kiosk"), grace_expired("kiosk")], None),
    ("active, kiosk dropped", [grace_expired("kiosk"), grace_expired("kiosk")], None),
    ("waiting, nobody online", [no_expert_expired(), no_expert_expired()], None),
    ("available", [disconnected(), disconnected()], None),
    ("offline", [offline_expired(), offline_expired()], None),
    ("offline", [connected(), offline_expired()], None),
]


@pytest.mark.parametrize(
    ("state", "events", "error"),
    AGAIN,
    ids=[f"{state}: {', '.join(e.name for e in events)}" for state, events, _ in AGAIN],
)
def test_an_event_again_or_after_the_fact_changes_nothing(
    state: str, events: list[Event], error: type[SignalingError] | None
) -> None:
    values = state_of(state, FIXED_CAST)
    *first, last = events
    for event in first:
        values = apply(values, event.decide(snapshot(values), FIXED_CAST, False).commit)
    if error is not None:
        with pytest.raises(SignalingError) as info:
            last.decide(snapshot(values), FIXED_CAST, False)
        assert type(info.value) is error
        return
    decision = last.decide(snapshot(values), FIXED_CAST, False)
    assert decision.changes_nothing and decision.effects == []


# -- routing


def test_waiting_calls_are_offered_oldest_first_each_to_another_expert() -> None:
    c = FIXED_CAST
    old = call(c, Phase.WAITING, id="old", waiting_since=1.0)
    new = call(c, Phase.WAITING, id="new", waiting_since=2.0)
    ringing = call(c, Phase.OFFERED, id="ringing", waiting_since=0.5)
    experts = [
        presence(c.expert, AVAILABLE, idle_since=20.0),
        presence(c.expert2, AVAILABLE, idle_since=10.0),
    ]
    assert transitions.plan_offers([ringing, old, new], experts) == [
        ("old", c.expert2.id),
        ("new", c.expert.id),
    ]
    assert transitions.plan_offers([old, new], experts[:1]) == [("old", c.expert.id)]
    away = [presence(c.expert, AWAY), presence(c.expert2, AVAILABLE, offer="ringing")]
    assert transitions.plan_offers([old, new], away) == []


def test_the_no_expert_wait_starts_only_with_nobody_online() -> None:
    c = FIXED_CAST
    waiting = call(c, Phase.WAITING)
    offered = call(c, Phase.OFFERED, id="other")
    assert transitions.no_expert_deadlines([waiting, offered], 1, NOW, CONFIG) == {}
    assert transitions.no_expert_deadlines([waiting, offered], 0, NOW, CONFIG) == {
        deadline_key("noexpert", CALL): NOW + CONFIG.no_expert_wait
    }


# ==== through the executor ==================================================================


@dataclass
class Clock:
    """The time, moved only by the test."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Sent:
    account_id: str
    event: str
    payload: ServerPayload
    skip_sid: str | None


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[Sent] = []

    async def to_account(
        self, account_id: str, event: str, payload: ServerPayload, skip_sid: str | None = None
    ) -> None:
        self.sent.append(Sent(account_id, event, payload, skip_sid))

    async def to_department(self, department: str, event: str, payload: ServerPayload) -> None:
        self.sent.append(Sent(f"department:{department}", event, payload, None))


class RecordingExecutor(Executor):
    """The executor with the effects that leave it recorded, in the table's tokens;
    routing (``Dispatch``) is recorded but runs only when ``route`` is set, so that a
    row's outcome is its own transition's."""

    def __init__(
        self,
        store: LiveStore,
        storage: Storage,
        notifier: RecordingNotifier,
        clock: Clock,
        cast: Cast,
    ) -> None:
        self.done: list[str] = []
        self.route = False

        async def close_relay(call_id: str, relay: str | None) -> None:
            self.done.append("close-relay")

        async def discard_uploads(call_id: str) -> None:
            self.done.append("discard-uploads")

        def publish_queue(department: str) -> None:
            self.done.append("publish")

        async def participant_changed(account_id: str, up: bool) -> None:
            self.done.append(f"participant:{cast.name_of(account_id)}{'+' if up else '-'}")

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
        )

    async def dispatch(self, department: str) -> None:
        self.done.append("dispatch")
        if self.route:
            await super().dispatch(department)

    async def arm_no_expert(self, department: str) -> None:
        self.done.append("arm-no-expert")
        await super().arm_no_expert(department)


@dataclass(frozen=True)
class Observed:
    """Everything of the live state and the records a row may touch."""

    values: dict[str, Live]
    queue: list[str]
    members: list[str]
    deadlines: dict[str, float | None]
    handle_times: list[float]
    records: list[ConsultationRecord]
    audit: list[str]


@dataclass
class World:
    store: LiveStore
    storage: Storage
    cast: Cast
    clock: Clock
    notifier: RecordingNotifier
    executor: RecordingExecutor
    services: Services

    async def seed(self, state: str) -> dict[str, Live]:
        """The state in the store, and its consultation in the records (as the
        transitions that led there would have written it)."""
        values = state_of(state, self.cast)
        the = the_call(values)
        if the is not None:
            kiosk = self.cast.kiosk
            await self.storage.consultations.create(
                the.kiosk_id,
                the.hall,
                the.department,
                the.case_number,
                audit=AuditEvent(kiosk.username, "consultation.request", the.id, {}),
                consultation_id=the.id,
                at=the.waiting_since,
            )
            if the.phase is Phase.ACTIVE:
                assert the.expert_id is not None and the.active_at is not None
                await self.storage.consultations.mark_active(
                    the.id,
                    the.expert_id,
                    the.offered_at,
                    the.active_at,
                    audit=AuditEvent(the.expert_username or "", "consultation.accept", the.id, {}),
                )
        assert await self.store.commit(seed_commit(values.values()))
        return values

    def keys(self) -> list[str]:
        c = self.cast
        return [
            call_key(CALL),
            *(presence_key(a.id) for a in (c.expert, c.expert2, c.outsider)),
            *(open_key(a.id) for a in (c.kiosk, c.kiosk2, c.expert, c.expert2)),
        ]

    def deadline_keys(self) -> list[str]:
        return [
            deadline_key("ring", CALL),
            deadline_key("noexpert", CALL),
            *(deadline_key("grace", CALL, k) for k in GRACE_KEYS),
            deadline_key("offline", self.cast.expert.id),
            deadline_key("wrapup", self.cast.expert.id),
        ]

    async def observe(self) -> Observed:
        return Observed(
            values=await self.store.read(self.keys()),
            queue=await self.store.queue(DEPT),
            members=await self.store.members(experts_set(DEPT)),
            deadlines={k: await self.store.deadline(k) for k in self.deadline_keys()},
            handle_times=await self.store.handle_times(DEPT),
            records=await self.storage.consultations.find(department=DEPT),
            audit=[e.action for e in await self.storage.audit.entries()],
        )

    def effects(self) -> list[str]:
        told = [f"{self.cast.name_of(s.account_id)}:{s.event}" for s in self.notifier.sent]
        return sorted(told + self.executor.done)

    async def call_label(self, call_id: str) -> str:
        live = (await self.store.read([call_key(call_id)])).get(call_key(call_id))
        if isinstance(live, LiveCall):
            return call_label(live)
        try:
            record = await self.storage.consultations.get(call_id)
        except RecordNotFound:
            return "none"
        assert record.state is ConsultationState.ENDED and record.end_reason is not None
        return f"ended {record.end_reason.value}"

    async def presence_label(self) -> str:
        key = presence_key(self.cast.expert.id)
        found = (await self.store.read([key])).get(key)
        assert found is None or isinstance(found, ExpertPresence)
        return presence_label(found)

    async def holds(self, token: str, call_id: str) -> bool:
        """Whether a row's change token holds in the store now."""
        sign, what = token[0], token[1:]
        if token in ("queue+", "queue-"):
            return (call_id in await self.store.queue(DEPT)) == (token == "queue+")
        if token in ("members+", "members-"):
            members = await self.store.members(experts_set(DEPT))
            return (self.cast.expert.id in members) == (token == "members+")
        if token == "handle-time":
            return await self.store.handle_times(DEPT) == [NOW - T_ACTIVE]
        if what.startswith("open:"):
            account = self.cast.named(what.removeprefix("open:"))
            found = (await self.store.read([open_key(account.id)])).get(open_key(account.id))
            if sign == "-":
                return found is None
            return isinstance(found, OpenCall) and found.call_id == call_id
        if what == "grace:*":
            keys = [deadline_key("grace", call_id, k) for k in GRACE_KEYS]
        elif what.startswith("grace:"):
            keys = [deadline_key("grace", call_id, what.removeprefix("grace:"))]
        elif what in ("offline", "wrapup"):
            keys = [deadline_key(what, self.cast.expert.id)]
        else:
            keys = [deadline_key(what, call_id)]
        due = [await self.store.deadline(k) for k in keys]
        if sign == "-":
            return due == [None] * len(keys)
        period = {
            "ring": CONFIG.ring_timeout,
            "noexpert": CONFIG.no_expert_wait,
            "grace": CONFIG.grace_period,
            "offline": CONFIG.grace_period,
            "wrapup": CONFIG.wrap_up_limit,
        }[what.split(":")[0]]
        return due == [NOW + period]


async def create_cast(storage: Storage) -> Cast:
    await storage.departments.create(DEPT, "税务", "Tax")
    await storage.departments.create(OTHER_DEPT, "不动产", "Land")
    await storage.halls.create("hall-1", "一号大厅", "Hall 1")
    accounts = {}
    for name in CAST_NAMES:
        username, role, department, hall = CAST_ACCOUNTS[name]
        accounts[name] = await storage.accounts.create(
            username, "unused", role, department=department, hall=hall, password_hash="x"
        )
    return Cast(**accounts)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LiveStore]:
    """The in-process store, or Redis at 127.0.0.1:6379 under a prefix of this test's
    own, emptied afterwards (as in test_store_contract)."""
    if request.param == "memory":
        yield InProcessStore(Clock())
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
    """A database with the departments and the cast, made once and copied for each
    test (making it takes longer than most rows)."""
    data_dir = tmp_path_factory.mktemp("template")

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
    # The database and whatever storage keeps beside it (the audit key directory).
    shutil.copytree(template_dir, tmp_path, dirs_exist_ok=True)
    storage = await open_storage(tmp_path)
    try:
        clock = Clock()
        notifier = RecordingNotifier()
        executor = RecordingExecutor(store, storage, notifier, clock, cast)
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
    await world.seed(row.state)
    before = await world.observe()
    before_call = await world.call_label(CALL)
    if row.refused is not None:
        with pytest.raises(SignalingError) as info:
            await row.event.run(world.services, world.cast)
        assert type(info.value) is row.refused, info.value
        assert await world.executor.idle(30)
        assert await world.observe() == before
        assert world.effects() == []
        return
    reply = await row.event.run(world.services, world.cast)
    assert await world.executor.idle(30)
    if row.stale:
        assert await world.observe() == before
        assert world.effects() == []
        return
    call_id = reply.consultation_id if isinstance(reply, ConsultationView) else CALL
    if call_id != CALL:  # a request's
        before_call = "none"
    call_after = await world.call_label(call_id)
    assert (call_after if call_after != before_call else SAME) == row.call
    presence_before = presence_label(expert_presence(before.values, world.cast))
    presence_after = await world.presence_label()
    assert (presence_after if presence_after != presence_before else SAME) == row.presence
    for token in row.changes:
        assert await world.holds(token, call_id), token
    assert world.effects() == sorted(row.effects)
    after = await world.observe()
    new_audit = after.audit[len(before.audit) :]
    match expected_record(row, before_call):
        case None:
            assert after.records == before.records
            assert new_audit == []
        case "create":
            record = await world.storage.consultations.get(call_id)
            assert (record.state, record.waiting_at) == (ConsultationState.WAITING, NOW)
            assert new_audit == ["consultation.request"]
        case "active":
            record = await world.storage.consultations.get(call_id)
            assert (record.state, record.expert_id) == (
                ConsultationState.ACTIVE,
                world.cast.expert.id,
            )
            assert (record.offered_at, record.active_at) == (T_OFFER, NOW)
            assert new_audit == ["consultation.accept"]
        case ended:
            record = await world.storage.consultations.get(call_id)
            actor = row.event.actor
            ended_by = world.cast.named(actor).username if actor else "system"
            assert record.state is ConsultationState.ENDED
            assert f"ended {record.end_reason}" == ended
            assert (record.ended_at, record.ended_by) == (NOW, ended_by)
            assert new_audit == ["consultation.end"]
    # Each notification is a real payload of its event.
    for sent in world.notifier.sent:
        if sent.event == "offer":
            assert isinstance(sent.payload, OfferView)
            assert sent.payload.expires_at == NOW + CONFIG.ring_timeout


# -- what only the executor does


async def test_a_request_is_offered_to_the_free_expert_by_routing(world: World) -> None:
    world.executor.route = True
    await world.seed("no call")
    view = await world.services.consultations.request(world.cast.kiosk, DEPT, None, REMOTE)
    assert await world.executor.idle(30)
    assert await world.call_label(view.consultation_id) == "offered"
    assert await world.presence_label() == "ringing"
    offers = [s for s in world.notifier.sent if s.event == "offer"]
    assert [s.account_id for s in offers] == [world.cast.expert.id]
    assert await world.store.deadline(deadline_key("ring", view.consultation_id)) == (
        NOW + CONFIG.ring_timeout
    )


async def test_a_decision_on_stale_versions_is_decided_again_on_the_new_state(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kiosk's socket drop is decided on the active call; before it commits, the
    expert ends the call (another node). The commit is refused, and decided again on
    what is there now: nothing (no grace period for a call that has ended)."""
    await world.seed("active")
    commit = world.store.commit
    results: list[bool] = []

    async def racing(change: Commit) -> bool:
        if not results:
            results.append(True)  # the other node's end commits in between
            await world.services.consultations.end(world.cast.expert, CALL, REMOTE)
        ok = await commit(change)
        results.append(ok)
        return ok

    monkeypatch.setattr(world.store, "commit", racing)
    await world.services.consultations.participant_changed(world.cast.kiosk.id, False)
    assert results == [True, True, False]  # the end, then the stale decision refused
    assert await world.call_label(CALL) == "ended completed"
    assert await world.store.deadline(deadline_key("grace", CALL, "kiosk")) is None
    assert "expert:peer_status" not in world.effects()


async def test_records_written_before_a_stale_commit_are_applied_to_the_new_state(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expert's accept is recorded; before its commit the ring times out on
    another node and the call is waiting again. The records say the call started:
    the retry makes it active all the same, and the accept is recorded once."""
    await world.seed("offered")
    assert world.clock.now >= T_OFFER + CONFIG.ring_timeout  # the ring is due
    commit = world.store.commit
    refused: list[Commit] = []

    async def racing(change: Commit) -> bool:
        if not refused:  # the accept's first commit, its record written
            refused.append(change)
            await world.services.consultations.on_deadline(deadline_key("ring", CALL))
        return await commit(change)

    monkeypatch.setattr(world.store, "commit", racing)
    view = await world.services.consultations.accept(world.cast.expert, CALL, REMOTE)
    assert view.state == "active" and refused
    assert await world.call_label(CALL) == "active"
    assert await world.presence_label() == "busy"
    record = await world.storage.consultations.get(CALL)
    assert record.state is ConsultationState.ACTIVE
    audit = [e.action for e in await world.storage.audit.entries()]
    assert audit.count("consultation.accept") == 1
    told = Counter(f"{world.cast.name_of(s.account_id)}:{s.event}" for s in world.notifier.sent)
    # The ring timeout told the expert the offer was gone; the accept that the records
    # hold then told both sides the call started.
    assert told["expert:offer_revoked"] == 1 and told["kiosk:consultation"] == 2
    assert told["expert:consultation"] == 1


async def test_what_the_records_refuse_changes_nothing_live(world: World) -> None:
    """Another node's consultation of this kiosk is open in the records: the request
    is refused there, before the live state is touched."""
    await world.seed("no call")
    await world.storage.consultations.create(
        world.cast.kiosk.id,
        world.cast.kiosk.hall,
        DEPT,
        None,
        audit=AuditEvent("kiosk01", "consultation.request", "", {}),
    )
    before = await world.observe()
    with pytest.raises(AlreadyInConsultation):
        await world.services.consultations.request(world.cast.kiosk, DEPT, None, REMOTE)
    with pytest.raises(NotFound):
        await world.services.consultations.request(world.cast.kiosk2, "nowhere", None, REMOTE)
    assert await world.observe() == before
    assert world.effects() == []
    assert await world.store.read([open_key(world.cast.kiosk2.id)]) == {}


async def test_only_experts_have_a_presence(world: World) -> None:
    before = await world.observe()
    with pytest.raises(Forbidden):
        await world.services.presence.set_status(world.cast.kiosk, AVAILABLE)
    assert await world.observe() == before and world.effects() == []


async def test_the_same_accept_twice_is_refused_the_second_time(world: World) -> None:
    await world.seed("offered")
    await world.services.consultations.accept(world.cast.expert, CALL, REMOTE)
    first = await world.observe()
    told = len(world.notifier.sent)
    with pytest.raises(InvalidState):
        await world.services.consultations.accept(world.cast.expert, CALL, REMOTE)
    assert await world.observe() == first and len(world.notifier.sent) == told


async def test_a_grace_deadline_after_the_return_changes_nothing(world: World) -> None:
    await world.seed("active")
    consultations = world.services.consultations
    await consultations.participant_changed(world.cast.kiosk.id, False)
    world.clock.now = T_DROP
    await consultations.participant_changed(world.cast.kiosk.id, True)
    back = await world.observe()
    told = len(world.notifier.sent)
    world.clock.now = NOW + CONFIG.grace_period
    await consultations.on_deadline(deadline_key("grace", CALL, "kiosk"))
    assert await world.observe() == back and len(world.notifier.sent) == told
    assert await world.call_label(CALL) == "active"


async def test_an_away_expert_leaving_does_not_restart_the_no_expert_wait(world: World) -> None:
    """Nobody of the department has been available since the request; an away
    expert's socket closing changes nothing about that."""
    await world.seed("waiting, nobody online")
    key = deadline_key("noexpert", CALL)
    due = await world.store.deadline(key)
    await world.services.presence.disconnected(world.cast.expert)
    assert await world.store.deadline(key) == due
