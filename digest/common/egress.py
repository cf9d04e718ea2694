"""Where a source may lead digest: which files it may read and which addresses it may reach.

A source is trusted as far as its *configured* URL, never further on the word of its bytes:

- A local source (a path or ``file://``) is the operator's own: it may read files.
- A remote source (http/https) may lead only to other http(s) URLs, by redirect or by a
  feed link its page advertises; never to a file.
- A remote source connects only to public addresses, checked on the address each name
  resolves to at connection time (so a name that later resolves elsewhere gains nothing).
  Its configured *origin* (host and port) may be more: if the URL itself names a loopback
  or private host, or the operator allows it (``[fetch] allow_private`` or the source's
  ``allow_private``), that host on that port may be reached at whatever address it has.
  Only that origin: another port of the same host, another private host, a redirect's
  target, and every link its content names (article pages for full text, WebSub hubs,
  advertised feeds) get the public rule. A local source's content gets the public rule too.

Pure: resolving names is the :class:`Resolver`'s job, injected by the fetcher.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6052's NAT64 prefix carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not public, whatever this Python's ipaddress tables say (they changed in 3.11.10 and
# 3.12.4): IANA's special-purpose registries, plus deprecated IPv6 site-local space.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
        "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
        "240.0.0.0/4", "255.255.255.255/32", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
        "3fff::/20", "fc00::/7", "fec0::/10",
    )
)  # fmt: skip


@dataclass(frozen=True)
class Resolved:
    """One address a name resolves to, and why a remote source may not connect to it
    (None: a public address)."""

    ip: str
    refusal: str | None = None


Resolver = Callable[[str, int], Sequence[Resolved]]


@dataclass(frozen=True)
class FetchPolicy:
    """What one source's fetches may do."""

    local: bool = False  # read files and folders
    # The configured URL's origin (host, port), reached at whatever address it resolves to.
    trusted: tuple[str, int] | None = None


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


def refusal(address: str | IPAddress) -> str | None:
    """Why an address is not public ("a loopback address", ...), or None when it is."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refusal(embedded)
            return f"{inner} (inside {ip})" if inner else None
    for test, label in (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "the unspecified address"),
        (
            ip.is_private or any(ip in net for net in _NOT_PUBLIC if net.version == ip.version),
            "a private address",
        ),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),
    ):
        if test:
            return label
    return None


def literal(host: str) -> IPAddress | None:
    """The IP address a URL's host spells out, or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def host_of(url_or_host: str) -> str:
    """A host as the policy compares hosts: lower case, no brackets, no trailing dot."""
    host = urlsplit(url_or_host).hostname or "" if "://" in url_or_host else url_or_host
    return host.strip("[]").lower().rstrip(".")


def names_private_host(url: str) -> bool:
    """Whether ``url``'s host is a non-public address or a name that is loopback by
    definition (``localhost``, RFC 6761). Other names are judged by what they resolve to."""
    host = host_of(url)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = literal(host)
    return ip is not None and refusal(ip) is not None


def origin_of(url: str) -> tuple[str, int]:
    """A URL's host and port, as connections are made to them (the scheme's default port)."""
    parts = urlsplit(url)
    return host_of(url), parts.port or (443 if parts.scheme.lower() == "https" else 80)


def policy_for(url: str, *, allow_private: bool = False, added: bool = False) -> FetchPolicy:
    """The policy of a source configured at ``url``: a private host the config file names
    is the operator's choice, trusted; one given at run time (``added``: the CLI, the API,
    an OPML file) is refused unless ``allow_private``, and never reads a local path."""
    if not is_remote(url):
        return FetchPolicy(local=not added)
    trusted = allow_private or (names_private_host(url) and not added)
    return FetchPolicy(trusted=origin_of(url) if trusted else None)


def system_resolver(host: str, port: int) -> list[Resolved]:
    """The operating system's answer for ``host``, each address judged by :func:`refusal`."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc
    seen: list[Resolved] = []
    for _family, _type, _proto, _name, sockaddr in found:
        ip = str(sockaddr[0])  # an IPv6 link-local address keeps its zone ("%eth0") to connect
        if all(r.ip != ip for r in seen):
            seen.append(Resolved(ip, refusal(ip.split("%", 1)[0])))
    return seen
