"""Notices to citizens by text message: a booking confirmed, the reminder the day
before, a cancelled booking, a call-back scheduled.

The interface is ``NoticeSender``: ``async send(notice)``, one ``Notice`` at a time,
never raising for a failed delivery (it logs it: a notice that did not go out must not
undo the booking it tells of). Two senders come with windowlink, chosen by
``--notice-sender``:

- ``log`` (the default): writes each notice to the log, the number masked and the
  booking code withheld, for a deployment without an SMS gateway (and for tests).
- ``http``: POSTs JSON to the operator's SMS gateway (``--notice-http-url``) with a
  bounded timeout::

      {"type": "booking_confirmed", "phone": "13812345678",
       "text": "<the type's template, filled in>", "fields": {...the fields...}}

  Templates per type (``--notice-template TYPE=TEXT``, repeatable) name the fields in
  braces: {department}, {department_en}, {date}, {time}, {code}, {reason}, {expires}.

Another sender (a government messaging platform) implements ``NoticeSender`` and is
picked in ``create_sender``. ``Notices`` puts a sender to use: each notice is sent and
then audited (its type, what it is about, whether it went out; never the number nor
the code).
"""

import asyncio
import logging
import string
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import aiohttp

from storage.audit import AuditLog
from storage.records import AuditEvent
from storage.sensitive import mask

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 5.0
"""Seconds an SMS gateway has to answer a notice."""


class NoticeType(StrEnum):
    BOOKING_CONFIRMED = "booking_confirmed"
    REMINDER = "reminder"
    CANCELLED = "cancelled"
    CALLBACK_SCHEDULED = "callback_scheduled"


FIELDS = ("department", "department_en", "date", "time", "code", "reason", "expires")
"""The names a template may use."""

DEFAULT_TEMPLATES: dict[NoticeType, str] = {
    NoticeType.BOOKING_CONFIRMED: (
        "您已预约{department}，{date} {time}。预约码 {code}：请于预约时间前10分钟至后15分钟内"
        "在任一政务服务大厅的自助终端输入。"
    ),
    NoticeType.REMINDER: "提醒：您预约了{department}，明天 {date} {time}，请凭预约码按时办理。",
    NoticeType.CANCELLED: "抱歉，{department} {date} {time} 的预约已取消（{reason}），请重新预约。",
    NoticeType.CALLBACK_SCHEDULED: (
        "{department}已收到您的回电请求，工作人员将在{expires}前致电您。"
    ),
}


@dataclass(frozen=True)
class Notice:
    type: NoticeType
    phone: str
    """In clear: only a sender sees it (the log sender masks it)."""
    subject: str
    """The appointment's or call-back's id (for the audit)."""
    department: str
    """The department's code."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """Values for the template (``FIELDS``)."""


def template_problem(text: str) -> str | None:
    """What is wrong with a template (a field it names that no notice has), or None."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        return f"not a template: {exc}"
    unknown = sorted(names - set(FIELDS))
    if unknown:
        return f"unknown field {{{unknown[0]}}} (known: {', '.join(FIELDS)})"
    return None


def render(template: str, values: Mapping[str, str]) -> str:
    return template.format_map({name: values.get(name, "") for name in FIELDS})


def local_date_time(at: float) -> tuple[str, str]:
    """(YYYY-MM-DD, HH:MM) of ``at`` in the server's local time."""
    moment = datetime.fromtimestamp(at).astimezone()
    return moment.date().isoformat(), moment.strftime("%H:%M")


class NoticeSender(ABC):
    """Delivers notices; never raises for a failed delivery: returns whether it went."""

    name = "sender"

    @abstractmethod
    async def send(self, notice: Notice) -> bool: ...

    async def close(self) -> None:  # noqa: B027 - a sender holding nothing closes nothing
        """Release what the sender holds (an HTTP session)."""


class LogSender(NoticeSender):
    """Writes each notice to the log: the number masked, the booking code withheld."""

    name = "log"

    def __init__(self, templates: Mapping[NoticeType, str] | None = None) -> None:
        self._templates = {**DEFAULT_TEMPLATES, **(templates or {})}

    async def send(self, notice: Notice) -> bool:
        shown = {**notice.fields, "code": "********"} if "code" in notice.fields else notice.fields
        log.info(
            "notice %s to %s (%s %s): %s",
            notice.type.value,
            mask(notice.phone),
            notice.department,
            notice.subject,
            render(self._templates[notice.type], shown),
        )
        return True


class HttpSender(NoticeSender):
    """POSTs each notice as JSON to the operator's SMS gateway."""

    name = "http"

    def __init__(
        self,
        url: str,
        templates: Mapping[NoticeType, str] | None = None,
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        self._url = url
        self._templates = {**DEFAULT_TEMPLATES, **(templates or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, notice: Notice) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = {
            "type": notice.type.value,
            "phone": notice.phone,
            "text": render(self._templates[notice.type], notice.fields),
            "fields": dict(notice.fields),
        }
        try:
            async with self._session.post(self._url, json=body) as response:
                if response.status >= 300:
                    log.warning(
                        "notice %s to %s refused by the gateway: HTTP %s",
                        notice.type.value,
                        mask(notice.phone),
                        response.status,
                    )
                    return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The exception's text may hold the URL, never the number: logged by class.
            log.warning(
                "notice %s to %s not sent: %s",
                notice.type.value,
                mask(notice.phone),
                type(exc).__name__,
            )
            return False
        return True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def create_sender(
    kind: str, url: str | None, templates: Mapping[NoticeType, str] | None = None
) -> NoticeSender:
    """The sender the settings name (``log`` or ``http``)."""
    if kind == "http":
        if url is None:
            raise ValueError("the http notice sender needs --notice-http-url")
        return HttpSender(url, templates)
    return LogSender(templates)


def parse_templates(values: Iterable[str]) -> dict[NoticeType, str]:
    """``TYPE=TEXT`` settings as templates by type (ValueError naming what is wrong)."""
    templates: dict[NoticeType, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep:
            raise ValueError(f"{value!r} is not TYPE=TEXT")
        try:
            kind = NoticeType(name.strip())
        except ValueError:
            known = ", ".join(t.value for t in NoticeType)
            raise ValueError(f"unknown notice type {name.strip()!r} (known: {known})") from None
        problem = template_problem(text)
        if problem is not None:
            raise ValueError(f"template of {kind.value}: {problem}")
        templates[kind] = text
    return templates


class Notices:
    """Sends notices with the configured sender and audits each one."""

    def __init__(self, sender: NoticeSender, audit: AuditLog) -> None:
        self.sender = sender
        self._audit = audit

    async def send(self, notice: Notice, *, actor: str, remote: str = "") -> bool:
        sent = await self.sender.send(notice)
        await self._audit.append(
            AuditEvent(
                actor,
                "notice.send",
                notice.subject,
                {
                    "type": notice.type.value,
                    "department": notice.department,
                    "sender": self.sender.name,
                    "sent": sent,
                },
                remote,
            )
        )
        return sent

    async def send_all(self, notices: Iterable[Notice], *, actor: str, remote: str = "") -> int:
        """Several at once (a cancelled day): how many went out."""
        results = await asyncio.gather(
            *(self.send(notice, actor=actor, remote=remote) for notice in notices)
        )
        return sum(results)

    async def close(self) -> None:
        await self.sender.close()
