"""Seed inputs for the fuzz targets: protected packets that authenticate under the
key the targets use (so that mutations start deep in unprotect) and browser-like
headers with plans (docs/DEVELOPERS.md).

    python fuzz/seeds.py fuzz/build/corpus
"""

import sys
from pathlib import Path
from struct import pack

from pylibsrtp import Policy, Session

KEY = bytes((i * 7 + 1) % 256 for i in range(46))
PROFILES = [
    (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    (Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
    (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
    (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
]


def rtp(seq: int, elements: bytes = b"", payload: bytes = b"\x10" * 40) -> bytes:
    first = 0x90 if elements else 0x80
    header = pack("!BBHLL", first, 96, seq, seq * 960, 0x01020304)
    if elements:
        elements += bytes(-len(elements) % 4)
        header += pack("!HH", 0xBEDE, len(elements) // 4) + elements
    return header + payload


def main(corpus: Path) -> None:
    srtp, rtp_dir = corpus / "fuzz_srtp", corpus / "fuzz_rtp"
    srtp.mkdir(parents=True, exist_ok=True)
    rtp_dir.mkdir(parents=True, exist_ok=True)
    browser = b"\x10\x9f\x22\x01\x02\x03\x31\x00\x07\x40\x30"
    for p, (profile, length) in enumerate(PROFILES):
        policy = Policy(key=KEY[:length], ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        session = Session(policy)
        for n, plain in enumerate([rtp(1), rtp(2, browser), rtp(65535, browser, b"")]):
            (srtp / f"rtp-{p}-{n}").write_bytes(bytes([p]) + session.protect(plain))
            (srtp / f"plain-{p}-{n}").write_bytes(bytes([p | 8]) + plain)
        report = pack("!BBHL", 0x81, 200, 6, 0x01020304) + bytes(20)
        (srtp / f"rtcp-{p}").write_bytes(bytes([p | 4]) + session.protect_rtcp(report))
        (srtp / f"rtcp-plain-{p}").write_bytes(bytes([p | 12]) + report)
    # kinds (id 1 audio level, 2 abs-send-time, 5 toffset), ids, payload type, SSRC,
    # mid element "1" on id 9, then the rewrite's numbers
    config = bytes([0, 2, 1, 0, 0, 3] + [0] * 10) + bytes([12, 13, 6, 111, 1, 2, 3, 2])
    config += b"\x901" + bytes(15) + bytes([7, 9, 200])
    assert len(config) == 44
    for n, packet in enumerate([rtp(5), rtp(6, browser), rtp(7, b"\x50\x00\x00\x10")]):
        (rtp_dir / f"plan-{n}").write_bytes(config + packet)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
