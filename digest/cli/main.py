"""The ``digest`` command line: each command is a thin layer over a library function.

Exit status: 0 on success, 1 on a handled error (one line on stderr, no traceback), 2 on a
usage error.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest import __version__
from digest.common.errors import DigestError
from digest.common.models import CADENCES

# Each command imports what it needs where it runs: `digest --help` or `digest status` must
# not pay for the feed writers, the mail stack, the web app or the scheduler.
if TYPE_CHECKING:
    from digest.common.models import Article
    from digest.config import Settings
    from digest.store import Store, Subscriber

FORMATS = ("atom", "rss", "json")  # publish.OUTPUTS, which a test holds to this


class DigestGroup(click.Group):
    """Turns expected failures (DigestError) into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            click.echo(f"digest: error: {exc}", err=True)
            ctx.exit(1)


def _one_shot() -> None:
    """For a command that makes a big batch and exits: collect cycles rarely. A pull of 5,000
    items makes millions of objects and few cycles; the default thresholds spent about half
    a second of it scanning the same live objects again and again."""
    import gc

    gc.freeze()  # what start-up loaded lives as long as the process
    gc.set_threshold(10_000, 50, 50)


class App:
    """What commands share: the settings (loaded on first use) and the store."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from digest.config import load_settings

            self._settings = load_settings(self.config_path)
            for warning in self._settings.warnings:
                click.echo(f"digest: warning: {warning}", err=True)
        return self._settings

    def store(self) -> Store:
        from digest.store import open_database

        return open_database(self.settings.database)


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time (such as 2026-11-01)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _region(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from digest.grouping.regions import regions

    if value not in regions():
        raise click.BadParameter(f"{value!r} is not one of {', '.join(regions())}")
    return value


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: $DIGEST_CONFIG, else ./digest.toml, else the embedded default).",
)
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """digest: news sources in, feeds and weekly email digests out."""
    ctx.obj = App(config_path)


@cli.command()
@click.argument("path", default="digest.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter config to PATH (default: digest.toml)."""
    import shutil

    from digest.common.resources import bundled

    if path.exists() and not force:
        raise DigestError(f"{path}: already exists (use --force to overwrite)")
    try:
        shutil.copyfile(bundled("config.example.toml"), path)
    except OSError as exc:
        raise DigestError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    click.echo(f"wrote {path}")


@cli.command()
@click.option("--source", "names", multiple=True, metavar="NAME", help="Pull only this source (repeatable).")
@click.option("--force", is_flag=True, help="Fetch even when a server asked us to wait.")
@click.pass_obj
def pull(app: App, names: tuple[str, ...], force: bool) -> None:
    """Fetch sources and store new articles; a line per source, exit 1 if any failed."""
    from digest.intake.pull import pull as pull_sources

    _one_shot()
    with app.store() as store:
        reports = pull_sources(app.settings, store, names, force=force)
    for report in reports:
        for warning in report.warnings:
            click.echo(f"{report.name}: warning: {warning}", err=True)
        click.echo(report.summary(), err=not report.ok)
    if any(report.new or report.updated for report in reports):
        from digest.intake import websub

        for problem in websub.ping(app.settings):  # the feeds changed: tell the hub, if any
            click.echo(f"warning: {problem}", err=True)
    if not all(report.ok for report in reports):
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array of article objects.")
@click.option(
    "--since",
    callback=_since,
    metavar="ISO",
    help="Only articles first seen at or after this time.",
)
@click.option("--region", callback=_region, metavar="SLUG", help="Only articles about this region.")
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
        click.echo(json.dumps([article_json(a) for a in found], ensure_ascii=False, indent=2))
        return
    for article in found:
        when = (article.published or article.first_seen).strftime("%Y-%m-%d")
        click.echo(f"{when}  {article.source}  {article.title}")
        if article.url:
            click.echo(f"            {article.url}")
    click.echo(f"{len(found)} article{'s' if len(found) != 1 else ''}")


SEARCH_LIMIT = 500  # matches a search lists at most


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


def article_json(article: Article) -> dict[str, Any]:
    """The ``digest articles --json`` object for one article (a contract: see DESIGN.md)."""
    return {
        "id": article.id,
        "title": article.title,
        "url": article.url,
        "source": article.source,
        "published": article.published.isoformat() if article.published else None,
        "first_seen": article.first_seen.isoformat(),
        "updated": article.updated.isoformat(),
        "author": article.author,
        "summary": article.summary_text,
        "regions": list(article.regions),
        "themes": list(article.themes),
        "story": article.story,
        "places": [_place_evidence(p) for p in article.places],
        "theme_phrases": {
            slug: m["phrases"] for slug, m in article.theme_matches.items() if slug in article.themes
        },
    }


