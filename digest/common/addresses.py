"""Email addresses in the one normal form digest stores and compares (pure; no DNS)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from digest.common.errors import SubscriberError


def normalise_email(address: str) -> str:
    """The address in normal form, or SubscriberError saying what is wrong with it.

    Only addresses every SMTP server takes: a non-ASCII part before the @ needs SMTPUTF8,
    which digest does not speak, so it is refused here, at the door, rather than failing
    when a message is composed. A non-ASCII domain is kept in its ASCII (IDNA) form."""
    try:
        # No DNS lookups: tests and offline operators must not depend on the network.
        checked = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"{address!r} is not a valid email address: {exc}") from exc
    return str(checked.ascii_email or checked.normalized)
