"""Who a client is, for every limit counted per client (the subscribe form, searches, the
inbound SMTP server): its IPv4 address, or its IPv6 /64, since one host holds a whole /64
as easily as one address. An IPv4 address inside IPv6 (``::ffff:a.b.c.d``) is that IPv4
address; what is no IP address (a Unix socket's peer) is itself."""

from __future__ import annotations

import ipaddress


def client_key(host: str) -> str:
    """The key ``host`` (an address as the server saw it) is counted under."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0].strip("[]"))
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
