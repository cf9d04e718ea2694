"""What a message that came back to a bounce address says (pure: bytes in, a report out).

- An RFC 3464 delivery status notification (``multipart/report; report-type=
  delivery-status``): per recipient, ``Action: failed`` with a 5.x.x status is a hard
  bounce, with a 4.x.x status (the server gave up on a temporary failure) a soft one.
  ``delayed`` is a warning (the message may yet arrive), and delivered, relayed and
  expanded are no bounce at all.
- An RFC 5965 feedback report (``report-type=feedback-report``) of type abuse, fraud or
  virus is a complaint; other types (not-spam, auth-failure, other) are none.
- Anything else, unless it says it is an automatic reply (``Auto-Submitted``,
  ``Precedence``), goes to flufl.bounce's detectors (the prose of Exim, Postfix, qmail,
  Exchange and a dozen more): a permanent failure is a hard bounce, a temporary one soft.
  Such a report names the addresses that failed, and counts only for the subscriber it
  names (:attr:`Report.named`).
- What none of them recognises (an auto-reply, a reader's answer) is no report.

The message is hostile input: one with more than ``MAX_PARTS`` MIME parts is read as no
report before it is parsed (parsing is what costs), a prose detector sees at most
``PROSE_BYTES``, anything the email package or a detector trips on is no report, and its
text reaches a report only as one short, printable line. The service reads it in a
confined child process (:mod:`digest.common.confined`): some detectors' regular expressions
backtrack for minutes on a crafted line.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import asdict, dataclass
from email.message import Message

from flufl.bounce import all_failures

log = logging.getLogger("digest")
DETAIL_CHARS = 200
MAX_PARTS = 64  # a real report has 2 to 4
PROSE_BYTES = 256 * 1024
COMPLAINTS = ("abuse", "fraud", "virus")
_BOUNDARY_LINES = re.compile(rb"(?m)^--")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


@dataclass(frozen=True)
class Report:
    kind: str  # "hard", "soft" or "complaint" (digest.store.feedback.KINDS)
    detail: str  # one printable line: the status and diagnostic, or the feedback type
    recipients: tuple[str, ...] = ()  # the original recipients it names, as it names them
    named: bool = False  # it counts only for a subscriber among ``recipients`` (prose)

    def is_about(self, email: str) -> bool:
        return not self.named or email.lower() in {r.lower() for r in self.recipients}


def read_as_json(raw: bytes) -> dict[str, object] | None:
    """:func:`read`, as the confined child hands it back (see :mod:`digest.common.confined`)."""
    report = read(raw)
    return None if report is None else asdict(report)


def report_of(found: object) -> Report | None:
    """The report :func:`read_as_json` gave, checked as what it is: the child's output."""
    if found is None:
        return None
    if not isinstance(found, dict) or found.get("kind") not in ("hard", "soft", "complaint"):
        raise ValueError("not a report")
    recipients = found.get("recipients")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise ValueError("not a report")
    return Report(
        str(found["kind"]), line(str(found.get("detail", ""))), tuple(recipients), bool(found.get("named"))
    )


def read(raw: bytes) -> Report | None:
    """The report in one message that came back, or None when it is not one."""
    if len(_BOUNDARY_LINES.findall(raw)) > MAX_PARTS:
        return None
    try:
        return _read(email.message_from_bytes(raw, policy=email.policy.compat32), len(raw))
    except Exception as exc:
        log.info("a message that came back could not be read (%s)", type(exc).__name__)
        return None


def _read(msg: Message, size: int) -> Report | None:
    if msg.get_content_type() == "multipart/report":
        kind = str(msg.get_param("report-type") or "").lower()
        if kind == "delivery-status":
            found = _dsn(msg)
            if found is not None or _has_part(msg, "message/delivery-status"):
                return found
        elif kind == "feedback-report":
            return _arf(msg)
    if _automatic(msg) or size > PROSE_BYTES:
        return None
    return _prose(msg)


def _automatic(msg: Message) -> bool:
    """An automatic reply says so (RFC 3834; Precedence by custom): no bounce in prose."""
    submitted = _field(msg, "Auto-Submitted").lower()
    precedence = _field(msg, "Precedence").lower()
    return (submitted not in ("", "no")) or precedence in ("auto_reply", "bulk", "junk", "list")


def _field(msg: Message, name: str) -> str:
    """A header field as plain text (compat32 hands back Header objects for 8-bit bytes)."""
    return str(msg.get(name) or "").strip()


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
    action = _field(block, "Action").lower()
    status = _STATUS.search(_field(block, "Status"))
    code = status.group(0) if status else ""
    if action in ("delivered", "relayed", "expanded", "delayed") or code.startswith("2"):
        return None
    recipient = _address(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
    diagnostic = line(_field(block, "Diagnostic-Code"))
    detail = line(f"{code or action or 'unknown status'} {diagnostic}")
    if code.startswith("4"):
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
        feedback_type = line(_field(fields, "Feedback-Type") or "abuse").lower()
        if feedback_type not in COMPLAINTS:
            return None
        agent = line(_field(fields, "User-Agent") or _field(fields, "Reporting-MTA"))
        detail = f"{feedback_type} report" + (f" by {agent}" if agent else "")
        recipients = tuple(line(str(r)).strip("<>") for r in fields.get_all("Original-Rcpt-To") or [])
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
        return Report("hard", line(f"permanent failure (in prose) for {', '.join(names)}"), names, named=True)
    if temporary:
        names = tuple(sorted(a.decode("ascii", "replace") for a in temporary))
        return Report("soft", line(f"temporary failure (in prose) for {', '.join(names)}"), names, named=True)
    return None
