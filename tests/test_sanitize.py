"""Sanitising untrusted HTML and text (pure functions)."""

from __future__ import annotations

from digest.common.sanitize import (
    drop_boilerplate,
    html_to_text,
    one_line,
    plain_title,
    sanitize_html,
    title_from_text,
)


def test_sanitize_drops_active_content_and_resolves_links() -> None:
    dirty = (
        '<p onclick="x()" style="color:red">Hi <a href="/rel">rel</a> <a href="javascript:alert(1)">js</a>'
        '<img src="https://t.example/p.gif"><script>steal()</script><iframe src="https://e.org"></iframe></p>'
    )
    clean = sanitize_html(dirty, base_url="https://news.example.org/a/b")
    assert 'href="https://news.example.org/rel"' in clean
    for bad in ("onclick", "style", "javascript", "<img", "steal", "<iframe", "<script"):
        assert bad not in clean
    assert 'rel="noopener noreferrer nofollow"' in clean


def test_html_to_text_reads_sanitised_html_faithfully() -> None:
    clean = sanitize_html(
        '<p>A <a title="x>y" href="http://e.org">link</a> &lt;b&gt;\nwrapped</p><ul><li>one</li></ul>'
    )
    assert html_to_text(clean, sanitized=True) == "A link <b> wrapped\n\n• one"
    assert html_to_text("<p>x<script>alert(1)</script></p>") == "x"
    assert html_to_text("plain\n\ntext") == "plain\n\ntext"


def test_titles_are_one_line_of_plain_text() -> None:
    assert (
        one_line("Evil\r\nBcc: victim@example.org\x1b[31m \u202eright")
        == "Evil Bcc: victim@example.org[31m right"
    )
    assert plain_title("<b>Bold</b> &amp; more") == "Bold & more"
    assert plain_title("AT&T profits") == "AT&T profits"
    assert title_from_text("One sentence here. Another one.") == "One sentence here."
    long = "word " * 40
    assert title_from_text(long).endswith("…") and len(title_from_text(long)) <= 81


def test_boilerplate_paragraphs_are_dropped() -> None:
    kept = "<p>Text.</p>"
    assert drop_boilerplate(kept + '<p><a href="x">Continue reading →</a></p>') == kept
    assert drop_boilerplate(kept + "<p>The post T appeared first on S.</p>") == kept
    assert drop_boilerplate("<p>Read the report in full, said the minister.</p>") != ""
