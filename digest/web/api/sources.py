"""The API's sources: list, add (checked by fetching once), show, change, pause, remove,
pull now, and OPML in and out. Sources of the config file are shown, never changed here."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from starlette.responses import Response

from digest.common.errors import SourceError
from digest.common.models import REGION_SLUGS
from digest.intake import sources as library
from digest.publish.objects import SourceJson, source_json
from digest.store import Store
from digest.web.api.framework import API, Body, Call, Param, Problem
from digest.web.api.pages import CURSOR, LIMIT, decode, encode, limit_of
from digest.web.api.schema import Meta

Region = Literal[REGION_SLUGS]  # type: ignore[valid-type]
Kind = Literal["auto", "feed", "html", "text"]
NAME = Param("name", Annotated[str, Meta(max_length=64)], "The source's name.", where="path")
OPML = "text/x-opml"


class SourcePage(TypedDict):
    """A page of sources: the config file's first, then those added at run time by name."""

    items: list[SourceJson]
    next: str | None


class NewSource(TypedDict):
    """A source to add: its URL (http or https) is fetched once to check it."""

    url: Annotated[str, Meta(max_length=2048, format="uri", example="https://example.org/feed.xml")]
    name: NotRequired[Annotated[str, Meta(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]]
    kind: NotRequired[Kind]
    every: NotRequired[Annotated[str, Meta(max_length=20, example="1h")]]
    regions: NotRequired[list[Region]]
    label: NotRequired[Annotated[str, Meta(max_length=200)]]


class SourceChange(TypedDict):
    """What to change of a source added at run time (null removes an option)."""

    url: NotRequired[Annotated[str, Meta(max_length=2048, format="uri")]]
    kind: NotRequired[Kind]
    every: NotRequired[Annotated[str, Meta(max_length=20)] | None]
    regions: NotRequired[list[Region] | None]
    label: NotRequired[Annotated[str, Meta(max_length=200)] | None]
    paused: NotRequired[bool]


class PullReport(TypedDict):
    """What a pull of one source did."""

    name: str
    new: int
    updated: int
    unchanged: int
    dropped: int
    error: str | None
    warnings: list[str]


class Imported(TypedDict):
    """What an OPML import did: the sources added, and a line for each feed skipped."""

    added: list[str]
    skipped: list[str]


def _shown(call: Call, store: Store, name: str) -> SourceJson:
    settings = call.state.settings
    for summary in library.listed(settings, store):
        if summary.name == name:
            return source_json(summary, library.settings_named(settings, name), redacted=True)
    raise Problem(404, f"no source named {name!r}")


@API.operation(
    "GET",
    "/sources",
    summary="List sources",
    scope="read",
    tag="sources",
    params=[LIMIT, CURSOR],
    answer=SourcePage,
)
async def list_sources(call: Call) -> SourcePage:
    """Every source not removed, the config file's first."""
    settings = call.state.settings
    after = decode(call.query.get("cursor"), str)
    limit = limit_of(call.query)

    def page(store: Store) -> SourcePage:
        everything = library.listed(settings, store)
        names = [s.name for s in everything]
        start = names.index(after) + 1 if after in names else (0 if after is None else len(names))
        chosen = everything[start : start + limit]
        more = start + limit < len(everything)
        return {
            "items": [
                source_json(s, library.settings_named(settings, s.name), redacted=True) for s in chosen
            ],
            "next": encode(chosen[-1].name) if more and chosen else None,
        }

    return await call.run(page)


@API.operation(
    "POST",
    "/sources",
    summary="Add a source",
    scope="write",
    tag="sources",
    body=Body(NewSource),
    answer=SourceJson,
    status=201,
    errors=[409],
)
async def add_source(call: Call) -> SourceJson:
    """Fetch the URL once (under the fetch policy: no private address unless the config
    allows) and add it; a page that names a feed is added as that feed. Every `digest run`
    on the database takes it up within a minute."""
    given: NewSource = call.body

    def add(store: Store) -> SourceJson:
        try:
            summary, _ = library.add_source(
                call.state.settings,
                store,
                given["url"],
                name=given.get("name"),
                kind=given.get("kind", "auto"),
                every=given.get("every"),
                regions=given.get("regions", ()),
                label=given.get("label"),
            )
        except SourceError as exc:
            raise Problem(409 if "already" in str(exc) else 422, str(exc)) from None
        return source_json(summary, redacted=True)

    return await call.run(add)


@API.operation(
    "GET",
    "/sources/{name}",
    summary="Show a source",
    scope="read",
    tag="sources",
    params=[NAME],
    answer=SourceJson,
)
async def get_source(call: Call) -> SourceJson:
    name = call.path["name"]
    return await call.run(lambda store: _shown(call, store, name))


@API.operation(
    "PATCH",
    "/sources/{name}",
    summary="Change, pause or resume a source",
    scope="write",
    tag="sources",
    params=[NAME],
    body=Body(SourceChange),
    answer=SourceJson,
    errors=[409],
)
async def change_source(call: Call) -> SourceJson:
    """A source added at run time only (one of the config file is changed there: 409)."""
    name, given = call.path["name"], dict(call.body)
    paused = given.pop("paused", None)

    def change(store: Store) -> SourceJson:
        try:
            library.change_source(call.state.settings, store, name, changes=given or None, paused=paused)
        except SourceError as exc:
            raise _refused(exc) from None
        return _shown(call, store, name)

    return await call.run(change)


@API.operation(
    "DELETE",
    "/sources/{name}",
    summary="Remove a source",
    scope="write",
    tag="sources",
    params=[NAME],
    status=204,
    errors=[409],
)
async def remove_source(call: Call) -> None:
    """Its articles stay; it is pulled no more."""
    name = call.path["name"]

    def remove(store: Store) -> None:
        try:
            library.remove_source(call.state.settings, store, name)
        except SourceError as exc:
            raise _refused(exc) from None

    await call.run(remove)


def _refused(exc: SourceError) -> Problem:
    said = str(exc)
    return Problem(404 if said.startswith("no source named") else 409, said)


@API.operation(
    "POST",
    "/sources/{name}/pull",
    summary="Pull a source now",
    scope="write",
    tag="sources",
    params=[NAME],
    answer=PullReport,
)
async def pull_source(call: Call) -> PullReport:
    """Fetch it now (a paused one too) and store what is new; grouped as a pull groups."""
    from digest.intake.pull import pull

    name = call.path["name"]

    def pulled(store: Store) -> PullReport:
        settings = library.current(call.state.settings, store)
        if all(s.name != name for s in settings.sources):
            raise Problem(404, f"no source named {name!r}")
        [report] = pull(settings, store, [name])
        return {
            "name": report.name, "new": report.new, "updated": report.updated, "unchanged": report.unchanged,
            "dropped": report.dropped, "error": report.error, "warnings": list(report.warnings),
        }  # fmt: skip

    return await call.run(pulled)


@API.operation(
    "POST",
    "/sources/import",
    summary="Import an OPML file",
    scope="write",
    tag="sources",
    body=Body(None, OPML, "An OPML 2.0 file (application/xml and text/xml are taken too)."),
    answer=Imported,
)
async def import_sources(call: Call) -> Imported:
    """Every feed the file lists that is not a source yet, in one go: a bad file adds
    nothing (422, naming the line); duplicates are skipped, a line each."""
    data: bytes = call.body

    def imported(store: Store) -> Imported:
        done = library.import_opml(call.state.settings, store, data, where="OPML")
        return {"added": list(done.added), "skipped": list(done.skipped)}

    return await call.run(imported)


@API.operation(
    "GET",
    "/sources.opml",
    summary="Export sources as OPML",
    scope="read",
    tag="sources",
    answer=str,
    media=OPML,
)
async def export_sources(call: Call) -> Response:
    body = await call.run(lambda store: library.export_opml(call.state.settings, store, redacted=True))
    return Response(body, media_type=OPML)
