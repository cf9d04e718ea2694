"""Property-based: whatever text a source sends, what reaches people is clean.

Generated titles and bodies (with markup, scripts, event handlers, javascript: URLs,
controls, bidi overrides, CR/LF) go through the real ingest → feed → email path; the
invariants: feeds parse cleanly, nothing active survives, headers hold one line each.
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

from digest.config import parse_settings
from digest.digests import Selection, build
from digest.ingest import normalise
from digest.mail import compose
from digest.models import ParsedItem
from digest.publish import FeedSpec, render

PIECES = st.sampled_from(
    [
        "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", '<a href="javascript:evil()">x</a>',
        '<p style="background:url(javascript:x)">', "\r\nBcc: victim@example.org\r\n", "\x1b[31m", "\u202e",
        "\x00", "&amp;", "&lt;b&gt;", "]]>", "<![CDATA[", "<!--", "-->", "\ud7ff", "Zoë", "中文", "<iframe src=//e>",
        '"', "'", "<style>*{x:expression(y)}</style>", "<svg onload=z()>",
    ]
)  # fmt: skip
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=20)), max_size=12).map("".join)
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
            if (
                name.lower().startswith("on")
                or "javascript:" in value.lower()
                or "expression(" in value.lower()
            ):
                found.append(f"{tag}@{name}")
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=TEXT, body=TEXT)
def test_hostile_text_is_clean_everywhere(title: str, body: str) -> None:
    article = normalise(
        ParsedItem(title=title, url="https://x.org/a", content_html=body), "s", "https://x.org/", NOW
    )
    assert "\n" not in article.title and "\r" not in article.title
    assert not any(c in article.title for c in "\x00\x1b\u202e")
    assert _active(article.summary_html) == []

    spec = FeedSpec("site", None, "T")
    for fmt in ("atom", "rss"):
        parsed = feedparser.parse(render(spec, fmt, [article], SETTINGS))
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert len(parsed.entries) == 1
    content = build([article], Selection("2000-01-01T00:00:00.000000+00:00"), {})
    rendered = compose.render(content, SETTINGS, "d", compose.environment())
    out, _ = compose.personal_bytes(
        compose.prepare(rendered, SETTINGS),
        to="ann@example.org",
        unsubscribe_url="https://news.example.org/unsubscribe/t",
        preferences_url="https://news.example.org/preferences/t",
        date=NOW,
        domain="news.example.org",
    )
    message = email.message_from_bytes(out.data, policy=email.policy.default)
    assert message["Bcc"] is None and message["To"] == "ann@example.org"
    for name, value in message.items():
        assert "\n" not in str(value) and "\r" not in str(value), name
    html = message.get_body(("html",)).get_content()
    assert _active(re.split(r"<body[^>]*>", html, maxsplit=1)[1].rsplit("</body>", 1)[0]) == []
