"""The physical floor of relaying one packet on this machine, from Python: receive
a datagram, SRTP-unprotect it, protect it again under another session and send
it (one ``recvfrom``, one unprotect, one protect, one ``sendto``), and nothing
else. The relay's own cost per packet (``bench/relay.py``, ``relay_us_per_packet``)
is compared with it in docs/PERFORMANCE.md.

Packets are the size of the bench's camera-like video (about 1,100 bytes) and of
Opus (about 160); loopback UDP, nothing reads the far socket (what the kernel
does with the datagram after ``sendto`` returns is not the relay's CPU).

    python bench/srtp_floor.py --packets 200000
"""

import argparse
import os
import socket
import sys
import time
from pathlib import Path
from struct import pack

from pylibsrtp import Policy, Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import measure

BATCH = 64


def session(key: bytes, direction: int) -> Session:
    policy = Policy(
        key=key, ssrc_type=direction, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    )
    return Session(policy)


def rtp(sequence_number: int, size: int) -> bytes:
    header = pack("!BBHLL", 0x80, 96, sequence_number & 0xFFFF, 3000 * sequence_number, 0x1234)
    return header + os.urandom(size - 12)


def floor(packets: int, size: int) -> dict[str, float]:
    """Microseconds of CPU per packet relayed (receive, unprotect, protect, send)."""
    key_in, key_out = os.urandom(30), os.urandom(30)
    source = session(key_in, Policy.SSRC_ANY_OUTBOUND)
    inbound = session(key_in, Policy.SSRC_ANY_INBOUND)
    outbound = session(key_out, Policy.SSRC_ANY_OUTBOUND)
    receive = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receive.bind(("127.0.0.1", 0))
    receive.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    target, here = sink.getsockname(), receive.getsockname()
    spent = 0.0
    for start in range(0, packets, BATCH):
        # The far end's packets, queued first (not counted).
        for n in range(start, start + BATCH):
            send.sendto(source.protect(rtp(n, size)), here)
        began = time.thread_time()
        for _ in range(BATCH):
            data = receive.recv(2048)
            send.sendto(outbound.protect(inbound.unprotect(data)), target)
        spent += time.thread_time() - began
    for sock in (receive, send, sink):
        sock.close()
    return {
        "packet_bytes": size,
        "packets": packets,
        "us_per_packet": round(spent / packets * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=200_000)
    args = parser.parse_args()
    for size in (1100, 160):
        measure.emit("srtp_floor", floor(args.packets, size))


if __name__ == "__main__":
    main()
