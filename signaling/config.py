"""Signaling's own settings, filled from the application settings."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SignalingConfig:
    ring_timeout: float = 20.0
    """Seconds an offer rings before it goes to the next expert."""
    grace_period: float = 30.0
    """Seconds a dropped participant has to come back before the call ends."""
    no_expert_wait: float = 120.0
    """Seconds a consultation waits with nobody of its department online."""
    missed_offers_before_away: int = 2
    """Missed offers in a row after which an expert is set away."""
    wrap_up_limit: float = 180.0
    """Seconds after a call in which the expert completes its record, offered nobody,
    before being set away (0: no wrap-up, offers resume when a call ends)."""
    default_handle_time: float = 300.0
    """Assumed call length for the wait estimate until calls have been measured."""
    handle_time_samples: int = 20
    """How many recent calls of a department the wait estimate averages."""
    rating_window: float = 600.0
    """Seconds after the end during which the kiosk may rate the consultation."""
    complaint_days: float = 7.0
    """Days a bad grade's follow-up has before it is overdue (--complaint-days)."""
    queue_update_delay: float = 1.0
    """Seconds a department's queue changes are gathered before kiosks and experts are told."""
    max_sockets_per_account: int = 8
    """socket.io connections one account may hold at once."""
    chat_per_minute: int = 30
    """Chat lines one account may send per minute."""
    session_check_interval: float = 30.0
    """Seconds between checks that every open socket's login session is still alive."""
    session_touch_interval: float = 60.0
    """Events refresh their session's idle timer at most this often."""
