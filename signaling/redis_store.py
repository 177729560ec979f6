"""The ``LiveStore`` on Redis, shared by every node of a deployment.

Each operation is one Redis command, one MULTI/EXEC or one Lua script, so it is
atomic on its own: no lock is ever held around a sequence of calls.

Keys (all under the deployment's prefix ``P``; each kind has its own namespace,
so a department, set or account name can never collide with another kind):

- ``P value:<key>``            hash ``json`` (``to_json()``), ``v`` (version)
- ``P queue:<department>``     zset call id -> waiting since
- ``P set:<name>``             set of members (experts of a department)
- ``P deadlines``              zset key -> due time (callers' wall clock)
- ``P deadlines-inflight``     zset key -> lease end: claimed and not yet done
- ``P versions``               the counter every value's version is taken from
- ``P handle-times:<dept>``    list, newest first (LPUSH + LTRIM)
- ``P slots:<key>``            zset ``"<now>:<random>"`` -> now, expires after the window
- ``P claim:<key>``            string, SET NX PX
- ``P conn-account:<account>`` set of ``"<node>|<sid>"``
- ``P conn-node:<node>``       set of ``"<account>|<sid>"``
- ``P group:<group>``          set of members ever registered (until forgotten)
- ``P beat:<len>:<group>:<member>`` string info, PX ttl (the length keeps group and
  member apart when either contains ``:``)

Socket ids must not contain ``|`` (engine.io's do not): the node's set is split on
the last one.
"""

import contextlib
import math
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.maint_notifications import MaintNotificationsConfig

from signaling.live import Live, decode
from signaling.store import Commit, LiveStore, StoreUnavailable, used_while_closed

# Versions are checked first and nothing is written unless all hold, so a failed
# check leaves no trace. Queue and member removals run before additions, and
# deadline clears before sets, as in the in-process store, so that a commit can
# move an entry by removing and adding it.
_COMMIT = """
local n = {}
for i = 1, 9 do n[i] = tonumber(ARGV[i]) end
local n_expect, n_put, n_qrem, n_qadd, n_mrem, n_madd, n_dclear, n_dset, n_ht =
  n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9]
local deadlines, counter, inflight = KEYS[1], KEYS[2], KEYS[3]
local k, a = 4, 10

for _ = 1, n_expect do
  local v = redis.call('HGET', KEYS[k], 'v')
  if ((v and tonumber(v)) or 0) ~= tonumber(ARGV[a]) then return 0 end
  k, a = k + 1, a + 1
end
for _ = 1, n_put do
  if ARGV[a] == '' then
    redis.call('DEL', KEYS[k])
  else
    -- One counter for the whole store: a key deleted and written again never
    -- comes back at a version a stale decision could still expect.
    redis.call('HSET', KEYS[k], 'v', redis.call('INCR', counter), 'json', ARGV[a])
  end
  k, a = k + 1, a + 1
end
for _ = 1, n_qrem do
  redis.call('ZREM', KEYS[k], ARGV[a])
  k, a = k + 1, a + 1
end
for _ = 1, n_qadd do
  redis.call('ZADD', KEYS[k], 'NX', ARGV[a], ARGV[a + 1])
  k, a = k + 1, a + 2
end
for _ = 1, n_mrem do
  redis.call('SREM', KEYS[k], ARGV[a])
  k, a = k + 1, a + 1
end
for _ = 1, n_madd do
  redis.call('SADD', KEYS[k], ARGV[a])
  k, a = k + 1, a + 1
end
for _ = 1, n_dclear do
  redis.call('ZREM', deadlines, ARGV[a])
  redis.call('ZREM', inflight, ARGV[a])
  a = a + 1
end
for _ = 1, n_dset do
  redis.call('ZADD', deadlines, ARGV[a], ARGV[a + 1])
  redis.call('ZREM', inflight, ARGV[a + 1])
  a = a + 2
end
for _ = 1, n_ht do
  local keep = tonumber(ARGV[a + 1])
  if keep > 0 then
    redis.call('LPUSH', KEYS[k], ARGV[a])
    redis.call('LTRIM', KEYS[k], 0, keep - 1)
  else
    redis.call('DEL', KEYS[k])
  end
  k, a = k + 1, a + 2
end
return 1
"""

