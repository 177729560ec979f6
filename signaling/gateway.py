"""The socket.io edge: authenticate connections, decode events, authorise by
role, delegate to the services, and turn every error into an error ack.

Handlers stay thin; the rules live in ``signaling.consultation`` and
``signaling.presence``.
"""

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web
from pydantic import BaseModel, ValidationError

from observability.logs import set_context
from signaling.background import BackgroundTasks, cancel_unfinished, finish
from signaling.config import SignalingConfig
from signaling.errors import (
    Forbidden,
    InvalidPayload,
    NotAuthenticated,
    SignalingError,
    Unavailable,
)
from signaling.limits import EventRateLimit
from signaling.live import PresenceStatus
from signaling.messages import (
    CancelInvitation,
    ClientPayload,
    ConsultationRef,
    DeferOutcome,
    EmptyPayload,
    InviteDepartment,
    OfferRef,
    RateConsultation,
    RecordingAnswer,
    RequestConsultation,
    SaveOutcome,
    SendChat,
    SessionState,
    SetPresence,
    ShareDocument,
    ShareScreen,
    TransferConsultation,
)
from signaling.notifier import account_room, department_room
from signaling.publisher import QueuePublisher
from signaling.service import ConsultationService, PresenceService
from signaling.store import LiveStore, StoreUnavailable
from signaling.views import presence_view
from storage.errors import StorageUnavailable
from storage.records import DESK_ROLES, Account, GradeReason, Outcome, Role
from storage.sessions import Sessions

log = logging.getLogger(__name__)

Handler = Callable[[Account, Any, "Caller"], Awaitable[BaseModel | None]]


@dataclass(frozen=True)
class Caller:
    """Where an event came from: the socket (skipped for its own notifications,
    which its ack carries) and the client's address (for the audit log)."""

    sid: str
    remote: str


@dataclass(frozen=True)
class EventSpec:
    """One client -> server event: its payload model, who may send it, what it does."""

    name: str
    payload: type[ClientPayload]
    roles: frozenset[Role]
    handler: Handler
    summary: str


KIOSK = frozenset({Role.KIOSK})
EXPERT = frozenset({Role.EXPERT})
DESK = DESK_ROLES
"""Experts and interpreters: the staff desk's presence, offers and calls."""
PARTICIPANTS = frozenset({Role.KIOSK, Role.EXPERT})
IN_CALLS = frozenset({Role.KIOSK, Role.EXPERT, Role.INTERPRETER})
ANYONE = frozenset(Role)


