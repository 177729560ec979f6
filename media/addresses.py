"""Which network addresses media may use: with the relay on loopback only
(``--media-address 127.0.0.1``, as in tests) nothing is sent anywhere else."""

import ipaddress


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a hostname (mDNS ".local") is never loopback here


def reachable_candidates(sdp: str, local_addresses: list[str]) -> str:
    """Drop the client's non-loopback candidates when the relay gathers on loopback
    only (``--media-address 127.0.0.1``): such a relay must not send connectivity
    checks anywhere else, even to another address of the same machine."""
    if not local_addresses or not all(is_loopback(a) for a in local_addresses):
        return sdp
    kept = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split(" ")
            if len(parts) > 4 and not is_loopback(parts[4]):
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"
