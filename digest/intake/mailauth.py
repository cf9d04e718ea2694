"""Who sent a message: its DKIM signatures (RFC 6376) verified by dkimpy against the keys
DNS publishes, and the From domain's alignment with a verified signer (DMARC's, RFC 7489,
made stricter for want of the public suffix list: the signer is the From domain or a domain
above it, never one below it, which may be someone else's, as user.github.io is).

The lookups happen here, in the service, before the message is read (:func:`key_names`
reads only the header block, :func:`lookup` asks DNS); the verifying happens where the
message is read, in the confined child (:func:`verified_signers`, given the answers), so
neither DNS nor the message's bytes ever meet in one place that a runaway could stop.

A signature with a body length limit (``l=``) counts for nothing: what follows the signed
part could be anyone's. At most ``MAX_SIGNATURES`` are looked at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.message import Message

MAX_SIGNATURES = 4
_TAG = re.compile(r"(?:^|;)\s*([a-z]{1,10})\s*=\s*([^;]{0,600})", re.I)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
TIMEOUT = 5.0


def _tags(value: str) -> dict[str, str]:
    return {name.lower(): re.sub(r"\s+", "", body) for name, body in _TAG.findall(value[:4096])}


def _hostname(text: str) -> str | None:
    name = text.lower().rstrip(".")
    labels = name.split(".")
    return name if len(name) <= 253 and labels and all(_LABEL.match(label) for label in labels) else None


def key_names(headers: Message, sender: str) -> list[str]:
    """The DNS names of the keys (``s._domainkey.d``) of the message's DKIM signatures that
    could count for ``sender``: by a domain aligned with it, without ``l=``; at most
    ``MAX_SIGNATURES``. (Nothing else is asked of DNS on a stranger's word.)"""
    names: list[str] = []
    for value in (headers.get_all("DKIM-Signature") or [])[:MAX_SIGNATURES]:
        tags = _tags(str(value))
        domain, selector = _hostname(tags.get("d", "")), _hostname(tags.get("s", ""))
        if not domain or not selector or "l" in tags or not aligned(domain, sender):
            continue
        if f"{selector}._domainkey.{domain}" not in names:
            names.append(f"{selector}._domainkey.{domain}")
    return names


def lookup(names: list[str], nameserver: tuple[str, int] | None, timeout: float = TIMEOUT) -> dict[str, str]:
    """Each name's TXT record (its strings joined) where DNS has one; names it has none for
    are left out; ``timeout`` seconds for all of them. OSError when DNS cannot be asked
    (the message waits: 451)."""
    import time

    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=nameserver is None)
    if nameserver is not None:
        resolver.nameservers, resolver.port = [nameserver[0]], nameserver[1]
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    for name in names:
        resolver.lifetime = deadline - time.monotonic()
        if resolver.lifetime <= 0:
            raise OSError("DNS: out of time")
        try:
            answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            raise OSError(f"DNS: {type(exc).__name__}") from exc
        found[name] = "".join(b"".join(record.strings).decode("ascii", "replace") for record in answer)
    return found


def verified_signers(raw: bytes, answers: Mapping[str, str]) -> list[str]:
    """The domains whose signatures on ``raw`` verify with the keys in ``answers`` (name →
    TXT record, as :func:`lookup` gave them: nothing else is asked of DNS), and cover what
    the article is made of: the whole body (no ``l=``), From and Subject."""
    import dkim

    def from_answers(name: bytes, timeout: float = TIMEOUT) -> bytes | None:
        found = answers.get(name.decode("ascii", "replace").lower().rstrip("."))
        return found.encode("ascii", "replace") if found is not None else None

    signers: list[str] = []
    checker = dkim.DKIM(raw, minkey=1024)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    for index in range(min(count, MAX_SIGNATURES)):
        try:
            good = checker.verify(idx=index, dnsfunc=from_answers)
        except Exception:  # a malformed signature or key: it verifies nothing
            good = False
        covered = set(getattr(checker, "include_headers", ()))
        if (
            good
            and b"l" not in checker.signature_fields
            and {b"from", b"subject"} <= covered
            and checker.domain
        ):
            domain = _hostname(checker.domain.decode("ascii", "replace"))
            if domain and domain not in signers:
                signers.append(domain)
    return signers


def aligned(signer: str, address: str) -> bool:
    """Whether a verified signer vouches for an address's domain: it is that domain, or a
    domain above it (not a top-level one)."""
    domain = address.rpartition("@")[2].lower().rstrip(".")
    signer = signer.lower().rstrip(".")
    if not domain or "." not in signer:
        return False
    return domain == signer or domain.endswith("." + signer)
