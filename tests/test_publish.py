"""Feeds: valid Atom (RFC 4287 schema), RSS 2.0 and JSON Feed; stable ids; the static site."""

from __future__ import annotations

import email.utils
import json
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from digest.common.models import Article
from digest.config import Settings
from digest.intake.pull import pull
from digest.publish import feeds as publish
from digest.publish.site import Site, publish_site
from digest.store import open_store

from .helpers import SEEDS_SOURCE, atom_schema, pulled, rss, settings_for
from .servers import FeedServer, Reply


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    folder = tmp_path_factory.mktemp("published")
    settings = settings_for(folder, f'[site]\nbase_url = "https://news.example.org"\n{SEEDS_SOURCE}')
    pulled(settings)
    return settings, settings.database.path


def _all_feeds(settings: Settings, db: Path) -> list[tuple[publish.FeedSpec, str, bytes, list[Article]]]:
    site = Site(settings)
    with open_store(db) as store:
        return [(spec, fmt, *site.feed(store, spec, fmt)) for spec in site.specs for fmt in publish.FORMATS]


def test_every_atom_feed_validates_against_rfc_4287(seeded: tuple[Settings, Path]) -> None:
    schema = atom_schema()
    checked = 0
    for spec, fmt, body, _ in _all_feeds(*seeded):
        if fmt == "atom":
            assert schema.validate(etree.fromstring(body)), f"{spec.path(fmt)}: {schema.error_log.last_error}"
            checked += 1
    assert checked >= 20


def test_feedparser_reads_every_feed_cleanly_and_round_trips(seeded: tuple[Settings, Path]) -> None:
    for spec, fmt, body, articles in _all_feeds(*seeded):
        if fmt == "json":
            continue
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0, f"{spec.path(fmt)}: {parsed.get('bozo_exception')}"
        assert len(parsed.entries) == len(articles)
        for entry, article in zip(parsed.entries, articles, strict=True):
            assert entry.title == article.title
            assert entry.id == publish.entry_id(article, "https://news.example.org")
            assert entry.link == publish.article_link(article, "https://news.example.org")
            assert dict.get(entry, "published_parsed") is not None
            if fmt == "atom":  # RSS items have no updated date
                assert dict.get(entry, "updated_parsed") is not None
        links = {link.rel: link.href for link in parsed.feed.links}
        assert links["self"] == f"https://news.example.org{spec.path(fmt)}"
        assert links["alternate"] == f"https://news.example.org{spec.page_path()}"


def test_rss_follows_the_validator_rules(seeded: tuple[Settings, Path]) -> None:
    settings, db = seeded
    site = Site(settings)
    with open_store(db) as store:
        body, _ = site.feed(store, site.specs[0], "rss")
    root = etree.fromstring(body)
    channel = root.find("channel")
    assert channel is not None and root.get("version") == "2.0"
    for required in ("title", "link", "description"):
        assert channel.findtext(required)
    for item in channel.iter("item"):
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "false" and guid.text.startswith("tag:")
        pub = item.findtext("pubDate") or ""
        assert email.utils.parsedate_to_datetime(pub) and pub.endswith("+0000")  # RFC 822
    self_link = channel.find("{http://www.w3.org/2005/Atom}link")
    assert self_link is not None and self_link.get("rel") == "self"


def test_json_feed_has_the_required_fields(seeded: tuple[Settings, Path]) -> None:
    for spec, fmt, body, articles in _all_feeds(*seeded):
        if fmt != "json":
            continue
        data = json.loads(body)
        assert data["version"] == "https://jsonfeed.org/version/1.1"
        assert data["title"] and data["feed_url"].endswith(spec.path("json"))
        for item, article in zip(data["items"], articles, strict=True):
            assert item["id"] == publish.entry_id(article, "https://news.example.org")
            assert item["content_html"] is not None and item["url"]
            assert item["date_published"].endswith("+00:00")


def test_ids_are_stable_across_builds_and_formats(seeded: tuple[Settings, Path]) -> None:
    first = _all_feeds(*seeded)
    again = _all_feeds(*seeded)
    assert [body for *_, body, _ in first] == [body for *_, body, _ in again]  # byte-identical rebuilds
    site_feeds = {fmt: body for spec, fmt, body, _ in first if spec.kind == "site"}
    atom_ids = [e.id for e in feedparser.parse(site_feeds["atom"]).entries]
    rss_ids = [e.id for e in feedparser.parse(site_feeds["rss"]).entries]
    json_ids = [i["id"] for i in json.loads(site_feeds["json"])["items"]]
    assert atom_ids == rss_ids == json_ids and len(set(atom_ids)) == len(atom_ids)


def test_feed_metadata(seeded: tuple[Settings, Path]) -> None:
    for spec, fmt, body, articles in _all_feeds(*seeded):
        if fmt != "atom" or not articles:
            continue
        parsed = feedparser.parse(body)
        newest = max(a.updated for a in articles)
        assert parsed.feed.updated_parsed[:6] == newest.utctimetuple()[:6]  # not the build time
        assert parsed.feed.generator == "digest"
        assert len(parsed.entries) <= 50
        if spec.kind == "region":
            assert all(spec.slug in a.regions for a in articles)
            assert all(any(t.term == spec.slug for t in e.tags) for e in parsed.entries)


