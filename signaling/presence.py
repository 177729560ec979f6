"""Expert presence: available, busy (in a call), away, offline (no connection)."""

from signaling.consultation import ConsultationService
from signaling.dispatch import Dispatcher, deadline_key, department_lock, presence_view
from signaling.errors import Forbidden
from signaling.messages import PresenceView
from signaling.state import ExpertPresence, PresenceStatus
from storage.records import Account, ConsultationState, Role


class PresenceService:
    def __init__(self, dispatcher: Dispatcher, consultations: ConsultationService) -> None:
        self._d = dispatcher
        self._consultations = consultations
        self.store = dispatcher.store
        self.notifier = dispatcher.notifier
        self.clock = dispatcher.clock
        self.config = dispatcher.config

    @staticmethod
    def _department(expert: Account) -> str:
        if expert.role is not Role.EXPERT or expert.department is None:
            raise Forbidden("only experts have a presence")
        return expert.department

    def _new(self, expert: Account, department: str) -> ExpertPresence:
        return ExpertPresence(
            expert_id=expert.id,
            username=expert.username,
            department=department,
            status=PresenceStatus.AWAY.value,
            idle_since=self.clock(),
        )

    async def get(self, expert: Account) -> ExpertPresence | None:
        return await self.store.get_presence(expert.id)

    async def set_status(self, expert: Account, status: PresenceStatus) -> PresenceView:
        """The expert's own choice: available or away."""
        department = self._department(expert)
        async with self.store.lock(department_lock(department)):
            presence = await self.store.get_presence(expert.id) or self._new(expert, department)
            was_online = presence.presence in (PresenceStatus.AVAILABLE, PresenceStatus.BUSY)
            if presence.call is not None:
                # In a call the expert stays busy; the choice applies when it ends.
                presence.status_after_call = status.value
            elif status is PresenceStatus.AVAILABLE:
                if presence.presence is not PresenceStatus.AVAILABLE:
                    presence.idle_since = self.clock()
                presence.status = status.value
                presence.missed_in_a_row = 0
            else:
                presence.status = status.value
            await self.store.put_presence(presence)
            if presence.offer is not None and status is PresenceStatus.AWAY:
                call = await self.store.get_call(presence.offer)
                if call is not None and call.phase is ConsultationState.OFFERED:
                    await self._d.take_back_offer(call, "declined")
                    presence = await self.store.get_presence(expert.id) or presence
            view = presence_view(presence)
            await self.notifier.to_account(expert.id, "presence", view)
            if was_online and presence.presence not in (
                PresenceStatus.AVAILABLE,
                PresenceStatus.BUSY,
            ):
                await self._d.arm_no_expert(department)
            await self._d.dispatch(department)
            await self._d.publish_queue(department)
        return view

    async def connected(self, expert: Account) -> None:
        """An expert's first connection: come back as before a short drop, else away."""
        department = self._department(expert)
        async with self.store.lock(department_lock(department)):
            presence = await self.store.get_presence(expert.id)
            if presence is None:
                presence = self._new(expert, department)
            elif presence.presence is PresenceStatus.OFFLINE:
                if presence.call is not None:
                    presence.status = PresenceStatus.BUSY.value
                else:
                    presence.status = presence.status_before_drop or PresenceStatus.AWAY.value
                    presence.idle_since = self.clock()
                presence.status_before_drop = None
            await self.store.clear_deadline(deadline_key("offline", expert.id))
            await self.store.put_presence(presence)
            await self.notifier.to_account(expert.id, "presence", presence_view(presence))
            await self._d.dispatch(department)
            await self._d.publish_queue(department)
        if presence.call is not None:
            await self._consultations.participant_returned(expert)

    async def disconnected(self, expert: Account) -> None:
        """The expert's last connection closed: offline; a ringing offer goes back."""
        department = self._department(expert)
        async with self.store.lock(department_lock(department)):
            presence = await self.store.get_presence(expert.id)
            if presence is None:
                return
            if presence.offer is not None:
                call = await self.store.get_call(presence.offer)
                if call is not None and call.phase is ConsultationState.OFFERED:
                    await self._d.take_back_offer(call, "declined")
                presence = await self.store.get_presence(expert.id) or presence
            presence.status_before_drop = (
                presence.status_after_call if presence.call is not None else presence.status
            )
            presence.status = PresenceStatus.OFFLINE.value
            await self.store.put_presence(presence)
            await self.store.set_deadline(
                deadline_key("offline", expert.id), self.clock() + self.config.grace_period
            )
            await self._d.arm_no_expert(department)
            await self._d.dispatch(department)
            await self._d.publish_queue(department)
        if presence.call is not None:
            await self._consultations.participant_left(expert)

    async def on_deadline(self, key: str) -> None:
        kind, _, expert_id = key.partition("|")
        if kind != "offline":
            return
        presence = await self.store.get_presence(expert_id)
        if presence is None:
            return
        async with self.store.lock(department_lock(presence.department)):
            presence = await self.store.get_presence(expert_id)
            if presence is None or presence.presence is not PresenceStatus.OFFLINE:
                return
            if presence.call is not None:
                return
            await self.store.delete_presence(expert_id, presence.department)
            await self._d.publish_queue(presence.department)
