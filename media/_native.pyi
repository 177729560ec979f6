"""Types of media._native (media/native/module.c): the relay's per-packet work in C.

Import it through media.datapath, which says whether it was built.
"""

import pylibsrtp

DECLINED: int
"""forward's answer when a Plan sends the packet to the general path (nothing done)."""
REFUSED: int
"""forward's answer when SRTP refused the packet (dropped and counted)."""
MAX_DESTINATIONS: int
MAX_BATCH: int
SLOT_SIZE: int
EXT_DROP: int
EXT_ABS_SEND_TIME: int
EXT_AUDIO_LEVEL: int
EXT_SLOW: int

class Error(pylibsrtp.Error):
    """An SRTP operation refused a packet, with libsrtp's message (as pylibsrtp)."""

class Session:
    """An SRTP session for one master key and salt, matching any SSRC:
    pylibsrtp.Session's methods, bytes and errors."""

    def __init__(
        self,
        key: bytes,
        profile: int = 1,
        window_size: int = 128,
        allow_repeat_tx: bool = False,
    ) -> None: ...
    def protect(self, packet: bytes) -> bytes: ...
    def protect_rtcp(self, packet: bytes) -> bytes: ...
    def unprotect(self, packet: bytes) -> bytes: ...
    def unprotect_rtcp(self, packet: bytes) -> bytes: ...
    @property
    def profile(self) -> int: ...
    @property
    def rtp_overhead(self) -> int: ...
    @property
    def rtcp_overhead(self) -> int: ...
    @property
    def streams(self) -> int: ...

class Address:
    """A peer's UDP address (numeric IPv4 or IPv6), parsed once."""

    def __init__(self, host: str, port: int) -> None: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...

class Plan:
    """fastpath.plan_header for one source stream and one destination."""

    def __init__(
        self,
        kinds: bytes,
        abs_send_time_id: int,
        audio_level_id: int,
        transport_id: int,
        payload_type: int,
        ssrc: int,
        mid_element: bytes,
    ) -> None: ...
    def header(self, data: bytes) -> tuple[bytes, int, int] | None: ...
    @property
    def transport_id(self) -> int: ...

HeadDestination = tuple[
    Session, int, Address | tuple[str, int], bytes | bytearray, int, int, int, int, int
]
"""(tx, fd, address, head, payload_at, transport_at, seq_offset, ts_offset, transport_sequence)"""
PlanDestination = tuple[Session, int, Address | tuple[str, int], Plan, int, int, int]
"""(tx, fd, address, plan, seq_offset, ts_offset, transport_sequence)"""
Destination = HeadDestination | PlanDestination
Destinations = list[Destination] | tuple[Destination, ...]
"""A list or a tuple (exactly), at most MAX_DESTINATIONS."""

class Forwarder:
    """Steady packets forwarded in C, datagrams sent and received in batches."""

    def __init__(self, batch: int = 64, datagram_size: int = 2048) -> None: ...
    def forward(self, rx: Session, data: bytes, destinations: Destinations) -> int: ...
    def forward_keep(
        self, rx: Session, data: bytes, destinations: Destinations
    ) -> tuple[bytes, list[bytes | None]] | int: ...
    def flush(self) -> int: ...
    def drain(
        self, fd: int, max_datagrams: int
    ) -> list[tuple[bytes, tuple[str, int] | tuple[str, int, int, int]]]: ...
    def stats(self) -> dict[str, int]: ...
    @property
    def pending(self) -> int: ...

def openssl_version() -> str: ...

DECLINE: int
"""Outbound.state: a packet with a destination here goes up to Python."""
WAIT: int
"""Outbound.state: the pump skips this destination (its leg still connects)."""
SEND: int
"""Outbound.state: the pump sends here."""
HISTORY: int
"""Packets a Stream keeps for NACKs (by sequence number % HISTORY)."""

class Stream:
    """One forwarded stream's sequence state and NACK history, shared with the
    pump's thread (media/forwarding.py StreamState is the Python one)."""

    seq_offset: int
    ts_offset: int
    last_seq: int | None
    last_ts: int | None
    last_sent_at: float
    forwarded: int
    steady_key: int
    def __init__(self) -> None: ...
    def __getitem__(self, index: int) -> bytes: ...
    def __setitem__(self, index: int, data: bytes) -> None: ...
    def __delitem__(self, index: int) -> None: ...
    def get(self, index: int, default: bytes | None = None) -> bytes | None: ...
    def sent(self, sequence_number: int, timestamp: int) -> None: ...

class SentLog:
    """A leg's transport-wide numbers and what each packet was (the last ``history``)."""

    def __init__(self, history: int, overhead: int) -> None: ...
    def assign(self, size: int, now_us: int) -> int: ...
    def get(self, unwrapped: int) -> tuple[int, int] | None: ...
    @property
    def next(self) -> int: ...

class Tally:
    """What the pump forwarded for a relay pool."""

    def __init__(self) -> None: ...
    @property
    def packets(self) -> int: ...
    @property
    def bytes(self) -> int: ...

class Outbound:
    """A leg's sending side for the pump."""

    state: int
    def __init__(self, sent: SentLog | None = None) -> None: ...
    def target(self, socket_tag: int, tx: Session, address: Address) -> None: ...
    @property
    def packets_out(self) -> int: ...

class Inbound:
    """A leg's receiving side for the pump: counters, arrivals, routes."""

    def __init__(self, tally: Tally, transport_cc_id: int = 0) -> None: ...
    def route(
        self,
        ssrc: int,
        payload_type: int,
        source_key: int,
        rx: Session,
        destinations: list[tuple[Stream, Outbound, Plan]],
    ) -> bool: ...
    def clear_routes(self, ssrc: int | None = None) -> None: ...
    def arrived(self, size: int) -> None: ...
    def record(self, sequence_number: int, at_us: int) -> None: ...
    def take_arrivals(self) -> list[tuple[int, int]]: ...
    @property
    def packets_in(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def packets_at_once(self) -> int: ...
    @property
    def arrivals_dropped(self) -> int: ...
    @property
    def routes(self) -> int: ...
    @property
    def last_rtp_at(self) -> float: ...

class Pump:
    """A thread reading sockets, forwarding steady packets by the Inbound routes in
    C, queueing the rest for take()."""

    def __init__(self) -> None: ...
    def fileno(self) -> int: ...
    def add_socket(self, fd: int, inbound: Inbound | None = None) -> int: ...
    def remove_socket(self, tag: int) -> bool: ...
    def take(
        self, max: int
    ) -> list[tuple[int, bytes, tuple[str, int] | tuple[str, int, int, int] | None]]: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
