"""Plain-text page dumps: a site's home page saved as text, like the bundled seeds.

A dump is a run of posts, each a title line followed by paragraphs. An excerpt ends with a
``Continue reading <title>`` line, which names its title exactly; a full post runs until
the next title. What makes this hard is what looks like a title but is not one: headings of
articles a post reprints ("The following article was originally published by ..."),
short labels over lists ("Main points:"), and image captions. Those stay in their post.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from html import escape

from digest.common.dates import find_dates, infer_date
from digest.common.models import Document, ParsedItem
from digest.common.sanitize import CONTINUE_READING, is_boilerplate, one_line
from digest.intake.kinds.auto import charset_of
from digest.intake.parsing import Options, Parsed

_REPRINT_NOTE = re.compile(
    r"\b(?:following|below)\b.{0,40}\b(?:articles?|reports?|statements?|pieces?|texts?|interviews?)\b"
    r".{0,40}\b(?:(?:originally|first|also)\s+)?(?:published|carried|appeared|released|reprinted)\b",
    re.I,
)
_DATELINE = re.compile(r"^[A-Z][^.!?:;\n]{0,60}?\s[–—-]{1,2}\s")
_BULLET = re.compile(r"^\s*(?:[•·▪◦‣*]|-(?=\s)|\d{1,2}[.)](?=\s))\s*")
_CAPTION = re.compile(
    r"^(?:photo|image|picture|caption|credit|source|file photo|video)\b|"
    r"\((?:photo|image|picture|xinhua|ap|afp|reuters|getty|credit)[^)]*\)\s*$|"
    r"(?:photo|image)\s*(?:by|:|/|credit)",
    re.I,
)
_TERMINAL = (".", ",", ";", ":")
_MAX_TITLE = 200
_MIN_TITLE_WORDS = 3


@dataclass
class _Post:
    title: str
    body: list[str]
    reprint: bool = False


def parse(document: Document, options: Options) -> Parsed:
    """The registry's entry (``kinds.py``): a document read as a plain-text page dump."""
    return Parsed(parse_text(document.body, document.content_type, document.url))


def parse_text(body: bytes, content_type: str | None, base_url: str) -> list[ParsedItem]:
    """The posts of a plain-text page dump, in page order, each with its exact title."""
    text = decode_text(body, content_type)
    blocks = _blocks(text)
    posts = _posts(blocks)
    reference = max(find_dates(text), default=None)
    return [_item(post, reference) for post in posts]


def decode_text(body: bytes, content_type: str | None) -> str:
    """Text from bytes: a BOM or the declared charset if any, else UTF-8, else Windows-1252."""
    charset = charset_of(content_type)
    candidates = ["utf-8-sig"] + ([charset] if charset else []) + ["cp1252", "latin-1"]
    for encoding in candidates:
        try:
            return body.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return body.decode("utf-8", errors="replace")


def _blocks(text: str) -> list[str]:
    """Non-empty lines, whitespace-tidied; each is a paragraph, a bullet or a heading."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = []
    for line in lines:
        bullet = _BULLET.match(line)
        tidy = one_line(line)
        if not tidy:
            continue
        out.append("• " + one_line(line[bullet.end() :]) if bullet else tidy)
    return out


def looks_like_title(block: str) -> bool:
    """A line that could head a post: short, not a sentence, a label, a bullet or a caption."""
    if block.startswith("• ") or len(block) > _MAX_TITLE:
        return False
    if block.endswith(_TERMINAL) or len(block.split()) < _MIN_TITLE_WORDS:
        return False
    if not (block[0].isupper() or block[0].isdigit() or block[0] in "\"'“‘«"):
        return False
    return not (is_boilerplate(block) or _CAPTION.search(block))


def _is_title_case(block: str) -> bool:
    words = [w for w in re.findall(r"[^\W\d_][\w'’-]*", block) if len(w) >= 4]
    return len(words) >= 3 and sum(w[0].isupper() for w in words) >= 0.8 * len(words)


def _posts(blocks: list[str]) -> list[_Post]:
    # Excerpts first: each "Continue reading T" marker names its post's first line exactly.
    spans: list[tuple[int, int]] = []
    floor = 0
    for index, block in enumerate(blocks):
        match = CONTINUE_READING.match(block)
        if not match or not match.group("title"):
            continue
        wanted = one_line(match.group("title"))
        start = next((i for i in range(floor, index) if blocks[i] == wanted), None)
        if start is not None:
            spans.append((start, index))
            floor = index + 1

    posts: list[_Post] = []
    cursor = 0
    for start, end in spans:
        posts.extend(_full_posts(blocks[cursor:start]))
        posts.append(_Post(title=blocks[start], body=_body(blocks[start + 1 : end])))
        cursor = end + 1
    posts.extend(_full_posts(blocks[cursor:]))
    return posts


def _full_posts(blocks: list[str]) -> list[_Post]:
    """Split a stretch with no "Continue reading" markers into full posts."""
    posts: list[_Post] = []
    current: _Post | None = None
    for index, block in enumerate(blocks):
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        previous = blocks[index - 1] if index > 0 else None
        heads = following is not None and looks_like_title(block) and not looks_like_title(following)
        if heads and current is not None and following is not None:
            heads = not _belongs_to(current, block, previous, following)
        if heads:
            current = _Post(title=block, body=[])
            posts.append(current)
        elif current is not None:
            current.body.append(block)
            if _REPRINT_NOTE.search(block) and len(block) < 400:
                current.reprint = True
    for post in posts:
        post.body = _body(post.body)
    # A "title" with nothing but boilerplate under it was not a post. (Excerpts need no such
    # check: their "Continue reading" line vouches for them.)
    return [post for post in posts if post.body]


def _belongs_to(post: _Post, heading: str, previous: str | None, following: str) -> bool:
    """Whether a title-like line inside ``post`` is part of it rather than a new post."""
    if not post.body:
        return True
    if previous is not None and previous.endswith(":"):
        return True
    if not post.reprint:
        return False
    # Headings of reprinted articles: right under the note, over a dateline, or in the
    # Title Case that agencies use and this kind of site does not.
    return bool(
        (previous is not None and _REPRINT_NOTE.search(previous))
        or _DATELINE.match(following)
        or _is_title_case(heading)
    )


def _body(blocks: list[str]) -> list[str]:
    return [b for b in blocks if not is_boilerplate(b)]


def _item(post: _Post, reference: date | None) -> ParsedItem:
    return ParsedItem(
        title=post.title,
        content_html=_html(post.body),
        published=infer_date(" ".join(post.body[:3]), reference),
    )


def _html(blocks: list[str]) -> str:
    parts: list[str] = []
    in_list = False
    for block in blocks:
        if block.startswith("• "):
            if not in_list:
                parts.append("<ul>")
                in_list = True
            parts.append(f"<li>{escape(block[2:])}</li>")
            continue
        if in_list:
            parts.append("</ul>")
            in_list = False
        parts.append(f"<p>{escape(block)}</p>")
    if in_list:
        parts.append("</ul>")
    return "".join(parts)
