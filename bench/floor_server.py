"""The stack's floor for bench/signaling.py: python-socketio on aiohttp answering
windowlink's signaling events with acks and server events of the same shapes, to
the same recipients and in the same numbers, with none of the product behind them.

What it keeps: the socket.io server with the product's settings (websocket,
ping 5 s + 5 s, 64 KiB frames), rooms per account and per department, the
session cookie naming the account, and just enough bookkeeping to route (a queue
per department, the longest-idle free expert gets the offer) and to send what
the product sends:

- ``request_consultation``: ack Consultation; the expert rung gets ``offer``,
  the kiosk ``consultation`` (offered);
- ``accept_offer``: the expert gets ``presence`` (busy), kiosk and expert get
  ``consultation`` (active, each its own media token); ack Consultation;
- ``end_consultation`` of a call: kiosk and expert get ``consultation`` (ended),
  the expert ``presence`` (available), the next waiting one is offered; ack;
- ``set_presence``: ack Presence and the ``presence`` event;
- ``save_outcome``, ``rate_consultation``: ack null; ``get_state``: SessionState;
- a department's changes gathered for 0.2 s, then ``queue_position`` to waiting
  kiosks whose position, length, estimate or experts online changed, and
  ``queue_updated`` to the department's experts if the queue changed (the
  product's wait estimate, copied, so that the same changes are sent).

Two message mixes, to follow the product being measured (``--mix``):

- ``lean`` (default; the signaling core as rewritten for scale-out): the acting
  socket gets no event repeating its ack (its own ``consultation`` after
  accept or end, its own ``presence`` after ``set_presence``); a kiosk beyond
  the 10th place is told its position only when its place or wait moved by a
  sixth (``worth_telling``); experts see the first 50 entries and a count;
- ``echo`` (docs/PROTOCOL.md before that rewrite): every event goes to every
  socket of the account, every changed position is sent, every entry listed.

The bench prints the messages per consultation, by name, for the product and
the floor: when they differ, the floor no longer mirrors the product and its
rules here must follow.

What it leaves out: the database and audit chain, payload validation models,
the state machine and its locks, authorisation, limits, the relay, ring and
grace timers (the bench's experts accept in time and nobody drops).

    python bench/floor_server.py --port 8099 --identities identities.json [--mix echo]

``identities.json``: ``{token: {"username", "role", "department", "hall"}}``,
written by the bench.
"""

import argparse
import asyncio
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

SESSION_COOKIE = "wl_session"
QUEUE_UPDATE_DELAY = 0.2
DEFAULT_HANDLE_TIME = 300.0
HANDLE_TIME_SAMPLES = 20
RING_TIMEOUT = 20.0
QUEUE_ENTRIES_SHOWN = 50
NEAR_THE_HEAD = 10

Json = dict[str, Any]
Handler = Callable[["Identity", Json, str], Awaitable[Json]]


@dataclass
class Identity:
    username: str
    role: str
    department: str | None
    hall: str | None


@dataclass
class Expert:
    identity: Identity
    status: str = "away"
    offer: str | None = None
    call: str | None = None
    idle_since: float = field(default_factory=time.time)


@dataclass
class Call:
    id: str
    department: str
    kiosk: str
    hall: str | None
    case_number: str | None
    waiting_since: float
    state: str = "waiting"
    expert: str | None = None
    offered_at: float | None = None
    active_at: float | None = None
    tokens: dict[str, str] = field(default_factory=dict)


def ok(result: Any) -> Json:
    return {"result": result}


def error(code: str, message: str) -> Json:
    return {"error": {"code": code, "message": message}}


def estimate_wait(position: int, free: int, online: int, handle_time: float) -> int | None:
    """signaling/queue.py's estimate, copied."""
    if online <= 0:
        return None
    ahead_of_free = position - free
    if ahead_of_free <= 0:
        return 0
    return math.ceil(handle_time / (online + 1) + (ahead_of_free - 1) * handle_time / online)


