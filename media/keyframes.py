"""Is this RTP payload the start of a keyframe? (VP8 and H.264, without decoding.)"""


def vp8_keyframe_start(payload: bytes) -> bool:
    """RFC 7741: S=1, PID=0, and the VP8 frame header's P bit clear."""
    if not payload:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:
        return False
    pos = 1
    if first & 0x80:
        if len(payload) <= pos:
            return False
        ext = payload[pos]
        pos += 1
        if ext & 0x80:  # picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # TL0PICIDX
            pos += 1
        if ext & 0x30:  # TID/KEYIDX
            pos += 1
    return len(payload) > pos and not payload[pos] & 0x01


def h264_keyframe_start(payload: bytes) -> bool:
    """An IDR slice or SPS, alone, in a STAP-A, or starting a FU-A (RFC 6184)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if pos + 2 < len(payload) and payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return False


def is_keyframe_start(mime: str, payload: bytes) -> bool:
    if mime == "video/vp8":
        return vp8_keyframe_start(payload)
    if mime == "video/h264":
        return h264_keyframe_start(payload)
    return True
