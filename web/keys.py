"""Typed keys for the app-wide objects held on the aiohttp application and requests."""

from collections.abc import Callable

import socketio
from aiohttp import web

from media.pool import RelayPool
from signaling.facade import SignalingFacade
from signaling.hub import SignalingHub
from signaling.limits import EventRateLimit
from storage.filestore import FileStore
from storage.records import Account
from storage.sensitive import SensitiveValues
from storage.store import Storage
from web.call_recorder import CallRecorder
from web.forwarded import ProxyTrust
from web.login_gate import PasswordCheckGate
from web.metrics import Metrics
from web.notices import Notices
from web.settings import Settings
from web.shutdown import StopBudget

SETTINGS = web.AppKey("settings", Settings)
STORAGE = web.AppKey("storage", Storage)
SOCKETS = web.AppKey("sockets", socketio.AsyncServer)
HUB = web.AppKey("hub", SignalingHub)
SIGNALING = web.AppKey("signaling", SignalingFacade)
MEDIA = web.AppKey("media", RelayPool)
FILES = web.AppKey("files", FileStore)
SENSITIVE = web.AppKey("sensitive", SensitiveValues)
RECORDER = web.AppKey("recorder", CallRecorder)
EVENT_LIMITS = web.AppKey("event_limits", EventRateLimit)
METRICS = web.AppKey("metrics", Metrics)
LOGIN_GATE = web.AppKey("login_gate", PasswordCheckGate)
PROXY_TRUST = web.AppKey("proxy_trust", ProxyTrust)
OPENAPI = web.AppKey("openapi", dict[str, object])
STOP = web.AppKey("stop", StopBudget)
NOTICES = web.AppKey("notices", Notices)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
"""Seconds since the epoch: time.time, or a test's clock (a follow-up past its deadline)."""

ACCOUNT = web.RequestKey("account", Account)
SESSION_TOKEN = web.RequestKey("session_token", str)
