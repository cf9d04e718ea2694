"""URLs shown in errors, logs, /healthz, `digest status` and feeds carry no credentials and
no query string."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.common import redact
from digest.common.errors import FetchError
from digest.config import parse_settings
from digest.publish.feeds import FeedSpec, render

from .helpers import article


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("https://user:pw@news.example.org/feed?api_key=K", "https://news.example.org/feed?…"),
        ("http://token@127.0.0.1:8080/f.xml", "http://127.0.0.1:8080/f.xml"),
        ("http://[2001:db8::1]:8080/a?x=1#frag", "http://[2001:db8::1]:8080/a?…"),
        ("https://news.example.org/feed", "https://news.example.org/feed"),
        ("file:///srv/feeds/a.xml", "file:///srv/feeds/a.xml"),
        # What a parser chokes on is cut all the same (a quote, an "@" or a "/" in a password).
        ("https://user:pa'ss@feeds.example/rss?token=K2", "https://feeds.example/rss?…"),
        ("https://user:p@ss@feeds.example:99999/?token=K4", "https://feeds.example:99999/?…"),
        ("https://user:pa/ss@feeds.example/rss", "https://…"),
        ("http://user:pa#ss@host/feed", "http://host/feed"),
        ("http://user:pa?ss@host/feed", "http://host/feed"),
        ("http://user:pa;ss@host/feed", "http://host/feed"),
        ("http://user:12#ss@host", "http://…"),
        ("https://host?token=abc@def", "https://host?…"),
        ("http://user:pa", "http://…"),
        ("http://[2001:db8::1]/x", "http://[2001:db8::1]/x"),
        ("https://feeds.example/rss;jsessionid=SESSION5", "https://feeds.example/rss?…"),
        ("https://mastodon.example/@ann.rss", "https://mastodon.example/@ann.rss"),
    ],
)
def test_urls_lose_credentials_and_queries(given: str, shown: str) -> None:
    assert redact.url(given) == shown


def test_urls_in_messages_and_errors_are_redacted() -> None:
    message = "https://u:secret@x.org/f?key=K: HTTP 500; then https://y.org/g?sig=S."
    assert redact.text(message) == "https://x.org/f?…: HTTP 500; then https://y.org/g?…."
    assert "secret" not in str(FetchError(message)) and "sig=S" not in str(FetchError(message))
    quoted = "fetch of <https://user:pa>ss@feeds.example/?k=K3> failed; redirect to 'http://a:b@c.org/x?y=1'"
    assert redact.text(quoted) == "fetch of <https://feeds.example/?…> failed; redirect to 'http://c.org/x?…'"


def test_feeds_name_sources_without_credentials() -> None:
    settings = parse_settings("", origin="t", base_dir=Path("."), env={})
    when = datetime(2026, 11, 1, tzinfo=UTC)
    made = article("a", when, title="T", url="https://x.org/a")
    urls = {"s": "https://reader:pw@x.org/feed?api_key=K"}
    for fmt in ("atom", "rss"):
        body = render(FeedSpec("site", None, "T"), fmt, [made], settings, urls).decode()
        assert "https://x.org/feed" in body and "pw@" not in body and "api_key" not in body, fmt


def test_a_source_url_that_is_not_a_url_is_refused_without_showing_it() -> None:
    from digest.common.errors import ConfigError

    for bad in ("http://user:pa ss@host/feed", "https://user:secret@host:port/x", "http://user:secret@/x"):
        with pytest.raises(ConfigError) as caught:
            parse_settings(
                f'[[sources]]\nname = "s"\nurl = "{bad}"\n', origin="t", base_dir=Path("."), env={}
            )
        assert "sources[0].url: not a valid URL" in str(caught.value) and "secret" not in str(caught.value)
        assert "pa ss" not in str(caught.value)
