"""Reading what a leg negotiated, and advertising a public address."""

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.addresses import reachable_candidates
from media.aiortc_private import gathering_addresses, restrict_host_addresses
from media.leg import advertise_public_address
from media.session import CodecId


def test_h264_profiles_and_packetization_modes_are_different_codecs() -> None:
    def h264(profile: str, mode: str, pt: int) -> CodecId:
        return CodecId.of(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=pt,
                parameters={"profile-level-id": profile, "packetization-mode": mode},
            )
        )

    assert h264("42e01f", "1", 102) == h264("42e01f", "1", 125)
    assert h264("42e01f", "1", 102) != h264("42e01f", "0", 102)
    assert h264("42e01f", "1", 102) != h264("640c1f", "1", 102)
    vp8 = CodecId.of(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96))
    assert vp8 == CodecId.of(
        RTCRtpCodecParameters(mimeType="video/vp8", clockRate=90000, payloadType=120)
    )


def test_public_address_replaces_candidate_addresses() -> None:
    sdp = "v=0\r\nc=IN IP4 10.0.0.5\r\na=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
    out = advertise_public_address(sdp, "203.0.113.7")
    assert "a=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host" in out
    assert "c=IN IP4 203.0.113.7" in out and "10.0.0.5" not in out
    assert advertise_public_address(sdp, None) == sdp


OFFER_CANDIDATES = (
    "v=0\r\n"
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    "a=candidate:2 1 udp 2130706431 192.0.2.2 40002 typ host\r\n"
    "a=candidate:3 1 udp 2130706431 3f1c2a.local 40004 typ host\r\n"
    "a=candidate:4 1 udp 2130706431 ::1 40006 typ host\r\n"
)


def test_a_loopback_relay_keeps_only_loopback_candidates() -> None:
    kept = reachable_candidates(OFFER_CANDIDATES, ["127.0.0.1"])
    assert "127.0.0.1 40000" in kept and "::1 40006" in kept
    assert "192.0.2.2" not in kept and ".local" not in kept


def test_a_relay_on_real_interfaces_keeps_every_candidate() -> None:
    assert reachable_candidates(OFFER_CANDIDATES, ["192.0.2.2"]) == OFFER_CANDIDATES
    assert reachable_candidates(OFFER_CANDIDATES, ["127.0.0.1", "192.0.2.2"]) == OFFER_CANDIDATES
    assert reachable_candidates(OFFER_CANDIDATES, []) == OFFER_CANDIDATES


def test_gathering_addresses_follow_the_restriction() -> None:
    restrict_host_addresses(["127.0.0.1"])
    try:
        assert gathering_addresses() == ["127.0.0.1"]
    finally:
        restrict_host_addresses([])
