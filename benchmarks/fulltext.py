"""What full text changes in grouping, on the seeds' sample site served as WordPress.

The site (``tests/wordpress_site.py``) is served from 127.0.0.1: a feed of first paragraphs
with "Continue reading" links, and a page per post with its whole text among WordPress's
chrome. The feed is pulled and grouped twice, once as it is and once with
``full_text = true``; the script prints how regions, themes and stories differ.

    .venv/bin/python benchmarks/fulltext.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.common.models import Article  # noqa: E402
from digest.intake.pull import pull  # noqa: E402
from digest.store import open_store  # noqa: E402
from tests.helpers import settings_for  # noqa: E402
from tests.servers import FeedServer  # noqa: E402
from tests.wordpress_site import seed_posts, serve  # noqa: E402


def grouped(feed: str, full: bool) -> tuple[dict[str, Article], float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(
            Path(tmp),
            f'[fetch]\npage_delay = 0.01\n[[sources]]\nname = "fosc"\nurl = "{feed}"\nfull_text = {str(full).lower()}\n',
        )
        with open_store(settings.database.path) as store:
            started = time.perf_counter()
            pull(settings, store)
            took = time.perf_counter() - started
            return {a.title: a for a in store.articles()}, took


def main() -> None:
    server = FeedServer()
    server.thread.start()
    try:
        feed = serve(server, seed_posts())
        excerpt, took_excerpt = grouped(feed, False)
        full, took_full = grouped(feed, True)
    finally:
        server.httpd.shutdown()
    titles = sorted(excerpt)
    words = lambda a: len(a.summary_text.split())  # noqa: E731
    print(
        f"{len(titles)} posts; words per article: excerpt {sum(map(words, excerpt.values())) / len(titles):.0f},"
        f" full text {sum(map(words, full.values())) / len(titles):.0f}"
    )
    print(
        f"pull and group: excerpt {took_excerpt:.2f} s, full text {took_full:.2f} s (40 pages fetched, 2 at a time)"
    )
    primary = lambda a: a.regions[0] if a.regions else "(none)"  # noqa: E731
    changed = [t for t in titles if primary(excerpt[t]) != primary(full[t])]
    print(f"primary region changed for {len(changed)} of {len(titles)} articles")
    for title in changed:
        print(f"  {primary(excerpt[title]):>14} -> {primary(full[title]):<14} {title[:70]}")
    for name, found in (("excerpt", excerpt), ("full text", full)):
        regions = Counter(primary(a) for a in found.values())
        stories = Counter(a.story for a in found.values() if a.story)
        shared = [s for s, n in stories.items() if n > 1]
        themes = sum(len(a.themes) for a in found.values()) / len(found)
        general = sum(a.themes == ("general",) for a in found.values())
        no_region = sum(not a.regions for a in found.values())
        print(
            f"{name:>9}: {len(shared)} stories of 2+ articles ({sum(stories[s] for s in shared)} articles),"
            f" {themes:.2f} themes an article ({general} only 'general'), {no_region} without a region;"
            f" regions {dict(regions.most_common())}"
        )


if __name__ == "__main__":
    main()
