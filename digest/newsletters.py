"""Newsletters as sources (``kind = "email"``): mail arriving at digest's inbound SMTP server
for a source's ``address`` becomes one article of that source.

- Only a sender in the source's ``allow_from`` (an address, or a domain and its subdomains)
  is taken: the envelope sender (MAIL FROM) at RCPT, then the From header, else 550.
  Neither is authenticated (no DKIM or SPF check yet): the address itself should be one
  nobody guesses, as Kill-the-Newsletter's are.
- The article (:func:`item_of`, pure): the Subject as title; the HTML part (else the text
  part) as content, sanitised as any source's HTML is (no images at all, so no tracking
  pixels; links kept); the "view in browser" link as its URL when there is one; the sender's
  name as author; the Date header as published (when plausible); the Message-ID as guid.
  A confirmation email a newsletter sends on sign-up is an article like any other, so the
  operator can click its link.
- The message is hostile input: bounded by the server's size limit, read off the store's
  thread, and whatever trips the parser is refused (550) rather than stored half-read.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import logging
import re
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from typing import cast

from digest.config import Settings, SourceSettings
from digest.dates import plausible
from digest.errors import StoreError
from digest.feedback import Runner
from digest.inbound import READERS, Rejected, TryLater
from digest.models import ParsedItem
from digest.sanitize import html_to_text, one_line
from digest.store import Store

log = logging.getLogger("digest")
MAX_TITLE = 300
# Bounded everywhere, so a message of unclosed tags costs linear time, not quadratic.
_LINK = re.compile(
    r"<a\b[^<>]{0,2000}?\bhref\s*=\s*(['\"])(https?://[^'\"<>\s]{1,2000})\1[^<>]{0,2000}>(.{0,400}?)</a>",
    re.I | re.S,
)
LINK_SCAN = 100_000  # characters of the HTML looked through for the "view in browser" link
_BARE_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")
_VIEW_ONLINE = re.compile(
    r"\b(view|read|open|see)\b.{0,30}\b(in|on)\b.{0,15}\b(your|a|the)?\s*(web\s*)?browser\b"
    r"|\b(view|read)\s+(it\s+|this\s+(e-?mail|issue|post)\s+)?online\b"
    r"|\bweb\s+version\b",
    re.I,
)


def allowed(sender: str, allow_from: tuple[str, ...]) -> bool:
    """Whether an envelope sender is one a source takes: an address listed, or one at a
    domain listed (or below it)."""
    address = parseaddr(sender)[1].strip().lower()
    domain = address.rpartition("@")[2]
    if not address or not domain:
        return False
    return any(
        address == entry if "@" in entry else domain == entry or domain.endswith("." + entry)
        for entry in allow_from
    )


def sender_of(raw: bytes) -> str:
    """The address in a message's From header ("" when there is none)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    try:
        return parseaddr(str(msg.get("From") or ""))[1]
    except (TypeError, ValueError, IndexError):
        return ""


def item_of(raw: bytes, now: datetime) -> ParsedItem:
    """The article one newsletter makes; ValueError when the message has no usable body."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    title = one_line(str(msg.get("Subject") or ""))[:MAX_TITLE] or "(no subject)"
    content, url = _content(msg)
    name, address = parseaddr(str(msg.get("From") or ""))
    author = one_line(name or address)[:200] or None
    published = None
    try:
        stamp = parsedate_to_datetime(str(msg.get("Date") or ""))
        published = plausible(stamp, now) if stamp.tzinfo else None
    except (TypeError, ValueError, IndexError):
        published = None
    message_id = one_line(str(msg.get("Message-ID") or "")).strip("<>")[:300] or None
    return ParsedItem(
        title=title, url=url, guid=message_id, content_html=content, author=author, published=published
    )


def _content(msg: EmailMessage) -> tuple[str, str | None]:
    part = msg.get_body(preferencelist=("html", "plain"))
    if part is None:
        raise ValueError("no text or HTML body")
    assert isinstance(part, EmailMessage)
    body = part.get_content()
    if not isinstance(body, str):
        raise ValueError("an undecodable body")
    if part.get_content_type() == "text/plain":
        paragraphs = [p.strip() for p in body.split("\n\n") if p.strip()]
        return "".join(f"<p>{_linked(p)}</p>" for p in paragraphs), None
    return body, _view_online(body)


def _linked(text: str) -> str:
    """Plain text as HTML, its web addresses as links (a confirmation email's link works)."""
    return _BARE_URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', html.escape(text, quote=True))


def _view_online(body: str) -> str | None:
    """The newsletter's own "view in browser" link, when it has one."""
    for match in _LINK.finditer(body[:LINK_SCAN]):
        if _VIEW_ONLINE.search(one_line(html_to_text(match.group(3)))):
            return html.unescape(match.group(2))
    return None


class NewsletterMailbox:
    """The receiver's mailbox for email sources' addresses."""

    def __init__(self, settings: Settings, run: Runner[object], stored: Callable[[], None]) -> None:
        self.settings = settings
        self.run = run
        self.stored = stored  # called after an article was stored (grouping follows)
        self.sources = {s.address: s for s in settings.sources if s.address and s.enabled}
        self.readers = asyncio.Semaphore(READERS)

    async def claims(self, address: str, sender: str) -> bool:
        source = self.sources.get(address.strip().strip("<>").lower())
        if source is None:
            return False
        if not allowed(sender, source.allow_from):
            raise Rejected(f"550 5.7.1 {source.address} takes mail only from its newsletter's senders")
        return True

    async def receive(self, address: str, raw: bytes) -> None:
        source = self.sources[address.strip().strip("<>").lower()]
        try:
            now = cast(datetime, await self.run(lambda s: s.now()))  # the store's clock, as a pull's
        except StoreError as exc:
            raise TryLater from exc
        async with self.readers:
            try:
                item = await asyncio.to_thread(item_of, raw, now)
                author = await asyncio.to_thread(sender_of, raw)
            except Exception as exc:  # hostile MIME: refused, not stored half-read
                raise Rejected(f"550 5.6.0 This message could not be read ({type(exc).__name__})") from exc
        if not allowed(author, source.allow_from):  # the From header must pass too, not only MAIL FROM
            raise Rejected(f"550 5.7.1 {source.address} takes mail only from its newsletter's senders")
        try:
            counts = await self.run(lambda s: _store(s, self.settings, source, item, now))
        except StoreError as exc:
            raise TryLater from exc
        log.info("newsletter %s: %r, %s", source.name, item.title, counts, extra={"event": "newsletter"})
        self.stored()


def _store(store: Store, settings: Settings, source: SourceSettings, item: ParsedItem, now: datetime) -> str:
    from digest.ingest import store_items

    return store_items(store, source, [item], now, base_url=item.url or "").summary()
