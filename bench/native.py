"""CPU per forwarded packet of the native data path (media._native) against the
Python path doing the same work, in the same run: a browser's protected packet is
unprotected once, rewritten for 2 destinations (header plan, sequence number,
timestamp, transport-wide sequence number), protected for each and sent to two
loopback UDP sockets.

- ``python``: what Relay._forward_now does today per packet (fastpath.plan_header
  per destination, pylibsrtp unprotect, ``stamp(...) + plain[payload_at:]``,
  pylibsrtp protect, one ``sendto`` per datagram).
- ``native_head``: the plans made in Python (as today), everything else in one
  ``Forwarder.forward`` call; ``native_plan``: the plans made in C too.
  Datagrams are sent with sendmmsg every ``burst`` packets (``flush``).

Camera-like sizes: video 1,100-1,200 octets, audio about 100. CPU time of this
thread (``time.thread_time``): on loopback it includes the kernel's delivery to the
receiving socket, for both paths alike. Receivers are emptied outside the timed
windows. One JSON line per case:

    python bench/native.py --packets 20000
"""

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from struct import pack

import pylibsrtp
from pylibsrtp import Policy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import measure
from media.datapath import AIORTC_WINDOW, native_plan, native_unavailable_reason
from media.fastpath import (
    ABS_SEND_TIME,
    AUDIO_LEVEL,
    MID,
    TRANSPORT_CC,
    ExtensionPlan,
    plan_header,
    stamp,
)

PROFILE = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
"""What aiortc and Chromium agree on today (aiortc offers GCM first; browsers pick CM)."""
SOURCE_IDS = {AUDIO_LEVEL: 1, ABS_SEND_TIME: 2, TRANSPORT_CC: 3, MID: 4}
TARGETS = [
    ({MID: 4, AUDIO_LEVEL: 1, ABS_SEND_TIME: 2, TRANSPORT_CC: 3}, "1"),
    ({MID: 9, AUDIO_LEVEL: 13, ABS_SEND_TIME: 12, TRANSPORT_CC: 6}, "3"),
]
SIZES = {"video": (1100, 1200), "audio": (95, 105)}
CHUNK = 256
"""Packets per timed window (receivers are emptied between windows)."""


def reference(key: bytes, kind: int) -> pylibsrtp.Session:
    policy = Policy(key=key, ssrc_type=kind, srtp_profile=PROFILE)
    policy.window_size = AIORTC_WINDOW
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


