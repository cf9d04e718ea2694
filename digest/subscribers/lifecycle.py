"""Subscribers: double opt-in, confirmation, one-click unsubscribe, preferences, CSV import/export,
and the tokens in their links (bound to the subscriber: see :mod:`.tokens`)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from digest.common import query
from digest.common.addresses import normalise_email
from digest.common.dates import from_iso, parse_date, to_iso
from digest.common.errors import SubscriberError
from digest.common.query import QueryError
from digest.common.rhythms import Rhythm, next_due, weekday_name, weekday_number
from digest.store import SUBSCRIBER_STATUSES, Subscriber, SubscriberChange, SubscribersStore
from digest.subscribers.tokens import CONFIRM_SECONDS, Binding, make

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.store.contract import SettingsAndSubscribers

log = logging.getLogger("digest")
TOKENS_BOUND_SINCE = "tokens_bound_since"  # the settings row the identity migration writes

STATUSES = SUBSCRIBER_STATUSES
CSV_FIELDS = (
    "email", "status", "regions", "themes", "cadence", "timezone", "hour", "weekday", "topics",
    "created", "confirmed", "unsubscribed",
)  # fmt: skip
RHYTHM_FIELDS = ("cadence", "timezone", "hour", "weekday")
TOPIC_SEPARATOR = ";"  # between topics in a CSV cell (a query cannot use it)


@dataclass(frozen=True)
class RhythmDefaults:
    """What a subscriber who chose only part of a rhythm gets for the rest: the site's
    ``[digest] cadence`` (None: a newcomer who chose nothing follows the site's schedule)
    and ``[schedule] timezone``."""

    cadence: str | None = None
    timezone: str = "UTC"

    def rhythm(self, given: Mapping[str, str | int], existing: Subscriber | None) -> Rhythm | None:
        """The rhythm the choices in ``given`` (cadence, timezone, hour, weekday; text as a
        form or a CSV cell gives it) make, what is not given coming from the ``existing``
        subscriber's rhythm, else from these defaults (hour 8, Monday). None: nothing to
        change (no choice made: an existing subscriber keeps theirs; a new one follows the
        site's schedule unless there is a default cadence). SubscriberError: what is wrong."""
        chosen = {k: v for k, v in given.items() if k in RHYTHM_FIELDS and str(v).strip()}
        current = existing.rhythm if existing else None
        if not chosen:
            new_with_default = existing is None and self.cadence is not None
            return Rhythm(self.cadence or "weekly", self.timezone) if new_with_default else None
        base = current or Rhythm(self.cadence or "weekly", self.timezone)
        try:
            weekday = chosen.get("weekday", base.weekday)
            made = Rhythm(
                str(chosen.get("cadence", base.cadence)).strip().lower(),
                str(chosen.get("timezone", base.timezone)).strip(),
                _hour(chosen.get("hour", base.hour)),
                weekday if isinstance(weekday, int) else weekday_number(weekday),
            )
        except ValueError as exc:
            raise SubscriberError(str(exc)) from None
        return None if made == current else made  # the same again: still due when it was


def defaults_for(settings: Settings) -> RhythmDefaults:
    return RhythmDefaults(settings.digest.cadence, settings.schedule.timezone)


def _hour(value: str | int) -> int:
    text = str(value).strip()
    hour = int(text) if text.isascii() and text.isdigit() and len(text) <= 2 else -1
    if not 0 <= hour <= 23:
        raise ValueError(f"hour {text!r} is not a whole hour from 0 to 23")
    return hour


def chosen_topics(texts: Iterable[str]) -> tuple[str, ...]:
    """Search topics as typed (see query.topics), or SubscriberError naming the one at fault."""
    try:
        return query.topics(list(texts))
    except QueryError as exc:
        raise SubscriberError(str(exc)) from None


class SuppressedLine(SubscriberError):
    """A CSV line for a bounced address: left out, and said so, but not an error."""


def check_slugs(values: Iterable[str], known: Sequence[str], what: str) -> list[str]:
    """The slugs, each checked against ``known``."""
    out = []
    for value in values:
        if value not in known:
            raise SubscriberError(f"{value!r} is not a {what} ({', '.join(known)})")
        if value not in out:
            out.append(value)
    return out


def complained(subscriber: Subscriber) -> bool:
    """Whether a reader left by calling a digest spam (a complaint, by feedback loop or a
    provider's report)."""
    return subscriber.status == "unsubscribed" and (subscriber.reason or "").startswith("complaint")


def suppressed(subscriber: Subscriber | None, *, by_reader: bool) -> str | None:
    """Why nothing may be sent to this subscriber on this path (None: it may): a bounced
    address and a complainer are never mailed again, whoever asks, until the operator
    reactivates them; someone who unsubscribed may come back only by signing up again
    themselves (``by_reader``: the subscribe form, which asks them to confirm), never on
    the operator's word."""
    if subscriber is None:
        return None
    email, fix = subscriber.email, "(`digest subscribers reactivate` clears that)"
    if subscriber.status == "bounced":
        return f"{email} is bounced and never mailed again {fix}"
    if complained(subscriber):
        return f"{email} complained of a digest and is never mailed again {fix}"
    if subscriber.status == "unsubscribed" and not by_reader:
        when = f" on {subscriber.unsubscribed:%Y-%m-%d}" if subscriber.unsubscribed else ""
        return f"{email} unsubscribed{when}: only they can sign up again (the subscribe form)"
    return None


def add(
    store: SubscribersStore,
    address: str,
    *,
    regions: Sequence[str] = (),
    themes: Sequence[str] = (),
    confirmed: bool = False,
    rhythm: Rhythm | Mapping[str, str | int] | None = None,
    topics: Sequence[str] | None = None,
    defaults: RhythmDefaults | None = None,
    by_reader: bool = False,
) -> Subscriber:
    """Add (or re-add) a subscriber: active when ``confirmed``, else pending confirmation.
    ``rhythm``: a whole rhythm, or the choices of cadence, timezone, hour and weekday made
    (the rest from ``defaults`` or as they were); ``topics``: search topics (None: as they
    were). ``by_reader``: the reader's own sign-up, else the operator's. SubscriberError
    when the address is :func:`suppressed` on that path."""
    email = normalise_email(address)
    now = store.now()
    existing = store.subscriber(email=email)
    refusal = suppressed(existing, by_reader=by_reader)
    if refusal is not None:
        raise SubscriberError(refusal)
    change = SubscriberChange(
        email,
        regions=tuple(regions),
        themes=tuple(themes),
        rhythm=rhythm
        if isinstance(rhythm, Rhythm)
        else (defaults or RhythmDefaults()).rhythm(rhythm or {}, existing),
        topics=None if topics is None else chosen_topics(topics),
    )
    if existing is None:  # born in its status: never active for a moment by default
        if confirmed:
            change = replace(change, status="active", created=now, confirmed=now)
        else:
            change = replace(change, status="pending", created=now, pending_since=now)
        store.upsert_subscribers([change])
    else:
        store.upsert_subscribers([change])
        if confirmed and existing.status != "active":
            refreshed = store.subscriber(subscriber_id=existing.id)
            assert refreshed is not None
            _activate(store, refreshed, now)
        elif existing.status != "active" and not existing.pending_since:
            # A new sign-up: links from any earlier one (bound to pending_since) are dead.
            store.set_subscriber_status(existing.id, "pending", at=now)
    found = store.subscriber(email=email)
    assert found is not None
    return found


def reactivate(store: SubscribersStore, address: str) -> Subscriber:
    """Mail a bounced subscriber, or a complainer, again: the operator's decision (the
    address works again; the complaint was a slip), written to the log with why they had
    been stopped."""
    email = normalise_email(address)
    found = store.subscriber(email=email)
    if found is None:
        raise SubscriberError(f"{email}: no such subscriber")
    if found.status != "bounced" and not complained(found):
        raise SubscriberError(
            f"{email} is {found.status}, not bounced nor a complainer: nothing to reactivate"
        )
    _activate(store, found, store.now())
    was = "bounced" if found.status == "bounced" else "unsubscribed"
    log.warning(
        "subscriber %s reactivated by the operator (was %s: %s)",
        email, was, found.reason or was, extra={"event": "subscribers"},
    )  # fmt: skip
    again = store.subscriber(subscriber_id=found.id)
    assert again is not None
    return again


def confirm(store: SubscribersStore, subscriber_id: int) -> bool:
    """Make a pending subscriber active; False when there is no pending subscriber by that id."""
    found = store.subscriber(subscriber_id=subscriber_id)
    if found is None or found.status != "pending":
        return False
    _activate(store, found, store.now())
    return True


def _activate(store: SubscribersStore, subscriber: Subscriber, now: datetime) -> None:
    """Active from ``now``: a rhythm's first digest is its first due time from now (not from
    the sign-up, which may be days before)."""
    store.set_subscriber_status(subscriber.id, "active", at=now)
    if subscriber.rhythm is not None:
        store.set_next_due([(subscriber.id, next_due(subscriber.rhythm, now))])


def unsubscribe(store: SubscribersStore, subscriber_id: int) -> bool:
    found = store.subscriber(subscriber_id=subscriber_id)
    if found is None:
        return False
    if found.status != "unsubscribed":
        store.set_subscriber_status(subscriber_id, "unsubscribed", at=store.now())
    return True


def binding(subscriber: Subscriber, purpose: str, bound_since: datetime | None = None) -> Binding | None:
    """What ``purpose`` tokens of this subscriber are bound to: their address and creation
    time, and for a confirmation the pending sign-up (None when nothing is pending)."""
    base = f"{subscriber.email.lower()}\x00{to_iso(subscriber.created)}"
    if purpose == "confirm":
        if subscriber.status != "pending" or subscriber.pending_since is None:
            return None
        return Binding(f"{base}\x00{to_iso(subscriber.pending_since)}")
    return Binding(base, legacy=bound_since is not None and subscriber.created < bound_since)


def bindings(store: SettingsAndSubscribers, purpose: str) -> Callable[[int], Binding | None]:
    """The current binding of each subscriber id, for :func:`digest.subscribers.tokens.read`."""
    stamp = store.get_setting(TOKENS_BOUND_SINCE)
    bound_since = from_iso(stamp) if stamp else None

    def lookup(subscriber_id: int) -> Binding | None:
        found = store.subscriber(subscriber_id=subscriber_id)
        return None if found is None else binding(found, purpose, bound_since)

    return lookup


def token(secret: bytes, purpose: str, subscriber: Subscriber) -> str:
    """A link token for this subscriber (confirmations expire after CONFIRM_SECONDS)."""
    bound = binding(subscriber, purpose)
    if bound is None:
        raise SubscriberError(f"{subscriber.email}: no pending sign-up to confirm")
    ttl = CONFIRM_SECONDS if purpose == "confirm" else None
    return make(secret, purpose, subscriber.id, binding=bound.value, ttl=ttl)


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_EXTRA = "\x00extra"  # where csv puts cells beyond the header


def import_csv(
    text: str,
    store: SubscribersStore,
    regions: Sequence[str],
    themes: Sequence[str],
    origin: str = "import",
    defaults: RhythmDefaults | None = None,
) -> ImportReport:
    """Subscribers from CSV (header row; ``email`` required; ``status``, ``regions`` and
    ``themes`` optional, slugs space-separated; ``cadence``, ``timezone``, ``hour``,
    ``weekday`` optional, a blank cell keeping what the subscriber has or getting the
    site's default; ``topics`` optional, separated by ``;``). A new address is active
    unless its status says otherwise. For a known one only the columns given change, and never so as to
    re-subscribe someone who unsubscribed or bounced: such lines are reported. Bad rows are
    reported by line, good ones kept."""
    report = ImportReport()
    # newline="": the csv module reads line ends itself (a lone CR ends a line too).
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA)
    try:
        header = [(f or "").strip().lower() for f in reader.fieldnames or []]
    except csv.Error as exc:
        raise SubscriberError(f"{origin}: line 1: not CSV ({exc})") from None
    if "email" not in header:
        raise SubscriberError(f"{origin}: line 1: the header must name an 'email' column")
    unknown = [name for name in header if name not in CSV_FIELDS]
    if unknown:
        names, allowed = ", ".join(unknown), ", ".join(CSV_FIELDS)
        report.warnings.append(f"{origin}: line 1: unknown columns {names}, ignored (known: {allowed})")
    known = {subscriber.email.lower(): subscriber for subscriber in store.subscribers()}
    now = store.now()
    changes: dict[str, SubscriberChange] = {}
    for line, raw in _rows(reader, origin):
        extra = raw.pop(_EXTRA, None)
        try:
            if extra:
                raise SubscriberError(f"{len(extra)} more cells than the header has columns")
            record = {(k or "").strip().lower(): _from_cell((v or "").strip()) for k, v in raw.items()}
            email = normalise_email(record.get("email", ""))
            existing = known.get(email.lower())
            change = _import_change(email, record, existing, header, regions, themes, now)
            change = replace(
                change,
                rhythm=(defaults or RhythmDefaults()).rhythm(record, existing),
                topics=chosen_topics(record["topics"].split(TOPIC_SEPARATOR)) if "topics" in header else None,
            )
        except SuppressedLine as exc:
            report.warnings.append(f"{origin}: line {line}: {exc}")
            continue
        except SubscriberError as exc:
            report.errors.append(f"{origin}: line {line}: {exc}")
            continue
        changes[email] = change
    report.added, report.updated = store.upsert_subscribers(list(changes.values()))
    return report


def _rows(reader: csv.DictReader[str], origin: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows after the header, each with its line; SubscriberError for text csv cannot
    read (nothing is imported then)."""
    try:
        yield from enumerate(reader, start=2)
    except csv.Error as exc:
        raise SubscriberError(f"{origin}: line {reader.line_num}: not CSV ({exc})") from None


def _import_change(
    email: str,
    record: Mapping[str, str],
    existing: Subscriber | None,
    header: Sequence[str],
    regions: Sequence[str],
    themes: Sequence[str],
    now: datetime,
) -> SubscriberChange:
    """The change one CSV line makes (SubscriberError when it must make none)."""
    status = record.get("status") or None
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    slugs: dict[str, tuple[str, ...]] = {}
    for column, known_slugs, what in (("regions", regions, "region"), ("themes", themes, "theme")):
        if column in header:
            slugs[column] = tuple(check_slugs(record.get(column, "").split(), known_slugs, what))
    change = SubscriberChange(email, regions=slugs.get("regions"), themes=slugs.get("themes"))
    if existing is None:
        status = status or "active"
        change = replace(
            change,
            regions=change.regions or (),
            themes=change.themes or (),
            created=_when(record.get("created"), "created") or now,
        )
    elif existing.status == "bounced" and status in (None, "bounced"):
        raise SuppressedLine(f"{email} is bounced: kept as it is, never mailed again")
    elif complained(existing) and status in (None, "unsubscribed"):
        raise SuppressedLine(f"{email} complained of a digest: kept as it is, never mailed again")
    elif status is None or status == existing.status:
        return change  # the status stays as it is
    elif existing.status in ("unsubscribed", "bounced") and status in ("active", "pending"):
        when = f" on {existing.unsubscribed:%Y-%m-%d}" if existing.unsubscribed else ""
        raise SubscriberError(
            f"{email} {'unsubscribed' + when if existing.status == 'unsubscribed' else 'is bounced'};"
            " an import never re-subscribes anyone (they can sign up again)"
        )
    change = replace(change, status=status)
    if status == "active":
        return replace(change, confirmed=_when(record.get("confirmed"), "confirmed") or now)
    if status == "pending":
        return replace(change, pending_since=now)  # a confirmation can be sent (and bound to this)
    if status == "unsubscribed":
        return replace(change, unsubscribed=_when(record.get("unsubscribed"), "unsubscribed") or now)
    return change


def _when(text: str | None, column: str) -> datetime | None:
    """A date from a CSV cell (ISO 8601), None when the cell is empty."""
    if not text:
        return None
    found = parse_date(text)
    if found is None:
        raise SubscriberError(f"{column} {text!r} is not a date (such as 2026-11-01)")
    return found


def export_csv(store: SubscribersStore) -> str:
    """Every subscriber as CSV, in the format ``import_csv`` reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for subscriber in store.subscribers():
        cells = [
            subscriber.email,
            subscriber.status,
            " ".join(subscriber.regions),
            " ".join(subscriber.themes),
            *(_rhythm_cells(subscriber.rhythm)),
            f"{TOPIC_SEPARATOR} ".join(subscriber.topics),
            to_iso(subscriber.created),
            to_iso(subscriber.confirmed) if subscriber.confirmed else "",
            to_iso(subscriber.unsubscribed) if subscriber.unsubscribed else "",
        ]
        writer.writerow([_to_cell(cell) for cell in cells])
    return out.getvalue()


# A cell a spreadsheet would take for a formula is written with a leading "'" (shown as
# text), which the import takes off again: a topic or an address can start so.
_FORMULA_STARTS = ("=", "+", "-", "@")


def _to_cell(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _from_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_STARTS) else value


def _rhythm_cells(rhythm: Rhythm | None) -> list[str]:
    if rhythm is None:
        return ["", "", "", ""]  # the site's schedule
    weekday = weekday_name(rhythm.weekday) if rhythm.cadence == "weekly" else ""
    return [rhythm.cadence, rhythm.timezone, str(rhythm.hour), weekday]
