"""Where calls' relays live: one interface, two implementations chosen by
``--media-workers`` (0: in this process; N: N worker processes)."""

import asyncio
import dataclasses
import resource
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Collection

from media import datapath
from media.aiortc_private import accept_hidden_candidates, restrict_host_addresses
from media.config import MediaConfig
from media.counters import RelayCounters
from media.errors import RelayUnavailable, UnknownCall
from media.ice import ice_servers
from media.pump import PumpIO
from media.recording_dump import DumpTarget
from media.relay import MediaListener, Relay


class RelayPool(ABC):
    """Opens a relay per call, answers participants' offers, closes relays."""

    listener: MediaListener | None = None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start what the pool needs (worker processes)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def place(self, call_id: str) -> str:
        """Choose where a new call's relay goes (this pool's least-loaded place) and
        route the call there; the placement names it for every process that may
        receive the call's media requests (stored with the live call)."""

    @abstractmethod
    def adopt(self, call_id: str, placement: str) -> None:
        """Route the call to ``placement``, chosen by whichever process placed it;
        ``RelayUnavailable`` if this pool cannot reach it."""

    @abstractmethod
    async def connect(
        self, call_id: str, participant: str, offer_sdp: str, legs: Collection[str]
    ) -> str:
        """Answer ``participant``'s offer (replacing their previous leg); return the
        answer. ``legs`` are the participants the call has, as signaling knows them
        now: ``NotAParticipant`` for anyone else, and a leg of someone no longer
        among them is closed."""

    @abstractmethod
    async def disconnect(self, call_id: str, participant: str) -> bool:
        """Close ``participant``'s leg; False if there was none."""

    @abstractmethod
    async def close_call(self, call_id: str) -> None:
        """Close the call's relay: every peer connection and task."""

    @abstractmethod
    async def start_recording(self, call_id: str, target: DumpTarget) -> None:
        """The call's relay adds every packet it forwards to a new dump at ``target``
        (``UnknownCall`` when the call has no relay yet)."""

    @abstractmethod
    async def stop_recording(self, call_id: str) -> bool:
        """The call's dump closed properly; False when none was being written."""

    @abstractmethod
    async def peer_connections(self) -> int:
        """Live peer connections across all relays."""

    @abstractmethod
    async def stats(self) -> dict[str, dict[str, float]]:
        """Per relay process: calls, peer_connections, cpu_seconds and the
        ``RelayCounters`` since it started."""

    def local_urls(self) -> frozenset[str]:
        """The internal URLs of this process's own workers (none in-process)."""
        return frozenset()

    async def worker_figures(self) -> dict[str, dict[str, float]]:
        """Each own worker's figures (``calls``, ``cpu_seconds``, and when they were
        taken, ``measured_at`` on this process's monotonic clock), by its URL: what
        this node reports for the cluster's placement (none in-process)."""
        return {}

    def _notify(self, call_id: str, participant: str, status: str) -> None:
        if self.listener is not None:
            self.listener(call_id, participant, status)


