"""What one leg negotiated, read from its offer (the client's side) and answer
(the relay's side): per media section the kind, mid, codecs by payload type,
RTX pairs, header extension ids and SSRCs."""

from dataclasses import dataclass, field

from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap
from aiortc.sdp import MediaDescription, SessionDescription

from media.errors import BadOffer


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
    for theirs, ours in zip(offer.media, answer.media, strict=False):
        if ours.kind not in ("audio", "video") or ours.port == 0:
            continue
        direction = ours.direction or "sendrecv"
        section = Section(
            kind=ours.kind,
            mid=str(ours.rtp.muxId),
            relay_sends=direction in ("sendrecv", "sendonly"),
            relay_receives=direction in ("sendrecv", "recvonly"),
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
