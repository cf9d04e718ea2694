"""What a message that came back to a bounce address says (pure: bytes in, a report out).

- An RFC 3464 delivery status notification (``multipart/report; report-type=
  delivery-status``): per recipient, ``Action: failed`` with a 5.x.x status is a hard
  bounce; ``Action: delayed``, or any 4.x.x status, is a soft one; delivered, relayed and
  expanded are no bounce at all.
- An RFC 5965 feedback report (``report-type=feedback-report``) is a complaint, except
  ``Feedback-Type: not-spam``, which is none.
- Anything else goes to flufl.bounce's detectors (the prose of Exim, Postfix, qmail,
  Exchange and a dozen more): a permanent failure is a hard bounce, a temporary one soft.
- What none of them recognises (an auto-reply, a reader's answer) is no report.

The message is hostile input: its text reaches a report only as one short, printable line.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

log = logging.getLogger("digest")
DETAIL_CHARS = 200
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


@dataclass(frozen=True)
class Report:
    kind: str  # "hard", "soft" or "complaint" (digest.store.feedback.KINDS)
    detail: str  # one printable line: the status and diagnostic, or the feedback type
    recipients: tuple[str, ...] = ()  # the original recipients it names, as it names them


def read(raw: bytes) -> Report | None:
    """The report in one message that came back, or None when it is not one."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.get_content_type() == "multipart/report":
        kind = str(msg.get_param("report-type") or "").lower()
        if kind == "delivery-status":
            found = _dsn(msg)
            if found is not None or _has_part(msg, "message/delivery-status"):
                return found
        elif kind == "feedback-report":
            return _arf(msg)
    return _prose(msg)


def line(text: str) -> str:
    """Hostile text as one short printable line."""
    return _UNPRINTABLE.sub(" ", text).strip()[:DETAIL_CHARS]


def _has_part(msg: Message, content_type: str) -> bool:
    return any(part.get_content_type() == content_type for part in msg.walk())


def _dsn(msg: Message) -> Report | None:
    worst: Report | None = None
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:  # the first holds the per-message fields
            if not isinstance(block, Message):
                continue
            report = _recipient(block)
            if report is not None and (worst is None or worst.kind == "soft"):
                worst = report
    return worst


def _recipient(block: Message) -> Report | None:
    action = (block.get("Action") or "").strip().lower()
    status = _STATUS.search(block.get("Status") or "")
    code = status.group(0) if status else ""
    if action in ("delivered", "relayed", "expanded") or code.startswith("2"):
        return None
    recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
    diagnostic = line(str(block.get("Diagnostic-Code") or ""))
    detail = line(f"{code or action or 'unknown status'} {diagnostic}")
    if action == "delayed" or code.startswith("4"):
        return Report("soft", detail, recipient)
    if action == "failed" or code.startswith("5"):
        return Report("hard", detail, recipient)
    return None


def _address(field: str) -> tuple[str, ...]:
    # "rfc822; ann@example.org": the address type, then the address.
    _, _, address = str(field).partition(";")
    address = line(address).strip("<>")
    return (address,) if address else ()


def _arf(msg: Message) -> Report | None:
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        fields = _fields_of(part)
        feedback_type = line(fields.get("Feedback-Type") or "abuse").lower()
        if feedback_type == "not-spam":
            return None
        agent = line(fields.get("User-Agent") or fields.get("Reporting-MTA") or "")
        detail = f"{feedback_type} report" + (f" by {agent}" if agent else "")
        recipients = tuple(line(r).strip("<>") for r in fields.get_all("Original-Rcpt-To") or [])
        return Report("complaint", line(detail), recipients)
    return None


def _fields_of(part: Message) -> Message:
    """The header fields a machine-readable report part carries (parsed as a body of
    fields when the email package did not already)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else Message()
    text = part.get_payload(decode=True)
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    return email.message_from_string(body.lstrip("\r\n"), policy=email.policy.compat32)


def _prose(msg: Message) -> Report | None:
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # a detector that trips on a strange message: no report
        log.debug("bounce detectors gave up: %s", type(exc).__name__)
        return None
    if permanent:
        names = tuple(sorted(a.decode("ascii", "replace") for a in permanent))
        return Report("hard", line(f"permanent failure (in prose) for {', '.join(names)}"), names)
    if temporary:
        names = tuple(sorted(a.decode("ascii", "replace") for a in temporary))
        return Report("soft", line(f"temporary failure (in prose) for {', '.join(names)}"), names)
    return None
