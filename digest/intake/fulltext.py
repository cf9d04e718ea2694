"""Full text for sources whose items carry only an excerpt (``full_text = true``).

Which items: those new or changed in this pull (a page already extracted is never fetched
again while its item stays the same) whose item ends in a "Continue reading"/"Read more"
link, or whose text is shorter than ``[fetch] full_text_below`` characters.

How: the article's own page is fetched with the source's fetch policy and the same size
and time caps as feeds, after its host's robots.txt (read once a pull; a 4xx means no rules,
anything else that fails means "not now"); at most ``[fetch] per_host`` requests to a
host at once, each worker waiting ``[fetch] page_delay`` between its requests. trafilatura
finds the main text (links and basic formatting kept, no comments), and our sanitiser
cleans it as any source's HTML. When the page cannot be had, or yields less text than the
excerpt, the article keeps its excerpt and the pull says why in a warning line.

The article keeps the item's content hash: the next pull sees the same item as unchanged.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

from digest.common import redact
from digest.common.egress import FetchPolicy, host_of, is_remote
from digest.common.errors import FetchError
from digest.common.models import Article
from digest.common.sanitize import html_to_text, sanitize_html
from digest.config import FetchSettings
from digest.intake.fetch import Fetcher

log = logging.getLogger("digest")
MORE_LINK = re.compile(
    r"continue\s+reading|read\s+(the\s+)?(more|rest|full\s+(article|post|story))|class=[\"'][^\"']*more-link",
    re.I,
)
MAX_WORKERS = 8
ROBOTS_BYTES = 500 * 1024  # RFC 9309: at least 500 KiB of a robots.txt are read
MAX_PAGES = 100  # article pages a pull fetches (the newest); the rest keep their excerpt
MAX_CHARS = 1_000_000  # of extracted HTML kept, as of any source's content
BUDGET_SECONDS = 120.0  # a pull's page fetching stops starting new ones after this
_TITLE_HEADING = re.compile(r"<h1\b[^>]*>.*?</h1>", re.I | re.S)


def is_excerpt(raw_html: str, text: str, below: int) -> bool:
    """Whether an item carries only an excerpt: a more-link, or little text."""
    return len(text) < below or bool(MORE_LINK.search(raw_html))


class _Robots:
    """robots.txt of each host (RFC 9309, read by protego), read once a pull; one lock per
    origin, so a slow host holds up only its own pages."""

    def __init__(self, fetcher: Fetcher, policy: FetchPolicy, agent: str) -> None:
        self.fetcher, self.policy, self.agent = fetcher, policy, agent
        self.rules: dict[str, Protego | str] = {}  # origin -> its rules, or why there are none
        self.locks: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be fetched (None: it may)."""
        parts = urlsplit(url)
        origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        with self.lock:
            lock = self.locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self.rules:
                self.rules[origin] = self._read(origin + "/robots.txt")
        found = self.rules[origin]
        if isinstance(found, str):
            return found
        return None if found.can_fetch(url, self.agent) else "robots.txt does not allow it"

    def _read(self, url: str) -> Protego | str:
        try:
            result = self.fetcher.fetch(url, policy=self.policy)
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                return Protego.parse("")  # no robots.txt: no rules (RFC 9309)
            return f"robots.txt could not be read ({exc})"  # unreachable: the site is off limits for now
        body = b"".join(d.body for d in result.documents)[:ROBOTS_BYTES]
        return Protego.parse(body.decode("utf-8-sig", "replace"))


@dataclass
class Filled:
    """What fetching the pages gave: articles with their full text (by id), those whose page
    had not changed (304: the stored text stands), each page's validators, warnings."""

    articles: dict[str, Article] = field(default_factory=dict)
    unchanged: set[str] = field(default_factory=set)
    pages: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    postponed: int = 0  # past the pull's page count or time: they keep their excerpt


