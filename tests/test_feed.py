"""Feed parsing: RSS, Atom and JSON Feed, through the fast path and the feedparser path."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from digest.common.errors import ParseError
from digest.intake.kinds.feed import fast_path_eligible, parse_feed, parse_with_feedparser

from .helpers import rss

BASE = "https://news.example.org/feed.xml"


def test_rss2_items_with_content_encoded_preferred_over_description() -> None:
    body = rss(
        [
            {
                "title": "Ministers meet &amp; agree",
                "link": "https://news.example.org/a",
                "guid": "https://news.example.org/?p=1",
                "pubDate": "Tue, 10 Nov 2026 09:30:00 +0100",
                "description": "Short teaser",
                "content:encoded": "<![CDATA[<p>The <b>full</b> text.</p>]]>",
                "dc:creator": "Ann Writer",
            }
        ],
        extra_ns='xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"',
    )
    for fast in (True, False):
        [item] = parse_feed(body, "application/rss+xml", BASE, fast=fast)
        assert item.title == "Ministers meet & agree"
        assert item.url == "https://news.example.org/a"
        assert item.guid == "https://news.example.org/?p=1"
        assert "<b>full</b>" in item.content_html
        assert "teaser" not in item.content_html
        assert item.author == "Ann Writer"
        assert item.published == datetime(2026, 11, 10, 8, 30, tzinfo=UTC)


def test_relative_links_resolve_against_xml_base_and_the_feed_url() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://other.example.net/blog/">
  <title>t</title><id>urn:x</id><updated>2026-01-01T00:00:00Z</updated>
  <entry><title>One</title><id>urn:1</id><updated>2026-01-02T00:00:00Z</updated>
    <link href="posts/one"/><content type="html">&lt;a href="img/x"&gt;x&lt;/a&gt;</content></entry>
</feed>"""
    assert not fast_path_eligible(body, None)  # xml:base goes to the reference parser
    [item] = parse_feed(body, "application/atom+xml", BASE)
    assert item.url == "https://other.example.net/blog/posts/one"
    assert 'href="https://other.example.net/blog/img/x"' in item.content_html
    plain = rss([{"title": "Rel", "link": "/rel/path"}])
    [rel] = parse_feed(plain, None, BASE)
    assert rel.url == "https://news.example.org/rel/path"


def test_untitled_items_get_a_title_from_their_text() -> None:
    body = rss(
        [
            {
                "description": "Heavy rain closed the mountain pass on Monday. Crews are out.",
                "link": "https://x.org/1",
            }
        ]
    )
    for fast in (True, False):
        [item] = parse_feed(body, None, BASE, fast=fast)
        assert item.title == "Heavy rain closed the mountain pass on Monday."


def test_legacy_encoding_is_decoded() -> None:
    body = (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>Caf\xe9 &eacute;t\xe9</title><link>http://x.org/c</link></item></channel></rss>"
    ).encode("iso-8859-1")
    assert not fast_path_eligible(body, None)
    [item] = parse_feed(body, "text/xml", BASE)
    assert item.title == "Café été"


def test_rss1_and_atom03_are_read() -> None:
    rdf = b"""<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
      xmlns="http://purl.org/rss/1.0/"><channel rdf:about="http://x.org/"><title>t</title>
      <link>http://x.org/</link></channel>
      <item rdf:about="http://x.org/1"><title>RDF one</title><link>http://x.org/1</link></item></rdf:RDF>"""
    assert [i.title for i in parse_feed(rdf, None, BASE)] == ["RDF one"]
    atom03 = b"""<?xml version="1.0"?><feed version="0.3" xmlns="http://purl.org/atom/ns#">
      <title>t</title><entry><title>Old atom</title><link rel="alternate" href="http://x.org/o"/>
      <id>tag:x.org,2004:1</id><issued>2004-01-01T00:00:00Z</issued></entry></feed>"""
    [old] = parse_feed(atom03, None, BASE)
    assert (old.title, old.url) == ("Old atom", "http://x.org/o")


def test_json_feed_1_1() -> None:
    body = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "J",
            "home_page_url": "https://j.example.org/",
            "authors": [{"name": "Feed Author"}],
            "items": [
                {
                    "id": "1",
                    "url": "/a",
                    "title": "A",
                    "content_html": "<p>Hi</p>",
                    "date_published": "2026-01-02T03:04:05Z",
                },
                {"id": 2, "content_text": "No title here. Second sentence.", "authors": [{"name": "Bo"}]},
            ],
        }
    ).encode()
    first, second = parse_feed(body, "application/feed+json", BASE)
    assert (first.title, first.url, first.guid) == ("A", "https://j.example.org/a", "1")
    assert first.author == "Feed Author"
    assert first.published == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (second.title, second.guid, second.author) == ("No title here.", "2", "Bo")
    assert second.content_html == "<p>No title here. Second sentence.</p>"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"version": "https://jsonfeed.org/version/9", "items": []}',
        b"<html><p>no</p></html>",
        b"\x00\x01garbage",
    ],
)
def test_non_feeds_raise_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_feed(body, None, BASE)


def test_fast_and_reference_paths_agree_on_a_plain_feed() -> None:
    body = rss(
        [{"title": f"Item {i} &lt;b&gt;", "link": f"https://x.org/{i}", "guid": f"g{i}"} for i in range(20)]
    )
    assert fast_path_eligible(body, "application/rss+xml; charset=utf-8")
    assert parse_feed(body, None, BASE, fast=True) == parse_with_feedparser(body, None, BASE)
