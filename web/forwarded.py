"""Who the client really is and which origin it really uses, behind proxies or not.

Pure functions of the peer address, the headers and the configuration, so
that the rules are tested as tables. Only entries that trusted proxies
appended are believed: a client can write anything into ``X-Forwarded-For``
or ``X-Forwarded-Proto`` itself, so the left-most entries are its own words.
And only a peer that is a proxy has its forwarded headers believed at all: a
client that reaches a node's port directly is its own address, whatever it
writes (``X-Forwarded-For: 127.0.0.1`` once opened /metrics and let a fresh
value per guess escape the login throttle).
"""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProxyTrust:
    """Which hops in front of the server are proxies whose headers count.

    ``hops``: that many right-most ``X-Forwarded-For`` entries were appended by
    proxies, the immediate peer being the last proxy, which must then be on this
    machine (a loopback peer: settings refuse hop counting on a listener others
    can reach); ``networks``: entries from these addresses are proxies, walked
    from the right. Neither: no proxy, headers ignored.
    """

    hops: int = 0
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, behind_proxy: bool, trusted: Sequence[str]) -> "ProxyTrust":
        if not behind_proxy:
            return cls()
        if not trusted:
            return cls(hops=1)
        if len(trusted) == 1 and trusted[0].isdigit():
            return cls(hops=int(trusted[0]))
        return cls(networks=tuple(ipaddress.ip_network(t, strict=False) for t in trusted))

    @property
    def enabled(self) -> bool:
        return self.hops > 0 or bool(self.networks)

    def is_proxy(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in net for net in self.networks)

    def peer_is_proxy(self, peer: str) -> bool:
        """Whether the immediate peer is a proxy (so its forwarded headers count)."""
        if self.hops:
            # A hop count names no address: only a proxy on this machine can be meant.
            return _is_loopback(peer)
        return self.is_proxy(peer)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, an IPv4 one seen through a dual-stack socket as itself."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_loopback(address: str) -> bool:
    ip = _ip(address)
    return ip is not None and ip.is_loopback


def _entries(header: str) -> list[str]:
    return [e.strip() for e in header.split(",") if e.strip()]


def client_address(peer: str, forwarded_for: str, trust: ProxyTrust) -> str:
    """The address of the client as the trusted proxies saw it."""
    if not trust.enabled or not trust.peer_is_proxy(peer):
        return peer
    entries = _entries(forwarded_for)
    if trust.hops:
        # The peer is the last proxy; it appended the address of the hop before it,
        # and so on: the (hops)-th entry from the right is what the first proxy saw.
        if len(entries) >= trust.hops:
            return entries[-trust.hops][:64]
        return (entries[0] if entries else peer)[:64]
    for entry in reversed(entries):
        if not trust.is_proxy(entry):
            return entry[:64]
    return (entries[0] if entries else peer)[:64]


def public_scheme(served_tls: bool, peer: str, forwarded_proto: str, trust: ProxyTrust) -> str:
    """The scheme the browser used: ours if we end TLS, else what a trusted proxy says
    (a proxy that ends TLS is the reason --behind-proxy exists: https by default)."""
    if served_tls:
        return "https"
    if trust.enabled and trust.peer_is_proxy(peer):
        proto = (_entries(forwarded_proto) or ["https"])[-1].lower()
        return proto if proto in ("http", "https") else "https"
    return "http"


def origin_allowed(origin: str | None, scheme: str, host_header: str, names: Sequence[str]) -> bool:
    """Same-origin rule for socket.io's handshake: the page's ``Origin`` must be the
    scheme we really serve and the host the browser addressed (or a configured name
    of this server, with the same port). No ``Origin``: not a browser, allowed."""
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != scheme or not parts.hostname:
        return False
    default = 443 if scheme == "https" else 80
    origin_host = _host_port(parts.hostname, port or default)
    try:
        addressed = urlsplit(f"//{host_header}")
        addressed_port = addressed.port or default
        addressed_host = addressed.hostname or ""
    except ValueError:
        return False
    if addressed_host and origin_host == _host_port(addressed_host, addressed_port):
        return True
    return any(origin_host == _host_port(name, addressed_port) for name in names)


def _host_port(host: str, port: int) -> tuple[str, int]:
    return (host.lower().strip("[]"), port)
