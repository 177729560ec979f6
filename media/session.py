"""What one leg negotiated, read from its offer (the client's side) and answer
(the relay's side): per media section the kind, mid, codecs by payload type,
RTX pairs, header extension ids and SSRCs."""

from dataclasses import dataclass, field

from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap
from aiortc.sdp import MediaDescription, SessionDescription

from media.errors import BadOffer
from media.slots import MICROPHONE, Place, SlotError, places


@dataclass(frozen=True)
class CodecId:
    """A codec's identity across legs, whatever payload type each leg gave it."""

    mime: str
    clock_rate: int
    channels: int | None
    variant: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, codec: RTCRtpCodecParameters) -> "CodecId":
        mime = codec.mimeType.lower()
        variant: tuple[tuple[str, str], ...] = ()
        if mime == "video/h264":
            params = codec.parameters
            profile = str(params.get("profile-level-id", "42001f"))[:4].lower()
            variant = (
                ("packetization-mode", str(params.get("packetization-mode", "0"))),
                ("profile", profile),
            )
        return cls(
            mime, codec.clockRate, codec.channels if mime.startswith("audio") else None, variant
        )


@dataclass
class Section:
    """One m-line of a leg, seen from the relay."""

    kind: str
    mid: str
    relay_sends: bool
    relay_receives: bool
    place: Place = MICROPHONE
    """What the m-line carries (media/slots.py), from its index in the offer."""
    codecs: dict[int, CodecId] = field(default_factory=dict)
    """Primary payload types, in the answer's order of preference."""
    rtx_for: dict[int, int] = field(default_factory=dict)
    """primary payload type -> its RTX payload type"""
    rtx_apt: dict[int, int] = field(default_factory=dict)
    """RTX payload type -> primary payload type"""
    relay_ssrc: int | None = None
    relay_rtx_ssrc: int | None = None
    client_ssrcs: dict[int, bool] = field(default_factory=dict)
    """SSRCs the client announced -> True for an RTX one"""

    def payload_type_for(self, codec: CodecId) -> int | None:
        for pt, candidate in self.codecs.items():
            if candidate == codec:
                return pt
        return None


@dataclass
class Negotiated:
    sections: list[Section]
    extensions: HeaderExtensionsMap
    extension_ids: dict[str, int] = field(default_factory=dict)
    """The relay's header extensions on this leg: URI -> id (as answered)."""

    def section(self, kind: str) -> Section | None:
        return next((s for s in self.sections if s.kind == kind), None)


def offer_places(offer: SessionDescription) -> list[Place]:
    """What each of the offer's audio/video m-lines carries, in its order."""
    try:
        return places([m.kind for m in offer.media if m.kind in ("audio", "video")])
    except SlotError as exc:
        raise BadOffer(str(exc)) from None


def _ssrcs(media: MediaDescription) -> tuple[list[int], dict[int, int]]:
    """The announced SSRCs and the RTX SSRC of each primary (FID groups)."""
    ssrcs = list(dict.fromkeys(info.ssrc for info in media.ssrc))
    rtx: dict[int, int] = {}
    for group in media.ssrc_group:
        if group.semantic == "FID" and len(group.items) == 2:
            rtx[int(group.items[0])] = int(group.items[1])
    return ssrcs, rtx


