"""The client's address for per-address rate limits, behind trusted proxies.

Behind nginx or a load balancer every request comes from the proxy, so a limit keyed on
the TCP peer would make every tourist share one budget. Only when the peer is a proxy the
operator named (`serve --trusted-proxy CIDR`) is X-Forwarded-For read, right to left,
skipping trusted hops: the first untrusted address is the client (anything left of it could
be forged by the client). The address is used in memory only, never logged or stored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; ValueError naming the one that is neither."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy {value!r} is not an address or a CIDR "
                             "(e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: Sequence[Network]) -> str:
    """The address to rate-limit: the peer, unless it is a trusted proxy; then the rightmost
    X-Forwarded-For entry that is not itself a trusted proxy."""
    peer = peer or "unknown"
    if not trusted or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")][-32:]  # bounded work
    for hop in reversed(hops):
        if not hop:
            continue
        if not _trusted(hop, trusted):
            return hop[:64]
    return peer
