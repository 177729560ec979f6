"""Log lines as JSON objects (``--log-format json``) or text, with the request,
consultation and account they concern taken from context variables.

Every line the server writes goes through ``logging``: the start-up banner, the
relay workers' lines, warnings and uncaught exceptions included, so that with
JSON every line on stdout and stderr is one object. What a line may say is
limited on purpose: ids, never case numbers, identity numbers, chat text,
tokens or passwords (tests run a whole journey and look for them).
"""

import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
ACCOUNT_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("account_id", default=None)
CONSULTATION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "consultation_id", default=None
)
_CONTEXT = (
    ("request_id", REQUEST_ID),
    ("account_id", ACCOUNT_ID),
    ("consultation_id", CONSULTATION_ID),
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Within the block, log lines carry these ids (request_id, account_id,
    consultation_id)."""
    tokens = []
    for name, var in _CONTEXT:
        if name in values:
            tokens.append((var, var.set(values[name])))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_context(**values: str | None) -> None:
    """Set ids for the rest of the current task (a handler learning who is acting)."""
    for name, var in _CONTEXT:
        if name in values:
            var.set(values[name])


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name, _var in _CONTEXT:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, fmt: str) -> None:
    """Route every line through ``logging`` in the chosen format (``text`` or ``json``);
    stderr for all levels, so that stdout carries nothing unexpected."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aioice logs every connectivity check at info: that is debugging detail.
    for chatty in ("aioice", "aiortc"):
        logging.getLogger(chatty).setLevel(
            logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
        )
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("windowlink").critical("uncaught exception", exc_info=(kind, value, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("windowlink").error(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )


def banner(message: str, fmt: str) -> None:
    """The start-up line on stdout: text, or a JSON object like every other line."""
    if fmt == "json":
        record = logging.LogRecord("windowlink", logging.INFO, __file__, 0, message, None, None)
        line = JsonFormatter().format(record)
    else:
        line = message
    print(line, flush=True)
