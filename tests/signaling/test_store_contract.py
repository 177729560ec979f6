"""The ``LiveStore`` contract, run against every implementation.

Each test gets a way to open stores that share one state, as two processes of a
deployment would: for the in-process store that is the one instance, for Redis a
new ``RedisStore`` on the same key prefix (its own pool and connections). The
Redis ones use the shared server on 127.0.0.1:6379 under a random prefix whose
keys are deleted afterwards. The tests at the end start a redis-server of their
own, to stop and pause it.
"""

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from harness.redis import PrivateRedis
from signaling.live import (
    ExpertPresence,
    Live,
    LiveCall,
    OpenCall,
    Phase,
    PresenceStatus,
    call_key,
    experts_set,
    open_key,
    presence_key,
)
from signaling.memory_store import InProcessStore
from signaling.redis_store import RedisStore
from signaling.store import Commit, LiveStore, StoreClosed, StoreUnavailable

SHARED_REDIS = "redis://127.0.0.1:6379/0"

OpenStore = Callable[[], Awaitable[LiveStore]]


async def delete_keys(url: str, prefix: str) -> None:
    redis = Redis.from_url(url)
    try:
        doomed = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(doomed), 500):
            await redis.delete(*doomed[start : start + 500])
    finally:
        await redis.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the shared Redis, emptied afterwards."""
    prefix = f"wl-test:{secrets.token_hex(8)}:"
    try:
        yield prefix
    finally:
        await delete_keys(SHARED_REDIS, prefix)


@pytest.fixture(params=["memory", "redis"])
async def open_store(request: pytest.FixtureRequest) -> AsyncIterator[OpenStore]:
    if request.param == "memory":
        shared = InProcessStore()

        async def same() -> LiveStore:
            return shared

        yield same
        return

    prefix = f"wl-test:{secrets.token_hex(8)}:"
    opened: list[RedisStore] = []

    async def another() -> LiveStore:
        store = RedisStore(SHARED_REDIS, prefix=prefix)
        await store.start()
        opened.append(store)
        return store

    try:
        yield another
    finally:
        for store in opened:
            await store.close()
        await delete_keys(SHARED_REDIS, prefix)


@pytest.fixture
async def store(open_store: OpenStore) -> LiveStore:
    return await open_store()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll until ``check`` holds; fail after ``within`` seconds."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            pytest.fail(f"still not so after {within} s")
        await asyncio.sleep(0.02)


def waiting(call_id: str, since: float = 100.0, department: str = "tax") -> LiveCall:
    return LiveCall(
        id=call_id,
        department=department,
        kiosk_id=f"kiosk-{call_id}",
        kiosk_username="hall1-window3",
        hall="hall-1",
        case_number=None,
        phase=Phase.WAITING,
        waiting_since=since,
    )


def available(expert_id: str, department: str = "tax") -> ExpertPresence:
    return ExpertPresence(
        expert_id=expert_id,
        username=f"user-{expert_id}",
        department=department,
        status=PresenceStatus.AVAILABLE,
        idle_since=50.0,
    )


async def put(store: LiveStore, *values: LiveCall | ExpertPresence | OpenCall) -> None:
    """Store values unconditionally (test set-up)."""
    keyed: dict[str, Live | None] = {key_of_value(value): value for value in values}
    assert await store.commit(Commit(put=keyed))


def key_of_value(value: LiveCall | ExpertPresence | OpenCall) -> str:
    if isinstance(value, LiveCall):
        return call_key(value.id)
    if isinstance(value, ExpertPresence):
        return presence_key(value.expert_id)
    return open_key(value.account_id)


async def version_of(store: LiveStore, key: str) -> int:
    value = (await store.read([key])).get(key)
    return 0 if value is None else value.version


# ---- closing ------------------------------------------------------------------------


async def test_a_closed_store_refuses_every_operation(store: LiveStore) -> None:
    """Work cut short by a stop must not act on the live state once it is closed: each
    operation raises StoreClosed, which callers already handle as StoreUnavailable."""
    await put(store, waiting("c1"))
    await store.close()
    operations: list[Awaitable[object]] = [
        store.ping(),
        store.read([call_key("c1")]),
        store.commit(Commit(put={call_key("c2"): waiting("c2")})),
        store.queue("tax"),
        store.members(experts_set("tax")),
        store.handle_times("tax"),
        store.claim_due(time.time()),
        store.done(["ring|c1"]),
        store.deadline("ring|c1"),
        store.take_slot("chat:a", 60.0, 5, time.time()),
        store.release_slot("chat:a", 1.0),
        store.claim("sweep:n", 1.0),
        store.release("sweep:n"),
        store.add_connection("a", "n", "s"),
        store.remove_connection("a", "n", "s"),
        store.connections_of_node("n"),
        store.heartbeat("nodes", "n", "", 1.0),
        store.alive("nodes"),
        store.known("nodes"),
        store.forget("nodes", "n"),
    ]
    for operation in operations:
        with pytest.raises(StoreClosed):
            await operation
    assert issubclass(StoreClosed, StoreUnavailable)


# ---- values and versions ------------------------------------------------------------


async def test_read_returns_only_the_keys_that_exist(store: LiveStore) -> None:
    await store.ping()
    assert await store.read([]) == {}
    assert await store.read([call_key("nobody")]) == {}
    await put(store, waiting("c1"))
    got = await store.read(key for key in [call_key("c1"), call_key("c2"), call_key("c1")])
    assert got == {call_key("c1"): dataclasses.replace(waiting("c1"), version=1)}


async def test_every_kind_of_value_reads_back_equal(store: LiveStore) -> None:
    call = LiveCall(
        id="c-税务-1",
        department="税务",
        kiosk_id="kiosk-7",
        kiosk_username="大厅一号窗口",
        hall="东区",
        case_number="2024-00017",
        phase=Phase.ACTIVE,
        waiting_since=1718000000.1234567,
        expert_id="e-1",
        expert_username="王五",
        offered_at=1718000003.3,
        active_at=1718000005.0000001,
        declined_by=("e-2", "e-3"),
        missed_by=("e-4",),
        # In key order: a shared store keeps pairs as a JSON object, which comes
        # back sorted (live._pairs).
        dropped=(("expert", 1718000006.5), ("kiosk", 1718000007.25)),
        media_tokens=(("expert", "tok-e"), ("kiosk", "tok-k")),
        relay="relay-2",
    )
    presence = ExpertPresence(
        expert_id="e-1",
        username="王五",
        department="税务",
        status=PresenceStatus.BUSY,
        idle_since=1718000000.5,
        offer=None,
        call="c-税务-1",
        missed_in_a_row=2,
        status_before_drop=PresenceStatus.AWAY,
        status_after_call=PresenceStatus.AWAY,
    )
    link = OpenCall(account_id="kiosk-7", call_id="c-税务-1")
    await put(store, call, presence, link)
    got = await store.read([call_key(call.id), presence_key("e-1"), open_key("kiosk-7")])
    versions = {key: value.version for key, value in got.items()}
    assert sorted(versions.values()) == [1, 2, 3]
    assert got == {
        call_key(call.id): dataclasses.replace(call, version=versions[call_key(call.id)]),
        presence_key("e-1"): dataclasses.replace(presence, version=versions[presence_key("e-1")]),
        open_key("kiosk-7"): dataclasses.replace(link, version=versions[open_key("kiosk-7")]),
    }
    assert isinstance(got[call_key(call.id)], LiveCall)
    assert got[call_key(call.id)].dropped_since("kiosk") == 1718000007.25  # type: ignore[union-attr]


async def test_the_store_assigns_versions_whatever_the_value_says(store: LiveStore) -> None:
    await put(store, dataclasses.replace(waiting("c1"), version=99))
    assert await version_of(store, call_key("c1")) == 1


async def test_versions_increase_by_one_per_commit(store: LiveStore) -> None:
    key = call_key("c1")
    for expected in range(1, 6):
        assert await store.commit(
            Commit(expect={key: expected - 1}, put={key: waiting("c1", since=expected)})
        )
        value = (await store.read([key]))[key]
        assert value.version == expected
        assert isinstance(value, LiveCall) and value.waiting_since == expected


async def test_a_stale_expected_version_is_refused(store: LiveStore) -> None:
    key = call_key("c1")
    await put(store, waiting("c1"))
    await put(store, waiting("c1", since=200.0))
    assert not await store.commit(Commit(expect={key: 1}, put={key: waiting("c1", since=300.0)}))
    assert (await store.read([key]))[key] == dataclasses.replace(
        waiting("c1", since=200.0), version=2
    )


async def test_zero_expects_the_key_to_be_absent(store: LiveStore) -> None:
    key = open_key("kiosk-1")
    # A pure check, nothing put: holds while absent.
    assert await store.commit(Commit(expect={key: 0}))
    assert await store.commit(Commit(expect={key: 0}, put={key: OpenCall("kiosk-1", "c1")}))
    assert not await store.commit(Commit(expect={key: 0}, put={key: OpenCall("kiosk-1", "c2")}))
    assert not await store.commit(Commit(expect={key: 0}))
    assert (await store.read([key]))[key] == OpenCall("kiosk-1", "c1", version=1)


async def test_expecting_a_version_of_an_absent_key_is_refused(store: LiveStore) -> None:
    key = open_key("kiosk-1")
    assert not await store.commit(Commit(expect={key: 1}, put={key: OpenCall("kiosk-1", "c1")}))
    assert await store.read([key]) == {}


async def test_a_recreated_key_never_returns_to_an_old_version(store: LiveStore) -> None:
    """Versions come from one counter: a decision made on a key's earlier life (at
    version 1) cannot pass against its next one (ABA)."""
    key = open_key("kiosk-1")
    await put(store, OpenCall("kiosk-1", "c1"))
    assert await store.commit(Commit(expect={key: 1}, put={key: None}))
    assert await store.read([key]) == {}
    assert await store.commit(Commit(expect={key: 0}, put={key: OpenCall("kiosk-1", "c2")}))
    assert (await store.read([key]))[key] == OpenCall("kiosk-1", "c2", version=2)
    assert not await store.commit(Commit(expect={key: 1}, put={key: None}))


async def test_deleting_an_absent_key_is_harmless(store: LiveStore) -> None:
    assert await store.commit(Commit(put={open_key("nobody"): None}))
    assert await store.read([open_key("nobody")]) == {}


# ---- all or nothing -------------------------------------------------------------------

KEYS = [call_key("c1"), call_key("c2"), presence_key("e1"), presence_key("e2"), open_key("k1")]
DEADLINES = [call_key("c1"), call_key("c2"), presence_key("e1")]


async def everything(store: LiveStore) -> dict[str, object]:
    """All the state the commits below could touch."""
    return {
        "values": await store.read(KEYS),
        "tax": await store.queue("tax"),
        "land": await store.queue("land"),
        "experts": await store.members(experts_set("tax")),
        "deadlines": [await store.deadline(key) for key in DEADLINES],
        "handle times": await store.handle_times("tax"),
    }


async def seed(store: LiveStore) -> None:
    assert await store.commit(
        Commit(
            put={call_key("c1"): waiting("c1"), presence_key("e2"): available("e2")},
            queue_add=[("tax", "c1", 100.0)],
            members_add=[(experts_set("tax"), "e1")],
            deadlines_set={call_key("c1"): 500.0},
            handle_times=[("tax", 30.0, 5)],
        )
    )


def every_kind_of_change(expect: dict[str, int]) -> Commit:
    return Commit(
        expect=expect,
        put={
            call_key("c1"): None,
            call_key("c2"): waiting("c2", since=150.0, department="land"),
            presence_key("e1"): available("e1"),
            presence_key("e2"): dataclasses.replace(available("e2"), status=PresenceStatus.AWAY),
        },
        queue_remove=[("tax", "c1")],
        queue_add=[("land", "c2", 150.0), ("tax", "c3", 160.0)],
        members_remove=[(experts_set("tax"), "e1")],
        members_add=[(experts_set("tax"), "e2")],
        deadlines_clear=[call_key("c1")],
        deadlines_set={call_key("c2"): 600.0, presence_key("e1"): 700.0},
        handle_times=[("tax", 40.0, 5)],
    )


async def test_a_refused_commit_changes_nothing_at_all(store: LiveStore) -> None:
    await seed(store)
    before = await everything(store)
    # c1 and e2 still hold; only k1 (absent, expected at 1) does not.
    stale = {call_key("c1"): 1, presence_key("e2"): 2, open_key("k1"): 1}
    assert not await store.commit(every_kind_of_change(stale))
    assert await everything(store) == before


async def test_an_applied_commit_changes_everything_together(store: LiveStore) -> None:
    await seed(store)
    holds = {call_key("c1"): 1, presence_key("e1"): 0, presence_key("e2"): 2, open_key("k1"): 0}
    assert await store.commit(every_kind_of_change(holds))
    assert await everything(store) == {
        "values": {
            # The seed took versions 1 and 2; this commit's puts take the next ones.
            call_key("c2"): dataclasses.replace(
                waiting("c2", since=150.0, department="land"), version=3
            ),
            presence_key("e1"): dataclasses.replace(available("e1"), version=4),
            presence_key("e2"): dataclasses.replace(
                available("e2"), status=PresenceStatus.AWAY, version=5
            ),
        },
        "tax": ["c3"],
        "land": ["c2"],
        "experts": ["e2"],
        "deadlines": [None, 600.0, 700.0],
        "handle times": [30.0, 40.0],
    }


async def test_a_bad_keep_is_refused_before_anything_changes(store: LiveStore) -> None:
    await seed(store)
    before = await everything(store)
    bad = every_kind_of_change({})
    bad.handle_times = [("tax", 40.0, -1)]
    with pytest.raises(ValueError):
        await store.commit(bad)
    assert await everything(store) == before


# ---- queues, member sets, handle times --------------------------------------------------


async def test_a_queue_is_ordered_by_waiting_since(store: LiveStore) -> None:
    assert await store.queue("tax") == []
    assert await store.commit(
        Commit(
            queue_add=[
                ("tax", "late", 1718000030.5),
                ("tax", "early", 1718000010.25),
                ("land", "other", 1.0),
                ("tax", "middle", 1718000020.125),
            ]
        )
    )
    assert await store.queue("tax") == ["early", "middle", "late"]
    assert await store.queue("land") == ["other"]
    assert await store.commit(Commit(queue_remove=[("tax", "middle"), ("tax", "absent")]))
    assert await store.queue("tax") == ["early", "late"]


async def test_adding_a_queued_call_again_keeps_its_place(store: LiveStore) -> None:
    assert await store.commit(Commit(queue_add=[("tax", "c1", 10.0), ("tax", "c2", 20.0)]))
    # An offer taken back puts the call in the queue again with a later time.
    assert await store.commit(Commit(queue_add=[("tax", "c1", 30.0)]))
    assert await store.queue("tax") == ["c1", "c2"]


async def test_equal_waiting_times_are_ordered_by_call_id(store: LiveStore) -> None:
    assert await store.commit(
        Commit(queue_add=[("tax", "c-b", 10.0), ("tax", "c-a", 10.0), ("tax", "c-0", 10.5)])
    )
    assert await store.queue("tax") == ["c-a", "c-b", "c-0"]


async def test_removing_and_adding_in_one_commit_moves_a_call(store: LiveStore) -> None:
    assert await store.commit(Commit(queue_add=[("tax", "c1", 10.0), ("tax", "c2", 20.0)]))
    assert await store.commit(Commit(queue_remove=[("tax", "c1")], queue_add=[("tax", "c1", 30.0)]))
    assert await store.queue("tax") == ["c2", "c1"]


async def test_members_are_listed_sorted(store: LiveStore) -> None:
    name = experts_set("tax")
    assert await store.members(name) == []
    assert await store.commit(
        Commit(members_add=[(name, "e3"), (name, "e1"), (name, "e2"), (name, "e1")])
    )
    assert await store.members(name) == ["e1", "e2", "e3"]
    assert await store.members(experts_set("land")) == []
    assert await store.commit(Commit(members_remove=[(name, "e2"), (name, "absent")]))
    assert await store.members(name) == ["e1", "e3"]
    # Removals come first, so a member removed and added in one commit stays.
    assert await store.commit(Commit(members_remove=[(name, "e1")], members_add=[(name, "e1")]))
    assert await store.members(name) == ["e1", "e3"]


async def test_handle_times_keep_the_newest_last(store: LiveStore) -> None:
    assert await store.handle_times("tax") == []
    assert await store.commit(
        Commit(handle_times=[("tax", 61.5, 3), ("tax", 120.0, 3), ("land", 5.0, 3)])
    )
    assert await store.commit(
        Commit(handle_times=[("tax", 0.1 + 0.2, 3), ("tax", 1718000000.1234567, 3)])
    )
    assert await store.handle_times("tax") == [120.0, 0.1 + 0.2, 1718000000.1234567]
    assert await store.handle_times("land") == [5.0]


async def test_keeping_fewer_handle_times_drops_the_oldest(store: LiveStore) -> None:
    assert await store.commit(Commit(handle_times=[("tax", float(s), 5) for s in range(1, 6)]))
    assert await store.commit(Commit(handle_times=[("tax", 6.0, 2)]))
    assert await store.handle_times("tax") == [5.0, 6.0]
    assert await store.commit(Commit(handle_times=[("tax", 7.0, 0)]))
    assert await store.handle_times("tax") == []


# ---- deadlines ------------------------------------------------------------------------


async def test_due_deadlines_are_claimed_once_oldest_first(store: LiveStore) -> None:
    assert await store.claim_due(1e12) == []
    assert await store.commit(
        Commit(deadlines_set={"ring:c2": 20.0, "ring:c1": 10.0, "grace:e1": 15.0, "later": 30.0})
    )
    assert await store.deadline("ring:c1") == 10.0
    assert await store.claim_due(9.999) == []
    # Due at exactly ``now`` counts.
    assert await store.claim_due(20.0) == ["ring:c1", "grace:e1", "ring:c2"]
    assert await store.claim_due(20.0) == []
    await store.done(["ring:c1", "grace:e1", "ring:c2"])
    assert await store.deadline("ring:c1") is None
    assert await store.deadline("later") == 30.0
    assert await store.claim_due(100.0) == ["later"]
    await store.done(["later"])
    assert await store.claim_due(100.0) == []


async def test_a_claimed_deadline_not_done_within_its_lease_is_due_again(
    store: LiveStore,
) -> None:
    """Its claimer died before carrying it out: another one takes it."""
    assert await store.commit(Commit(deadlines_set={"ring:c1": 10.0, "ring:c2": 10.0}))
    assert await store.claim_due(10.0, lease=5.0) == ["ring:c1", "ring:c2"]
    await store.done(["ring:c2"])
    assert await store.claim_due(14.9, lease=5.0) == []
    assert await store.claim_due(15.0, lease=5.0) == ["ring:c1"]
    await store.done(["ring:c1"])
    assert await store.claim_due(1000.0) == []
    # Setting it again ends the lease: due at its new time only.
    assert await store.commit(Commit(deadlines_set={"grace:x": 10.0}))
    assert await store.claim_due(10.0, lease=5.0) == ["grace:x"]
    assert await store.commit(Commit(deadlines_set={"grace:x": 50.0}))
    assert await store.claim_due(20.0) == []
    assert await store.claim_due(50.0) == ["grace:x"]


async def test_claim_due_takes_at_most_limit(store: LiveStore) -> None:
    assert await store.commit(Commit(deadlines_set={f"d{i}": float(i) for i in range(5)}))
    assert await store.claim_due(10.0, limit=0) == []
    assert await store.claim_due(10.0, limit=2) == ["d0", "d1"]
    assert await store.claim_due(10.0, limit=2) == ["d2", "d3"]
    assert await store.claim_due(10.0, limit=2) == ["d4"]


async def test_a_replaced_deadline_is_not_claimed_at_its_old_time(store: LiveStore) -> None:
    assert await store.commit(Commit(deadlines_set={"ring:c1": 10.0}))
    assert await store.commit(Commit(deadlines_set={"ring:c1": 30.0}))
    assert await store.deadline("ring:c1") == 30.0
    assert await store.claim_due(20.0) == []
    assert await store.claim_due(30.0) == ["ring:c1"]
    await store.done(["ring:c1"])
    assert await store.claim_due(1000.0) == []


async def test_a_deadline_moved_back_is_claimed_once(store: LiveStore) -> None:
    for at in (10.0, 20.0, 10.0):
        assert await store.commit(Commit(deadlines_set={"ring:c1": at}))
    assert await store.claim_due(15.0) == ["ring:c1"]
    assert await store.claim_due(25.0) == []


async def test_a_deadline_set_again_after_it_was_claimed_is_claimed_again(
    store: LiveStore,
) -> None:
    assert await store.commit(Commit(deadlines_set={"grace:e1": 10.0}))
    assert await store.claim_due(10.0) == ["grace:e1"]
    assert await store.commit(Commit(deadlines_set={"grace:e1": 10.0}))
    assert await store.claim_due(10.0) == ["grace:e1"]
    assert await store.claim_due(10.0) == []


async def test_a_cleared_deadline_is_never_claimed(store: LiveStore) -> None:
    assert await store.commit(Commit(deadlines_set={"ring:c1": 10.0, "ring:c2": 11.0}))
    assert await store.commit(Commit(deadlines_clear=["ring:c1", "never-set"]))
    assert await store.deadline("ring:c1") is None
    assert await store.claim_due(1000.0) == ["ring:c2"]
    assert await store.claim_due(1000.0) == []


async def test_clearing_and_setting_in_one_commit_sets(store: LiveStore) -> None:
    assert await store.commit(Commit(deadlines_set={"ring:c1": 10.0}))
    assert await store.commit(Commit(deadlines_clear=["ring:c1"], deadlines_set={"ring:c1": 40.0}))
    assert await store.claim_due(20.0) == []
    assert await store.claim_due(40.0) == ["ring:c1"]


# ---- slots and claims -----------------------------------------------------------------


async def test_slots_are_taken_up_to_the_limit_within_the_window(store: LiveStore) -> None:
    assert [await store.take_slot("login:alice", 10.0, 3, now) for now in (100, 101, 102)] == [
        True,
        True,
        True,
    ]
    assert not await store.take_slot("login:alice", 10.0, 3, 103.0)
    assert await store.take_slot("login:bob", 10.0, 3, 103.0)
    # An event exactly ``window`` old still counts ...
    assert not await store.take_slot("login:alice", 10.0, 3, 110.0)
    # ... and one older does not.
    assert await store.take_slot("login:alice", 10.0, 3, 110.5)
    # The refusals at 103 and 110 were not counted: 101, 102 and 110.5 are.
    assert not await store.take_slot("login:alice", 10.0, 3, 110.6)
    assert await store.take_slot("login:alice", 10.0, 3, 111.5)


async def test_a_limit_of_zero_refuses_every_slot(store: LiveStore) -> None:
    assert not await store.take_slot("chat:c1", 10.0, 0, 100.0)


async def test_releasing_a_slot_forgets_one_event_at_that_time(store: LiveStore) -> None:
    key = "login:alice"
    assert await store.take_slot(key, 60.0, 3, 100.0)
    assert await store.take_slot(key, 60.0, 3, 100.0)
    assert await store.take_slot(key, 60.0, 3, 101.0)
    assert not await store.take_slot(key, 60.0, 3, 102.0)
    await store.release_slot(key, 100.0)
    assert await store.take_slot(key, 60.0, 3, 102.0)
    assert not await store.take_slot(key, 60.0, 3, 102.0)
    # Nothing counted at 99, and nothing at all for another key: no change.
    await store.release_slot(key, 99.0)
    await store.release_slot("login:nobody", 100.0)
    assert not await store.take_slot(key, 60.0, 3, 102.0)


async def test_a_claim_is_held_until_released(store: LiveStore) -> None:
    assert await store.claim("sweep:node-1", ttl=60.0)
    assert not await store.claim("sweep:node-1", ttl=60.0)
    assert await store.claim("sweep:node-2", ttl=60.0)
    await store.release("sweep:node-1")
    assert await store.claim("sweep:node-1", ttl=60.0)
    await store.release("never-claimed")


async def test_release_says_whether_it_ended_a_held_claim(store: LiveStore) -> None:
    assert await store.claim("staffcall:k1:c1", ttl=60.0)
    assert await store.release("staffcall:k1:c1")
    assert not await store.release("staffcall:k1:c1")
    assert not await store.release("never-claimed")
    assert await store.claim("staffcall:k1:c2", ttl=0.2)
    await asyncio.sleep(0.4)
    assert not await store.release("staffcall:k1:c2")  # lapsed: nothing held


async def test_a_claim_lapses_after_its_ttl(store: LiveStore) -> None:
    assert await store.claim("sweep:node-1", ttl=1.0)
    assert await store.claim("sweep:node-2", ttl=60.0)
    assert not await store.claim("sweep:node-1", ttl=1.0)
    await eventually(lambda: store.claim("sweep:node-1", ttl=60.0))
    # Each claim by its own ttl: the long one taken with it is still held.
    assert not await store.claim("sweep:node-2", ttl=60.0)


# ---- connections and liveness -----------------------------------------------------------


async def test_connections_are_counted_per_account_across_nodes(open_store: OpenStore) -> None:
    node_1, node_2 = await open_store(), await open_store()
    assert await node_1.add_connection("kiosk-1", "node-1", "sid-a") == 1
    assert await node_2.add_connection("kiosk-1", "node-2", "sid-b") == 2
    assert await node_2.add_connection("kiosk-1", "node-2", "sid-b") == 2
    assert await node_1.add_connection("expert-1", "node-1", "sid-c") == 1
    assert await node_1.connections_of_node("node-1") == [
        ("expert-1", "sid-c"),
        ("kiosk-1", "sid-a"),
    ]
    assert await node_1.connections_of_node("node-2") == [("kiosk-1", "sid-b")]
    assert await node_1.connections_of_node("node-3") == []
    # node-2 died: another node sweeps its sockets.
    for account, sid in await node_1.connections_of_node("node-2"):
        assert await node_1.remove_connection(account, "node-2", sid) == 1
    assert await node_1.connections_of_node("node-2") == []
    assert await node_2.remove_connection("kiosk-1", "node-2", "sid-b") == 1
    assert await node_2.remove_connection("kiosk-1", "node-1", "sid-a") == 0
    assert await node_2.remove_connection("nobody", "node-1", "sid-z") == 0
    assert await node_1.connections_of_node("node-1") == [("expert-1", "sid-c")]


async def test_heartbeats_say_who_is_alive_until_they_lapse(store: LiveStore) -> None:
    assert await store.alive("nodes") == {}
    assert await store.known("nodes") == []
    await store.heartbeat("nodes", "node-1", "10.0.0.1:8443", ttl=60.0)
    await store.heartbeat("nodes", "node-2", "10.0.0.2:8443", ttl=0.3)
    await store.heartbeat("relays", "relay-1", "pid 4242", ttl=60.0)
    assert await store.known("nodes") == ["node-1", "node-2"]

    async def only_node_1_alive() -> bool:
        return dict(await store.alive("nodes")) == {"node-1": "10.0.0.1:8443"}

    await eventually(only_node_1_alive)
    # A lapsed member stays known until forgotten, so that its sockets get swept.
    assert await store.known("nodes") == ["node-1", "node-2"]
    assert dict(await store.alive("relays")) == {"relay-1": "pid 4242"}
    await store.heartbeat("nodes", "node-2", "10.0.0.2:9443", ttl=60.0)
    assert dict(await store.alive("nodes")) == {
        "node-1": "10.0.0.1:8443",
        "node-2": "10.0.0.2:9443",
    }


async def test_a_forgotten_member_is_neither_known_nor_alive(store: LiveStore) -> None:
    await store.heartbeat("nodes", "node-1", "a", ttl=60.0)
    await store.heartbeat("nodes", "node-2", "b", ttl=60.0)
    await store.forget("nodes", "node-1")
    await store.forget("nodes", "never-seen")
    assert await store.known("nodes") == ["node-2"]
    assert dict(await store.alive("nodes")) == {"node-2": "b"}
    await store.forget("nodes", "node-2")
    assert await store.known("nodes") == []
    assert await store.alive("nodes") == {}


async def test_groups_and_members_with_colons_stay_apart(store: LiveStore) -> None:
    await store.heartbeat("a:b", "c", "first", ttl=60.0)
    await store.heartbeat("a", "b:c", "second", ttl=60.0)
    assert dict(await store.alive("a:b")) == {"c": "first"}
    assert dict(await store.alive("a")) == {"b:c": "second"}


# ---- concurrency: callers in two processes at once ----------------------------------------


async def test_of_concurrent_commits_on_one_version_exactly_one_applies(
    open_store: OpenStore,
) -> None:
    stores = [await open_store(), await open_store()]
    key = open_key("kiosk-1")
    await put(stores[0], OpenCall("kiosk-1", "c-first"))

    async def attempt(i: int) -> bool:
        return await stores[i % 2].commit(
            Commit(
                expect={key: 1},
                put={key: OpenCall("kiosk-1", f"c{i}")},
                queue_add=[("tax", f"c{i}", float(i))],
                handle_times=[("tax", float(i), 100)],
            )
        )

    results = await asyncio.gather(*(attempt(i) for i in range(50)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert (await stores[1].read([key]))[key] == OpenCall("kiosk-1", f"c{winner}", version=2)
    assert await stores[0].queue("tax") == [f"c{winner}"]
    assert await stores[1].handle_times("tax") == [float(winner)]


async def test_of_concurrent_slot_takers_exactly_the_limit_succeed(
    open_store: OpenStore,
) -> None:
    stores = [await open_store(), await open_store()]
    # All at the same instant: equal times must still count as separate events.
    results = await asyncio.gather(
        *(stores[i % 2].take_slot("login:alice", 60.0, 5, 1000.0) for i in range(100))
    )
    assert results.count(True) == 5


async def test_of_concurrent_claimers_exactly_one_wins(open_store: OpenStore) -> None:
    stores = [await open_store(), await open_store()]
    results = await asyncio.gather(
        *(stores[i % 2].claim("sweep:node-9", ttl=60.0) for i in range(50))
    )
    assert results.count(True) == 1


async def test_of_concurrent_releasers_of_one_claim_exactly_one_ends_it(
    open_store: OpenStore,
) -> None:
    stores = [await open_store(), await open_store()]
    assert await stores[0].claim("staffcall:k1:c1", ttl=60.0)
    results = await asyncio.gather(*(stores[i % 2].release("staffcall:k1:c1") for i in range(50)))
    assert results.count(True) == 1


async def test_concurrent_claimers_get_each_due_deadline_exactly_once(
    open_store: OpenStore,
) -> None:
    stores = [await open_store(), await open_store()]
    due = {f"ring:c{i}": 1000.0 + i for i in range(200)}
    assert await stores[0].commit(Commit(deadlines_set=due))
    assert await stores[0].commit(Commit(deadlines_set={"ring:future": 5000.0}))

    async def worker(store: LiveStore) -> list[str]:
        claimed: list[str] = []
        while batch := await store.claim_due(2000.0, limit=7):
            claimed += batch
            await asyncio.sleep(0)
        return claimed

    batches = await asyncio.gather(*(worker(stores[i % 2]) for i in range(6)))
    everyone = [key for batch in batches for key in batch]
    assert len(everyone) == len(due)
    assert set(everyone) == set(due)
    assert await stores[1].deadline("ring:future") == 5000.0


async def test_concurrent_connection_counts_are_exact(open_store: OpenStore) -> None:
    stores = [await open_store(), await open_store()]
    added = await asyncio.gather(
        *(stores[i % 2].add_connection("expert-1", f"node-{i % 2}", f"sid-{i}") for i in range(50))
    )
    assert sorted(added) == list(range(1, 51))
    removed = await asyncio.gather(
        *(
            stores[i % 2].remove_connection("expert-1", f"node-{i % 2}", f"sid-{i}")
            for i in range(50)
        )
    )
    assert sorted(removed) == list(range(50))


# ---- Redis only: keys, expiry, outages --------------------------------------------------


async def test_redis_keys_stay_under_the_prefix(redis_prefix: str) -> None:
    marker = secrets.token_hex(6)
    store = RedisStore(SHARED_REDIS, prefix=redis_prefix)
    await store.start()
    try:
        await seed(store)
        await store.commit(
            Commit(
                put={open_key(marker): OpenCall(marker, marker)},
                queue_add=[(marker, marker, 1.0)],
                members_add=[(marker, marker)],
                deadlines_set={marker: 1.0},
                handle_times=[(marker, 1.0, 3)],
            )
        )
        await store.take_slot(marker, 60.0, 3, 1.0)
        await store.claim(marker, 60.0)
        await store.add_connection(marker, marker, marker)
        await store.heartbeat(marker, marker, marker, 60.0)
        redis = Redis.from_url(SHARED_REDIS, decode_responses=True)
        try:
            keys = [key async for key in redis.scan_iter(match=f"*{marker}*", count=1000)]
        finally:
            await redis.aclose()
        assert len(keys) == 10
        assert all(key.startswith(redis_prefix) for key in keys)
    finally:
        await store.close()


async def test_idle_slot_keys_vanish_from_redis(redis_prefix: str) -> None:
    store = RedisStore(SHARED_REDIS, prefix=redis_prefix)
    await store.start()
    redis = Redis.from_url(SHARED_REDIS)
    try:
        assert await store.take_slot("chat:c1", 0.3, 5, time.time())

        async def gone() -> bool:
            return not [key async for key in redis.scan_iter(match=f"{redis_prefix}*")]

        await eventually(gone)
    finally:
        await redis.aclose()
        await store.close()


def every_operation(store: LiveStore) -> list[Callable[[], Awaitable[object]]]:
    return [
        store.ping,
        lambda: store.read([open_key("kiosk-1")]),
        lambda: store.commit(Commit(expect={open_key("kiosk-1"): 0})),
        lambda: store.queue("tax"),
        lambda: store.claim_due(1e12),
        lambda: store.take_slot("login:alice", 60.0, 5, 1000.0),
        lambda: store.claim("sweep:node-1", 60.0),
        lambda: store.add_connection("kiosk-1", "node-1", "sid-a"),
        lambda: store.heartbeat("nodes", "node-1", "info", 60.0),
        lambda: store.alive("nodes"),
    ]


async def test_redis_down_raises_store_unavailable_and_the_same_store_recovers(
    private_redis: PrivateRedis,
) -> None:
    store = RedisStore(private_redis.url, prefix="wl-test:")
    await store.start()
    try:
        assert await store.commit(
            Commit(expect={open_key("kiosk-1"): 0}, put={open_key("kiosk-1"): OpenCall("k", "c")})
        )
        await private_redis.stop()
        # Refused connections fail at once; the bound only keeps a hang from passing.
        async with asyncio.timeout(20):
            for operation in every_operation(store):
                with pytest.raises(StoreUnavailable):
                    await operation()
        await private_redis.start()
        await store.ping()
        # The restarted server kept nothing (no persistence) and has no scripts
        # loaded: the commit script is loaded again on the way.
        assert await store.read([open_key("kiosk-1")]) == {}
        assert await store.commit(
            Commit(expect={open_key("kiosk-1"): 0}, put={open_key("kiosk-1"): OpenCall("k", "d")})
        )
        assert (await store.read([open_key("kiosk-1")]))[open_key("kiosk-1")] == OpenCall(
            "k", "d", version=1
        )
        for operation in every_operation(store):
            await operation()
    finally:
        await store.close()


async def test_a_store_started_while_redis_is_down_works_once_it_is_up(
    private_redis: PrivateRedis,
) -> None:
    await private_redis.stop()
    store = RedisStore(private_redis.url, prefix="wl-test:")
    await store.start()
    try:
        async with asyncio.timeout(20):
            with pytest.raises(StoreUnavailable):
                await store.ping()
        await private_redis.start()
        await store.ping()
        assert await store.take_slot("login:alice", 60.0, 1, 1000.0)
        assert not await store.take_slot("login:alice", 60.0, 1, 1000.0)
    finally:
        await store.close()


async def test_unresponsive_redis_times_out_and_a_timed_out_write_may_still_apply(
    private_redis: PrivateRedis,
) -> None:
    store = RedisStore(private_redis.url, prefix="wl-test:", timeout=0.5)
    await store.start()
    key = open_key("kiosk-1")
    try:
        assert await store.commit(Commit(expect={key: 0}, put={key: OpenCall("k", "c1")}))
        private_redis.pause()
        try:
            async with asyncio.timeout(20):
                with pytest.raises(StoreUnavailable):
                    await store.commit(Commit(expect={key: 1}, put={key: OpenCall("k", "c2")}))
                with pytest.raises(StoreUnavailable):
                    await store.ping()
        finally:
            private_redis.resume()
        # The commit reached Redis, which ran it once it could: StoreUnavailable
        # from a write means "unknown", and whoever made it must read again.
        # The replies that came late went to closed connections, not to these reads.
        assert (await store.read([key]))[key] == OpenCall("k", "c2", version=2)
        await store.ping()
        assert await store.queue("tax") == []
    finally:
        await store.close()