def _place_evidence(place: dict[str, Any]) -> dict[str, Any]:
    where = [part for part in ("title", "lead", "body") if place.get(part)]
    count = sum(int(place.get(part, 0)) for part in ("title", "lead", "body"))
    return {
        "name": place["name"],
        "region": place["region"],
        "kind": place["kind"],
        "count": count,
        "in": where,
    }


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object with regions, themes and stories.")
@click.option(
    "--since", callback=_since, metavar="ISO", help="Count only articles first seen at or after this time."
)
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


@cli.command()
@click.pass_obj
def regroup(app: App) -> None:
    """Classify every article again and re-cluster stories (after a vocabulary change)."""
    from digest.grouping.classify import regroup as regroup_all

    _one_shot()
    with app.store() as store:
        report = regroup_all(store, app.settings)
    click.echo(f"regrouped {report.classified} articles; {report.stories} stories")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="atom", show_default=True)
@click.option("--region", callback=_region, metavar="SLUG", help="The feed of one region.")
@click.option("--theme", metavar="SLUG", help="The feed of one theme.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout."
)
@click.pass_obj
def feed(app: App, fmt: str, region: str | None, theme: str | None, output: Path | None) -> None:
    """Write a feed: the whole site, or one region or theme."""
    from digest.publish.site import Site

    if region and theme:
        raise click.UsageError("give --region or --theme, not both")
    site = Site(app.settings)
    kind, slug = ("region", region) if region else ("theme", theme) if theme else ("site", None)
    spec = site.spec(kind, slug)
    if spec is None:
        raise click.BadParameter(
            f"{slug!r} is not one of {', '.join(site.names['themes'])}", param_hint="'--theme'"
        )
    with app.store() as store:
        body, _ = site.feed(store, spec, fmt)
    if output is None:
        click.echo(body.decode(), nl=False)
        return
    _write(output, body)


@cli.command(name="publish")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def publish_command(app: App, folder: Path) -> None:
    """Write the whole public site (pages, feeds, OPML) to FOLDER as static files."""
    from digest.publish.site import publish_site

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with app.store() as store:
            written = publish_site(app.settings, store, folder)
    except OSError as exc:
        raise DigestError(f"{folder}: cannot write: {exc.strerror or exc}") from exc
    click.echo(f"wrote {written} files to {folder}")


@cli.command()
@click.option("--host", help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: [web] port, 8080).")
@click.pass_obj
def serve(app: App, host: str | None, port: int | None) -> None:
    """Serve the feeds and pages over HTTP."""
    import uvicorn

    from digest.web.app import create_app

    settings = app.settings
    with app.store():
        pass  # fail here, with one line, if the database cannot be opened
    uvicorn.run(
        create_app(settings),
        host=host or settings.web.host,
        port=settings.web.port if port is None else port,
        log_level="info",
        access_log=False,
    )


@cli.group()
def subscribers() -> None:
    """Manage subscribers: add, remove, list, import, export."""


def _slugs(app: App) -> tuple[list[str], list[str]]:
    from digest.grouping.regions import regions
    from digest.grouping.themes import taxonomy_for

    return list(regions()), list(taxonomy_for(app.settings).titles())


@subscribers.command(name="add")
@click.argument("email")
@click.option("--region", "regions_", multiple=True, metavar="SLUG", help="Only these regions (repeatable).")
@click.option("--theme", "themes_", multiple=True, metavar="SLUG", help="Only these themes (repeatable).")
@click.option("--confirmed", is_flag=True, help="Active at once, without a confirmation email.")
@click.option("--cadence", type=click.Choice(CADENCES), help="Their own rhythm (default: [digest] cadence).")
@click.option(
    "--timezone", metavar="ZONE", help="IANA time zone of their hour (default: [schedule] timezone)."
)
@click.option("--hour", metavar="0-23", help="Local hour their digest is due (default: 8).")
@click.option("--weekday", metavar="DAY", help="For weekly: mon … sun (default: mon).")
@click.option(
    "--topic", "topics", multiple=True, metavar="QUERY", help="A search topic (repeatable, up to 5)."
)
@click.pass_obj
def subscribers_add(
    app: App,
    email: str,
    regions_: tuple[str, ...],
    themes_: tuple[str, ...],
    confirmed: bool,
    topics: tuple[str, ...],
    cadence: str | None,
    timezone: str | None,
    hour: str | None,
    weekday: str | None,
) -> None:
    """Add a subscriber (pending, with a confirmation email, unless --confirmed). Without
    --cadence (and no [digest] cadence) they follow the site's digest_cron."""
    import asyncio

    from digest.mail.send import send_confirmation
    from digest.subscribers.lifecycle import add as add_subscriber
    from digest.subscribers.lifecycle import check_slugs, defaults_for

    known_regions, known_themes = _slugs(app)
    chosen_regions = check_slugs(regions_, known_regions, "region")
    chosen_themes = check_slugs(themes_, known_themes, "theme")
    with app.store() as store:
        added = add_subscriber(
            store,
            email,
            regions=chosen_regions,
            themes=chosen_themes,
            confirmed=confirmed,
            rhythm={
                k: v
                for k, v in (
                    ("cadence", cadence),
                    ("timezone", timezone),
                    ("hour", hour),
                    ("weekday", weekday),
                )
                if v is not None
            },
            topics=topics or None,
            defaults=defaults_for(app.settings),
        )
        if added.status == "pending":
            where = asyncio.run(send_confirmation(store, app.settings, added))
            click.echo(f"{added.email}: pending; confirmation sent ({where})")
        else:
            click.echo(f"{added.email}: {added.status}")


