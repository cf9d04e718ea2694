"""Reading commands: ``digest articles`` (list, filter, search, or what the rules dropped),
``digest groups`` (regions, themes and stories with their counts) and ``digest regroup``
(classify everything again). The ``--json`` shapes are contracts (see DESIGN.md):
``digest.publish.objects`` makes them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from digest.cli.base import App, known_region, moment_option, one_shot

if TYPE_CHECKING:
    pass

SEARCH_LIMIT = 500  # matches a search lists at most


@click.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array of article objects.")
@moment_option("--since", "Only articles first seen at or after this time.")
@click.option("--region", callback=known_region, metavar="SLUG", help="Only articles about this region.")
@click.option("--theme", metavar="SLUG", help="Only articles on this theme.")
@click.option("--source", metavar="NAME", help="Only articles from this source.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N articles, newest first.")
@click.option(
    "--search", metavar="QUERY", help='Only those matching: words, "a phrase", OR, NOT (best match first).'
)
@click.option(
    "--dropped", is_flag=True, help="The items sources' rules dropped, with the rule that dropped each."
)
@click.pass_obj
def articles(
    app: App,
    as_json: bool,
    since: datetime | None,
    region: str | None,
    theme: str | None,
    source: str | None,
    limit: int | None,
    search: str | None,
    dropped: bool,
) -> None:
    """List stored articles, newest first (with --search: best match first)."""
    if dropped:
        _dropped(app, as_json, source, limit)
        return
    if theme is not None:
        from digest.grouping.themes import taxonomy_for

        if theme not in (known := taxonomy_for(app.settings).titles()):
            raise click.BadParameter(f"{theme!r} is not one of {', '.join(known)}", param_hint="'--theme'")
    with app.store() as store:
        if search is None:
            found = store.articles(since=since, region=region, theme=theme, source=source, limit=limit)
        else:
            from digest.common.query import parse

            found = [
                a
                for a in store.search(parse(search), since=since, limit=SEARCH_LIMIT)
                if (region is None or region in a.regions)
                and (theme is None or theme in a.themes)
                and (source is None or a.source == source)
            ][:limit]
    if as_json:
        from digest.publish.objects import article_json

        click.echo(json.dumps([article_json(a) for a in found], ensure_ascii=False, indent=2))
        return
    for article in found:
        when = (article.published or article.first_seen).strftime("%Y-%m-%d")
        click.echo(f"{when}  {article.source}  {article.title}")
        if article.url:
            click.echo(f"            {article.url}")
    click.echo(f"{len(found)} article{'s' if len(found) != 1 else ''}")


def _dropped(app: App, as_json: bool, source: str | None, limit: int | None) -> None:
    """`digest articles --dropped`: what the rules dropped, the latest first."""
    from digest.common.dates import to_iso

    with app.store() as store:
        found = [d for d in store.dropped_items(limit=10_000) if source is None or d.source == source][:limit]
    if as_json:
        rows = [
            {"id": d.article_id, "source": d.source, "title": d.title, "url": d.url, "rule": d.rule,
             "dropped": to_iso(d.dropped)}
            for d in found
        ]  # fmt: skip
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for item in found:
        click.echo(f"{item.dropped:%Y-%m-%d}  {item.source}  {item.title}")
        click.echo(f"            {item.rule}")
    click.echo(f"{len(found)} dropped item{'s' if len(found) != 1 else ''}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object with regions, themes and stories.")
@moment_option("--since", "Count only articles first seen at or after this time.")
@click.pass_obj
def groups(app: App, as_json: bool, since: datetime | None) -> None:
    """Regions, themes and stories, with their article counts."""
    from dataclasses import asdict

    from digest.grouping.regions import regions
    from digest.grouping.themes import taxonomy_for

    titles = taxonomy_for(app.settings).titles()
    with app.store() as store:
        counts = store.group_counts(since)
    found: dict[str, list[dict[str, Any]]] = {
        "regions": [{**asdict(r), "name": regions().get(r.slug, r.slug)} for r in counts.regions],
        "themes": [{**asdict(t), "title": titles.get(t.slug, t.slug)} for t in counts.themes],
        "stories": [{**asdict(s), "members": list(s.members)} for s in counts.stories],
    }
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    click.echo("Regions (articles, as primary region)")
    for entry in found["regions"]:
        click.echo(f"  {entry['articles']:>5}  {entry['primary']:>5}  {entry['slug']:<15} {entry['name']}")
    click.echo("Themes (articles)")
    for entry in found["themes"]:
        click.echo(f"  {entry['articles']:>5}  {entry['slug']:<27} {entry['title']}")
    click.echo(f"Stories ({len(found['stories'])})")
    for entry in found["stories"]:
        click.echo(f"  {entry['articles']:>5}  {entry['label']}")


@click.command()
@click.pass_obj
def regroup(app: App) -> None:
    """Classify every article again and re-cluster stories (after a vocabulary change)."""
    from digest.grouping.classify import regroup as regroup_all

    one_shot()
    with app.store() as store:
        report = regroup_all(store, app.settings)
    click.echo(f"regrouped {report.classified} articles; {report.stories} stories")


def register(cli: click.Group) -> None:
    """Add this group's commands to the root command."""
    cli.add_command(articles)
    cli.add_command(groups)
    cli.add_command(regroup)
