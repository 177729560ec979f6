"""Media settings, filled from the application settings."""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class MediaConfig:
    addresses: tuple[str, ...] = ()
    """Local addresses to gather ICE candidates on; empty: every interface but loopback."""
    public_address: str | None = None
    """Address to advertise instead of the local one (1:1 NAT in front of the relay)."""
    workers: int = os.cpu_count() or 1
    """Relay worker processes; 0 runs the relay inside the main process."""
    datapath: str = "auto"
    """Where relays forward steady packets: auto, native or python. Chosen per process
    with media/datapath.py ``select``, which the app's start and each worker process
    call with it (a LocalRelayPool made directly takes the process's choice)."""
    internal_host: str = "127.0.0.1"
    """Where the relay workers listen for the deployment's processes (their internal
    HTTP API, guarded by the cluster secret)."""
    internal_port: int = 0
    """The first worker's port (the next ones count up from it); 0: any free port."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs the relay's legs gather candidates with, as the pages do."""
    turn_secret: str | None = None
    """The secret shared with the TURN server, for credentials that expire."""
    turn_ttl: float = 300.0
    """Seconds the relay's TURN credentials stay valid for a new allocation (one made
    in time lasts as long as its leg: coturn checks them only when allocating)."""
