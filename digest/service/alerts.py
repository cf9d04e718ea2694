"""The operator hears about trouble (``[alerts] email``): what counts as a problem, when to
say so, and the messages that say it.

Problems, each with a key (:func:`problems`, pure):

- ``source-failing:NAME``: the source failed ``failures`` pulls in a row;
- ``source-quiet:NAME``: no new article for ``quiet_days`` (from its newest article, or from
  when it was added if it never had one);
- ``digest-run``: the last digest run ended with messages failed or deferred (the process
  that ran it records how it ended, :data:`LAST_RUN`);
- ``bounce-rate``: a digest of the last week with at least ``MIN_SENT`` messages sent has
  more than ``bounce_rate`` of them bounced (the bounces come back over hours: the check
  repeats each tick).

:func:`decide` (pure) turns the problems of now and what was already said into notices: an
alert for a new problem, again at most once a day while it lasts, and one "recovered"
note when it clears. The state (problem → when last said) is one settings row, so restarts
and other processes (one checks at a time: a lease) keep the once-a-day promise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any

from digest.common.dates import from_iso, to_iso
from digest.common.sanitize import one_line
from digest.config import AlertSettings, Settings
from digest.mail.compose import sender, site_host
from digest.store import DigestSummary, SourceSummary

log = logging.getLogger("digest")
STATE = "alerts_state"  # settings row: {problem key: {"since": iso, "said": iso, "summary": text}}
OPEN = "alerts_open"  # settings row: the problems of the last check, {key: {"since", "summary"}}
LAST_RUN = "alerts_last_run"  # settings row: how the last digest run ended
REPEAT = timedelta(days=1)
MIN_SENT = 20
BOUNCE_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Problem:
    key: str
    summary: str  # one line: what is wrong, and where


@dataclass(frozen=True)
class Notice:
    key: str
    recovered: bool
    summary: str
    since: datetime


def problems(
    sources: Sequence[SourceSummary],
    digests: Sequence[DigestSummary],
    last_run: dict[str, Any] | None,
    settings: AlertSettings,
    now: datetime,
) -> list[Problem]:
    found = []
    quiet_for = timedelta(days=settings.quiet_days)
    for source in sources:
        if source.removed is not None:
            continue
        if source.consecutive_failures >= settings.failures:
            error = one_line(source.last_error or "no error recorded")[:200]
            found.append(
                Problem(
                    f"source-failing:{source.name}",
                    f"source {source.name!r} failed its last {source.consecutive_failures} pulls: {error}",
                )
            )
        latest = source.newest or source.created
        if latest is not None and now - latest >= quiet_for:
            found.append(
                Problem(
                    f"source-quiet:{source.name}",
                    f"source {source.name!r} has had no new article since {to_iso(latest)}"
                    f" ({(now - latest).days} days)",
                )
            )
    if last_run and (last_run.get("failed") or last_run.get("deferred")):
        found.append(
            Problem(
                "digest-run",
                f"digest {last_run.get('digest')}: {last_run.get('failed', 0)} failed,"
                f" {last_run.get('deferred', 0)} deferred, of {last_run.get('total', 0)}"
                f" ({one_line(str(last_run.get('problem') or ''))[:200]})",
            )
        )
    over = [
        d
        for d in digests
        if now - d.digest.created <= BOUNCE_WINDOW
        and d.sent >= MIN_SENT
        and d.bounced / d.sent > settings.bounce_rate
    ]
    if over:
        worst = max(over, key=lambda d: d.bounced / d.sent)
        found.append(
            Problem(
                "bounce-rate",
                f"digest {worst.digest.id}: {worst.bounced} of {worst.sent} messages bounced"
                f" ({worst.bounced / worst.sent:.1%}, more than {settings.bounce_rate:.0%})",
            )
        )
    return found


def decide(
    state: dict[str, dict[str, str]], found: Sequence[Problem], now: datetime
) -> tuple[list[Notice], dict[str, dict[str, str]]]:
    """The notices to send now, and the state once they are sent."""
    notices, after = [], {}
    for problem in found:
        known = state.get(problem.key)
        since = from_iso(known["since"]) if known else now
        if known is None or now - from_iso(known["said"]) >= REPEAT:
            notices.append(Notice(problem.key, False, problem.summary, since))
            after[problem.key] = {"since": to_iso(since), "said": to_iso(now), "summary": problem.summary}
        else:
            after[problem.key] = {**known, "summary": problem.summary}
    current = {p.key for p in found}
    for key, known in state.items():
        if key not in current:
            notices.append(Notice(key, True, known.get("summary", key), from_iso(known["since"])))
    return notices, after


def opened(
    found: Sequence[Problem], state: dict[str, dict[str, str]], now: datetime
) -> dict[str, dict[str, str]]:
    """The problems of now, each with when it began (for /healthz: said or not)."""
    return {
        p.key: {"since": state.get(p.key, {}).get("since", to_iso(now)), "summary": p.summary} for p in found
    }


def load_state(text: str | None) -> dict[str, dict[str, str]]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def message(settings: Settings, notice: Notice, now: datetime) -> EmailMessage:
    """The alert (or recovery) email for one notice: plain text, one problem."""
    title = one_line(settings.site.title)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender(settings)
    msg["To"] = settings.alerts.email
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("alert", domain=site_host(settings))
    msg["Auto-Submitted"] = "auto-generated"
    if notice.recovered:
        msg["Subject"] = f"[{title}] recovered: {notice.key}"
        body = (
            f"This problem has cleared:\n\n  {notice.summary}\n\n"
            f"It began {to_iso(notice.since)} and cleared by {to_iso(now)}.\n"
        )
    else:
        msg["Subject"] = f"[{title}] problem: {notice.key}"
        body = (
            f"{notice.summary}\n\nSince {to_iso(notice.since)}. You will hear again in a day if it lasts,"
            " and once when it clears.\n\nThe details: `digest status`, and /healthz on the machine"
            f" running digest ({settings.site.base_url}/healthz from loopback).\n"
        )
    msg.set_content(body)
    return msg