def worth_telling(last: Json | None, new: Json) -> bool:
    """signaling/publisher.py's rule for the lean mix, copied."""
    if last is None:
        return True
    if new == last:
        return False
    if new["experts_online"] != last["experts_online"] or new["position"] <= NEAR_THE_HEAD:
        return True
    if abs(new["position"] - last["position"]) * 6 >= last["position"]:
        return True
    old_wait, new_wait = last["estimated_wait_s"], new["estimated_wait_s"]
    if old_wait is None or new_wait is None:
        return bool(old_wait != new_wait)
    return bool(abs(new_wait - old_wait) * 6 >= max(old_wait, 60))


class Floor:
    def __init__(
        self, sio: socketio.AsyncServer, identities: dict[str, Identity], *, lean: bool
    ) -> None:
        self.sio = sio
        self.lean = lean
        self.identities = identities
        self.by_sid: dict[str, Identity] = {}
        self.sockets: dict[str, int] = {}
        self.experts: dict[str, dict[str, Expert]] = {}
        self.calls: dict[str, Call] = {}
        self.queues: dict[str, list[str]] = {}
        self.open_call_of: dict[str, str] = {}
        self.handle_times: dict[str, list[float]] = {}
        self.sent_positions: dict[str, Json] = {}
        self.sent_queues: dict[str, Json] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        sio.on("connect", handler=self.connect)
        sio.on("disconnect", handler=self.disconnect)
        handlers: dict[str, Handler] = {
            "get_state": self.get_state,
            "request_consultation": self.request_consultation,
            "cancel_request": self.end_consultation,
            "rate_consultation": self.nothing,
            "set_presence": self.set_presence,
            "get_queue": self.get_queue,
            "accept_offer": self.accept_offer,
            "decline_offer": self.decline_offer,
            "save_outcome": self.nothing,
            "end_consultation": self.end_consultation,
            "send_chat": self.send_chat,
        }
        for name, handler in handlers.items():
            sio.on(name, handler=self._answer(handler))

    def _answer(self, handler: Handler) -> Callable[..., Awaitable[Json]]:
        async def handle(sid: str, data: Any = None) -> Json:
            who = self.by_sid.get(sid)
            if who is None:
                return error("unauthorized", "log in first")
            return await handler(who, data if isinstance(data, dict) else {}, sid)

        return handle

    # ---- views -----------------------------------------------------------------------

    def consultation(self, call: Call, side: str | None = None, **changes: Any) -> Json:
        token = call.tokens.get(side or "")
        view: Json = {
            "consultation_id": call.id,
            "department": call.department,
            "state": call.state,
            "case_number": call.case_number,
            "hall": call.hall,
            "kiosk": call.kiosk,
            "expert": call.expert if call.state == "active" else None,
            "waiting_since": call.waiting_since,
            "offered_at": call.offered_at,
            "active_at": call.active_at,
            "ended_at": None,
            "end_reason": None,
            "media": {"url": f"/api/v1/media/{call.id}", "token": token}
            if token and call.state == "active"
            else None,
        }
        view.update(changes)
        return view

    @staticmethod
    def presence(expert: Expert) -> Json:
        return {"status": expert.status, "missed_in_a_row": 0}

    @staticmethod
    def offer(call: Call) -> Json:
        assert call.offered_at is not None
        return {
            "consultation_id": call.id,
            "department": call.department,
            "case_number": call.case_number,
            "hall": call.hall,
            "waiting_since": call.waiting_since,
            "expires_at": call.offered_at + RING_TIMEOUT,
            "ring_timeout_s": RING_TIMEOUT,
        }

    async def to(self, username: str, event: str, payload: Json, actor: str | None = None) -> None:
        """To every socket of the account; in the lean mix not to ``actor``, the
        acting socket, which has the same in its ack."""
        skip = actor if self.lean else None
        await self.sio.emit(event, payload, room=f"account:{username}", skip_sid=skip)

    # ---- connections -----------------------------------------------------------------

    async def connect(self, sid: str, environ: dict[str, Any], _auth: Any = None) -> None:
        request: web.Request = environ["aiohttp.request"]
        who = self.identities.get(request.cookies.get(SESSION_COOKIE, ""))
        if who is None:
            raise socketio.exceptions.ConnectionRefusedError(
                "log in first", {"code": "unauthorized"}
            )
        self.by_sid[sid] = who
        await self.sio.enter_room(sid, f"account:{who.username}")
        self.sockets[who.username] = self.sockets.get(who.username, 0) + 1
        if who.role == "expert" and who.department:
            await self.sio.enter_room(sid, f"department:{who.department}")
            if self.sockets[who.username] == 1:
                # After the CONNECT packet has gone out, as the product does.
                task = asyncio.create_task(self.expert_connected(who))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def expert_connected(self, who: Identity) -> None:
        assert who.department is not None
        pool = self.experts.setdefault(who.department, {})
        expert = pool.get(who.username) or Expert(who)
        if expert.status == "offline":
            expert.status = "away"
        pool[who.username] = expert
        await self.to(who.username, "presence", self.presence(expert))
        await self.dispatch(who.department)
        self.publish(who.department)

    async def disconnect(self, sid: str, *_reason: Any) -> None:
        who = self.by_sid.pop(sid, None)
        if who is None:
            return
        self.sockets[who.username] -= 1
        if self.sockets[who.username] or who.role != "expert" or not who.department:
            return
        expert = self.experts.get(who.department, {}).get(who.username)
        if expert is not None:
            expert.status = "offline"
            self.publish(who.department)

    # ---- events ----------------------------------------------------------------------

    async def nothing(self, _who: Identity, _data: Json, _sid: str) -> Json:
        return ok(None)

    async def get_state(self, who: Identity, _data: Json, _sid: str) -> Json:
        expert = self.experts.get(who.department or "", {}).get(who.username)
        call = self.calls.get(self.open_call_of.get(who.username, ""))
        side = "kiosk" if who.role == "kiosk" else "expert"
        offered = self.calls.get(expert.offer or "") if expert else None
        return ok(
            {
                "username": who.username,
                "role": who.role,
                "department": who.department,
                "hall": who.hall,
                "presence": self.presence(expert) if expert else None,
                "consultation": self.consultation(call, side) if call else None,
                "offer": self.offer(offered) if offered else None,
            }
        )

    async def request_consultation(self, who: Identity, data: Json, _sid: str) -> Json:
        if who.username in self.open_call_of:
            return error("already_in_consultation", "this kiosk already has an open one")
        department = str(data.get("department", ""))
        call = Call(
            id=secrets.token_hex(8),
            department=department,
            kiosk=who.username,
            hall=who.hall,
            case_number=data.get("case_number"),
            waiting_since=time.time(),
        )
        self.calls[call.id] = call
        self.open_call_of[who.username] = call.id
        self.queues.setdefault(department, []).append(call.id)
        await self.dispatch(department)
        self.publish(department)
        return ok(self.consultation(call))

    async def dispatch(self, department: str) -> None:
        free = sorted(
            (
                e
                for e in self.experts.get(department, {}).values()
                if e.status == "available" and e.offer is None and e.call is None
            ),
            key=lambda e: e.idle_since,
        )
        for call_id in self.queues.get(department, []):
            if not free:
                return
            call = self.calls[call_id]
            if call.state != "waiting":
                continue
            expert = free.pop(0)
            call.state = "offered"
            call.expert = expert.identity.username
            call.offered_at = time.time()
            expert.offer = call.id
            await self.to(expert.identity.username, "offer", self.offer(call))
            await self.to(call.kiosk, "consultation", self.consultation(call))

    async def accept_offer(self, who: Identity, data: Json, sid: str) -> Json:
        call = self.calls.get(str(data.get("consultation_id")))
        if call is None or call.state != "offered" or call.expert != who.username:
            return error("invalid_state", "this consultation is not being offered to you")
        expert = self.experts[call.department][who.username]
        call.state = "active"
        call.active_at = time.time()
        call.tokens = {side: secrets.token_urlsafe(24) for side in ("kiosk", "expert")}
        self.queues[call.department].remove(call.id)
        self.sent_positions.pop(call.id, None)
        self.open_call_of[who.username] = call.id
        expert.offer, expert.call, expert.status = None, call.id, "busy"
        await self.to(who.username, "presence", self.presence(expert))
        view = self.consultation(call, "expert")
        await self.to(call.kiosk, "consultation", self.consultation(call, "kiosk"))
        await self.to(who.username, "consultation", view, actor=sid)
        self.publish(call.department)
        return ok(view)

    async def end_consultation(self, who: Identity, data: Json, sid: str) -> Json:
        call = self.calls.get(str(data.get("consultation_id")))
        if call is None or who.username not in (call.kiosk, call.expert):
            return error("not_found", "no open consultation with this id for you")
        now = time.time()
        was = call.state
        reason = "completed" if was == "active" else "abandoned"
        del self.calls[call.id]
        if call.id in self.queues.get(call.department, []):
            self.queues[call.department].remove(call.id)
        self.sent_positions.pop(call.id, None)
        self.open_call_of.pop(call.kiosk, None)
        if was == "active" and call.active_at is not None:
            samples = self.handle_times.setdefault(call.department, [])
            samples.append(now - call.active_at)
            del samples[:-HANDLE_TIME_SAMPLES]
        view = self.consultation(
            call, state="ended", ended_at=now, end_reason=reason, media=None, expert=call.expert
        )
        await self.to(call.kiosk, "consultation", view, actor=sid)
        expert = self.experts.get(call.department, {}).get(call.expert or "")
        if expert is not None and was == "offered":
            expert.offer = None
            await self.to(
                expert.identity.username,
                "offer_revoked",
                {"consultation_id": call.id, "reason": "cancelled"},
            )
        elif expert is not None and was == "active":
            self.open_call_of.pop(expert.identity.username, None)
            await self.to(expert.identity.username, "consultation", view, actor=sid)
            expert.call, expert.status, expert.idle_since = None, "available", now
            await self.to(expert.identity.username, "presence", self.presence(expert))
        await self.dispatch(call.department)
        self.publish(call.department)
        return ok(view)

    async def set_presence(self, who: Identity, data: Json, sid: str) -> Json:
        if not who.department:
            return error("forbidden", "only experts have a presence")
        pool = self.experts.setdefault(who.department, {})
        expert = pool.setdefault(who.username, Expert(who))
        status = str(data.get("status", "away"))
        if expert.call is None:
            if status == "available" and expert.status != "available":
                expert.idle_since = time.time()
            expert.status = status
        view = self.presence(expert)
        await self.to(who.username, "presence", view, actor=sid)
        await self.dispatch(who.department)
        self.publish(who.department)
        return ok(view)

    async def get_queue(self, who: Identity, _data: Json, _sid: str) -> Json:
        return ok(self.queue_update(who.department or ""))

    async def decline_offer(self, who: Identity, data: Json, _sid: str) -> Json:
        call = self.calls.get(str(data.get("consultation_id")))
        if call is None or call.expert != who.username or call.state != "offered":
            return error("invalid_state", "this consultation is not being offered to you")
        expert = self.experts[call.department][who.username]
        expert.offer = None
        call.state, call.expert, call.offered_at = "waiting", None, None
        await self.to(
            who.username, "offer_revoked", {"consultation_id": call.id, "reason": "declined"}
        )
        await self.to(call.kiosk, "consultation", self.consultation(call))
        await self.to(who.username, "presence", self.presence(expert))
        await self.dispatch(call.department)
        self.publish(call.department)
        return ok(None)

    async def send_chat(self, who: Identity, data: Json, _sid: str) -> Json:
        call = self.calls.get(str(data.get("consultation_id")))
        if call is None or call.state != "active" or call.expert is None:
            return error("invalid_state", "chat is open only during the call")
        view = {
            "id": secrets.token_hex(8),
            "consultation_id": call.id,
            "sender": who.role,
            "text": str(data.get("text", "")),
            "sent_at": time.time(),
        }
        await self.to(call.kiosk, "chat_message", view)
        await self.to(call.expert, "chat_message", view)
        return ok(view)

    # ---- queue publication (gathered, only what changed) -----------------------------

    def publish(self, department: str) -> None:
        if department not in self.pending:
            self.pending[department] = asyncio.create_task(self._publish(department))

    def queue_update(self, department: str) -> Json:
        queue = self.queues.get(department, [])
        shown = queue[:QUEUE_ENTRIES_SHOWN] if self.lean else queue
        experts = sorted(
            self.experts.get(department, {}).values(), key=lambda e: e.identity.username
        )
        update: Json = {
            "department": department,
            "entries": [
                {
                    "consultation_id": c.id,
                    "state": c.state,
                    "waiting_since": c.waiting_since,
                    "case_number": c.case_number,
                    "hall": c.hall,
                }
                for c in (self.calls[i] for i in shown)
            ],
            "experts": [{"username": e.identity.username, "status": e.status} for e in experts],
        }
        if self.lean:
            update["more"] = len(queue) - len(shown)
        return update

    async def _publish(self, department: str) -> None:
        try:
            await asyncio.sleep(QUEUE_UPDATE_DELAY)
        finally:
            self.pending.pop(department, None)
        queue = self.queues.get(department, [])
        experts = list(self.experts.get(department, {}).values())
        online = sum(1 for e in experts if e.status in ("available", "busy"))
        free = sum(1 for e in experts if e.status == "available" and e.offer is None)
        samples = self.handle_times.get(department, [])
        handle_time = sum(samples) / len(samples) if samples else DEFAULT_HANDLE_TIME
        for position, call_id in enumerate(queue, start=1):
            call = self.calls[call_id]
            update = {
                "consultation_id": call.id,
                "position": position,
                "queue_length": len(queue),
                "estimated_wait_s": 0
                if call.state == "offered"
                else estimate_wait(position, free, online, handle_time),
                "experts_online": online,
            }
            last = self.sent_positions.get(call.id)
            if worth_telling(last, update) if self.lean else last != update:
                self.sent_positions[call.id] = update
                await self.to(call.kiosk, "queue_position", update)
        snapshot = self.queue_update(department)
        if self.sent_queues.get(department) != snapshot:
            self.sent_queues[department] = snapshot
            await self.sio.emit("queue_updated", snapshot, room=f"department:{department}")


FLOOR = web.AppKey("floor", Floor)


def create_app(identities: dict[str, Identity], *, lean: bool = True) -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        ping_interval=5,
        ping_timeout=5,
        max_http_buffer_size=64 * 1024,
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )
    app = web.Application()
    sio.attach(app)
    app[FLOOR] = Floor(sio, identities, lean=lean)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)
    return app


def load_identities(path: Path) -> dict[str, Identity]:
    raw: dict[str, Json] = json.loads(path.read_text())
    return {
        token: Identity(
            username=str(v["username"]),
            role=str(v["role"]),
            department=v.get("department"),
            hall=v.get("hall"),
        )
        for token, v in raw.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--identities", type=Path, required=True)
    parser.add_argument("--mix", choices=("lean", "echo"), default="lean")
    args = parser.parse_args()
    web.run_app(
        create_app(load_identities(args.identities), lean=args.mix == "lean"),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
