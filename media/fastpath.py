"""The RTP header of a steady stream, rewritten as bytes where the datagram arrives.

A forwarded packet whose stream is steady (same source, offsets set, not waiting
for a keyframe, not a retransmission) needs only new header bytes: payload type,
sequence number, timestamp, SSRC and header extensions in the destination leg's
ids. Everything about a header that this does not expect (CSRCs, padding, a
two-byte extension profile, an extension it would have to re-encode) makes
``plan_header`` answer None, and the packet takes the general path
(``OutboundStream.rewrite``), which this reproduces byte for byte
(tests/media/test_fastpath.py holds them to each other).

The plan is made from the clear header of the packet as it arrived, before
SRTP unprotect: SRTP encrypts the payload only, so the decision to take the
fast path never needs the packet decrypted first.
"""

from dataclasses import dataclass
from struct import pack_into

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

_KEPT = (ABS_SEND_TIME, AUDIO_LEVEL)
"""Extensions forwarded with their value, in the order the general path writes them."""
_SIZES = {ABS_SEND_TIME: 3, AUDIO_LEVEL: 1}


@dataclass(frozen=True)
class ExtensionPlan:
    """How one source leg's extensions become one destination leg's."""

    source_kind: dict[int, str]
    """source extension id -> its URI (only those the source leg negotiated)"""
    target_id: dict[str, int]
    """URI -> the destination leg's id, for the extensions forwarded with a value"""
    mid_element: bytes
    """The destination's mid as a one-byte-header element (empty if it has none)."""
    slow_ids: frozenset[int]
    """Source ids the general path would re-encode (toffset): such packets go there."""
    transport_id: int = 0
    """The destination's id for the relay's own transport-wide sequence number
    (0: the destination did not negotiate transport-cc)."""

    @classmethod
    def between(cls, source: dict[str, int], target: dict[str, int], mid: str) -> "ExtensionPlan":
        mid_id = target.get(MID)
        mid_bytes = mid.encode()
        mid_element = b""
        if mid_id and mid_bytes:
            if mid_id > 14 or len(mid_bytes) > 16:
                # A two-byte header would be needed: leave the whole stream to the
                # general path (no id is ever this large in a browser's offer).
                return cls({}, {}, b"", frozenset(range(256)))
            mid_element = bytes([(mid_id << 4) | (len(mid_bytes) - 1)]) + mid_bytes
        transport_id = target.get(TRANSPORT_CC, 0)
        if transport_id > 14:
            return cls({}, {}, b"", frozenset(range(256)))
        slow = frozenset(i for uri, i in source.items() if uri == TOFFSET and target.get(TOFFSET))
        kept = {uri: target[uri] for uri in _KEPT if target.get(uri) and target[uri] <= 14}
        return cls({i: uri for uri, i in source.items()}, kept, mid_element, slow, transport_id)


@dataclass(frozen=True)
class HeaderPlan:
    """A packet's new header, all but sequence number and timestamp, and where its
    payload starts."""

    head: bytearray
    payload_at: int
    transport_at: int = 0
    """Where the relay's transport-wide sequence number goes in ``head`` (0: none)."""


def _extension_elements(data: bytes) -> tuple[list[tuple[int, int, int]], int] | None:
    """A packet's one-byte header extension elements as (id, where the value
    starts, its size), and where its payload starts; None if the block is
    two-byte, malformed or runs past the packet. The caller has ruled out CSRCs
    and short packets."""
    if not data[0] & 0x10:
        return [], 12
    if len(data) < 16 or data[12] != 0xBE or data[13] != 0xDE:
        return None
    end = 16 + 4 * ((data[14] << 8) | data[15])
    if end > len(data):
        return None
    elements: list[tuple[int, int, int]] = []
    at = 16
    while at < end:
        byte = data[at]
        if byte == 0:
            at += 1
            continue
        element_id, size = byte >> 4, (byte & 0x0F) + 1
        if element_id == 15 or at + 1 + size > end:
            return None
        elements.append((element_id, at + 1, size))
        at += 1 + size
    return elements, end


def plan_header(
    data: bytes, plan: ExtensionPlan, payload_type: int, ssrc: int
) -> HeaderPlan | None:
    """The destination's header for ``data`` (an RTP packet, protected or not), or
    None if it needs the general path."""
    first = data[0]
    if first & 0x2F or len(data) < 12:
        # Padding or CSRCs (or a short packet): the general path handles them.
        return None
    found = _extension_elements(data)
    if found is None:
        return None
    elements_in, payload_at = found
    kept: dict[str, bytes] = {}
    for element_id, at, size in elements_in:
        if element_id in plan.slow_ids:
            return None
        uri = plan.source_kind.get(element_id)
        # Anything else (mid, rid, transport-wide sequence, an id the source never
        # negotiated) is dropped, as the general path drops it.
        if uri in plan.target_id:
            if size != _SIZES[uri]:
                return None
            kept[uri] = data[at : at + size]
    elements = bytearray(plan.mid_element)
    for uri in _KEPT:
        value = kept.get(uri)
        if value is not None:
            elements.append((plan.target_id[uri] << 4) | (len(value) - 1))
            elements += value
    transport_at = 0
    if plan.transport_id:
        # Last, as the general path writes it; its value is set per packet.
        elements.append((plan.transport_id << 4) | 1)
        transport_at = 16 + len(elements)
        elements += b"\0\0"
    if elements:
        elements += bytes(-len(elements) % 4)
        head = bytearray(16 + len(elements))
        head[0] = 0x90
        head[12:14] = b"\xbe\xde"
        pack_into("!H", head, 14, len(elements) // 4)
        head[16:] = elements
    else:
        head = bytearray(12)
        head[0] = 0x80
    head[1] = (data[1] & 0x80) | payload_type
    pack_into("!L", head, 8, ssrc)
    return HeaderPlan(head, payload_at, transport_at)


def stamp(
    plan: HeaderPlan, sequence_number: int, timestamp: int, transport_sequence: int = 0
) -> bytes:
    """The header with its sequence number, timestamp and (where the plan has a
    place for it) transport-wide sequence number, as bytes (the plan's buffer is
    reused for the next destination)."""
    pack_into("!HL", plan.head, 2, sequence_number, timestamp)
    if plan.transport_at:
        pack_into("!H", plan.head, plan.transport_at, transport_sequence)
    return bytes(plan.head)


def transport_sequence(data: bytes, extension_id: int) -> int | None:
    """The transport-wide sequence number a packet carries under ``extension_id``
    (one-byte header extensions only), or None."""
    if len(data) < 16 or data[0] & 0x1F != 0x10:
        return None  # no extension, or CSRCs before it
    found = _extension_elements(data)
    for element_id, at, size in found[0] if found is not None else ():
        if element_id == extension_id and size == 2:
            return (data[at] << 8) | data[at + 1]
    return None
