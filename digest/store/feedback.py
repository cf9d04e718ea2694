"""What a bounce or a complaint does to a subscriber and to the delivery it is about: the
rule both backends apply inside one transaction (pure: they read the rows, this decides,
they write what it says).

- A complaint unsubscribes at once; a hard bounce marks the subscriber bounced at once.
- A soft bounce is noted on its delivery; when each of the subscriber's last ``soft_limit``
  sent digests has come back, the subscriber is bounced ("in a row": a digest that came
  back with nothing breaks the run).
- Each delivery keeps its worst report, so the same report arriving twice (mail servers
  retry, providers resend webhooks) changes nothing the second time.
- Only active or pending subscribers change status: a report never brings back, or
  re-labels, someone who has already left.
- A report about a delivery from before the subscriber was last (re)activated is noted on
  it and changes nothing else: the operator's reactivation stands against a late report
  of what they already acted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("soft", "hard", "complaint")
SEVERITY = {kind: rank for rank, kind in enumerate(KINDS, 1)}
OUTCOMES = ("unknown", "repeat", "inactive", "stale", "noted", "counted", "bounced", "unsubscribed")


@dataclass(frozen=True)
class Verdict:
    outcome: str  # one of OUTCOMES
    mark: str | None = None  # the digest whose delivery records this report
    status: str | None = None  # the subscriber's new status
    reason: str | None = None


def refusals(count: int, reply: str | None) -> str:
    """The reason a subscriber is bounced after ``count`` refusals for good in a row (the
    mail server's own answers, at the time of sending), the last one quoted."""
    said = " ".join((reply or "").split())[:200]
    return f"{count} refusals in a row: {said}" if said else f"{count} refusals in a row"


def judge(
    kind: str,
    detail: str,
    *,
    status: str | None,
    digest_id: str | None,
    earlier: str | None,
    recent: Sequence[tuple[str, str | None]],
    soft_limit: int,
    stale: bool = False,
) -> Verdict:
    """``status``: the subscriber's (None: no such subscriber); ``digest_id``: the delivery
    the report is about (None: unknown, then their latest sent digest); ``earlier``: what
    that delivery already holds; ``recent``: (digest, report) of their latest ``soft_limit``
    sent deliveries since they were last (re)activated, newest first; ``stale``: the
    delivery named was sent before that."""
    if kind not in SEVERITY:
        raise ValueError(f"{kind!r} is not a kind of report")
    if status is None:
        return Verdict("unknown")
    if digest_id is None and recent:
        digest_id, earlier = recent[0]
    if digest_id is not None and earlier is not None and SEVERITY[earlier] >= SEVERITY[kind]:
        return Verdict("repeat")
    if status not in ("active", "pending"):
        return Verdict("inactive", mark=digest_id)
    if stale:
        return Verdict("stale", mark=digest_id)
    if kind == "complaint":
        return Verdict("unsubscribed", digest_id, "unsubscribed", f"complaint: {detail}")
    if kind == "hard":
        return Verdict("bounced", digest_id, "bounced", f"hard bounce: {detail}")
    if digest_id is None:
        return Verdict("noted")  # nothing was sent to count it against
    reported = [kind if found == digest_id else report for found, report in recent[:soft_limit]]
    if len(reported) >= soft_limit and all(reported):
        return Verdict("bounced", digest_id, "bounced", f"{soft_limit} soft bounces in a row: {detail}")
    return Verdict("counted", mark=digest_id)
