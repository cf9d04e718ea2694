"""Grouping throughput: regions + themes classification and story clustering.

Builds N synthetic articles (default 10,000) from the seeds' own sentences, then prints
articles/second for classification (place mentions, theme phrases, scoring with per-source
IDF) and the time to cluster all of them into stories, in two shapes: published over a year
and first seen in daily pulls, and one backfill where all were first seen at once (the
worst case for the time window). Peak memory is the process's maximum RSS.

    .venv/bin/python benchmarks/grouping.py [--articles 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.grouping import regions as region_scoring  # noqa: E402
from digest.grouping import themes as theme_scoring  # noqa: E402
from digest.grouping.places import Gazetteer  # noqa: E402
from digest.grouping.regions import count_places, split_lead  # noqa: E402
from digest.grouping.stories import StoryInput, cluster  # noqa: E402
from digest.grouping.themes import Taxonomy  # noqa: E402
from digest.grouping.weights import idf  # noqa: E402
from digest.intake.kinds.text import parse_text  # noqa: E402


def synthetic(count: int, seed: int = 7) -> list[tuple[str, str]]:
    """(title, text) pairs: a seed title and eight paragraphs drawn from the seeds' text."""
    rng = random.Random(seed)
    titles, paragraphs = [], []
    for path in sorted((REPO / "seeds").glob("*.txt")):
        for item in parse_text(path.read_bytes(), "text/plain", path.as_uri()):
            titles.append(item.title)
            paragraphs.extend(
                p.replace("<p>", "").replace("</p>", "")
                for p in item.content_html.split("</p>")
                if len(p) > 80
            )
    return [(rng.choice(titles), "\n\n".join(rng.choice(paragraphs) for _ in range(8))) for _ in range(count)]


def classify(articles: list[tuple[str, str]]) -> float:
    """Seconds to find places and theme phrases and score regions and themes for all."""
    gazetteer, taxonomy = Gazetteer.default(), Taxonomy.from_settings(())
    started = time.perf_counter()
    places = [count_places(title, text, gazetteer) for title, text in articles]
    matches = [taxonomy.match(title, text) for title, text in articles]
    total = len(articles)
    place_df = Counter(p.key for found in places for p in found)
    theme_df = Counter(slug for found in matches for slug in found)
    place_w = {k: idf(d, total) for k, d in place_df.items()}
    theme_w = {k: idf(d, total) for k, d in theme_df.items()}
    for found_places, found_themes in zip(places, matches, strict=True):
        region_scoring.assign_regions(region_scoring.score_regions(found_places, place_w))
        theme_scoring.assign_themes(found_themes, theme_w)
    return time.perf_counter() - started


def story_inputs(articles: list[tuple[str, str]], backfill: bool) -> list[StoryInput]:
    rng = random.Random(11)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    gazetteer = Gazetteer.default()
    items = []
    for index, (title, text) in enumerate(articles):
        published = start + timedelta(minutes=rng.randrange(365 * 24 * 60))
        seen = start if backfill else published.replace(hour=6, minute=0) + timedelta(days=1)
        lead, _ = split_lead(text)
        entities = frozenset(
            p.key for p in count_places(title, lead, gazetteer) if p.kind in ("country", "person")
        )
        items.append(StoryInput(f"a{index}", title, lead, seen, published, entities))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    articles = synthetic(args.articles)
    window = timedelta(days=3)
    print(
        f"grouping benchmark: {args.articles} synthetic articles from the seeds' sentences, {args.runs} runs"
    )
    times = [classify(articles) for _ in range(args.runs)]
    median = statistics.median(times)
    rate, best = args.articles / median, args.articles / min(times)
    print(f"regions + themes: median {median:.2f} s, {rate:,.0f} articles/s (best {best:,.0f})")
    for backfill in (False, True):
        items = story_inputs(articles, backfill)
        timings, found = [], 0
        for _ in range(args.runs):
            started = time.perf_counter()
            found = len(cluster(items, window))
            timings.append(time.perf_counter() - started)
        shape = "one backfill (all first seen at once)" if backfill else "daily pulls over a year"
        print(f"stories, {shape}: median {statistics.median(timings):.2f} s, {found} stories")
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
