"""Mail that comes back, built the way real servers build it: RFC 3464 delivery status
notifications, RFC 5965 feedback reports, and the prose of Exim, Postfix, qmail and
Exchange (the shapes flufl.bounce recognises), each about one delivery."""

from __future__ import annotations

from email.message import Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

DATE = "Mon, 07 Dec 2026 08:05:00 +0000"


def _original(to: str, message_id: str) -> Message:
    original = MIMEText("Your weekly digest\n")
    original["From"] = "Digest <digest@example.org>"
    original["To"] = to
    original["Subject"] = "Your weekly digest"
    original["Message-ID"] = message_id
    return original


def _top(msg: Message, to: str, subject: str, sender: str = "MAILER-DAEMON@mx.example.net") -> bytes:
    msg["From"] = f"Mail Delivery System <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = DATE
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))  # on the wire, as SMTP carries it


def _report(
    bounce_to: str, subject: str, sender: str, report_type: str, parts: list[tuple[str, str]]
) -> bytes:
    """A multipart/report written out as servers write it (the email package will not
    write a message/delivery-status part it did not parse itself)."""
    boundary = "=_report_boundary_7f3a"
    lines = [
        f"From: Mail Delivery System <{sender}>",
        f"To: {bounce_to}",
        f"Subject: {subject}",
        f"Date: {DATE}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type={report_type}; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
    ]
    for headers, body in parts:
        lines += [f"--{boundary}", headers, "", body]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join("\r\n".join(lines).splitlines()).encode() + b"\r\n"


def dsn(
    bounce_to: str, recipient: str, message_id: str, *, action: str, status: str, diagnostic: str
) -> bytes:
    """An RFC 3464 report, as Postfix and most modern servers send one."""
    notice = (
        "This is the mail system at host mx.example.net.\n\n"
        "I'm sorry to have to inform you that your message could not be delivered.\n\n"
        f"<{recipient}>: {diagnostic}\n"
    )
    fields = (
        f"Reporting-MTA: dns; mx.example.net\nArrival-Date: {DATE}\n\n"
        f"Final-Recipient: rfc822; {recipient}\nOriginal-Recipient: rfc822;{recipient}\n"
        f"Action: {action}\nStatus: {status}\nRemote-MTA: dns; mail.example.org\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n"
    )
    subject = (
        "Delayed Mail (still being retried)" if action == "delayed" else "Undelivered Mail Returned to Sender"
    )
    return _report(
        bounce_to,
        subject,
        "MAILER-DAEMON@mx.example.net",
        "delivery-status",
        [
            ("Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii", notice),
            ("Content-Description: Delivery report\nContent-Type: message/delivery-status", fields),
            (
                "Content-Description: Undelivered Message\nContent-Type: message/rfc822",
                _original(recipient, message_id).as_string(),
            ),
        ],
    )


def arf(bounce_to: str, recipient: str, message_id: str, feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 feedback report: a reader pressed "this is spam"."""
    fields = (
        f"Feedback-Type: {feedback_type}\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
        f"Original-Mail-From: <{bounce_to}>\nOriginal-Rcpt-To: <{recipient}>\n"
        f"Arrival-Date: {DATE}\nReported-Domain: example.org\nSource-IP: 192.0.2.1\n"
    )
    headers = _original(recipient, message_id).as_string().split("\n\n")[0] + "\n"
    return _report(
        bounce_to,
        "FW: Your weekly digest",
        "fbl@fbl.example.net",
        "feedback-report",
        [
            (
                "Content-Type: text/plain",
                "This is an email abuse report for a message received from IP 192.0.2.1.\n",
            ),
            ("Content-Type: message/feedback-report", fields),
            ("Content-Type: text/rfc822-headers", headers),
        ],
    )


def exim(bounce_to: str, recipient: str, message_id: str) -> bytes:
    msg = MIMEText(
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\nrecipients. "
        "This is a permanent error. The following address(es) failed:\n\n"
        f"  {recipient}\n    SMTP error from remote mail server after RCPT TO:<{recipient}>:\n"
        "    550 5.1.1 User unknown\n\n------ This is a copy of the message, including all the headers. ------\n\n"
        + _original(recipient, message_id).as_string()
    )
    msg["X-Failed-Recipients"] = recipient
    return _top(msg, bounce_to, "Mail delivery failed: returning message to sender")


def postfix(bounce_to: str, recipient: str, message_id: str) -> bytes:
    """An older Postfix: no machine-readable part, a notification in prose."""
    msg = MIMEMultipart("mixed")
    notice = MIMEText(
        "This is the Postfix program at host mx.example.net.\n\n"
        "I'm sorry to have to inform you that the message returned\nbelow could not be delivered "
        "to one or more destinations.\n\n\t\t\tThe Postfix program\n\n"
        f"<{recipient}>: host mail.example.org said: 550 5.1.1 mailbox unavailable\n"
    )
    notice["Content-Description"] = "Notification"
    msg.attach(notice)
    msg.attach(MIMEMessage(_original(recipient, message_id)))
    return _top(msg, bounce_to, "Undelivered Mail Returned to Sender")


def qmail(bounce_to: str, recipient: str, message_id: str) -> bytes:
    msg = MIMEText(
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{recipient}>:\n192.0.2.7 does not like recipient.\nRemote host said: 550 5.1.1 no mailbox here\n"
        "Giving up on 192.0.2.7.\n\n--- Below this line is a copy of the message.\n\n"
        + _original(recipient, message_id).as_string()
    )
    return _top(msg, bounce_to, "failure notice")


def exchange(bounce_to: str, recipient: str, message_id: str) -> bytes:
    msg = MIMEText(
        "Your message\n\n"
        f"  To:      {recipient}\n  Subject: Your weekly digest\n  Sent:    {DATE}\n\n"
        "did not reach the following recipient(s):\n\n"
        f"{recipient} on {DATE}\n"
        "    The e-mail account does not exist at the organization this message was sent to.\n"
        "    <mx.example.net #5.1.1 smtp;550 5.1.1 User unknown>\n"
        "MSEXCH:IMS:Example:Site:MX 0 (000C05A6) Unknown Recipient\n"
    )
    return _top(msg, bounce_to, "Undeliverable: Your weekly digest", sender="postmaster@example.net")


def auto_reply(bounce_to: str, recipient: str, message_id: str) -> bytes:
    msg = MIMEText("I am out of the office until Monday and will read your message then.\n")
    msg["Auto-Submitted"] = "auto-replied"
    msg["In-Reply-To"] = message_id
    return _top(msg, bounce_to, "Out of office: Your weekly digest", sender=recipient)
