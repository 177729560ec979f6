"""Moving audio and video: the aiortc RTP relay (next issue)."""
