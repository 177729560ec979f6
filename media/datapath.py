"""Which data path forwards the relay's steady packets: the native one
(``media._native``, built from media/native/ by ``pip install -e .`` where a C
compiler and OpenSSL 3's headers are) or today's Python one; and what the native
one is built from (SRTP sessions from the DTLS keys, header plans from fastpath's).

The product says once at start which path runs (``describe``) and /metrics says it
always (``DatapathCollector``: ``windowlink_relay_datapath_info{path=...}``).
"""

import importlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

from aiortc.rtcdtlstransport import SRTP_PROFILES
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from media.fastpath import ABS_SEND_TIME, AUDIO_LEVEL, ExtensionPlan

if TYPE_CHECKING:
    from media import _native

Datapath = Literal["native", "python"]
Setting = Literal["auto", "native", "python"]
"""``--relay-datapath``: auto takes the native path where it loads; native
insists on it (a start fails without it); python never takes it."""
SETTINGS: tuple[Setting, ...] = ("auto", "native", "python")

AIORTC_WINDOW = 1024
"""The replay window aiortc gives both SRTP sessions of a transport (and
``allow_repeat_tx``): rtcdtlstransport.py ``_setup_srtp``."""


def _load() -> str | None:
    try:
        importlib.import_module("media._native")
    except Exception as error:  # not built, or built for another machine: Python path
        return f"{type(error).__name__}: {error}"
    return None


_UNAVAILABLE = _load()


def native_available() -> bool:
    """The native module was built and loads here."""
    return _UNAVAILABLE is None


def native_unavailable_reason() -> str | None:
    """Why it does not load (the import error), or None when it does."""
    return _UNAVAILABLE


def chosen(prefer_native: bool = True) -> Datapath:
    """The path the relay runs: the native one where it loads and is wanted."""
    return "native" if prefer_native and native_available() else "python"


def describe(prefer_native: bool = True) -> str:
    """One line for the log at start: which path, and why not the native one."""
    if chosen(prefer_native) == "native":
        from media import _native

        return f"relay data path: native (media._native, {_native.openssl_version()})"
    if not prefer_native:
        return "relay data path: python (native path turned off)"
    return f"relay data path: python (media._native unavailable: {_UNAVAILABLE})"


class NativeUnavailable(RuntimeError):
    """``--relay-datapath native`` on a machine where media._native does not load."""


_selected: Datapath | None = None


def select(setting: str) -> Datapath:
    """The path this process's relays forward on from now on (``current``), from the
    setting (``SETTINGS``); NativeUnavailable when the native one is demanded and does
    not load. Process-wide, like the ICE gathering addresses: each process chooses
    once at start, and a relay made without a path of its own takes this one."""
    global _selected
    if setting not in SETTINGS:
        raise ValueError(f"--relay-datapath must be auto, native or python, not {setting!r}")
    if setting == "native" and not native_available():
        raise NativeUnavailable(
            f"--relay-datapath native: media._native unavailable: {_UNAVAILABLE}"
        )
    _selected = chosen(prefer_native=setting != "python")
    return _selected


def current() -> Datapath:
    """The path this process's relays forward on: the one ``select`` chose (at
    start, from the setting), else the native one where it loads."""
    return _selected if _selected is not None else chosen()


class DatapathCollector(Collector):
    """``windowlink_relay_datapath_info{path="native"|"python"} 1``: the path the
    relay forwards on (``path`` says it when scraped: the workers' own answer where
    they report one)."""

    def __init__(self, path: Callable[[], Datapath] = current) -> None:
        self._path = path

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            "windowlink_relay_datapath",
            "Which data path the relay forwards steady packets on (native: media._native; "
            "python: the Python path).",
            value={"path": self._path()},
        )


def session_pair(
    openssl_profile: bytes, keying_material: bytes, is_server: bool
) -> "tuple[_native.Session, _native.Session]":
    """(rx, tx): the native sessions of a DTLS transport, from what it exported
    (``EXTRACTOR-dtls_srtp``, 2 x (key + salt) octets) as aiortc's ``_setup_srtp``
    splits it and keys its pylibsrtp sessions. KeyError for a profile aiortc does
    not offer."""
    from media import _native

    profile = next(p for p in SRTP_PROFILES if p.openssl_profile == openssl_profile)
    # RFC 5764 4.2: client key, server key, client salt, server salt.
    tx = profile.get_key_and_salt(keying_material, 1 if is_server else 0)
    rx = profile.get_key_and_salt(keying_material, 0 if is_server else 1)
    return (
        _native.Session(rx, profile.libsrtp_profile, AIORTC_WINDOW, True),
        _native.Session(tx, profile.libsrtp_profile, AIORTC_WINDOW, True),
    )


def native_plan(plan: ExtensionPlan, payload_type: int, ssrc: int) -> "_native.Plan":
    """fastpath's plan for one destination stream, for the native path
    (``Plan.header(data)`` is ``plan_header(data, plan, payload_type, ssrc)``)."""
    from media import _native

    kinds = bytearray(16)
    for element_id in range(16):
        uri = plan.source_kind.get(element_id)
        if element_id in plan.slow_ids:
            kinds[element_id] = _native.EXT_SLOW
        elif uri == ABS_SEND_TIME and uri in plan.target_id:
            kinds[element_id] = _native.EXT_ABS_SEND_TIME
        elif uri == AUDIO_LEVEL and uri in plan.target_id:
            kinds[element_id] = _native.EXT_AUDIO_LEVEL
    return _native.Plan(
        bytes(kinds),
        plan.target_id.get(ABS_SEND_TIME, 0),
        plan.target_id.get(AUDIO_LEVEL, 0),
        plan.transport_id,
        payload_type,
        ssrc,
        plan.mid_element,
    )