def test_feed_size_is_configurable_and_sources_are_named(server: FeedServer, tmp_path: Path) -> None:
    items = [{"title": f"Item {i}", "link": f"https://x.org/{i}", "dc:creator": "Ann"} for i in range(8)]
    server.routes["/f.xml"] = Reply(200, rss(items, extra_ns='xmlns:dc="http://purl.org/dc/elements/1.1/"'))
    settings = settings_for(
        tmp_path, f'[site]\nfeed_entries = 3\n[[sources]]\nname = "wire"\nurl = "{server.url("/f.xml")}"\n'
    )
    site = Site(settings)
    with open_store(settings.database.path) as store:
        pull(settings, store)
        atom, _ = site.feed(store, site.specs[0], "atom")
        rss_body, _ = site.feed(store, site.specs[0], "rss")
    parsed = feedparser.parse(atom)
    assert len(parsed.entries) == 3
    assert parsed.entries[0].author == "Ann"
    assert parsed.entries[0].source.title == "wire"
    item = etree.fromstring(rss_body).find("channel/item")
    assert (
        item is not None
        and item.findtext("source") == "wire"
        and item.find("source").get("url") == server.url("/f.xml")
    )


def test_hostile_titles_stay_escaped_in_feeds(server: FeedServer, tmp_path: Path) -> None:
    server.routes["/f.xml"] = Reply(
        200,
        rss(
            [
                {
                    "title": '&lt;script&gt;alert(1)&lt;/script&gt; &amp; "quotes" ]]&gt;',
                    "link": "https://x.org/e",
                }
            ]
        ),
    )
    settings = settings_for(tmp_path, f'[[sources]]\nname = "e"\nurl = "{server.url("/f.xml")}"\n')
    site = Site(settings)
    with open_store(settings.database.path) as store:
        pull(settings, store)
        for fmt in publish.FORMATS:
            body, articles = site.feed(store, site.specs[0], fmt)
            assert b"<script>" not in body
    # The script element and its text are dropped; what is left is text, escaped in every format.
    assert articles[0].title == '& "quotes" ]]>'
    parsed = feedparser.parse(site_feed(settings))
    assert parsed.bozo == 0 and parsed.entries[0].title == '& "quotes" ]]>'


def site_feed(settings: Settings) -> bytes:
    site = Site(settings)
    with open_store(settings.database.path) as store:
        return site.feed(store, site.specs[0], "atom")[0]


def test_publish_writes_a_static_site(seeded: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, db = seeded
    with open_store(db) as store:
        written = publish_site(settings, store, tmp_path / "public")
        ids = [a.id for a in store.articles()]
    out = tmp_path / "public"
    assert written == len(list(p for p in out.rglob("*") if p.is_file()))
    for path in (
        "index.html",
        "feeds.opml",
        "feed.atom",
        "feed.rss",
        "feed.json",
        "regions/europe/feed.atom",
        "themes/party-relations/index.html",
    ):
        assert (out / path).is_file(), path
    assert all((out / "articles" / i / "index.html").is_file() for i in ids)
    opml = etree.parse(str(out / "feeds.opml"))
    urls = [o.get("xmlUrl") for o in opml.iter("outline") if o.get("xmlUrl")]
    assert (
        "https://news.example.org/feed.atom" in urls
        and "https://news.example.org/regions/africa/feed.atom" in urls
    )


def test_atom_keeps_the_rules_the_schema_cannot_see(seeded: tuple[Settings, Path], tmp_path: Path) -> None:
    # RFC 4287 §4.1.1: a feed has an author unless every entry has one (the W3C validator's
    # "Missing entry element: author"); the generator names no address that is not ours;
    # a copied entry's atom:source says which feed (id) and when (updated).
    ns = {"a": publish.ATOM_NS}
    checked = 0
    for spec, fmt, body, _ in _all_feeds(*seeded):
        if fmt != "atom":
            continue
        root = etree.fromstring(body)
        authors = [n.text for n in root.findall("a:author/a:name", ns)]
        entries = root.findall("a:entry", ns)
        assert authors == ["Digest"] or all(e.find("a:author/a:name", ns) is not None for e in entries), spec
        generator = root.find("a:generator", ns)
        assert generator is not None and generator.text == "digest" and generator.get("version")
        assert generator.get("uri") is None
        for entry in entries:
            source = entry.find("a:source", ns)
            assert source is not None
            assert [source.findtext(f"a:{name}", None, ns) is not None for name in ("id", "title", "updated")] == [
                True, True, True
            ]  # fmt: skip
        checked += 1
    assert checked >= 20
    settings = settings_for(tmp_path, '[site]\ntitle = "China Watch"\nauthor = "The newsroom"\n')
    body = publish.render(publish.FeedSpec("site", None, "China Watch"), "atom", [], settings)
    assert [n.text for n in etree.fromstring(body).findall("a:author/a:name", ns)] == ["The newsroom"]
