"""Where digest's mail goes: the one factory of transports, the SMTP pool of ``[smtp]`` or
the outbox folder, each message signed on its way with ``[dkim]`` (kept apart from both, so
neither the transports nor the signing import the other)."""

from __future__ import annotations

from digest.config import Settings
from digest.mail.dkim import Signed, load_signer
from digest.mail.outbox import Outbox
from digest.mail.transport import SmtpPool, Transport


def transport_for(settings: Settings, *, backoff: float = 0.5) -> Transport:
    """The SMTP pool of ``[smtp]``, or the outbox folder when no server is configured; with
    ``[dkim]``, every message signed on its way to it."""
    inner: Transport = (
        Outbox(settings.outbox.path)
        if settings.smtp is None
        else SmtpPool(settings.smtp, size=settings.smtp.pool, rate=settings.smtp.rate, backoff=backoff)
    )
    if settings.dkim is None:
        return inner
    dkim = settings.dkim
    return Signed(inner, load_signer(dkim.domain, dkim.selector, dkim.key_file))


def destination(settings: Settings) -> str:
    """Where messages go, as the log and the CLI say it: "written to outbox/" (no [smtp]) or
    "sent to HOST:PORT"."""
    smtp = settings.smtp
    return f"written to {settings.outbox.path}/" if smtp is None else f"sent to {smtp.host}:{smtp.port}"
