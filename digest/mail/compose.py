"""Composing digest emails (pure): content in, messages ready for the wire out.

A selection is rendered once, CSS inlined once, with markers where the per-subscriber parts
go (address, unsubscribe and preference links); each subscriber's message only fills those
in. The markers are random for each render, so no text from a source can contain one: what
a source writes is never replaced by anyone's links or address. Headers take nothing raw
from sources: the subject is built from region and theme names and counts, and every header
value is folded onto one line.
"""

from __future__ import annotations

import html
import quopri
import secrets
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import css_inline
from jinja2 import Environment, FileSystemLoader, TemplateError, select_autoescape

from digest.common.errors import ConfigError
from digest.common.links import article_link
from digest.common.models import Article
from digest.common.resources import bundled
from digest.common.sanitize import one_line
from digest.config import Settings, SmtpSettings
from digest.mail.contents import Content, subject

PERSONAL = ("email", "unsubscribe_url", "preferences_url")
EXCERPT = 320
_INLINER = css_inline.CSSInliner(keep_style_tags=False)
_PART_HEAD = 'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'


@dataclass(frozen=True)
class Rendered:
    """A rendered selection: subject and both bodies, with markers for the personal parts
    (``markers``: the name of each part in :data:`PERSONAL` → the marker standing for it)."""

    subject: str
    html: str
    text: str
    markers: Mapping[str, str]

    def filled(self, part: str, *, email: str, unsubscribe_url: str, preferences_url: str) -> str:
        """The ``html`` or ``text`` body with the personal parts filled in (escaped in HTML)."""
        values = {"email": email, "unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url}
        body = self.html if part == "html" else self.text
        for name, marker in self.markers.items():
            body = body.replace(marker, html.escape(values[name]) if part == "html" else values[name])
        return body


def _new_markers() -> dict[str, str]:
    # Letters and digits only: nothing for HTML escaping, CSS inlining or line wrapping to change.
    nonce = secrets.token_hex(16)
    return {name: f"x{nonce}{index}x" for index, name in enumerate(PERSONAL)}


def environment(folder: Path | None = None) -> Environment:
    """Jinja2 for the email templates: the user's folder first, then the bundled one."""
    paths = [str(folder)] if folder else []
    paths.append(str(bundled("templates") / "email"))
    return Environment(
        loader=FileSystemLoader(paths),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def site_host(settings: Settings) -> str:
    return urlsplit(settings.site.base_url).hostname or "localhost"


def render(content: Content, settings: Settings, digest_id: str, env: Environment) -> Rendered:
    """Render one selection's digest, HTML (CSS inlined) and text, with markers."""
    base = settings.site.base_url

    def link(article: Article) -> str:
        return article_link(article, base)

    def excerpt(article: Article) -> str:
        text = one_line(article.summary_text)
        return text if len(text) <= EXCERPT else text[:EXCERPT].rsplit(" ", 1)[0] + "…"

    title = subject(content)
    markers = _new_markers()
    values = {
        "subject": title,
        "site_title": settings.site.title,
        "sections": content.sections,
        "more": content.more,
        "preheader": "; ".join(i.article.title for s in content.sections for i in s.items[:1])[:150],
        "view_url": f"{base}/digests/{digest_id}",
        "link": link,
        "excerpt": excerpt,
        "wrap": lambda text: textwrap.wrap(text, 72),
        **markers,
    }
    try:
        page = env.get_template("digest.html.j2").render(values)
        text = env.get_template("digest.txt.j2").render(values)
    except TemplateError as exc:
        where = getattr(exc, "filename", None) or getattr(exc, "name", None) or "email template"
        lineno = getattr(exc, "lineno", None)
        line = f", line {lineno}" if lineno else ""
        raise ConfigError(f"{where}{line}: {exc.message or exc}") from exc
    return Rendered(title, _INLINER.inline(page), text, markers)


def sender(settings: Settings) -> str:
    return (settings.smtp or SmtpSettings()).sender


def confirmation(
    settings: Settings,
    env: Environment,
    *,
    to: str,
    confirm_url: str,
    days: int,
    date: datetime,
    cadence: str | None = None,
) -> EmailMessage:
    """The double opt-in email: one link, plain text; it names the rhythm chosen (``cadence``:
    daily, weekly, monthly; None: the site's schedule, unnamed)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender(settings)
    msg["To"] = Address(addr_spec=to)
    msg["Subject"] = f"Confirm your subscription to {one_line(settings.site.title)}"
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = make_msgid("confirm", domain=site_host(settings))
    body = env.get_template("confirm.txt.j2").render(
        site_title=settings.site.title,
        email=to,
        confirm_url=confirm_url,
        days=days,
        base_url=settings.site.base_url,
        cadence=cadence,
    )
    msg.set_content(body)
    return msg


@dataclass(frozen=True)
class Outgoing:
    """A message ready for the wire: envelope sender, recipients and the bytes (``crlf``:
    every line of them already ends in CRLF, none in a lone CR or LF)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    crlf: bool = False


def outgoing(msg: EmailMessage) -> Outgoing:
    """An EmailMessage as an Outgoing (for the one-off messages: confirmations, test copies)."""
    return Outgoing(parseaddr(str(msg["From"]))[1], (parseaddr(str(msg["To"]))[1],), msg.as_bytes())


@dataclass(frozen=True)
class Prepared:
    """A rendered selection encoded once: static headers and quoted-printable bodies cut at
    the markers, so each subscriber's message is a few joins, not a MIME build."""

    sender: str
    head: bytes
    text: tuple[bytes | str, ...]  # encoded pieces, and marker names where personal parts go
    html: tuple[bytes | str, ...]
    boundary: str


def prepare(rendered: Rendered, settings: Settings) -> Prepared:
    """Encode a rendered selection for :func:`personal_bytes`."""
    template = EmailMessage(policy=SMTP)
    template["From"] = sender(settings)
    template["Subject"] = one_line(rendered.subject)
    template["List-Id"] = f"{one_line(settings.site.title)} <digest.{site_host(settings)}>"
    template["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    template["MIME-Version"] = "1.0"
    boundary = f"==digest-{secrets.token_hex(12)}=="
    template["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    head = template.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return Prepared(
        sender=parseaddr(sender(settings))[1],
        head=head,
        text=_pieces(rendered.text, rendered.markers),
        html=_pieces(rendered.html, rendered.markers),
        boundary=boundary,
    )


def personal_bytes(
    prepared: Prepared, *, to: str, unsubscribe_url: str, preferences_url: str, date: datetime, domain: str
) -> tuple[Outgoing, str]:
    """One subscriber's message on the wire, and its Message-ID."""
    message_id = make_msgid("digest", domain=domain)
    text_values = {"email": to, "unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url}
    html_values = {k: html.escape(v) for k, v in text_values.items()}
    personal = (
        f"To: {to}\r\nDate: {format_datetime(date)}\r\nMessage-ID: {message_id}\r\n"
        f"List-Unsubscribe: <{unsubscribe_url}>\r\n\r\n"
    ).encode()
    part = "--" + prepared.boundary
    data = b"".join(
        [
            prepared.head,
            personal,
            f"{part}\r\n{_PART_HEAD % 'plain'}".encode(),
            _join(prepared.text, text_values),
            f"\r\n{part}\r\n{_PART_HEAD % 'html'}".encode(),
            _join(prepared.html, html_values),
            f"\r\n{part}--\r\n".encode(),
        ]
    )
    return Outgoing(prepared.sender, (to,), data, crlf=True), message_id


def _pieces(body: str, markers: Mapping[str, str]) -> tuple[bytes | str, ...]:
    by_marker = {marker: name for name, marker in markers.items()}
    out: list[bytes | str] = []
    rest = body
    while True:
        found = [(rest.find(m), m) for m in by_marker if m in rest]
        if not found:
            out.append(_qp(rest))
            return tuple(out)
        at, marker = min(found)
        out.append(_qp(rest[:at]))
        out.append(by_marker[marker])
        rest = rest[at + len(marker) :]


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends (quopri keeps a text's CRLF, else ends in LF)."""
    return quopri.encodestring(text.encode("utf-8")).replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


def _join(pieces: tuple[bytes | str, ...], values: dict[str, str]) -> bytes:
    # Soft line breaks ("=" at a line's end) join the pieces without changing the text.
    return b"=\r\n".join(p if isinstance(p, bytes) else _qp(values[p]) for p in pieces)
