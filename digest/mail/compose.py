"""Composing digest emails (pure): content in, :class:`~email.message.EmailMessage` out.

A selection is rendered once, CSS inlined once, with markers where the per-subscriber parts
go (address, unsubscribe and preference links); each subscriber's message only fills those
in. Headers take nothing raw from sources: the subject is built from region and theme names
and counts, and every header value is folded onto one line.
"""

from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

import css_inline
from jinja2 import Environment, FileSystemLoader, select_autoescape

from digest.config import Settings, SmtpSettings
from digest.digests import Content, subject
from digest.models import Article
from digest.resources import bundled
from digest.sanitize import one_line

MARKERS = {
    "email": "@@EMAIL@@",
    "unsubscribe_url": "@@UNSUBSCRIBE_URL@@",
    "preferences_url": "@@PREFERENCES_URL@@",
}
EXCERPT = 320
_INLINER = css_inline.CSSInliner(keep_style_tags=False)


@dataclass(frozen=True)
class Rendered:
    """A rendered selection: subject and both bodies, with markers for the personal parts."""

    subject: str
    html: str
    text: str


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
        return article.url or f"{base}/articles/{article.id}"

    def excerpt(article: Article) -> str:
        text = one_line(article.summary_text)
        return text if len(text) <= EXCERPT else text[:EXCERPT].rsplit(" ", 1)[0] + "…"

    title = subject(content)
    values = {
        "subject": title,
        "site_title": settings.site.title,
        "sections": content.sections,
        "preheader": "; ".join(i.article.title for s in content.sections for i in s.items[:1])[:150],
        "view_url": f"{base}/digests/{digest_id}",
        "link": link,
        "excerpt": excerpt,
        "wrap": lambda text: textwrap.wrap(text, 72),
        **MARKERS,
    }
    page = env.get_template("digest.html.j2").render(values)
    text = env.get_template("digest.txt.j2").render(values)
    return Rendered(title, _INLINER.inline(page), text)


def sender(settings: Settings) -> str:
    return (settings.smtp or SmtpSettings()).sender


def message(
    rendered: Rendered,
    settings: Settings,
    *,
    to: str,
    unsubscribe_url: str,
    preferences_url: str,
    date: datetime,
) -> EmailMessage:
    """One subscriber's message: the rendered digest with their address and links filled in."""
    host = site_host(settings)
    personal_html = {
        "email": html.escape(to),
        "unsubscribe_url": html.escape(unsubscribe_url),
        "preferences_url": html.escape(preferences_url),
    }
    personal_text = {"email": to, "unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url}
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender(settings)
    msg["To"] = Address(addr_spec=to)
    msg["Subject"] = one_line(rendered.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = make_msgid("digest", domain=host)
    msg["List-Id"] = f"{one_line(settings.site.title)} <digest.{host}>"
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(_fill(rendered.text, personal_text))
    msg.add_alternative(_fill(rendered.html, personal_html), subtype="html")
    return msg


def confirmation(
    settings: Settings, env: Environment, *, to: str, confirm_url: str, days: int, date: datetime
) -> EmailMessage:
    """The double opt-in email: one link, plain text."""
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
    )
    msg.set_content(body)
    return msg


def fill_markers(body: str, email: str, unsubscribe_url: str, preferences_url: str) -> str:
    """A rendered body with the personal parts filled in (HTML-escaped when it is HTML)."""
    values = {"email": email, "unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url}
    if body.lstrip().startswith("<"):
        values = {k: html.escape(v) for k, v in values.items()}
    return _fill(body, values)


def _fill(body: str, values: dict[str, str]) -> str:
    for key, marker in MARKERS.items():
        body = body.replace(marker, values[key])
    return body