def browser_packets(key: bytes, kind: str, count: int) -> list[bytes]:
    """What a browser sends: one-byte extensions (audio level, abs-send-time,
    transport-wide number, mid) and a payload of the kind's size, protected."""
    low, high = SIZES[kind]
    session = reference(key, Policy.SSRC_ANY_OUTBOUND)
    packets = []
    for n in range(count):
        elements = b"\x10\x9f\x22" + n.to_bytes(3, "big") + b"\x31" + n.to_bytes(2, "big")
        elements += b"\x40\x30" + bytes(1)
        header = pack("!BBHLL", 0x90, 96, n & 0xFFFF, n * 3000, 0x01020304)
        header += pack("!HH", 0xBEDE, len(elements) // 4) + elements
        size = low + n * 37 % (high - low + 1)
        packets.append(session.protect(header + os.urandom(size - len(header))))
    return packets


class Sockets:
    def __init__(self) -> None:
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.bind(("127.0.0.1", 0))
        self.sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.receivers = []
        for _ in TARGETS:
            r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            r.bind(("127.0.0.1", 0))
            r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            r.setblocking(False)
            self.receivers.append(r)
        self.addresses = [r.getsockname() for r in self.receivers]

    def empty(self) -> int:
        got = 0
        for r in self.receivers:
            while True:
                try:
                    r.recv(4096)
                except BlockingIOError:
                    break
                got += 1
        return got

    def close(self) -> None:
        for s in [self.sender, *self.receivers]:
            s.close()


def timed(
    packets: list[bytes],
    work: Callable[[bytes, int], None],
    after: Callable[[], object],
    sockets: Sockets,
) -> tuple[float, int]:
    """CPU seconds of ``work`` over every packet (``after`` ends each window), and
    the datagrams that arrived."""
    spent, arrived = 0.0, 0
    for start in range(0, len(packets), CHUNK):
        began = time.thread_time()
        for n in range(start, min(start + CHUNK, len(packets))):
            work(packets[n], n)
        after()
        spent += time.thread_time() - began
        arrived += sockets.empty()
    return spent, arrived


def python_path(kind: str, count: int) -> dict[str, float]:
    key, keys = os.urandom(30), [os.urandom(30) for _ in TARGETS]
    packets = browser_packets(key, kind, count)
    rx = reference(key, Policy.SSRC_ANY_INBOUND)
    txs = [reference(k, Policy.SSRC_ANY_OUTBOUND) for k in keys]
    plans = [ExtensionPlan.between(SOURCE_IDS, ids, mid) for ids, mid in TARGETS]
    sockets = Sockets()
    send = sockets.sender.sendto

    def work(data: bytes, n: int) -> None:
        headers = [plan_header(data, plan, 96, 0xAABB0000 + i) for i, plan in enumerate(plans)]
        plain = rx.unprotect(data)
        seq = int.from_bytes(plain[2:4], "big")
        ts = int.from_bytes(plain[4:8], "big")
        for header, tx, address in zip(headers, txs, sockets.addresses, strict=True):
            assert header is not None
            out = stamp(header, (seq + 7) % 65536, (ts + 9) % (1 << 32), n & 0xFFFF)
            send(tx.protect(out + plain[header.payload_at :]), address)

    spent, arrived = timed(packets, work, lambda: None, sockets)
    sockets.close()
    return {"us_per_packet": spent / count * 1e6, "arrived": arrived}


def native_path(kind: str, count: int, burst: int, plans_in_c: bool) -> dict[str, float]:
    from media import _native

    key, keys = os.urandom(30), [os.urandom(30) for _ in TARGETS]
    packets = browser_packets(key, kind, count)
    rx = _native.Session(key, PROFILE, AIORTC_WINDOW, True)
    txs = [_native.Session(k, PROFILE, AIORTC_WINDOW, True) for k in keys]
    plans = [ExtensionPlan.between(SOURCE_IDS, ids, mid) for ids, mid in TARGETS]
    natives = [native_plan(plan, 96, 0xAABB0000 + i) for i, plan in enumerate(plans)]
    sockets = Sockets()
    fd = sockets.sender.fileno()
    addresses = [_native.Address(*a) for a in sockets.addresses]
    forwarder = _native.Forwarder(batch=max(64, 2 * burst))
    forward, flush = forwarder.forward, forwarder.flush

    def with_plans(data: bytes, n: int) -> None:
        forward(
            rx,
            data,
            [
                (tx, fd, address, plan, 7, 9, n & 0xFFFF)
                for tx, address, plan in zip(txs, addresses, natives, strict=True)
            ],
        )
        if n % burst == burst - 1:
            flush()

    def with_heads(data: bytes, n: int) -> None:
        destinations: list[_native.Destination] = []
        for i, (tx, address, plan) in enumerate(zip(txs, addresses, plans, strict=True)):
            header = plan_header(data, plan, 96, 0xAABB0000 + i)
            assert header is not None
            destinations.append(
                (
                    tx,
                    fd,
                    address,
                    header.head,
                    header.payload_at,
                    header.transport_at,
                    7,
                    9,
                    n & 0xFFFF,
                )
            )
        forward(rx, data, destinations)
        if n % burst == burst - 1:
            flush()

    spent, arrived = timed(packets, with_plans if plans_in_c else with_heads, flush, sockets)
    stats = forwarder.stats()
    sockets.close()
    return {
        "us_per_packet": spent / count * 1e6,
        "arrived": arrived,
        "dropped": stats["dropped"] + stats["failed"] + stats["refused"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=20_000)
    parser.add_argument("--bursts", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    if (reason := native_unavailable_reason()) is not None:
        sys.exit(f"media._native is not built: {reason}")
    for kind in SIZES:
        base = python_path(kind, args.packets)
        measure.emit(
            "native",
            {
                "kind": kind,
                "path": "python",
                "destinations": len(TARGETS),
                "packets": args.packets,
                **_rounded(base),
            },
        )
        for burst in args.bursts:
            for plans_in_c in (False, True):
                found = native_path(kind, args.packets, burst, plans_in_c)
                measure.emit(
                    "native",
                    {
                        "kind": kind,
                        "path": "native_plan" if plans_in_c else "native_head",
                        "burst": burst,
                        "destinations": len(TARGETS),
                        "packets": args.packets,
                        **_rounded(found),
                        "speedup": round(base["us_per_packet"] / found["us_per_packet"], 2),
                    },
                )


def _rounded(record: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in record.items()}


if __name__ == "__main__":
    main()