class LocalRelayPool(RelayPool):
    """Relays inside this process (``--media-workers 0``, and inside each worker)."""

    def __init__(self, config: MediaConfig) -> None:
        self._config = config
        self.relays: dict[str, Relay] = {}
        self.live_counters = RelayCounters()
        """What the relays (and a worker's request gate) count into; ``counters`` adds
        what the pump forwarded."""
        self._pump: PumpIO | None = None
        """The native pump of this process's relays, made with the first (media/pump.py)."""
        self.name = f"in-process:{secrets.token_hex(6)}"
        """This process's placement: no other process can reach relays held here."""
        restrict_host_addresses(config.addresses)
        accept_hidden_candidates()

    async def close(self) -> None:
        for call_id in list(self.relays):
            await self.close_call(call_id)
        if self._pump is not None:
            self._pump.close()
            self._pump = None

    def _pump_for(self, path: datapath.Datapath) -> PumpIO | None:
        """The pump, on the native path where this loop lets it read the sockets."""
        if self._pump is None and path == "native":
            loop = asyncio.get_running_loop()
            if PumpIO.usable(loop):
                self._pump = PumpIO(loop)
        return self._pump

    async def place(self, call_id: str) -> str:
        await self.open_call(call_id)
        return self.name

    def adopt(self, call_id: str, placement: str) -> None:
        if placement != self.name:
            raise RelayUnavailable(
                "the call's media is held by another process without relay workers"
            )
        self._open(call_id)

    async def open_call(self, call_id: str) -> None:
        """Create the call's relay here (a worker does so with the call's first offer)."""
        self._open(call_id)

    def _open(self, call_id: str) -> None:
        if call_id not in self.relays:
            config = self._config
            path = datapath.chosen(prefer_native=config.datapath != "python")
            self.relays[call_id] = Relay(
                call_id,
                self._notify,
                config.public_address,
                self.live_counters,
                # A user name of its own per leg: coturn counts allocations per
                # user name (user-quota), and legs start in the same second.
                ice=lambda: ice_servers(
                    config.ice_servers,
                    config.turn_secret,
                    f"relay-{secrets.token_hex(4)}",
                    time.time(),
                    config.turn_ttl,
                ),
                path=path,
                pump=self._pump_for(path),
            )

    def _relay(self, call_id: str) -> Relay:
        relay = self.relays.get(call_id)
        if relay is None:
            raise UnknownCall("no relay for this call")
        return relay

    async def connect(
        self, call_id: str, participant: str, offer_sdp: str, legs: Collection[str]
    ) -> str:
        relay = self._relay(call_id)
        await relay.declare(legs)
        return await relay.connect(participant, offer_sdp)

    async def disconnect(self, call_id: str, participant: str) -> bool:
        relay = self.relays.get(call_id)
        return relay is not None and await relay.disconnect(participant)

    async def close_call(self, call_id: str) -> None:
        relay = self.relays.pop(call_id, None)
        if relay is not None:
            await relay.close()

    async def start_recording(self, call_id: str, target: DumpTarget) -> None:
        relay = self._relay(call_id)
        await relay.start_recording(await asyncio.to_thread(target.writer))

    async def stop_recording(self, call_id: str) -> bool:
        relay = self.relays.get(call_id)
        return relay is not None and relay.stop_recording() is not None

    async def peer_connections(self) -> int:
        return sum(relay.peer_connections for relay in self.relays.values())

    def load(self) -> int:
        return len(self.relays)

    def figures(self) -> dict[str, float]:
        """This process's relay figures (its whole CPU time: in a worker that is
        the relay's; in-process, it includes the web and signaling work)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "calls": float(len(self.relays)),
            "peer_connections": float(sum(r.peer_connections for r in self.relays.values())),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            **self.counters.as_dict(),
            **self._pump_figures(),
        }

    def _pump_figures(self) -> dict[str, float]:
        """What the pump dropped: datagrams beyond its queue for Python, sends the
        sockets refused (full buffers, errors)."""
        if self._pump is None:
            return {}
        stats = self._pump.stats()
        dropped = stats["queue_dropped"] + stats["send_dropped"] + stats["send_failed"]
        return {"pump_dropped": float(dropped), "pump_refused": float(stats["refused"])}

    @property
    def counters(self) -> RelayCounters:
        """The relays' counters, with what the pump forwarded (it counts its own)."""
        if self._pump is None:
            return self.live_counters
        tally = self._pump.tally
        live = self.live_counters
        return dataclasses.replace(
            live,
            packets_forwarded=live.packets_forwarded + tally.packets,
            packets_forwarded_at_once=live.packets_forwarded_at_once + tally.packets,
            bytes_forwarded=live.bytes_forwarded + tally.bytes,
        )

    async def stats(self) -> dict[str, dict[str, float]]:
        return {"local": self.figures()}


def create_relay_pool(
    config: MediaConfig,
    log_level: str = "warning",
    log_format: str = "text",
    secret: str | None = None,
) -> RelayPool:
    """In this process with ``workers == 0``, else in that many worker processes."""
    if config.workers == 0:
        return LocalRelayPool(config)
    # Imported here: the worker pool imports this module for the interface.
    from media.worker_pool import WorkerRelayPool

    return WorkerRelayPool(config, log_level, log_format, secret)
