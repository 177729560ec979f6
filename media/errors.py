"""Media errors.

MediaError
 ├── BadOffer            the SDP offer cannot be answered (malformed, no media, no shared codec)
 ├── UnknownCall         no relay for this call (ended, or never started)
 ├── NotAParticipant     the call declares no such leg (signaling names the call's legs)
 └── RelayUnavailable    the worker holding the call does not answer
"""


class MediaError(Exception):
    """Root of every error raised by ``media``."""


class BadOffer(MediaError):
    """The offer cannot be answered."""


class UnknownCall(MediaError):
    """No relay holds this call."""


class NotAParticipant(MediaError):
    """The call has no such participant: a leg outside the declared ones."""


class RelayUnavailable(MediaError):
    """The relay worker for this call is not reachable."""