# Claimed deadlines are leased: held in the in-flight set until ``done``, and due
# again if their lease runs out (the claimer died before carrying them out).
# ZREM/ZADD in chunks: Lua's unpack() fails past a few thousand values.
# One command instead of a MULTI/EXEC of one HMGET per key: the same consistent
# snapshot, without a QUEUED reply to parse per key (a third of the CPU of the
# Redis configuration was spent in read pipelines before).
_READ = """
local out = {}
for i, key in ipairs(KEYS) do
  local r = redis.call('HMGET', key, 'json', 'v')
  out[2 * i - 1] = r[1]
  out[2 * i] = r[2]
end
return out
"""

_CLAIM_DUE = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, key in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], key)
  redis.call('ZADD', KEYS[1], 'NX', ARGV[1], key)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for i = 1, #due, 1000 do
  redis.call('ZREM', KEYS[1], unpack(due, i, math.min(i + 999, #due)))
end
for _, key in ipairs(due) do
  redis.call('ZADD', KEYS[2], ARGV[3], key)
end
return due
"""

_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

_RELEASE_SLOT = """
local hit = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1], 'LIMIT', 0, 1)[1]
if hit then redis.call('ZREM', KEYS[1], hit) end
return 0
"""


def _score(value: float) -> str:
    """A float as Redis parses it back exactly (repr round-trips a double)."""
    if math.isnan(value):
        raise ValueError("NaN cannot be a score or a time")
    return repr(float(value))


def _text(reply: object) -> str:
    # The pool decodes replies; redis-py's types cannot know that.
    if isinstance(reply, str):
        return reply
    if isinstance(reply, bytes):
        return reply.decode()
    raise TypeError(f"unexpected reply {reply!r}")


def _milliseconds(seconds: float) -> int:
    # PX 0 is an error and a sub-millisecond ttl would round to it.
    return max(1, math.ceil(seconds * 1000))


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """Turn redis-py's connection and timeout errors into ``StoreUnavailable``."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc


@dataclass(frozen=True)
class _Connected:
    """The client (owning the one pool) and the scripts registered on it."""

    redis: Redis
    read: AsyncScript
    commit: AsyncScript
    claim_due: AsyncScript
    take_slot: AsyncScript
    release_slot: AsyncScript


class RedisStore(LiveStore):
    """Live state in Redis, shared by every process given the same URL and prefix.

    A write that raises ``StoreUnavailable`` after a timeout may still have been
    sent, and Redis runs it when it can: its outcome is unknown until read again.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "wl:",
        *,
        timeout: float = 2.0,
        max_connections: int = 32,
    ) -> None:
        """``timeout`` bounds connecting, each reply and the wait for a pooled
        connection: past it an operation raises ``StoreUnavailable``."""
        self._url = url
        self._prefix = prefix
        self._timeout = timeout
        self._max_connections = max_connections
        self._connected: _Connected | None = None
        self._deadlines_key = f"{prefix}deadlines"
        self._inflight_key = f"{prefix}deadlines-inflight"
        self._counter_key = f"{prefix}versions"

    async def start(self) -> None:
        """Create the connection pool; connections open on first use, so a store
        started while Redis is down works once it is up (``ping`` to check)."""
        if self._connected is not None:
            return
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=self._max_connections,
            timeout=self._timeout,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            # The caller decides what to do when Redis is away: a silent retry would
            # hide the outage and could apply a write twice.
            retry=Retry(NoBackoff(), 0),
            # With maintenance notifications on (redis-py's default "auto"), the pool
            # hands out connections without checking them for a close by the server:
            # after a Redis restart every connection pooled before it would fail its
            # next command, one at a time, long after Redis is back. Off, a stale
            # connection is reconnected before anything is sent on it.
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
            decode_responses=True,
        )
        redis = Redis.from_pool(pool)
        self._connected = _Connected(
            redis=redis,
            read=redis.register_script(_READ),
            commit=redis.register_script(_COMMIT),
            claim_due=redis.register_script(_CLAIM_DUE),
            take_slot=redis.register_script(_TAKE_SLOT),
            release_slot=redis.register_script(_RELEASE_SLOT),
        )

    async def close(self) -> None:
        if self._connected is not None:
            connected, self._connected = self._connected, None
            await connected.redis.aclose()

    @property
    def _live(self) -> _Connected:
        if self._connected is None:
            raise used_while_closed()
        return self._connected

    @property
    def _client(self) -> Redis:
        return self._live.redis

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    def _beat_key(self, group: str, member: str) -> str:
        return f"{self._prefix}beat:{len(group)}:{group}:{member}"

    async def ping(self) -> None:
        with _reachable():
            await self._client.ping()

    # ---- values and transitions ---------------------------------------------------

    async def read(self, keys: Iterable[str]) -> dict[str, Live]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        with _reachable():
            replies: list[Any] = await self._live.read(
                keys=[self._key("value", key) for key in wanted]
            )
        values: dict[str, Live] = {}
        for i, key in enumerate(wanted):
            raw, version = replies[2 * i], replies[2 * i + 1]
            # A missing field comes back as nil (or false, from Lua).
            if raw and version:
                values[key] = decode(key, raw, int(version))
        return values

    async def commit(self, commit: Commit) -> bool:
        keys: list[str] = [self._deadlines_key, self._counter_key, self._inflight_key]
        args: list[str | int] = [
            len(commit.expect),
            len(commit.put),
            len(commit.queue_remove),
            len(commit.queue_add),
            len(commit.members_remove),
            len(commit.members_add),
            len(commit.deadlines_clear),
            len(commit.deadlines_set),
            len(commit.handle_times),
        ]
        for key, version in commit.expect.items():
            keys.append(self._key("value", key))
            args.append(int(version))
        for key, value in commit.put.items():
            keys.append(self._key("value", key))
            # to_json() is never empty, so "" can stand for a deletion.
            args.append("" if value is None else value.to_json())
        for department, call_id in commit.queue_remove:
            keys.append(self._key("queue", department))
            args.append(call_id)
        for department, call_id, since in commit.queue_add:
            keys.append(self._key("queue", department))
            args += [_score(since), call_id]
        for name, member in commit.members_remove:
            keys.append(self._key("set", name))
            args.append(member)
        for name, member in commit.members_add:
            keys.append(self._key("set", name))
            args.append(member)
        args += commit.deadlines_clear
        for key, at in commit.deadlines_set.items():
            args += [_score(at), key]
        for department, seconds, keep in commit.handle_times:
            if keep < 0:
                raise ValueError(f"cannot keep {keep} handle times")
            keys.append(self._key("handle-times", department))
            args += [_score(seconds), int(keep)]
        with _reachable():
            applied = await self._live.commit(keys=keys, args=args)
        return bool(applied)

    async def queue(self, department: str) -> list[str]:
        with _reachable():
            ids = await self._client.zrange(self._key("queue", department), 0, -1)
        return [_text(call_id) for call_id in ids]

    async def members(self, name: str) -> list[str]:
        with _reachable():
            members = await self._client.smembers(self._key("set", name))
        return sorted(_text(member) for member in members)

    async def handle_times(self, department: str) -> list[float]:
        with _reachable():
            newest_first = await self._client.lrange(self._key("handle-times", department), 0, -1)
        return [float(seconds) for seconds in reversed(newest_first)]

    # ---- deadlines ----------------------------------------------------------------

    async def claim_due(self, now: float, limit: int = 100, lease: float = 30.0) -> list[str]:
        if limit <= 0:
            return []
        with _reachable():
            due: list[str] = await self._live.claim_due(
                keys=[self._deadlines_key, self._inflight_key],
                args=[_score(now), int(limit), _score(now + lease)],
            )
        return list(due)

    async def done(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        if wanted:
            with _reachable():
                await self._client.zrem(self._inflight_key, *wanted)

    async def deadline(self, key: str) -> float | None:
        with _reachable():
            at: float | None = await self._client.zscore(self._deadlines_key, key)
        return None if at is None else float(at)

    # ---- counting -----------------------------------------------------------------

    async def take_slot(self, key: str, window: float, limit: int, now: float) -> bool:
        # Events before now - window no longer count; one exactly at it still does,
        # as in the in-process store, hence the exclusive bound.
        oldest_dropped = "(" + _score(now - window)
        member = f"{_score(now)}:{secrets.token_hex(8)}"
        with _reachable():
            taken = await self._live.take_slot(
                keys=[self._key("slots", key)],
                args=[oldest_dropped, int(limit), _score(now), member, _milliseconds(window)],
            )
        return bool(taken)

    async def release_slot(self, key: str, at: float) -> None:
        with _reachable():
            await self._live.release_slot(keys=[self._key("slots", key)], args=[_score(at)])

    async def claim(self, key: str, ttl: float) -> bool:
        with _reachable():
            taken = await self._client.set(
                self._key("claim", key), "1", nx=True, px=_milliseconds(ttl)
            )
        return bool(taken)

    async def release(self, key: str) -> bool:
        with _reachable():
            # An expired claim is gone already (PX): DEL counts only one still held.
            return bool(await self._client.delete(self._key("claim", key)))

    # ---- connections and liveness -------------------------------------------------

    async def add_connection(self, account_id: str, node: str, sid: str) -> int:
        return await self._change_connection(account_id, node, sid, add=True)

    async def remove_connection(self, account_id: str, node: str, sid: str) -> int:
        return await self._change_connection(account_id, node, sid, add=False)

    async def _change_connection(self, account_id: str, node: str, sid: str, *, add: bool) -> int:
        """Both indexes (by account, by node) in one transaction; the account's
        connections left on every node."""
        account_set = self._key("conn-account", account_id)
        with _reachable():
            async with self._client.pipeline(transaction=True) as pipe:
                change = pipe.sadd if add else pipe.srem
                change(account_set, f"{node}|{sid}")
                change(self._key("conn-node", node), f"{account_id}|{sid}")
                pipe.scard(account_set)
                replies: list[Any] = await pipe.execute()
        return int(replies[-1])

    async def connections_of_node(self, node: str) -> list[tuple[str, str]]:
        with _reachable():
            entries = await self._client.smembers(self._key("conn-node", node))
        pairs: list[tuple[str, str]] = []
        for entry in entries:
            account, sid = _text(entry).rsplit("|", 1)
            pairs.append((account, sid))
        return sorted(pairs)

    async def heartbeat(self, group: str, member: str, info: str, ttl: float) -> None:
        with _reachable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._beat_key(group, member), info, px=_milliseconds(ttl))
                pipe.sadd(self._key("group", group), member)
                await pipe.execute()

    async def alive(self, group: str) -> Mapping[str, str]:
        # Two round trips: the beat keys are named after the members, which must be
        # read first (a script may only touch keys it is given).
        with _reachable():
            members = [_text(m) for m in await self._client.smembers(self._key("group", group))]
            if not members:
                return {}
            infos = await self._client.mget([self._beat_key(group, member) for member in members])
        return {
            member: _text(info)
            for member, info in zip(members, infos, strict=True)
            if info is not None
        }

    async def known(self, group: str) -> list[str]:
        with _reachable():
            members = await self._client.smembers(self._key("group", group))
        return sorted(_text(member) for member in members)

    async def forget(self, group: str, member: str) -> None:
        with _reachable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.srem(self._key("group", group), member)
                pipe.delete(self._beat_key(group, member))
                await pipe.execute()
