"""A small typed async client for the kiosk and expert roles.

It logs in over HTTP, connects socket.io with the session cookie, and turns
acks into results or ``ClientError``. Server events are queued per name and
parsed into the models of ``signaling.messages``; ``next_event`` waits for one.
Used by the integration tests and the benchmark; a department's own system
can use it too.
"""

import asyncio
import base64
import hashlib
import ssl
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import socketio
from pydantic import BaseModel

from signaling.messages import (
    ChatView,
    ConsultationView,
    FileView,
    InvitationView,
    OfferRevoked,
    OfferView,
    PeerStatus,
    PresenceView,
    QueuePosition,
    QueueUpdate,
    SessionState,
    StaffCallAnswered,
    StaffCallView,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

SERVER_EVENTS: dict[str, type[BaseModel]] = {
    "consultation": ConsultationView,
    "queue_position": QueuePosition,
    "queue_updated": QueueUpdate,
    "offer": OfferView,
    "offer_revoked": OfferRevoked,
    "presence": PresenceView,
    "chat_message": ChatView,
    "peer_status": PeerStatus,
    "file_added": FileView,
    "invitation": InvitationView,
    "document_shared": FileView,
    "staff_call": StaffCallView,
    "staff_call_answered": StaffCallAnswered,
}


class ClientError(Exception):
    """The server answered an event or request with an error."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


async def _raise_for(response: aiohttp.ClientResponse, *expected: int) -> None:
    """``ClientError`` with the server's code and message unless the status is expected."""
    if response.status in expected:
        return
    try:
        error = (await response.json()).get("error", {})
    except (aiohttp.ContentTypeError, ValueError):
        error = {}
    raise ClientError(
        str(error.get("code", "http")),
        str(error.get("message", response.reason or "")),
        response.status,
    )


@dataclass(frozen=True)
class UploadTicket:
    """An upload begun: its id, where its parts go (absolute URL) and its declared size."""

    id: str
    url: str
    size: int


PART_SIZE = 1024 * 1024


def part_headers(offset: int, part: bytes) -> dict[str, str]:
    """The headers of an upload part that starts at ``offset`` of the document."""
    checksum = base64.b64encode(hashlib.sha256(part).digest()).decode()
    return {
        "Upload-Offset": str(offset),
        "Upload-Checksum": f"sha256 {checksum}",
        "Content-Type": "application/offset+octet-stream",
    }


class Documents:
    """A consultation's documents over the REST API (docs/API.md): resumable uploads
    (begin, parts with their SHA-256 checksum, finish) and downloads. It uses any
    aiohttp session that carries a login: a client's own, or a caller's."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._ssl = ssl_context
        self._headers = dict(headers or {})

    async def begin(self, consultation_id: str, name: str, size: int) -> UploadTicket:
        async with self._http.post(
            f"{self._base}/api/v1/consultations/{consultation_id}/uploads",
            json={"name": name, "size": size},
            headers=self._headers,
            ssl=self._ssl,
        ) as response:
            await _raise_for(response, 201)
            body = await response.json()
        return UploadTicket(str(body["upload_id"]), self._base + str(body["url"]), size)

    async def send(
        self, ticket: UploadTicket, content: bytes, *, offset: int = 0, part_size: int = PART_SIZE
    ) -> int:
        """``content`` sent from ``offset`` of the document in parts; the new offset."""
        for start in range(0, len(content), part_size):
            part = content[start : start + part_size]
            async with self._http.patch(
                ticket.url,
                data=part,
                headers={**self._headers, **part_headers(offset + start, part)},
                ssl=self._ssl,
            ) as response:
                await _raise_for(response, 204)
        return offset + len(content)

    async def finish(self, ticket: UploadTicket) -> FileView:
        async with self._http.post(
            f"{ticket.url}/finish", headers=self._headers, ssl=self._ssl
        ) as response:
            await _raise_for(response, 201)
            return FileView.model_validate(await response.json())

    async def upload(
        self, consultation_id: str, name: str, content: bytes, *, part_size: int = PART_SIZE
    ) -> FileView:
        """A whole document uploaded and finished."""
        ticket = await self.begin(consultation_id, name, len(content))
        await self.send(ticket, content, part_size=part_size)
        return await self.finish(ticket)

    async def download(self, file: FileView | str, *, byte_range: str | None = None) -> bytes:
        """A document's content (``file``: its view, or its URL path); ``byte_range``
        is a Range header's value (``bytes=0-99``)."""
        path = file.url if isinstance(file, FileView) else file
        headers = dict(self._headers)
        if byte_range is not None:
            headers["Range"] = byte_range
        async with self._http.get(self._base + path, headers=headers, ssl=self._ssl) as response:
            await _raise_for(response, 200, 206)
            return await response.read()


class WindowlinkClient:
    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        reconnect: bool = False,
    ) -> None:
        """``reconnect``: when the connection is lost (its server process died), try
        again with back-off and jitter (0.5 s doubling to 5 s, +-50 %), as the pages
        do; any process of the deployment can take the socket."""
        self.base_url = base_url.rstrip("/")
        self._ssl = ssl_context
        self._http: aiohttp.ClientSession | None = None
        self.sio = socketio.AsyncClient(
            reconnection=reconnect,
            reconnection_attempts=0,
            reconnection_delay=0.5,
            reconnection_delay_max=5,
            randomization_factor=0.5,
            ssl_verify=ssl_context is not False,
            # engine.io moves a Cookie header given to connect() into an HTTP session
            # of its own, which it closes with the connection: a reconnection would
            # go without the login. It calls this for every connection instead.
            http_session=self._socket_http,
        )
        self.session_cookie = ""
        self.username = ""
        self._queues: dict[str, asyncio.Queue[BaseModel]] = defaultdict(asyncio.Queue)
        for event, model in SERVER_EVENTS.items():
            self.sio.on(event, handler=self._collector(event, model))

    def _collector(self, event: str, model: type[BaseModel]) -> Callable[[Any], None]:
        def collect(data: Any) -> None:
            self._queues[event].put_nowait(model.model_validate(data))

        return collect

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in over HTTP; keep the session cookie for socket.io."""
        if self._http is None:
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with self._http.post(
            f"{self.base_url}/api/v1/login",
            json={"username": username, "password": password},
            ssl=self._ssl,
        ) as response:
            body = await response.json()
            if response.status != 200:
                error = body.get("error", {})
                raise ClientError(
                    error.get("code", "http"), error.get("message", ""), response.status
                )
            self.session_cookie = response.cookies["wl_session"].value
        self.username = username
        return dict(body)

    def _socket_http(self) -> aiohttp.ClientSession:
        """The HTTP session of one socket.io connection: it presents the login."""
        return aiohttp.ClientSession(headers={"Cookie": f"wl_session={self.session_cookie}"})

    async def connect(self) -> SessionState:
        await self.sio.connect(self.base_url, transports=["websocket"], wait_timeout=10)
        return await self.state()

    async def close(self) -> None:
        # Disconnects, or stops the attempts to reconnect.
        await self.sio.shutdown()
        # An attempt that failed (its server gone) leaves engine.io's session open.
        attempt: aiohttp.ClientSession | None = self.sio.eio.http
        if attempt is not None and not attempt.closed:
            await attempt.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def emit(self, event: str, payload: Any = None, *, timeout: float = 10) -> Any:
        """Send an event and return its ack's result, or raise ``ClientError``."""
        ack = await self.sio.call(event, payload if payload is not None else {}, timeout=timeout)
        if isinstance(ack, dict) and "error" in ack:
            raise ClientError(ack["error"]["code"], ack["error"]["message"])
        return ack["result"]

    async def next_event(
        self,
        event: str,
        model: type[ModelT],
        *,
        where: Callable[[ModelT], bool] | None = None,
        timeout: float = 10,
    ) -> ModelT:
        """The next ``event`` (matching ``where``), skipping those that do not match."""
        queue = self._queues[event]

        async def wait() -> ModelT:
            while True:
                item = await queue.get()
                assert isinstance(item, model)
                if where is None or where(item):
                    return item

        return await asyncio.wait_for(wait(), timeout)

    def drain(self, event: str) -> list[BaseModel]:
        """Every queued ``event`` received so far, removing them."""
        queue = self._queues[event]
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    async def state(self) -> SessionState:
        return SessionState.model_validate(await self.emit("get_state"))

    async def end(self, consultation_id: str) -> ConsultationView:
        return ConsultationView.model_validate(
            await self.emit("end_consultation", {"consultation_id": consultation_id})
        )

    async def chat(self, consultation_id: str, text: str) -> ChatView:
        return ChatView.model_validate(
            await self.emit("send_chat", {"consultation_id": consultation_id, "text": text})
        )

    @property
    def documents(self) -> Documents:
        """Uploads and downloads under this client's login (after ``login``)."""
        if self._http is None:
            raise ClientError("not_logged_in", "log in before sending or fetching documents")
        return Documents(self._http, self.base_url, ssl_context=self._ssl)

    async def upload(
        self, consultation_id: str, name: str, content: bytes, *, part_size: int = PART_SIZE
    ) -> FileView:
        return await self.documents.upload(consultation_id, name, content, part_size=part_size)

    async def download(self, file: FileView | str, *, byte_range: str | None = None) -> bytes:
        return await self.documents.download(file, byte_range=byte_range)

    async def stop_recording(self, consultation_id: str) -> ConsultationView:
        return ConsultationView.model_validate(
            await self.emit("stop_recording", {"consultation_id": consultation_id})
        )

    async def api(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A JSON route under this client's login (``ClientError`` unless 2xx)."""
        if self._http is None:
            raise ClientError("not_logged_in", "log in first")
        async with self._http.request(
            method, self.base_url + path, json=body, ssl=self._ssl
        ) as response:
            await _raise_for(response, 200, 201)
            return dict(await response.json())


def _offer_ref(consultation_id: str | None, invitation_id: str | None) -> dict[str, str]:
    if invitation_id is not None:
        return {"invitation_id": invitation_id}
    if consultation_id is None:
        raise ValueError("give a consultation_id or an invitation_id")
    return {"consultation_id": consultation_id}


class KioskClient(WindowlinkClient):
    async def request(self, department: str, case_number: str | None = None) -> ConsultationView:
        payload: dict[str, Any] = {"department": department}
        if case_number is not None:
            payload["case_number"] = case_number
        return ConsultationView.model_validate(await self.emit("request_consultation", payload))

    async def cancel(self, consultation_id: str) -> ConsultationView:
        return ConsultationView.model_validate(
            await self.emit("cancel_request", {"consultation_id": consultation_id})
        )

    async def rate(self, consultation_id: str, rating: int) -> None:
        """The old pages' 1-5 rating (the server maps it onto the five grades)."""
        await self.emit("rate_consultation", {"consultation_id": consultation_id, "rating": rating})

    async def grade(
        self,
        consultation_id: str,
        grade: str,
        *,
        reason: str | None = None,
        comment: str | None = None,
    ) -> None:
        """好差评: one of the five grades; a bad one with an optional reason and comment."""
        payload: dict[str, Any] = {"consultation_id": consultation_id, "grade": grade}
        if reason is not None:
            payload["reason"] = reason
        if comment is not None:
            payload["comment"] = comment
        await self.emit("rate_consultation", payload)

    async def answer_recording(
        self, consultation_id: str, accept: bool, text_version: str = "v1"
    ) -> ConsultationView:
        return ConsultationView.model_validate(
            await self.emit(
                "answer_recording",
                {
                    "consultation_id": consultation_id,
                    "accept": accept,
                    "text_version": text_version,
                },
            )
        )

    async def give_identity(
        self, consultation_id: str, id_number: str, *, history_consent: bool
    ) -> dict[str, Any]:
        """The citizen's identity number, given after the kiosk asked consent."""
        return await self.api(
            "POST",
            f"/api/v1/consultations/{consultation_id}/identity",
            {"id_number": id_number, "history_consent": history_consent},
        )


class ExpertClient(WindowlinkClient):
    """An expert's desk (an interpreter's too: presence, offers, calls, leaving)."""

    async def set_presence(self, status: str) -> PresenceView:
        return PresenceView.model_validate(await self.emit("set_presence", {"status": status}))

    async def accept(
        self, consultation_id: str | None = None, *, invitation_id: str | None = None
    ) -> ConsultationView:
        """Accept the consultation ringing for you, or the invitation ``invitation_id``."""
        return ConsultationView.model_validate(
            await self.emit("accept_offer", _offer_ref(consultation_id, invitation_id))
        )

    async def decline(
        self, consultation_id: str | None = None, *, invitation_id: str | None = None
    ) -> None:
        await self.emit("decline_offer", _offer_ref(consultation_id, invitation_id))

    async def accept_offer(self, offer: OfferView) -> ConsultationView:
        """Accept what ``offer`` rings for, a consultation or an invitation."""
        if offer.invitation_id is not None:
            return await self.accept(invitation_id=offer.invitation_id)
        return await self.accept(offer.consultation_id)

    async def invite(self, consultation_id: str, department: str, note: str = "") -> InvitationView:
        """Invite a department (or an interpreting pool) into the call."""
        return InvitationView.model_validate(
            await self.emit(
                "invite",
                {"consultation_id": consultation_id, "department": department, "note": note},
            )
        )

    async def cancel_invite(self, invitation_id: str) -> InvitationView:
        return InvitationView.model_validate(
            await self.emit("cancel_invite", {"invitation_id": invitation_id})
        )

    async def transfer(
        self, consultation_id: str, department: str, reason: str
    ) -> ConsultationView:
        """Hand the citizen to ``department``; the view is yours: your part has ended."""
        return ConsultationView.model_validate(
            await self.emit(
                "transfer",
                {"consultation_id": consultation_id, "department": department, "reason": reason},
            )
        )

    async def leave(self, consultation_id: str) -> ConsultationView:
        """Leave the call (it goes on while the citizen and an expert remain)."""
        return ConsultationView.model_validate(
            await self.emit("leave_call", {"consultation_id": consultation_id})
        )

    async def share_screen(self, consultation_id: str, sharing: bool) -> ConsultationView:
        return ConsultationView.model_validate(
            await self.emit(
                "share_screen", {"consultation_id": consultation_id, "sharing": sharing}
            )
        )

    async def request_recording(self, consultation_id: str) -> ConsultationView:
        return ConsultationView.model_validate(
            await self.emit("request_recording", {"consultation_id": consultation_id})
        )

    async def share_document(self, consultation_id: str, file_id: str) -> None:
        """Let the call's interpreters read this document of the consultation."""
        await self.emit("share_document", {"consultation_id": consultation_id, "file_id": file_id})

    async def save_outcome(self, consultation_id: str, outcome: str, notes: str = "") -> None:
        await self.emit(
            "save_outcome",
            {"consultation_id": consultation_id, "outcome": outcome, "notes": notes},
        )

    async def defer_outcome(self, consultation_id: str, notes: str = "") -> PresenceView:
        """稍后填写: the record waits among the unfinished ones (with ``notes``), and
        the expert's wrap-up of it ends."""
        return PresenceView.model_validate(
            await self.emit("defer_outcome", {"consultation_id": consultation_id, "notes": notes})
        )

    async def queue(self) -> QueueUpdate:
        return QueueUpdate.model_validate(await self.emit("get_queue"))
