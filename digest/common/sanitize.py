"""Making untrusted text safe and tidy: allow-list HTML sanitising, HTML to plain text,
single-line titles. Pure functions, used by ingestion and by everything that shows articles."""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urljoin

if TYPE_CHECKING:  # imported where a cleaner is made: reading stored articles needs none
    import nh3

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "cite", "code", "dd", "del", "dl", "dt", "em",
    "figcaption", "figure", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "li", "mark",
    "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "time", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "q": {"cite"},
    "blockquote": {"cite"},
    "time": {"datetime"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
URL_SCHEMES = {"http", "https", "mailto"}
_ABSOLUTE = ("http://", "https://", "mailto:")
# Elements whose text is never content: dropped with everything inside them.
DROPPED_CONTENT = {
    "script",
    "style",
    "template",
    "noscript",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "title",
}

# C0/C1 controls (but tab and newline), and the bidi overrides and isolates that can make
# text display in an order other than the one it is stored in.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")
_MARKUP = re.compile(r"<[a-zA-Z/!?]|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);")
_ANY_TAG = re.compile(r"<(?:[^>\"']+|\"[^\"]*\"|'[^']*')*>")  # quoted attributes may hold ">"
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)(?:[^>\"']+|\"[^\"]*\"|'[^']*')*>")
_BLOCKS = (
    "p div ul ol h1 h2 h3 h4 h5 h6 blockquote pre tr table section article figure figcaption hr dd dt dl"
)
# What a tag becomes in plain text ("/" marks an end tag); any other tag becomes nothing.
_BREAKS = {
    **{name: "\n\n" for name in _BLOCKS.split()},
    **{f"/{name}": "\n\n" for name in _BLOCKS.split()},
    "li": "\n\n• ",
    "br": "\n",
    "/br": "\n",
}


# Lines that are furniture, not content: excerpt links and WordPress's feed footer.
CONTINUE_READING = re.compile(
    r"^(?:Continue reading|Read more(?: of)?|Read the full (?:article|post))\b[:\s]*"
    r"(?P<title>.*?)\s*(?:→|»|\.\.\.|…)?$",
    re.I,
)
APPEARED_FIRST = re.compile(r"^The post .+ appeared first on .+?\.?$", re.I)
_PARAGRAPH = re.compile(r"<p\b[^>]*>(.*?)</p>", re.S)


def is_boilerplate(line: str) -> bool:
    """Whether a line of text is a "Continue reading ..." link or a "The post ... appeared
    first on ..." footer."""
    return bool(CONTINUE_READING.match(line) or APPEARED_FIRST.match(line))


def drop_boilerplate(fragment: str) -> str:
    """Sanitised HTML without paragraphs that are only boilerplate (see :func:`is_boilerplate`)."""
    if "Continue" not in fragment and "Read" not in fragment and "appeared first" not in fragment:
        return fragment

    def keep(match: re.Match[str]) -> str:
        text = one_line(html.unescape(_ANY_TAG.sub("", match.group(1))))
        return "" if is_boilerplate(text) else match.group(0)

    return _PARAGRAPH.sub(keep, fragment).strip()


def strip_controls(text: str) -> str:
    """Text without control characters or bidi overrides (tab and newline are kept)."""
    return _CONTROL.sub("", text)


def one_line(text: str) -> str:
    """Text on one line: controls removed, every run of white space (newlines too) one space."""
    # str.split() knows the same white space as \s, and is several times faster than a regex.
    return " ".join(strip_controls(unicodedata.normalize("NFC", text)).split())


def sanitize_html(fragment: str, base_url: str | None = None) -> str:
    """Allow-list sanitised HTML: no scripts, styles, event handlers or foreign URL schemes;
    relative links made absolute against ``base_url``; links open with no referrer."""
    if not fragment or not fragment.strip():
        return ""
    return _cleaner(base_url).clean(strip_controls(fragment)).strip()


@lru_cache(maxsize=64)
def _cleaner(base_url: str | None) -> nh3.Cleaner:
    """The sanitiser for one base URL, made once: ``nh3.clean`` builds one for every call,
    which costs more than the cleaning (a pull's items share their feed's base URL)."""
    import nh3

    def absolute(element: str, attribute: str, value: str) -> str | None:
        if attribute in ("href", "cite") and base_url and not value.startswith(_ABSOLUTE):
            return urljoin(base_url, value.strip())
        return value

    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        attribute_filter=absolute,
        strip_comments=True,
    )


def html_to_text(fragment: str, *, sanitized: bool = False) -> str:
    """Readable plain text from an HTML fragment: paragraphs separated by blank lines, list
    items as bullets. Pass ``sanitized=True`` for output of :func:`sanitize_html`."""
    if not fragment or not fragment.strip():
        return ""
    if not _MARKUP.search(fragment):
        return _tidy_paragraphs(fragment)
    # Sanitised HTML is well-formed and free of scripts and comments, so plain pattern
    # substitution reads it correctly, and many times faster than building a tree.
    clean = fragment if sanitized else _text_cleaner().clean(fragment)
    # In HTML a newline is just white space; only the tags in _BREAKS break lines. One pass
    # over the tags: every pass over the text costs as much as all the tag work.
    text = _TAG.sub(_break, " ".join(clean.split()))
    return _tidy_paragraphs(html.unescape(text))


@lru_cache(maxsize=1)
def _text_cleaner() -> nh3.Cleaner:
    import nh3

    return nh3.Cleaner(tags=ALLOWED_TAGS, clean_content_tags=DROPPED_CONTENT, attributes={})


def _break(tag: re.Match[str]) -> str:
    return _BREAKS.get(tag.group(1) + tag.group(2).lower(), "")


def _tidy_paragraphs(text: str) -> str:
    text = strip_controls(unicodedata.normalize("NFC", text)).replace("\r\n", "\n").replace("\r", "\n")
    # Lines with their white space collapsed; a line left empty ends a paragraph.
    paragraphs: list[str] = []
    lines: list[str] = []
    for line in text.split("\n"):
        if line := " ".join(line.split()):
            lines.append(line)
        elif lines:
            paragraphs.append("\n".join(lines))
            lines = []
    if lines:
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def paragraphs_html(text: str) -> str:
    """The HTML whose text (:func:`html_to_text`) is ``text`` when it is nothing but that
    text's paragraphs (and line breaks), as the sanitiser writes them: what a store keeps
    once, as the text alone (most feeds' summaries are this)."""
    return "".join(
        "<p>" + html.escape(block, quote=False).replace("\n", "<br>") + "</p>" for block in text.split("\n\n")
    )


def text_to_html(text: str) -> str:
    """Plain text as escaped HTML paragraphs."""
    return "".join(
        f"<p>{html.escape(block).replace(chr(10), '<br>')}</p>"
        for block in re.split(r"\n\s*\n", text.strip())
        if block.strip()
    )


def plain_title(title: str) -> str:
    """A title as one line of plain text, whether the source gave text or HTML."""
    if _MARKUP.search(title):
        title = html_to_text(title)
    return one_line(title)


def title_from_text(text: str, limit: int = 80) -> str:
    """A title for an untitled item: its first sentence, cut at a word boundary."""
    first = one_line(text)
    if not first:
        return ""
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    if len(sentence) <= limit:
        return sentence
    cut = sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:-–—")
    return f"{cut}…"