@subscribers.command(name="remove")
@click.argument("email")
@click.pass_obj
def subscribers_remove(app: App, email: str) -> None:
    """Delete a subscriber and their delivery history."""
    from digest.common.addresses import normalise_email

    with app.store() as store:
        if not store.delete_subscriber(normalise_email(email)):
            raise DigestError(f"{email}: no such subscriber")
    click.echo(f"{email}: removed")


@subscribers.command(name="reactivate")
@click.argument("email")
@click.pass_obj
def subscribers_reactivate(app: App, email: str) -> None:
    """Mail a bounced subscriber again (the log records it)."""
    from digest.subscribers.lifecycle import reactivate

    with app.store() as store:
        found = reactivate(store, email)
    click.echo(f"{found.email}: {found.status} again")


@subscribers.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--status",
    type=click.Choice(["pending", "active", "unsubscribed", "bounced"]),
    help="Only these (bounced: the suppression list, never mailed).",
)
@click.pass_obj
def subscribers_list(app: App, as_json: bool, status: str | None) -> None:
    """List subscribers: email, status, regions, themes, times."""
    with app.store() as store:
        found = store.subscribers()
    found = [s for s in found if status is None or s.status == status]
    if as_json:
        click.echo(json.dumps([subscriber_json(s) for s in found], indent=2))
        return
    for subscriber in found:
        prefs = " ".join(subscriber.regions + subscriber.themes) or "everything"
        reason = f"  ({subscriber.reason})" if subscriber.reason else ""
        click.echo(f"{subscriber.email:<40} {subscriber.status:<13} {prefs}{reason}")
    click.echo(f"{len(found)} subscriber{'s' if len(found) != 1 else ''}")


def subscriber_json(subscriber: Subscriber) -> dict[str, Any]:
    """The `digest subscribers list --json` object for one subscriber."""
    from digest.common.dates import to_iso
    from digest.common.rhythms import weekday_name

    def when(value: datetime | None) -> str | None:
        return to_iso(value) if value else None

    return {
        "email": subscriber.email,
        "status": subscriber.status,
        "regions": list(subscriber.regions),
        "themes": list(subscriber.themes),
        "created": to_iso(subscriber.created),
        "confirmed": when(subscriber.confirmed),
        "unsubscribed": when(subscriber.unsubscribed),
        "reason": subscriber.reason,  # why a bounce or a complaint moved them, if one did
        # Their own rhythm (all null: the site's schedule), topics, and when next due.
        "cadence": subscriber.rhythm.cadence if subscriber.rhythm else None,
        "timezone": subscriber.rhythm.timezone if subscriber.rhythm else None,
        "hour": subscriber.rhythm.hour if subscriber.rhythm else None,
        "weekday": weekday_name(subscriber.rhythm.weekday) if subscriber.rhythm else None,
        "topics": list(subscriber.topics),
        "next_due": when(subscriber.next_due),
    }


@subscribers.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def subscribers_import(app: App, path: Path) -> None:
    """Import subscribers from CSV (header row; email, status, regions, themes, cadence,
    timezone, hour, weekday, topics)."""
    from digest.subscribers.lifecycle import defaults_for, import_csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DigestError(f"{path}: cannot read: {exc}") from exc
    known_regions, known_themes = _slugs(app)
    with app.store() as store:
        report = import_csv(
            text, store, known_regions, known_themes, origin=str(path), defaults=defaults_for(app.settings)
        )
    for warning in report.warnings:
        click.echo(f"digest: warning: {warning}", err=True)
    for error in report.errors:
        click.echo(error, err=True)
    click.echo(f"{path}: {report.added} added, {report.updated} updated, {len(report.errors)} rejected")
    if report.errors:
        sys.exit(1)