def fill(
    fetcher: Fetcher,
    policy: FetchPolicy,
    articles: Sequence[Article],
    settings: FetchSettings,
    validators: Mapping[str, tuple[str | None, str | None]],
) -> Filled:
    """Fetch the page of each article (conditionally, with the ``validators`` it was last
    fetched with) and extract its main text."""
    robots = _Robots(fetcher, policy, settings.user_agent)
    by_host: dict[str, list[Article]] = {}
    # The newest first: when the pull's budget runs out, the older ones keep their excerpt.
    newest = sorted(articles, key=lambda a: a.published or a.first_seen, reverse=True)
    for article in newest[:MAX_PAGES]:
        if article.url and is_remote(article.url):
            by_host.setdefault(host_of(article.url), []).append(article)
    queues = [
        host_articles[i :: settings.per_host]
        for host_articles in by_host.values()
        for i in range(min(settings.per_host, len(host_articles)))
    ]
    done = Filled(postponed=len(newest[MAX_PAGES:]))
    lock = threading.Lock()
    deadline = time.monotonic() + BUDGET_SECONDS

    def work(queue: list[Article]) -> None:
        for n, article in enumerate(queue):
            if time.monotonic() > deadline:
                with lock:
                    done.postponed += len(queue) - n
                return
            if n:
                time.sleep(settings.page_delay)  # politeness: a pause between one worker's requests
            outcome = _one(fetcher, policy, robots, article, validators.get(article.url or "", (None, None)))
            with lock:
                if outcome.page is not None:
                    done.pages.append(outcome.page)
                if outcome.unchanged:
                    done.unchanged.add(article.id)
                elif outcome.article is not None:
                    done.articles[article.id] = outcome.article
                else:
                    url = redact.url(article.url or "")
                    done.warnings.append(f"full text of {url}: {outcome.problem}; kept the excerpt")

    if queues:
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(queues))) as pool:
            list(pool.map(work, queues))
    return done


@dataclass
class _Outcome:
    article: Article | None = None
    problem: str = ""
    unchanged: bool = False
    page: tuple[str, str | None, str | None] | None = None  # (url, ETag, Last-Modified) to keep


def _one(
    fetcher: Fetcher,
    policy: FetchPolicy,
    robots: _Robots,
    article: Article,
    validators: tuple[str | None, str | None],
) -> _Outcome:
    url = article.url or ""
    refusal = robots.refusal(url)
    if refusal is not None:
        return _Outcome(problem=refusal)
    try:
        # Each host a redirect leads to is asked too, by its own robots.txt.
        result = fetcher.fetch(
            url, etag=validators[0], last_modified=validators[1], policy=policy, ask=robots.refusal
        )
    except FetchError as exc:
        return _Outcome(problem=str(exc))
    if result.not_modified:
        return _Outcome(unchanged=True)
    page = (url, result.etag, result.last_modified) if result.etag or result.last_modified else None
    found = extract(b"".join(d.body for d in result.documents), url)
    if found is None:
        return _Outcome(problem="no main text found on the page", page=page)
    html, text = found
    if len(text) <= len(article.summary_text):
        return _Outcome(problem="the page has no more text than the excerpt", page=page)
    return _Outcome(replace(article, summary_html=html, summary_text=text), page=page)


def extract(page: bytes, url: str) -> tuple[str, str] | None:
    """The main text of a page as sanitised HTML and as plain text, or None."""
    import trafilatura  # heavy: imported by the sources that ask for full text only

    try:
        found = trafilatura.extract(
            page.decode("utf-8", "replace"),
            url=url,
            output_format="html",
            include_links=True,
            include_formatting=True,
            include_comments=False,
            include_images=False,
            include_tables=True,
        )
    except Exception as exc:  # a page that trips the extractor keeps the excerpt
        log.debug("trafilatura gave up on %s: %s", redact.url(url), type(exc).__name__)
        return None
    if not found:
        return None
    # The page's own title heading repeats the article's title: the body starts after it.
    html = sanitize_html(_TITLE_HEADING.sub("", found[:MAX_CHARS]), base_url=url)
    text = html_to_text(html, sanitized=True)
    return (html, text) if text.strip() else None
