"""Newsletters as sources (``kind = "email"``): mail arriving at digest's inbound SMTP server
for a source's ``address`` becomes one article of that source.

- Only a sender in the source's ``allow_from`` (an address, or a domain and its subdomains)
  is taken: the envelope sender (MAIL FROM) at RCPT, then the From header, which must name
  exactly one address, read from the header block alone before anything else is, else 550.
- And only if it proves it (:mod:`digest.intake.mailauth`): a DKIM signature that verifies, by
  the From domain or a domain above it. Unsigned or forged mail is refused (550), unless
  the source says ``allow_unauthenticated = true``: then it is kept among the dropped items
  (`digest articles --dropped`), never published.
- The article (:func:`item_of`, pure): the Subject as title; the HTML part (else the text
  part) as content, sanitised as any source's HTML is (no images at all, so no tracking
  pixels; links kept); the "view in browser" link as its URL when there is one; the sender's
  name as author; the Date header as published (when plausible); the Message-ID as guid.
  What is the subscriber's own never reaches it (:func:`strip_personal`): the source's
  address, and links to unsubscribe, manage, confirm, or that carry the address or a
  token. The service's log lists the links taken out, so the operator can still follow a
  confirmation email's.
- The message is hostile input: bounded by the server's size limit, read once, in a
  confined child process (:mod:`digest.common.confined`), and whatever trips the parser is
  refused (550) rather than stored half-read.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import html
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import lxml.html

from digest.common import confined
from digest.common.dates import from_iso, plausible, to_iso
from digest.common.errors import StoreError
from digest.common.models import ParsedItem
from digest.common.sanitize import html_to_text, one_line
from digest.config import Settings, SourceSettings
from digest.feedback.apply import Runner
from digest.feedback.inbound import READERS, Rejected, TryLater
from digest.intake import mailauth
from digest.store import DroppedItem

if TYPE_CHECKING:
    from digest.store.contract import ArticlesAndSources

log = logging.getLogger("digest")
MAX_TITLE = 300
HEADER_BYTES = 64 * 1024  # the header block is read alone, before the message is
MAX_FROM = 998  # RFC 5322's longest line: a From field longer is no newsletter's
# Fields that say what the message is: a second copy (added above a signed message) is refused.
SINGLE_FIELDS = (
    "From", "Sender", "Subject", "Date", "Message-ID",
    "Content-Type", "Content-Transfer-Encoding", "MIME-Version",
)  # fmt: skip
_PLAIN_ADDRESS = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63}){1,8}")
_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_PERSONAL_WORDS = re.compile(
    r"unsubscri|opt[-_ ]?out|manage|preference|confirm|verif|subscription|profile|forward", re.I
)
_TOKEN_NAMES = frozenset(
    ("token", "key", "sig", "signature", "hash", "auth", "email", "mail", "e", "u", "uid", "user",
     "subscriber", "sid", "recipient", "r", "t")
)  # fmt: skip
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_=+/.~-]+")
_SLUG = re.compile(r"([a-z]+|[0-9]{1,4})([-_.]([a-z]+|[0-9]{1,4}))*(\.[a-z]{2,5})?", re.I)
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


def plain_address(text: str) -> str | None:
    """``text`` as a plain address (local part @ domain, lower case), or None when it is
    anything more: quotes, brackets, a second @, spaces. The one form every check of a
    sender reads, so no two of them can read one field two ways."""
    address = text.strip().lower()
    return address if _PLAIN_ADDRESS.fullmatch(address) else None


def allowed(sender: str, allow_from: tuple[str, ...]) -> bool:
    """Whether a sender (an envelope sender, or the address :func:`one_sender` read) is one a
    source takes: an address listed, or one at a domain listed (or below it)."""
    address = plain_address(sender.strip().removeprefix("<").removesuffix(">"))
    if address is None:
        return False
    domain = address.rpartition("@")[2]
    return any(
        address == entry if "@" in entry else domain == entry or domain.endswith("." + entry)
        for entry in allow_from
    )


def headers_of(raw: bytes) -> Message:
    """The message's header block alone (its body is not parsed); ValueError when there is
    no end to it within ``HEADER_BYTES``, when a line ends in anything but CRLF (parsers
    split lines differently at a bare CR or LF: what DKIM verified would not be what is
    read), or when a field that says what the message is comes twice."""
    if _BARE_LINE_END.search(raw):
        raise ValueError("a line that does not end in CRLF")
    end = raw.find(b"\r\n\r\n", 0, HEADER_BYTES)
    if end < 0:
        raise ValueError(f"no end to its header fields in {HEADER_BYTES} bytes")
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[: end + 2])
    for name in SINGLE_FIELDS:
        if len(headers.get_all(name) or []) > 1:
            raise ValueError(f"two {name} fields")
    return headers


def one_sender(headers: Message) -> str:
    """The one plain address the From header names; ValueError for none, several, a field
    too long to be a From, or an address that is anything but plain."""
    fields = [str(value) for value in headers.get_all("From") or []]
    if len(fields) != 1 or len(fields[0]) > MAX_FROM:
        raise ValueError("its From names no single address")
    try:
        found = getaddresses(fields)
    except Exception as exc:  # the parser's own limits (nested comments: RecursionError)
        raise ValueError(f"its From cannot be read ({type(exc).__name__})") from exc
    address = plain_address(found[0][1]) if len(found) == 1 else None
    if address is None:
        raise ValueError("its From names no single plain address")
    return address


def item_of(raw: bytes, now: datetime, address: str = "") -> ParsedItem:
    """The article one newsletter makes, without what is ``address``'s own (the source's:
    see :func:`strip_personal`); ValueError when the message has no usable body."""
    return _item_and_removed(raw, now, address)[0]


def _item_and_removed(raw: bytes, now: datetime, address: str) -> tuple[ParsedItem, list[str]]:
    headers_of(raw)  # line ends and single fields, here too: this is what gets read
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    title = _without(one_line(str(msg.get("Subject") or "")), address)[:MAX_TITLE] or "(no subject)"
    body, url = _content(msg)
    content, removed = strip_personal(body, address)
    if url is not None and personal(url, "", address):
        removed.append(url)
        url = None
    name, address = parseaddr(str(msg.get("From") or ""))
    author = one_line(name or address)[:200] or None
    published = None
    try:
        stamp = parsedate_to_datetime(str(msg.get("Date") or ""))
        published = plausible(stamp, now) if stamp.tzinfo else None
    except (TypeError, ValueError, IndexError):
        published = None
    message_id = one_line(str(msg.get("Message-ID") or "")).strip("<>")[:300] or None
    item = ParsedItem(
        title=title, url=url, guid=message_id, content_html=content, author=author, published=published
    )
    return item, removed


def read_as_json(data: bytes) -> dict[str, object]:
    """The confined child's job (see :mod:`digest.common.confined`): ``data`` is one line of JSON
    (``answers``: the DNS answers for its DKIM keys; ``address``: the source's; ``now``),
    then the message. Its verified signers, the article, and the links taken out of it."""
    head, _, raw = data.partition(b"\n")
    given = json.loads(head)
    signers = mailauth.verified_signers(raw, given["answers"])
    try:
        item, removed = _item_and_removed(raw, from_iso(given["now"]), given["address"])
    except ValueError as exc:
        return {"signers": signers, "error": str(exc)}
    fields = asdict(item)
    fields["published"] = to_iso(item.published) if item.published else None
    fields["updated"] = None
    return {"signers": signers, "item": fields, "removed": removed}


def _parsed(fields: object) -> ParsedItem:
    """The article the child gave, checked as what it is: hostile output."""
    if not isinstance(fields, dict) or not isinstance(fields.get("title"), str):
        raise ValueError("no article")
    text = {name: fields.get(name) for name in ("url", "guid", "content_html", "author")}
    if not all(value is None or isinstance(value, str) for value in text.values()):
        raise ValueError("no article")
    published = fields.get("published")
    return ParsedItem(
        title=str(fields["title"]),
        url=text["url"],
        guid=text["guid"],
        content_html=text["content_html"] or "",
        author=text["author"],
        published=from_iso(published) if isinstance(published, str) else None,
    )


def personal(url: str, text: str, address: str) -> bool:
    """Whether a link is the subscriber's own: to unsubscribe, manage or confirm, a mail
    link with a subject or body, or one that carries ``address`` (however encoded) or
    anything like a token. Erring towards yes costs a link's target, never its words."""
    decoded = url
    for _ in range(4):  # encoded once per redirect it passes through
        decoded = unquote(decoded)
    decoded = decoded.lower()
    if address and _carries(decoded, address):
        return True
    parts = urlsplit(decoded)
    if parts.scheme == "mailto":
        return bool(parts.query)
    if _PERSONAL_WORDS.search(f"{parts.path} {parts.query} {text}"):
        return True
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _TOKEN_NAMES or _tokenish(value):
            return True
    return any(_tokenish(segment) for segment in parts.path.split("/"))


def _carries(url: str, address: str) -> bool:
    """Whether a (decoded, lower-case) URL holds ``address``: as written, with its
    punctuation moved or dropped (split across path segments), or in base64."""
    address = address.lower()
    if address in url:
        return True
    if re.sub(r"[^a-z0-9]", "", address) in re.sub(r"[^a-z0-9]", "", url):
        return True
    encodings = {
        coded(address.encode()).decode().rstrip("=") for coded in (base64.b64encode, base64.urlsafe_b64encode)
    }
    return any(code.lower()[:-2] in url for code in encodings)


def _tokenish(value: str) -> bool:
    """A value only a machine reads: ten characters or more mixing letters and digits
    (base64, hex, a JWT, a UUID) or six digits or more (a subscriber's number); words
    joined by hyphens (an article's slug) are not."""
    if len(value) < 6 or not _TOKEN_CHARS.fullmatch(value):
        return False
    if value.isdigit():
        return True
    if len(value) < 10 or not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    return not _SLUG.fullmatch(value)


def strip_personal(body: str, address: str) -> tuple[str, list[str]]:
    """``body`` (HTML) without the subscriber's own: links that are :func:`personal` lose
    their target (their text stays, unless it shows it), and ``address`` is taken out of
    the text. Also the links taken out, for the operator's log."""
    if not body.strip():
        return body, []
    root = lxml.html.fromstring(body)
    removed: list[str] = []
    for element in list(root.iter("a")):
        link = cast(lxml.html.HtmlElement, element)
        target = str(link.get("href") or "")
        if target and personal(target, link.text_content(), address):
            removed.append(target)
            if link.text_content().strip() == target.strip() or (
                address and address.lower() in link.text_content().lower()
            ):
                link.text = ""
                for child in list(link):
                    link.remove(child)
            link.drop_tag()
    if address:
        for element in root.iter():
            if not isinstance(element.tag, str):
                continue
            element.text = _without(element.text, address) if element.text else element.text
            element.tail = _without(element.tail, address) if element.tail else element.tail
            for name, value in element.attrib.items():  # title="…", alt="…" are published too
                element.attrib[name] = _without(str(value), address)
        # An address split by markup (news-xyz<span></span>@…): the innermost element whose
        # text holds it keeps its text alone, without it.
        for element in reversed(list(root.iter())):
            html_element = cast(lxml.html.HtmlElement, element)
            if isinstance(element.tag, str) and address.lower() in html_element.text_content().lower():
                text = _without(html_element.text_content(), address)
                for child in list(element):
                    element.remove(child)
                element.text = text
    return lxml.html.tostring(root, encoding="unicode"), removed


def _without(text: str, address: str) -> str:
    return re.sub(re.escape(address), "", text, flags=re.I) if address else text


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
        # DNS waits in threads of its own, never in the pool /healthz and the web use.
        self.dns = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="newsletter-dns")

    async def claims(self, address: str, sender: str) -> bool:
        source = self.sources.get(address.strip().strip("<>").lower())
        if source is None:
            return False
        if not allowed(sender, source.allow_from):
            raise Rejected(f"550 5.7.1 {source.address} takes mail only from its newsletter's senders")
        return True

    async def receive(self, address: str, raw: bytes) -> None:
        source = self.sources[address.strip().strip("<>").lower()]
        refused = f"550 5.7.1 {source.address} takes mail only from its newsletter's senders"
        try:  # the From header first, from the header block alone: nothing else is read before
            headers = headers_of(raw)
            sender = one_sender(headers)
        except Exception as exc:  # whatever a hostile header block does, it is refused
            raise Rejected(f"{refused}: {one_line(str(exc))[:200] or type(exc).__name__}") from exc
        if not allowed(sender, source.allow_from):
            raise Rejected(refused)
        async with self.readers:  # a few messages at a time, DNS included
            try:
                nameserver = self.settings.inbound.resolver if self.settings.inbound else None
                keys = mailauth.key_names(headers, sender)
                loop = asyncio.get_running_loop()
                answers = (
                    await loop.run_in_executor(self.dns, mailauth.lookup, keys, nameserver) if keys else {}
                )
                now = cast(datetime, await self.run(lambda s: s.now()))  # the store's clock, as a pull's
            except (OSError, StoreError) as exc:  # DNS or the database: the sender tries again later
                raise TryLater from exc
            given = json.dumps({"answers": answers, "address": source.address, "now": to_iso(now)})
            try:
                found = await confined.run("newsletter", given.encode() + b"\n" + raw)
                signers = [str(s) for s in found["signers"]] if isinstance(found, dict) else []
                if "error" in found:
                    raise ValueError(str(found["error"])[:200])
                item = _parsed(found["item"])
                removed = [str(link) for link in found.get("removed") or []]
            except (
                confined.Overrun,
                ValueError,
                TypeError,
                KeyError,
            ) as exc:  # refused, not stored half-read
                raise Rejected(
                    f"550 5.6.0 This message could not be read ({one_line(str(exc))[:200]})"
                ) from exc
        signer = next((s for s in signers if mailauth.aligned(s, sender)), None)
        if signer is None and not source.allow_unauthenticated:
            raise Rejected(f"{refused}, signed (DKIM) by its sender's domain")
        try:
            counts = await self.run(lambda s: _store(s, self.settings, source, item, now, signer))
        except StoreError as exc:
            raise TryLater from exc
        log.info(
            "newsletter %s: %r, %s%s", source.name, item.title, counts,
            f"; links of the subscriber's own taken out: {' '.join(removed)}" if removed else "",
            extra={"event": "newsletter"},
        )  # fmt: skip
        self.stored()


def _store(
    store: ArticlesAndSources,
    settings: Settings,
    source: SourceSettings,
    item: ParsedItem,
    now: datetime,
    signer: str | None,
) -> str:
    """Published when ``signer`` vouched for it; else (``allow_unauthenticated``) kept
    among the dropped items, where only the operator sees it."""
    from digest.intake.pull import normalise, store_items

    if signer is None:
        article = normalise(item, source.name, item.url or "", now)
        reason = "not authenticated: no DKIM signature by its sender's domain"
        store.save_dropped(
            [
                DroppedItem(
                    article.id, source.name, article.title, article.url, reason, article.content_hash, now
                )
            ]
        )
        return "kept out of the feeds (not authenticated)"
    return store_items(store, source, [item], now, base_url=item.url or "").summary()
