"""What a relay process has done since it started, for the operator's metrics."""

from dataclasses import asdict, dataclass


@dataclass
class RelayCounters:
    packets_forwarded: int = 0
    """RTP packets sent on a leg that came from another leg."""
    packets_forwarded_at_once: int = 0
    """Of those, sent where they arrived (the fast path: no coroutine, no queue)."""
    bytes_forwarded: int = 0
    packets_lost: int = 0
    """Packets receivers reported lost on the relay's streams (growth of their
    cumulative counts)."""
    nacks: int = 0
    """NACK packets received from receivers."""
    keyframe_requests: int = 0
    """PLIs sent to sources."""
    transport_feedback: int = 0
    """Transport-wide congestion control feedback packets sent to senders."""
    feedback_received: int = 0
    """Transport-wide feedback packets received from receivers on what the relay sent."""
    downlink_limits: int = 0
    """REMBs sent to sources from the relay's own estimate of their receivers' links."""
    feedback_dropped: int = 0
    """Transport-wide feedback packets left unread: beyond their leg's budget of
    statuses per second (media/twcc.py)."""
    internal_auth_failures: int = 0
    """Requests to this worker's internal API refused: unsigned, badly signed, stale
    or replayed (media/internal_auth.py)."""

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}
