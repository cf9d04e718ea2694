"""Property-based: whatever text a source sends, what reaches people is clean.

Generated titles, bodies and links (with markup, scripts, event handlers, javascript: and
data: URLs, controls, bidi overrides, CR/LF, and the personalisation markers of earlier
versions) go through the real ingest → feed → email path; the invariants: feeds parse
cleanly, nothing active survives, every link is a web link, headers hold one line each, and
a subscriber's address and links appear only where the template puts them.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

import feedparser
import lxml.html
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.common.models import ParsedItem
from digest.common.sanitize import html_to_text, strip_controls
from digest.config import parse_settings
from digest.intake.pull import normalise
from digest.mail import compose
from digest.mail.contents import Selection, build
from digest.publish.feeds import FeedSpec, render

PIECES = st.sampled_from(
    [
        "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", '<a href="javascript:evil()">x</a>',
        '<p style="background:url(javascript:x)">', "\r\nBcc: victim@example.org\r\n", "\x1b[31m", "\u202e",
        "\x00", "&amp;", "&lt;b&gt;", "]]>", "<![CDATA[", "<!--", "-->", "\ud7ff", "Zoë", "中文", "<iframe src=//e>",
        '"', "'", "<style>*{x:expression(y)}</style>", "<svg onload=z()>", "@@EMAIL@@",
        "@@UNSUBSCRIBE_URL@@", "@@PREFERENCES_URL@@", '<a href="data:text/html,x">d</a>',
        '<a href="vbscript:x">v</a>', '<a href="file:///etc/passwd">f</a>',
    ]
)  # fmt: skip
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=20)), max_size=12).map("".join)
LINKS = st.one_of(
    st.sampled_from(
        [
            "https://x.org/a", "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:x",
            "data:text/html,<script>x</script>", "vbscript:x", "file:///etc/passwd", "mailto:a@b.org",
            "https://evil.example/t?u=@@UNSUBSCRIBE_URL@@&e=@@EMAIL@@", "//evil.example/x", "x.html",
        ]
    ),
    st.builds(lambda a, b: a + b, st.sampled_from(["https://x.org/", "javascript:", "data:"]), TEXT),
)  # fmt: skip
SUBSCRIBER = "subscriber-5e1f@example.org"
UNSUBSCRIBE = "https://news.example.org/unsubscribe/tok-5e1f"
PREFERENCES = "https://news.example.org/preferences/tok-5e1f"
UNSAFE_SCHEMES = ("javascript:", "data:", "vbscript:", "file:")
SETTINGS = parse_settings(
    '[site]\nbase_url = "https://news.example.org"\n',
    origin="t",
    base_dir=__import__("pathlib").Path("."),
    env={},
)
NOW = datetime(2026, 11, 24, tzinfo=UTC)
BANNED_TAGS = {"script", "iframe", "svg", "object", "embed", "style"}


def _active(fragment: str, *, allow_style_tag: bool = False) -> list[str]:
    """What in parsed HTML could run or fetch: banned tags, on* handlers, javascript: URLs,
    CSS expressions. Escaped text that merely reads like markup is fine."""
    if not fragment.strip():
        return []
    root = lxml.html.fromstring(f"<div>{fragment}</div>")
    found = []
    for element in root.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in BANNED_TAGS and not (allow_style_tag and tag == "style"):
            found.append(tag)
        for name, value in element.attrib.items():
            # In a link only the scheme runs; "javascript:" in the path of an https URL is text.
            link = name in ("href", "src", "cite")
            if (
                name.lower().startswith("on")
                or (link and value.strip().lower().startswith(UNSAFE_SCHEMES))
                or (not link and "javascript:" in value.lower())
                or (not link and "expression(" in value.lower())
            ):
                found.append(f"{tag}@{name}")
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=TEXT, body=TEXT, link=LINKS)
def test_hostile_text_is_clean_everywhere(title: str, body: str, link: str) -> None:
    article = normalise(ParsedItem(title=title, url=link, content_html=body), "s", "https://x.org/", NOW)
    assert article.url is None or article.url.startswith(("https://", "http://"))
    assert "\n" not in article.title and "\r" not in article.title
    assert not any(c in article.title for c in "\x00\x1b\u202e")
    assert _active(article.summary_html) == []

    spec = FeedSpec("site", None, "T")
    for fmt in ("atom", "rss"):
        parsed = feedparser.parse(render(spec, fmt, [article], SETTINGS))
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert len(parsed.entries) == 1
        assert parsed.entries[0].link.startswith(("https://", "http://"))
    content = build([article], Selection(datetime(2000, 1, 1, tzinfo=UTC)), {})
    rendered = compose.render(content, SETTINGS, "d", compose.environment())
    out, _ = compose.personal_bytes(
        compose.prepare(rendered, SETTINGS),
        to=SUBSCRIBER,
        unsubscribe_url=UNSUBSCRIBE,
        preferences_url=PREFERENCES,
        date=NOW,
        domain="news.example.org",
    )
    # It says its lines all end in CRLF (so the transport sends it as is): they do.
    assert (
        out.crlf
        and b"\r" not in out.data.replace(b"\r\n", b"")
        and b"\n" not in out.data.replace(b"\r\n", b"")
    )
    message = email.message_from_bytes(out.data, policy=email.policy.default)
    assert message["Bcc"] is None and message["To"] == SUBSCRIBER
    for name, value in message.items():
        assert "\n" not in str(value) and "\r" not in str(value), name
    html = message.get_body(("html",)).get_content()
    assert _active(re.split(r"<body[^>]*>", html, maxsplit=1)[1].rsplit("</body>", 1)[0]) == []
    text = message.get_body(("plain",)).get_content()
    for part in (html, text):
        assert (part.count(SUBSCRIBER), part.count(UNSUBSCRIBE), part.count(PREFERENCES)) == (1, 1, 1)


@given(st.text(alphabet=st.sampled_from(list("ab .\n\r\t\xa0\u2028\x0c\u3000")), max_size=60))
@settings(max_examples=400)
def test_paragraphs_are_what_blank_lines_separate(text: str) -> None:
    # The definition, written the slow and obvious way: controls out, split at blank lines,
    # then collapse the white space of every line and drop the lines left empty.
    text = strip_controls(text).replace("\r\n", "\n").replace("\r", "\n")
    blocks = (
        "\n".join(filter(None, (" ".join(line.split()) for line in block.split("\n"))))
        for block in re.split(r"\n\s*\n", text)
    )
    assert html_to_text(text) == "\n\n".join(filter(None, blocks))