def error_ack(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class SignalingGateway:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        sessions: Sessions,
        store: LiveStore,
        consultations: ConsultationService,
        presence: PresenceService,
        publisher: QueuePublisher,
        config: SignalingConfig,
        *,
        node: str,
        session_cookie: str,
        remote_of: Callable[[web.Request], str],
        limits: EventRateLimit,
        observe: Callable[[str, float, str | None], None],
    ) -> None:
        self.sio = sio
        self._sessions = sessions
        self._store = store
        self._consultations = consultations
        self._presence = presence
        self._publisher = publisher
        self._config = config
        self._node = node
        self._limits = limits
        self._observe = observe
        # sid -> (session token, when the session was last refreshed by an event)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._session_checks: asyncio.Task[None] | None = None
        self._cookie = session_cookie
        self._remote_of = remote_of
        self._accounts: dict[str, Account] = {}
        self._bookkeeping = BackgroundTasks(
            "connection bookkeeping", logging.WARNING, trace_expected=True
        )
        self._handling: set[asyncio.Task[Any]] = set()
        """The tasks running a connection's or an event's handler (python-socketio
        starts one per event): a stop lets them finish, for a while."""
        self._transports: dict[str, asyncio.BaseTransport] = {}
        """Each connection's own TCP transport, closed at a stop."""
        self.stopping = False
        """Set at a stop: events and new connections are refused from then on."""
        self.events = self._event_table()
        sio.on("connect", handler=self._on_connect)
        sio.on("disconnect", handler=self._on_disconnect)
        for spec in self.events:
            sio.on(spec.name, handler=self._wrap(spec))

    @property
    def connection_count(self) -> int:
        return len(self._accounts)

    # ---- connection lifecycle ------------------------------------------------------

    def _handled(self) -> None:
        """Count the running handler's task among those a stop waits for."""
        task = asyncio.current_task()
        if task is not None:
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)

    def _refuse_if_stopping(self) -> None:
        if self.stopping:
            raise socketio.exceptions.ConnectionRefusedError(
                "this server is stopping; connect again", {"code": Unavailable.code}
            )

    async def _on_connect(self, sid: str, environ: dict[str, Any], _auth: Any = None) -> None:
        self._handled()
        self._refuse_if_stopping()
        request: web.Request = environ["aiohttp.request"]
        token = request.cookies.get(self._cookie, "")
        account = await self._sessions.resolve(token) if token else None
        if account is None:
            # The browser client sees {"message": ..., "data": {"code": ...}}.
            raise socketio.exceptions.ConnectionRefusedError(
                "log in first", {"code": NotAuthenticated.code}
            )
        try:
            count = await self._store.add_connection(account.id, self._node, sid)
        except StoreUnavailable:
            raise socketio.exceptions.ConnectionRefusedError(
                "the service is not available right now", {"code": Unavailable.code}
            ) from None
        if count > self._config.max_sockets_per_account or self.stopping:
            await self._store.remove_connection(account.id, self._node, sid)
            self._refuse_if_stopping()
            raise socketio.exceptions.ConnectionRefusedError(
                "too many connections for this account; close another tab first",
                {"code": "too_many_connections"},
            )
        self._accounts[sid] = account
        if request.transport is not None:
            self._transports[sid] = request.transport
        self._tokens[sid] = (token, time.monotonic())
        await self.sio.save_session(sid, {"remote": self._remote_of(request), "token": token})
        await self.sio.enter_room(sid, account_room(account.id))
        if account.role in DESK and account.department:
            await self.sio.enter_room(sid, department_room(account.department))
        if count == 1:
            # Runs after the CONNECT packet has gone out, so that what it emits
            # reaches the new socket; clients also ask ``get_state`` on connect.
            self._spawn(self._first_connection(account))

    async def _first_connection(self, account: Account) -> None:
        if account.role in DESK:
            await self._presence.connected(account)
        elif account.role is Role.KIOSK:
            await self._consultations.participant_changed(account.id, connected=True)

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        self._limits.forget(sid)
        self._tokens.pop(sid, None)
        self._transports.pop(sid, None)
        account = self._accounts.pop(sid, None)
        if account is None:
            return
        self._spawn(self._disconnected(account, sid))

    async def _disconnected(self, account: Account, sid: str) -> None:
        if await self._store.remove_connection(account.id, self._node, sid) == 0:
            await self.last_connection_closed(account)

    async def last_connection_closed(self, account: Account) -> None:
        """The account has no socket left on any node: its grace period starts."""
        if account.role in DESK:
            await self._presence.disconnected(account)
        elif account.role is Role.KIOSK:
            await self._consultations.participant_changed(account.id, connected=False)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._bookkeeping.spawn(coro)

    def begin_stop(self) -> None:
        """Refuse events and connections from now on, and close every connection's
        transport. Not a socket.io disconnect, after which clients would stay away:
        a lost transport is what makes the pages and clients reconnect (to another
        node), as they do when a node dies."""
        self.stopping = True
        if self._session_checks is not None:
            self._session_checks.cancel()
        for transport in list(self._transports.values()):
            transport.close()
        self._transports.clear()

    async def drain(self, within: float) -> bool:
        """After ``begin_stop``: give the handlers still running and the bookkeeping of
        the closed connections ``within`` seconds together, then cancel the rest
        (logged). Whether everything finished by itself."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        if self._session_checks is not None:
            await asyncio.wait([self._session_checks], timeout=within)
        await finish(self._handling, deadline - loop.time())
        cancelled = await cancel_unfinished(self._handling, "socket handlers")
        # The handlers' own bookkeeping (a disconnect's) goes in after them.
        finished = await self._bookkeeping.drain(max(0.0, deadline - loop.time()))
        return finished and cancelled == 0

    def start_session_checks(self) -> None:
        self._session_checks = asyncio.create_task(
            self._check_sessions_forever(), name="socket-session-checks"
        )

    async def _check_sessions_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.session_check_interval)
            try:
                await self.close_expired()
            except Exception:
                log.exception("checking the sockets' sessions failed")

    async def close_expired(self) -> int:
        """Close every socket whose login session has ended (idle or absolute expiry,
        disabled account): a socket must not outlive its session."""
        tokens = {token for token, _ in self._tokens.values()}
        live = await self._sessions.live(tokens)
        expired = [sid for sid, (token, _) in self._tokens.items() if token not in live]
        for sid in expired:
            await self.sio.disconnect(sid)
        return len(expired)

    async def _still_logged_in(self, sid: str) -> bool:
        """Events are activity: they refresh the session's idle timer (at most once a
        minute), and a socket whose session has ended is closed."""
        token, touched = self._tokens.get(sid, ("", 0.0))
        now = time.monotonic()
        if now - touched < self._config.session_touch_interval:
            return True
        if await self._sessions.resolve(token) is None:
            await self.sio.disconnect(sid)
            return False
        self._tokens[sid] = (token, now)
        return True

    async def disconnect_token(self, token: str) -> None:
        """Close every socket opened with this session token (logout)."""
        for sid, (own, _) in list(self._tokens.items()):
            if hmac.compare_digest(own.encode(), token.encode()):
                await self.sio.disconnect(sid)

    async def disconnect_account(self, account_id: str) -> None:
        for sid, account in list(self._accounts.items()):
            if account.id == account_id:
                await self.sio.disconnect(sid)

    # ---- events --------------------------------------------------------------------

    def _wrap(self, spec: EventSpec) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def handle(sid: str, *args: Any) -> dict[str, Any]:
            start = time.perf_counter()
            ack = await handle_event(sid, *args)
            error = ack.get("error")
            self._observe(spec.name, time.perf_counter() - start, error["code"] if error else None)
            return ack

        async def handle_event(sid: str, *args: Any) -> dict[str, Any]:
            if self.stopping:
                return error_ack(Unavailable.code, "this server is stopping; send it again")
            self._handled()
            task = asyncio.current_task()
            if task is not None:
                task.set_name(f"event {spec.name}")
            account = self._accounts.get(sid)
            consultation = (
                args[0].get("consultation_id") if args and isinstance(args[0], dict) else None
            )
            set_context(
                account_id=account.id if account else None,
                consultation_id=consultation if isinstance(consultation, str) else None,
            )
            try:
                if account is None or not await self._still_logged_in(sid):
                    raise NotAuthenticated("log in first")
                if account.role not in spec.roles:
                    raise Forbidden(f"a {account.role.value} account may not send {spec.name}")
                if len(args) > 1:
                    raise InvalidPayload("send one payload object")
                data = args[0] if args else {}
                if data is None:
                    data = {}
                if not isinstance(data, dict):
                    raise InvalidPayload("the payload must be an object")
                try:
                    payload = spec.payload.model_validate(data)
                except ValidationError as exc:
                    raise InvalidPayload(_describe(exc)) from None
                session = await self.sio.get_session(sid)
                result = await spec.handler(
                    account, payload, Caller(sid, session.get("remote", ""))
                )
            except SignalingError as exc:
                return error_ack(exc.code, exc.message)
            except (StoreUnavailable, StorageUnavailable):
                return error_ack(Unavailable.code, "the service is not available right now")
            except Exception:
                log.exception("event %s failed", spec.name)
                return error_ack("internal", "the server could not handle this event")
            return {"result": result.model_dump(mode="json") if result is not None else None}

        return handle

    def _event_table(self) -> list[EventSpec]:
        c = self._consultations
        p = self._presence

        async def request(a: Account, m: RequestConsultation, at: Caller) -> BaseModel:
            return await c.request(
                a, m.department, m.case_number, at.remote, at.sid, appointment=m.appointment
            )

        async def cancel(a: Account, m: ConsultationRef, at: Caller) -> BaseModel:
            return await c.cancel(a, m.consultation_id, at.remote, at.sid)

        async def rate(a: Account, m: RateConsultation, at: Caller) -> None:
            await c.rate(
                a,
                m.consultation_id,
                m.given_grade,
                at.remote,
                reason=None if m.reason is None else GradeReason(m.reason),
                comment=m.comment or None,
            )

        async def set_presence(a: Account, m: SetPresence, at: Caller) -> BaseModel:
            return await p.set_status(a, PresenceStatus(m.status), at.sid)

        async def accept(a: Account, m: OfferRef, at: Caller) -> BaseModel:
            if m.invitation_id is not None:
                return await c.accept_invitation(a, m.invitation_id, at.remote, at.sid)
            assert m.consultation_id is not None
            return await c.accept(a, m.consultation_id, at.remote, at.sid)

        async def decline(a: Account, m: OfferRef, at: Caller) -> None:
            if m.invitation_id is not None:
                await c.decline_invitation(a, m.invitation_id, at.sid)
                return
            assert m.consultation_id is not None
            await c.decline(a, m.consultation_id, at.sid)

        async def invite(a: Account, m: InviteDepartment, at: Caller) -> BaseModel:
            return await c.invite(a, m.consultation_id, m.department, m.note, at.remote, at.sid)

        async def cancel_invite(a: Account, m: CancelInvitation, at: Caller) -> BaseModel:
            return await c.cancel_invitation(a, m.invitation_id, at.remote, at.sid)

        async def transfer(a: Account, m: TransferConsultation, at: Caller) -> BaseModel:
            return await c.transfer(a, m.consultation_id, m.department, m.reason, at.remote, at.sid)

        async def leave(a: Account, m: ConsultationRef, at: Caller) -> BaseModel:
            return await c.leave(a, m.consultation_id, at.remote, at.sid)

        async def share_screen(a: Account, m: ShareScreen, at: Caller) -> BaseModel:
            return await c.share_screen(a, m.consultation_id, m.sharing, at.sid)

        async def request_recording(a: Account, m: ConsultationRef, at: Caller) -> BaseModel:
            return await c.request_recording(a, m.consultation_id, at.remote, at.sid)

        async def answer_recording(a: Account, m: RecordingAnswer, at: Caller) -> BaseModel:
            return await c.answer_recording(
                a, m.consultation_id, m.accept, m.text_version, at.remote, at.sid
            )

        async def stop_recording(a: Account, m: ConsultationRef, at: Caller) -> BaseModel:
            return await c.stop_recording(a, m.consultation_id, at.remote, at.sid)

        async def share_document(a: Account, m: ShareDocument, at: Caller) -> None:
            await c.share_document(a, m.consultation_id, m.file_id, at.remote)

        async def outcome(a: Account, m: SaveOutcome, at: Caller) -> None:
            await c.save_outcome(
                a, m.consultation_id, Outcome(m.outcome), m.notes, at.remote, m.materials
            )

        async def defer(a: Account, m: DeferOutcome, at: Caller) -> BaseModel:
            return await c.defer_outcome(a, m.consultation_id, m.notes, at.remote)

        async def get_queue(a: Account, _m: EmptyPayload, _at: Caller) -> BaseModel:
            assert a.department is not None
            return await self._publisher.queue_view(a.department)

        async def end(a: Account, m: ConsultationRef, at: Caller) -> BaseModel:
            return await c.end(a, m.consultation_id, at.remote, at.sid)

        async def chat(a: Account, m: SendChat, _at: Caller) -> BaseModel:
            return await c.chat(a, m.consultation_id, m.text)

        async def get_state(a: Account, _m: EmptyPayload, _at: Caller) -> BaseModel:
            return await self.session_state(a)

        return [
            EventSpec(
                "request_consultation",
                RequestConsultation,
                KIOSK,
                request,
                "Join a department's queue.",
            ),
            EventSpec(
                "cancel_request",
                ConsultationRef,
                KIOSK,
                cancel,
                "Leave the queue before the call starts (ends as abandoned).",
            ),
            EventSpec(
                "rate_consultation",
                RateConsultation,
                KIOSK,
                rate,
                "Grade an ended consultation (好差评: one of five grades, a bad one with an "
                "optional reason and comment; an old page's rating 1-5 is mapped), once.",
            ),
            EventSpec("set_presence", SetPresence, DESK, set_presence, "Become available or away."),
            EventSpec(
                "accept_offer",
                OfferRef,
                DESK,
                accept,
                "Accept the consultation (or the invitation: invitation_id) ringing for you.",
            ),
            EventSpec(
                "decline_offer",
                OfferRef,
                DESK,
                decline,
                "Decline it; it goes to the next expert.",
            ),
            EventSpec(
                "invite",
                InviteDepartment,
                EXPERT,
                invite,
                "Invite a department or an interpreting pool into your call, with a note.",
            ),
            EventSpec(
                "cancel_invite",
                CancelInvitation,
                EXPERT,
                cancel_invite,
                "Take back an invitation you made.",
            ),
            EventSpec(
                "transfer",
                TransferConsultation,
                EXPERT,
                transfer,
                "Hand the citizen to another department (with a reason); you leave the call.",
            ),
            EventSpec(
                "leave_call",
                ConsultationRef,
                DESK,
                leave,
                "Leave the call; it goes on while the citizen and an expert remain.",
            ),
            EventSpec(
                "share_screen",
                ShareScreen,
                EXPERT,
                share_screen,
                "Start or stop sharing your screen in the call.",
            ),
            EventSpec(
                "request_recording",
                ConsultationRef,
                EXPERT,
                request_recording,
                "Ask to record the call (departments that record): the kiosk asks the citizen.",
            ),
            EventSpec(
                "answer_recording",
                RecordingAnswer,
                KIOSK,
                answer_recording,
                "The citizen accepts or declines the recording (and the text version shown).",
            ),
            EventSpec(
                "stop_recording",
                ConsultationRef,
                KIOSK | EXPERT,
                stop_recording,
                "Stop the recording (either side), or withdraw the request.",
            ),
            EventSpec(
                "share_document",
                ShareDocument,
                EXPERT,
                share_document,
                "Let the call's interpreters read a document of the consultation.",
            ),
            EventSpec(
                "save_outcome",
                SaveOutcome,
                EXPERT,
                outcome,
                "Record the outcome and notes of your call (ends its wrap-up).",
            ),
            EventSpec(
                "defer_outcome",
                DeferOutcome,
                EXPERT,
                defer,
                "Complete your call's record later (稍后填写): its notes so far are kept "
                "and its wrap-up ends.",
            ),
            EventSpec(
                "get_queue",
                EmptyPayload,
                DESK,
                get_queue,
                "The department's queue and experts now.",
            ),
            EventSpec(
                "end_consultation",
                ConsultationRef,
                PARTICIPANTS,
                end,
                "End the call (or, for a kiosk, leave the queue).",
            ),
            EventSpec("send_chat", SendChat, IN_CALLS, chat, "Send a chat line during the call."),
            EventSpec(
                "get_state",
                EmptyPayload,
                ANYONE,
                get_state,
                "Who you are, your presence, your open consultation and offer.",
            ),
        ]

    async def session_state(self, account: Account) -> SessionState:
        presence = await self._presence.get(account) if account.role in DESK else None
        call = await self._consultations.current(account)
        offer = None
        if presence is not None and presence.offer is not None:
            offer = await self._consultations.offer_ringing(account, presence.offer)
        return SessionState(
            username=account.username,
            role=account.role.value,
            department=account.department,
            hall=account.hall,
            presence=presence_view(presence) if presence is not None else None,
            consultation=await self._consultations.view(call, account)
            if call is not None
            else None,
            offer=offer,
        )
