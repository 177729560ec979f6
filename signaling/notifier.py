"""Where the state machine's events go: to every socket of an account, or to a
department's experts. socket.io rooms make this work across nodes once the
server uses ``AsyncRedisManager``."""

from typing import Protocol

import socketio

from signaling.messages import ServerPayload


def account_room(account_id: str) -> str:
    return f"account:{account_id}"


def department_room(department: str) -> str:
    return f"department:{department}"


class Notifier(Protocol):
    async def to_account(
        self, account_id: str, event: str, payload: ServerPayload, skip_sid: str | None = None
    ) -> None:
        """To every socket of the account (but ``skip_sid``: the acting socket, which
        has the same in its ack)."""

    async def to_department(self, department: str, event: str, payload: ServerPayload) -> None: ...


class SocketNotifier:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def to_account(
        self, account_id: str, event: str, payload: ServerPayload, skip_sid: str | None = None
    ) -> None:
        await self._sio.emit(
            event,
            payload.model_dump(mode="json"),
            room=account_room(account_id),
            skip_sid=skip_sid,
        )

    async def to_department(self, department: str, event: str, payload: ServerPayload) -> None:
        await self._sio.emit(
            event, payload.model_dump(mode="json"), room=department_room(department)
        )
