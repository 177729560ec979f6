"""A two-port Ethernet bridge in user space that delays and drops frames in one
direction: the delay and loss this kernel cannot add (it has tbf but no
netem). Runs inside a network namespace of bench/congestion.py's, between the
kiosk's namespace and the server's; the rate limit itself is tbf's.

    python bench/impair.py IN OUT --delay-ms 100 --loss 0.03 --seed 1

Frames arriving on IN leave on OUT after ``delay`` (order kept), each dropped
with probability ``loss``; frames arriving on OUT leave on IN at once. IPv4
only in the sense that anything else (ARP) is never dropped. Stops on SIGTERM
or when its parent goes (PR_SET_PDEATHSIG), so it never outlives the bench.
"""

import argparse
import asyncio
import ctypes
import random
import signal
import socket
from collections import deque

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
PR_SET_PDEATHSIG = 1
IPV4 = b"\x08\x00"


def bind(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, 0))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return sock


class Bridge:
    def __init__(self, inside: str, outside: str, delay: float, loss: float, seed: int) -> None:
        self.inside = bind(inside)
        self.outside = bind(outside)
        self.delay = delay
        self.loss = loss
        self.random = random.Random(seed)
        self.queue: deque[tuple[float, bytes]] = deque()
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.dropped = 0
        self.passed = 0

    def start(self) -> None:
        self.loop.add_reader(self.inside.fileno(), self._from_inside)
        self.loop.add_reader(self.outside.fileno(), self._from_outside)

    def _frames(self, sock: socket.socket) -> list[bytes]:
        frames = []
        for _ in range(256):
            try:
                frame, address = sock.recvfrom(65536)
            except BlockingIOError:
                break
            if address[2] != PACKET_OUTGOING:  # our own sends show up here too
                frames.append(frame)
        return frames

    def _from_outside(self) -> None:
        for frame in self._frames(self.outside):
            self.inside.send(frame)

    def _from_inside(self) -> None:
        now = self.loop.time()
        for frame in self._frames(self.inside):
            if frame[12:14] == IPV4 and self.random.random() < self.loss:
                self.dropped += 1
                continue
            self.queue.append((now + self.delay, frame))
        self._schedule()

    def _schedule(self) -> None:
        if self.timer is None and self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._release)

    def _release(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            self.outside.send(self.queue.popleft()[1])
            self.passed += 1
        self._schedule()


async def run(args: argparse.Namespace) -> None:
    bridge = Bridge(args.inside, args.outside, args.delay_ms / 1000, args.loss, args.seed)
    bridge.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    print(f"passed {bridge.passed} dropped {bridge.dropped}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inside", help="the interface whose frames are delayed and dropped")
    parser.add_argument("outside")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
