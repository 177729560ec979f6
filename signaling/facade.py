"""All the web layer may ask of signaling: who may act on a consultation (one rule
for media, documents and events), a call's media side, live figures for the
board, health and metrics, announcing a document, and a few staff actions."""

import hmac
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from media.errors import BadOffer, RelayUnavailable
from media.session import offer_sends
from signaling import access
from signaling.access import Right, Verdict
from signaling.errors import Forbidden, NotAuthenticated, NotFound, Unavailable
from signaling.figures import DepartmentFigures, department_figures
from signaling.live import LiveCall, Side, leg_name, position_of_name
from signaling.messages import ChatView, ConsultationView, FileView, QueueUpdate, ServerPayload
from signaling.store import StoreUnavailable
from storage.records import Account, ConsultationRecord, ConsultationState, Role

if TYPE_CHECKING:
    from signaling.hub import SignalingHub

log = logging.getLogger(__name__)


class SignalingFacade:
    def __init__(self, hub: "SignalingHub") -> None:
        self._hub = hub

    # ---- who may act -----------------------------------------------------------------

    async def active_side(self, account: Account, consultation_id: str) -> Side | None:
        """The side this account takes in the consultation while its call is active
        (None otherwise): ``signaling.access``, as for media, documents and chat."""
        call = await self._hub.consultations.call(consultation_id)
        return None if call is None else access.side_in_call(account, call)

    async def kiosk_in_call(self, account: Account, consultation_id: str) -> bool:
        """Whether this account is the kiosk of the consultation's active call."""
        return await self.active_side(account, consultation_id) is Side.KIOSK

    async def in_active_call(self, account: Account) -> bool:
        """Whether the account takes part in a call now (who may be given TURN
        credentials)."""
        call = await self._hub.consultations.current(account)
        return call is not None and access.position_in_call(account, call) is not None

    async def may(self, account: Account, record: ConsultationRecord, right: Right) -> bool:
        """Whether the account has ``right`` on this consultation now
        (``signaling.access``) as it is now: while it is open, as its live state has
        it (the records never see an offer, and learn of a start a moment later);
        once ended, as its record has it, every expert who took part standing as its
        expert."""
        return await self.verdict(account, record, right) is Verdict.ALLOWED

    async def verdict(self, account: Account, record: ConsultationRecord, right: Right) -> Verdict:
        """As ``may``, with the verdict itself (hidden, not now, allowed)."""
        if record.state is not ConsultationState.ENDED:
            call = await self._hub.consultations.call(record.id)
            if call is not None:
                verdict = access.on_call(account, call, right)
                if (
                    verdict is Verdict.ALLOWED
                    or account.role is not Role.EXPERT
                    or right in access.LIVE_RIGHTS
                ):
                    return verdict
                # An expert whose part has ended (left, transferred) while the call
                # goes on still reads its record and documents, as after the end.
                if account.id in await self._hub.storage.legs.experts(record.id):
                    return access.verdict(access.Standing.EXPERT, right, access.stage_of_call(call))
                return verdict
        experts: frozenset[str] = frozenset()
        if account.role is Role.EXPERT and account.id != record.expert_id:
            experts = await self._hub.storage.legs.experts(record.id)
        return access.on_record(account, record, right, experts)

    async def may_read_file(
        self, account: Account, record: ConsultationRecord, file_id: str
    ) -> Verdict:
        """Whether the account may read this document of the consultation: as its
        records say (``READ_FILES``), or, for an interpreter taking part, once an
        expert of the call shared it (``READ_SHARED_FILES``; not shared: "not now",
        403)."""
        verdict = await self.verdict(account, record, Right.READ_FILES)
        if verdict is Verdict.ALLOWED or account.role is not Role.INTERPRETER:
            return verdict
        shared = await self.verdict(account, record, Right.READ_SHARED_FILES)
        if shared is not Verdict.ALLOWED:
            return shared
        if await self._hub.storage.shares.is_shared(file_id):
            return Verdict.ALLOWED
        return Verdict.NOT_NOW

    async def shared_files(self, consultation_id: str) -> frozenset[str]:
        """The consultation's documents shared with its interpreters."""
        return await self._hub.storage.shares.shared(consultation_id)

    async def media_side(self, consultation_id: str, token: str | None) -> tuple[LiveCall, int]:
        """The call going on and the position whose media token this is (an unknown
        call is 404 whatever the token; then no token 401, a wrong one 403)."""
        call = await self._hub.consultations.call(consultation_id)
        if call is None or access.stage_of_call(call) not in access.IN_CALL:
            raise NotFound("no active consultation with this id")
        if not token:
            raise NotAuthenticated("send the media token as Authorization: Bearer <token>")
        for name, expected in call.media_tokens:
            position = position_of_name(name)
            if (
                position is not None
                and call.account_at(position) is not None
                and hmac.compare_digest(token.encode(), expected.encode())
            ):
                return call, position
        listener = call.listener
        if listener is not None and hmac.compare_digest(token.encode(), listener.token.encode()):
            return call, listener.position
        raise Forbidden("this token does not open media for this consultation")

    # ---- media ---------------------------------------------------------------------

    async def connect_media(self, call: LiveCall, position: int, offer_sdp: str) -> str:
        """Answer a participant's offer on the relay holding the call, whichever
        process's or node's worker that is: their own leg ``p{position}``. The first
        offer places the call on the least-loaded live worker of the deployment
        (signaling.relays); an offer whose worker is gone places it again elsewhere."""
        media = self._hub.media
        # The legs the call may have: the positions of those in it holding a media
        # token. The relay refuses any other (nobody can add a hidden leg to a call).
        legs = frozenset(
            leg_name(p)
            for p in (position_of_name(name) for name, _ in call.media_tokens)
            if p is not None and call.account_at(p) is not None
        )
        listener = call.listener
        if listener is not None and call.account_at(listener.position) is None:
            # A listener receives and sends nothing: an offer to send is refused
            # here, before the relay would take a single packet of it.
            if position == listener.position and offer_sends(offer_sdp):
                raise BadOffer("a listener's offer receives only (every m-line recvonly)")
            legs |= {leg_name(listener.position)}
        leg = leg_name(position)
        placement = await self._placement(call.id, call.relay, None)
        try:
            media.adopt(call.id, placement)
            return await media.connect(call.id, leg, offer_sdp, legs)
        except RelayUnavailable:
            log.warning("relay %s of call %s unreachable; placing it again", placement, call.id)
            placement = await self._placement(call.id, placement, placement)
            media.adopt(call.id, placement)
            return await media.connect(call.id, leg, offer_sdp, legs)

    async def _placement(self, call_id: str, current: str | None, unreachable: str | None) -> str:
        """Where the call's media is (``current``) or goes now: never an address
        that is no relay worker of this deployment (placed again instead)."""
        if current is not None and current != unreachable:
            if await self._hub.trusts_relay(call_id, current):
                return current
            unreachable = current
        candidate = await self._hub.choose_relay(call_id, unreachable)
        placement = await self._hub.consultations.place_relay(call_id, candidate, unreachable)
        if placement != candidate and not await self._hub.trusts_relay(call_id, placement):
            raise RelayUnavailable("the call's media is placed where no relay of ours is")
        return placement

    # ---- listening in -----------------------------------------------------------------

    async def listen(
        self, supervisor: Account, consultation_id: str, remote: str, *, notice: bool
    ) -> LiveCall:
        """The supervisor listens to the call (its scope checked by the caller): the
        call with its listener, whose media token opens the listening leg."""
        return await self._hub.consultations.listen(supervisor, consultation_id, remote, notice)

    async def step_in(self, supervisor: Account, consultation_id: str, remote: str) -> LiveCall:
        """The supervisor joins the call as a participant (its scope checked by the
        caller): the call with their seat, whose media token opens their leg."""
        return await self._hub.consultations.step_in(supervisor, consultation_id, remote)

    async def leave_call(self, account: Account, consultation_id: str, remote: str) -> None:
        """The account's part in the call ends (the call goes on for the others)."""
        await self._hub.consultations.leave(account, consultation_id, remote)

    async def stop_listening(self, supervisor: Account, consultation_id: str, remote: str) -> None:
        await self._hub.consultations.stop_listening(supervisor, consultation_id, remote)

    async def live_call(self, consultation_id: str) -> LiveCall | None:
        """The call's live state as it is now (None once it has ended)."""
        return await self._hub.consultations.call(consultation_id)

    async def disconnect_media(self, call: LiveCall, position: int) -> bool:
        if call.relay is None or not await self._hub.trusts_relay(call.id, call.relay):
            return False
        try:
            self._hub.media.adopt(call.id, call.relay)
        except RelayUnavailable:
            return False
        return await self._hub.media.disconnect(call.id, leg_name(position))

    # ---- figures ---------------------------------------------------------------------

    async def queue_view(self, department: str) -> QueueUpdate:
        return await self._hub.publisher.queue_view(department)

    async def figures(self, department: str, now: float) -> DepartmentFigures:
        return department_figures(await self.queue_view(department), now)

    @property
    def connection_count(self) -> int:
        return self._hub.gateway.connection_count

    @property
    def draining(self) -> bool:
        """Whether this node takes no new calls (SIGUSR1; /healthz says so)."""
        return self._hub.draining

    async def problems(self) -> list[str]:
        """What keeps this node from serving (empty when healthy)."""
        problems = []
        try:
            await self._hub.store.ping()
        except StoreUnavailable as exc:
            problems.append(f"live state unreachable: {exc}")
        if not await self._hub.storage.db.reachable():
            problems.append("database unreachable")
        return problems

    # ---- actions -------------------------------------------------------------------

    async def chat_history(self, account: Account, consultation_id: str) -> list[ChatView]:
        return await self._hub.consultations.chat_history(account, consultation_id)

    async def announce_file(self, consultation_id: str, view: FileView) -> None:
        await self._hub.consultations.announce_file(consultation_id, view)

    async def notify(self, account_ids: Iterable[str], event: str, payload: ServerPayload) -> None:
        """Send an event to every socket of these accounts, on whichever node."""
        for account_id in account_ids:
            await self._hub.executor.notifier.to_account(account_id, event, payload)

    async def withdraw(self, admin: Account, consultation_id: str, remote: str) -> ConsultationView:
        return await self._hub.consultations.withdraw(admin, consultation_id, remote)

    async def disconnect_account(self, account_id: str) -> None:
        await self._hub.gateway.disconnect_account(account_id)

    async def disconnect_token(self, token: str) -> None:
        await self._hub.gateway.disconnect_token(token)

    async def take_slot(self, key: str, window: float, limit: int, now: float) -> bool:
        try:
            return await self._hub.store.take_slot(key, window, limit, now)
        except StoreUnavailable as exc:
            raise Unavailable("the service is not available right now") from exc

    async def hold(self, key: str, ttl: float) -> bool:
        """Hold ``key`` for ``ttl`` seconds (True unless it is held already): something
        open to be taken once, by ``take_held``, on whichever node."""
        try:
            return await self._hub.store.claim(key, ttl)
        except StoreUnavailable as exc:
            raise Unavailable("the service is not available right now") from exc

    async def take_held(self, key: str) -> bool:
        """Take what ``hold`` opened: True for one caller of all, while it is held."""
        try:
            return await self._hub.store.release(key)
        except StoreUnavailable as exc:
            raise Unavailable("the service is not available right now") from exc

    async def release_slot(self, key: str, at: float) -> None:
        try:
            await self._hub.store.release_slot(key, at)
        except StoreUnavailable as exc:
            raise Unavailable("the service is not available right now") from exc