def negotiated(offer_sdp: str, answer_sdp: str) -> Negotiated:
    try:
        offer = SessionDescription.parse(offer_sdp)
        answer = SessionDescription.parse(answer_sdp)
    except (ValueError, IndexError, KeyError) as exc:
        raise BadOffer(f"unreadable SDP: {exc}") from None
    sections: list[Section] = []
    extensions = HeaderExtensionsMap()
    extension_ids: dict[str, int] = {}
    placed = iter(offer_places(offer))
    for theirs, ours in zip(offer.media, answer.media, strict=False):
        if theirs.kind not in ("audio", "video"):
            continue
        place = next(placed)
        if ours.kind != theirs.kind or ours.port == 0:
            continue
        direction = ours.direction or "sendrecv"
        section = Section(
            kind=ours.kind,
            mid=str(ours.rtp.muxId),
            relay_sends=direction in ("sendrecv", "sendonly"),
            relay_receives=direction in ("sendrecv", "recvonly"),
            place=place,
        )
        for codec in ours.rtp.codecs:
            if codec.payloadType is None:
                continue
            if codec.mimeType.lower().endswith("/rtx"):
                apt = int(str(codec.parameters.get("apt", -1)))
                section.rtx_for[apt] = codec.payloadType
                section.rtx_apt[codec.payloadType] = apt
            else:
                section.codecs[codec.payloadType] = CodecId.of(codec)
        relay_ssrcs, relay_rtx = _ssrcs(ours)
        if relay_ssrcs:
            section.relay_ssrc = relay_ssrcs[0]
            section.relay_rtx_ssrc = relay_rtx.get(relay_ssrcs[0])
        client_ssrcs, client_rtx = _ssrcs(theirs)
        for ssrc in client_ssrcs:
            section.client_ssrcs[ssrc] = ssrc in client_rtx.values()
        extensions.configure(RTCRtpParameters(headerExtensions=list(ours.rtp.headerExtensions)))
        for extension in ours.rtp.headerExtensions:
            extension_ids[extension.uri] = extension.id  # the last wins, as in configure
        sections.append(section)
    if not sections:
        raise BadOffer("the offer has no audio or video")
    return Negotiated(sections, extensions, extension_ids)


TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def _sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    """The session lines and each media section's lines."""
    head: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    return head, sections


_DIRECTIONS = frozenset({"a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"})


def offer_sends(offer_sdp: str) -> bool:
    """Whether an offer would send on any audio or video m-line: its own direction,
    else the session's, else sendrecv (RFC 4566's default). Rejected m-lines (port
    0) count too: a receiver has no reason to offer one that sends."""
    head, sections = _sections(offer_sdp)
    default = next((line.strip() for line in head if line.strip() in _DIRECTIONS), "a=sendrecv")
    for lines in sections:
        kind = lines[0][2:].split(" ", 1)[0]
        if kind not in ("audio", "video"):
            continue
        direction = next((line.strip() for line in lines if line.strip() in _DIRECTIONS), default)
        if direction in ("a=sendrecv", "a=sendonly"):
            return True
    return False


def with_transport_cc(offer_sdp: str, answer_sdp: str) -> str:
    """The answer, accepting transport-wide congestion control wherever the offer
    asks for it: the sequence-number header extension (the offer's id) and the
    ``transport-cc`` feedback for each payload type the offer gave it (aiortc
    answers neither). The sender then measures its own link from the relay's
    feedback (media/twcc.py) instead of waiting for the far receiver's REMB."""
    _, offered = _sections(offer_sdp)
    head, answered = _sections(answer_sdp)
    out = list(head)
    for theirs, ours in zip(offered, answered, strict=False):
        extmap = next(
            (x for x in theirs if x.startswith("a=extmap:") and x.endswith(" " + TRANSPORT_CC_URI)),
            None,
        )
        wildcard = "a=rtcp-fb:* transport-cc" in theirs
        wanted = {
            x.split()[0][len("a=rtcp-fb:") :]
            for x in theirs
            if x.startswith("a=rtcp-fb:") and x.endswith(" transport-cc")
        }
        port = ours[0].split()[1] if len(ours[0].split()) > 1 else "0"
        if extmap is None or port == "0":
            out += ours
            continue
        extmap_id = extmap.split()[0][len("a=extmap:") :].split("/")[0]
        section: list[str] = []
        for line in ours:
            if line.startswith(f"a=extmap:{extmap_id} ") or line.endswith(" transport-cc"):
                continue  # never twice, and never another extension on that id
            section.append(line)
        # After the last extmap (or the mid), and each rtcp-fb after its rtpmap.
        anchor = max(
            (i for i, x in enumerate(section) if x.startswith(("a=extmap:", "a=mid:"))),
            default=len(section) - 1,
        )
        section.insert(anchor + 1, f"a=extmap:{extmap_id} {TRANSPORT_CC_URI}")
        result: list[str] = []
        for line in section:
            result.append(line)
            if line.startswith("a=rtpmap:"):
                pt = line.split()[0][len("a=rtpmap:") :]
                if (wildcard or pt in wanted) and "rtx/" not in line.lower():
                    result.append(f"a=rtcp-fb:{pt} transport-cc")
        out += result
    out += [line for section in answered[len(offered) :] for line in section]
    return "\r\n".join(out) + "\r\n"