@subscribers.command(name="export")
@click.pass_obj
def subscribers_export(app: App) -> None:
    """Write every subscriber as CSV to stdout."""
    from digest.subscribers.lifecycle import export_csv

    with app.store() as store:
        click.echo(export_csv(store), nl=False)


@cli.command()
@click.option("--for", "for_email", metavar="EMAIL", help="As this subscriber would get it.")
@click.option(
    "--since", callback=_since, metavar="ISO", help="Articles first seen since (default: a week ago)."
)
@click.option("--at", callback=_since, metavar="ISO", help="As if it were this moment (default: now).")
@click.option("--format", "fmt", type=click.Choice(["html", "text"]), default="html", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def preview(
    app: App,
    for_email: str | None,
    since: datetime | None,
    at: datetime | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Render a digest and send nothing (with --for: that subscriber's next digest so far)."""
    from digest.mail.send import preview_body

    with app.store() as store:
        body = preview_body(store, app.settings, email=for_email, since=since, part=fmt, now=at)
    if output is None:
        click.echo(body, nl=False)
    else:
        _write(output, body.encode())


@cli.command()
@click.option(
    "--to",
    "to_email",
    metavar="EMAIL",
    help="Send one copy to this address, outside the ledger (template tests).",
)
@click.option(
    "--since",
    callback=_since,
    metavar="ISO",
    help="Every digest starts here instead of at each subscriber's last one.",
)
@click.option(
    "--at",
    callback=_since,
    metavar="ISO",
    help="Act as if it were this moment: send to whoever is due then (catching up, tests).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing, record nothing.")
@click.pass_obj
def send(app: App, to_email: str | None, dry_run: bool, since: datetime | None, at: datetime | None) -> None:
    """Resume unfinished deliveries, then send a digest to every subscriber due now: those on
    a rhythm of their own whose due time has passed, and those on the site's schedule."""
    import asyncio

    from digest.common.addresses import normalise_email
    from digest.mail.send import dry_run_lines, send_all, send_test_copy

    _one_shot()
    with app.store() as store:
        if to_email:
            where = asyncio.run(send_test_copy(store, app.settings, normalise_email(to_email), since))
            click.echo(f"sent a test copy to {to_email} ({where})")
            return
        if dry_run:
            for line in dry_run_lines(store, app.settings, since, at):
                click.echo(line)
            return
        progress = _Progress() if sys.stderr.isatty() else None
        try:
            reports = asyncio.run(
                send_all(
                    store, app.settings, now=at, progress=progress.step if progress else None, since=since
                )
            )
        finally:
            if progress:
                progress.done()
    if not reports:
        click.echo("nothing to send: no subscriber due has anything new")
    for report in reports:
        click.echo(report.summary(), err=bool(report.failed or report.deferred))
    if any(r.failed or r.deferred for r in reports):
        sys.exit(1)


class _Progress:
    """A running count on the terminal while a digest goes out."""

    def __init__(self) -> None:
        self.count = 0

    def step(self, n: int) -> None:
        self.count += n
        click.echo(f"\rsending: {self.count}", nl=False, err=True)

    def done(self) -> None:
        if self.count:
            click.echo("", err=True)


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup(app: App, path: Path) -> None:
    """Copy the database to a new SQLite file PATH while digest keeps running."""
    if not path.parent.is_dir():
        raise DigestError(f"{path}: folder {path.parent} does not exist")
    with app.store() as store:
        store.backup(path)
    click.echo(f"backed up {app.settings.database.shown} to {path}")


@cli.group()
def dkim() -> None:
    """DKIM signing keys ([dkim] domain, selector, key_file)."""


@dkim.command(name="keygen")
@click.option("--algorithm", type=click.Choice(["rsa", "ed25519"]), default="rsa", show_default=True)
@click.pass_obj
def dkim_keygen(app: App, algorithm: str) -> None:
    """Write a new private key to [dkim] key_file (mode 0600, never over an existing file)
    and print the DNS TXT record to publish."""
    from digest.mail.dkim import keygen

    config = app.settings.dkim
    if config is None:
        raise DigestError(f"{app.settings.origin}: no [dkim] section: set domain, selector and key_file")
    record = keygen(config.key_file, algorithm, config.domain, config.selector)
    click.echo(f"wrote {config.key_file} (keep it secret); publish this DNS record:", err=True)
    click.echo(record)


@cli.group()
def db() -> None:
    """Move the whole database between SQLite and PostgreSQL."""


@db.command(name="copy")
@click.option("--to", "to_url", metavar="URL", help="Copy the configured database into this (empty) one.")
@click.option("--from", "from_url", metavar="URL", help="Copy this database into the configured (empty) one.")
@click.pass_obj
def db_copy(app: App, to_url: str | None, from_url: str | None) -> None:
    """Copy every article, subscriber, digest and setting (the token secret too, so links in
    sent emails keep working) between the configured database and URL: sqlite:///PATH or
    postgresql://USER@HOST:PORT/DBNAME. The target must be empty. A password for the other
    database comes from PGPASSWORD or ~/.pgpass (or DIGEST_DATABASE_PASSWORD when the
    configured database is SQLite)."""
    from digest.config import database_at
    from digest.store import open_database
    from digest.store.copy import copy_database

    if (to_url is None) == (from_url is None):
        raise click.UsageError("give exactly one of --to URL or --from URL")
    here = app.settings.database
    option = "--to" if to_url else "--from"
    other = database_at(to_url or from_url or "", option, password="" if here.url else here.password)
    source, target = (here, other) if to_url else (other, here)
    if not source.url and not source.path.is_file():
        raise DigestError(f"{source.path}: no such database to copy from")
    with open_database(source) as reading, open_database(target) as writing:
        counts = copy_database(reading, writing)
    copied = ", ".join(
        f"{counts.get(t, 0)} {t}" for t in ("articles", "subscribers", "digests", "deliveries")
    )
    click.echo(f"copied {source.shown} to {target.shown}: {copied}")


@cli.command(name="run")
@click.option("--check", is_flag=True, help="Validate the configuration and exit.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def run_command(app: App, check: bool, log_format: str) -> None:
    """The service: scheduled pulls, the weekly digest and the web server, until SIGTERM."""
    from digest.common.dates import utcnow
    from digest.mail.schedule import cron_trigger
    from digest.service.runner import run_service

    settings = app.settings
    trigger = cron_trigger(settings)
    with app.store():
        pass  # the database opens, or one line says why not
    if check:
        click.echo(f"{settings.origin}: ok; next digest {trigger.get_next_fire_time(None, utcnow())}")
        return
    sys.exit(run_service(settings, log_format=log_format))


@cli.group()
def sources() -> None:
    """Manage sources in the database (the config says which there are)."""


@sources.command(name="rename")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def sources_rename(app: App, old: str, new: str) -> None:
    """Rename a source, keeping its articles and their ids; then rename it in the config too."""
    with app.store() as store:
        store.rename_source(old, new)
    click.echo(f"{old}: renamed {new}; use name = {new!r} in {app.settings.origin} too")


@cli.command()
@click.pass_obj
def status(app: App) -> None:
    """Sources (last fetch, status, next fetch, articles, last error), recent digests, next digest."""
    from digest.common import redact
    from digest.common.dates import to_iso
    from digest.intake.sync import sync_sources
    from digest.mail.schedule import next_due

    with app.store() as store:
        sync_sources(store, app.settings)
        sources = store.source_summaries()
        digests = store.digests(limit=5)
        next_digest = next_due(store, app.settings, store.now())
    click.echo("Sources")
    for source in sources:
        fetched = to_iso(source.last_fetched) if source.last_fetched else "never"
        line = f"  {source.name:<16} {source.articles:>6} articles  last {fetched:<32}"
        if source.removed:
            line += f" removed from the config on {source.removed:%Y-%m-%d} (its articles stay)"
        else:
            next_fetch = to_iso(source.next_fetch) if source.next_fetch else "now"
            line += f" status {source.last_status or '-':<4} next {next_fetch}"
        click.echo(line)
        if source.last_error:
            error = redact.text(source.last_error)
            click.echo(f"  {'':<16} error ({source.consecutive_failures}x): {error}")
    click.echo("Digests")
    for d in digests:
        counts = f"sent {d.sent}, failed {d.failed}, pending {d.pending}"
        click.echo(f"  {d.digest.id:<22} {d.digest.status:<8} {counts}")
    if not digests:
        click.echo("  none yet")
    click.echo(
        f"Next digest: {next_digest} ({app.settings.schedule.digest_cron}, {app.settings.schedule.timezone})"
    )


def _write(path: Path, body: bytes) -> None:
    try:
        path.write_bytes(body)
    except OSError as exc:
        raise DigestError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="digest")
