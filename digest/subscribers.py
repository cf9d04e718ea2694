"""Subscribers: double opt-in, confirmation, one-click unsubscribe, preferences, CSV import/export,
and the tokens in their links (bound to the subscriber: see ``tokens.py``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email

from digest.dates import to_iso, utcnow
from digest.errors import DigestError
from digest.store import Store
from digest.tokens import CONFIRM_SECONDS, Binding, make

TOKENS_BOUND_SINCE = "tokens_bound_since"  # the settings row the identity migration writes

STATUSES = ("pending", "active", "unsubscribed", "bounced")
CSV_FIELDS = ("email", "status", "regions", "themes", "created", "confirmed", "unsubscribed")


class SubscriberError(DigestError):
    """A subscriber request that cannot be honoured: a bad address, an unknown slug."""


def normalise_email(address: str) -> str:
    """The address in normal form, or SubscriberError saying what is wrong with it.

    Only addresses every SMTP server takes: a non-ASCII part before the @ needs SMTPUTF8,
    which digest does not speak, so it is refused here, at the door, rather than failing
    when a message is composed. A non-ASCII domain is kept in its ASCII (IDNA) form."""
    try:
        # No DNS lookups: tests and offline operators must not depend on the network.
        checked = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"{address!r} is not a valid email address: {exc}") from None
    return str(checked.ascii_email or checked.normalized)


def check_slugs(values: Iterable[str], known: Sequence[str], what: str) -> list[str]:
    """The slugs, each checked against ``known``."""
    out = []
    for value in values:
        if value not in known:
            raise SubscriberError(f"{value!r} is not a {what} ({', '.join(known)})")
        if value not in out:
            out.append(value)
    return out


def add(
    store: Store,
    address: str,
    *,
    regions: Sequence[str] = (),
    themes: Sequence[str] = (),
    confirmed: bool = False,
) -> dict[str, object]:
    """Add (or re-add) a subscriber: active when ``confirmed``, else pending confirmation."""
    email = normalise_email(address)
    now = to_iso(utcnow())
    existing = store.subscriber(email=email)
    row: dict[str, object] = {
        "email": email,
        "regions": json.dumps(list(regions)),
        "themes": json.dumps(list(themes)),
    }
    if confirmed:
        row.update(status="active", confirmed=now, unsubscribed=None, pending_since=None)
    elif existing is None or (existing["status"] != "active" and not existing["pending_since"]):
        # A new sign-up: links from any earlier one (bound to pending_since) are dead.
        row.update(status="pending", unsubscribed=None, pending_since=now)
    if existing is None:
        row["created"] = now
    store.upsert_subscribers([row])
    found = store.subscriber(email=email)
    assert found is not None
    return found


def confirm(store: Store, subscriber_id: int) -> bool:
    """Make a pending subscriber active; False when there is no pending subscriber by that id."""
    found = store.subscriber(subscriber_id=subscriber_id)
    if found is None or found["status"] != "pending":
        return False
    store.update_subscriber(
        subscriber_id, status="active", confirmed=to_iso(utcnow()), unsubscribed=None, pending_since=None
    )
    return True


def unsubscribe(store: Store, subscriber_id: int) -> bool:
    found = store.subscriber(subscriber_id=subscriber_id)
    if found is None:
        return False
    if found["status"] != "unsubscribed":
        store.update_subscriber(
            subscriber_id, status="unsubscribed", unsubscribed=to_iso(utcnow()), pending_since=None
        )
    return True


def set_preferences(store: Store, subscriber_id: int, regions: Sequence[str], themes: Sequence[str]) -> None:
    store.update_subscriber(subscriber_id, regions=json.dumps(list(regions)), themes=json.dumps(list(themes)))


def binding(row: Mapping[str, object], purpose: str, bound_since: str = "") -> Binding | None:
    """What ``purpose`` tokens of this subscriber are bound to: their address and creation
    time, and for a confirmation the pending sign-up (None when nothing is pending)."""
    base = f"{str(row['email']).lower()}\x00{row['created']}"
    if purpose == "confirm":
        if row["status"] != "pending" or not row.get("pending_since"):
            return None
        return Binding(f"{base}\x00{row['pending_since']}")
    return Binding(base, legacy=bool(bound_since) and str(row["created"]) < bound_since)


def bindings(store: Store, purpose: str) -> Callable[[int], Binding | None]:
    """The current binding of each subscriber id, for :func:`digest.tokens.read`."""
    bound_since = store.get_setting(TOKENS_BOUND_SINCE) or ""

    def lookup(subscriber_id: int) -> Binding | None:
        row = store.subscriber(subscriber_id=subscriber_id)
        return None if row is None else binding(row, purpose, bound_since)

    return lookup


def token(secret: bytes, purpose: str, row: Mapping[str, object]) -> str:
    """A link token for this subscriber (confirmations expire after CONFIRM_SECONDS)."""
    bound = binding(row, purpose)
    if bound is None:
        raise SubscriberError(f"{row['email']}: no pending sign-up to confirm")
    ttl = CONFIRM_SECONDS if purpose == "confirm" else None
    return make(secret, purpose, int(str(row["id"])), binding=bound.value, ttl=ttl)


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_EXTRA = "\x00extra"  # where csv puts cells beyond the header


def import_csv(
    text: str, store: Store, regions: Sequence[str], themes: Sequence[str], origin: str = "import"
) -> ImportReport:
    """Subscribers from CSV (header row; ``email`` required; ``status``, ``regions`` and
    ``themes`` optional, slugs space-separated). A new address is active unless its status
    says otherwise. For a known one only the columns given change, and never so as to
    re-subscribe someone who unsubscribed or bounced: such lines are reported. Bad rows are
    reported by line, good ones kept."""
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text), restkey=_EXTRA)
    header = [(f or "").strip().lower() for f in reader.fieldnames or []]
    if "email" not in header:
        raise SubscriberError(f"{origin}: line 1: the header must name an 'email' column")
    unknown = [name for name in header if name not in CSV_FIELDS]
    if unknown:
        names, allowed = ", ".join(unknown), ", ".join(CSV_FIELDS)
        report.warnings.append(f"{origin}: line 1: unknown columns {names}, ignored (known: {allowed})")
    known = {str(row["email"]).lower(): row for row in store.subscribers()}
    now = to_iso(utcnow())
    rows: dict[str, dict[str, object]] = {}
    for line, raw in enumerate(reader, start=2):
        extra = raw.pop(_EXTRA, None)
        try:
            if extra:
                raise SubscriberError(f"{len(extra)} more cells than the header has columns")
            record = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            email = normalise_email(record.get("email", ""))
            row = _import_row(record, known.get(email.lower()), header, regions, themes, now)
        except SubscriberError as exc:
            report.errors.append(f"{origin}: line {line}: {exc}")
            continue
        rows[email] = row
    report.added, report.updated = store.upsert_subscribers(list(rows.values()))
    return report


def _import_row(
    record: Mapping[str, str],
    existing: Mapping[str, object] | None,
    header: Sequence[str],
    regions: Sequence[str],
    themes: Sequence[str],
    now: str,
) -> dict[str, object]:
    """The change one CSV line makes (SubscriberError when it must make none)."""
    email = normalise_email(record["email"])
    status = record.get("status") or None
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    row: dict[str, object] = {"email": email}
    for column, known_slugs, what in (("regions", regions, "region"), ("themes", themes, "theme")):
        if column in header:
            row[column] = json.dumps(check_slugs(record.get(column, "").split(), known_slugs, what))
    if existing is None:
        status = status or "active"
        row.setdefault("regions", "[]")
        row.setdefault("themes", "[]")
        row["created"] = record.get("created") or now
    elif status is None or status == existing["status"]:
        return row  # the status stays as it is
    elif existing["status"] in ("unsubscribed", "bounced") and status in ("active", "pending"):
        when = f" on {str(existing['unsubscribed'])[:10]}" if existing["unsubscribed"] else ""
        raise SubscriberError(
            f"{email} {'unsubscribed' + when if existing['status'] == 'unsubscribed' else 'is bounced'};"
            " an import never re-subscribes anyone (they can sign up again)"
        )
    row["status"] = status
    if status == "active":
        row["confirmed"] = record.get("confirmed") or now
    elif status == "pending":
        row["pending_since"] = now  # a confirmation can be sent (and bound to this)
    elif status == "unsubscribed":
        row["unsubscribed"] = record.get("unsubscribed") or now
    return row


def export_csv(store: Store) -> str:
    """Every subscriber as CSV, in the format ``import_csv`` reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in store.subscribers():
        writer.writerow(
            [
                row["email"],
                row["status"],
                " ".join(json.loads(row["regions"])),
                " ".join(json.loads(row["themes"])),
                row["created"],
                row["confirmed"] or "",
                row["unsubscribed"] or "",
            ]
        )
    return out.getvalue()
