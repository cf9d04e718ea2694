"""The process's counters and histograms, in Prometheus' text format at /metrics (only with
``[web] metrics = true``, and only for loopback clients, as /healthz's details).

Counted where the work happens in this process: pulls by outcome, new articles, deliveries
by outcome, bounces by kind, complaints; pull and send durations. Each process counts its
own (Prometheus adds up the processes it scrapes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
REGISTRY = CollectorRegistry(auto_describe=True)

PULLS = Counter("digest_pulls", "Source pulls, by outcome (ok, error).", ["outcome"], registry=REGISTRY)
ARTICLES = Counter("digest_articles", "New articles stored by pulls.", registry=REGISTRY)
DELIVERIES = Counter(
    "digest_deliveries",
    "Digest messages by outcome (sent, failed, deferred, skipped).",
    ["outcome"],
    registry=REGISTRY,
)
BOUNCES = Counter(
    "digest_bounces", "Bounces reported after delivery, by kind (hard, soft).", ["kind"], registry=REGISTRY
)
COMPLAINTS = Counter("digest_complaints", "Complaints (feedback reports) received.", registry=REGISTRY)
PULL_SECONDS = Histogram(
    "digest_pull_duration_seconds",
    "Time one pull of one source took (fetch, parse, store).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
SEND_SECONDS = Histogram(
    "digest_send_duration_seconds",
    "Time handing one message to the mail server took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30),
    registry=REGISTRY,
)

for outcome in ("ok", "error"):
    PULLS.labels(outcome)
for outcome in ("sent", "failed", "deferred", "skipped"):
    DELIVERIES.labels(outcome)
for kind in ("hard", "soft"):
    BOUNCES.labels(kind)


def feedback(kind: str, outcome: str) -> None:
    """Count one report (a repeat of one already counted is not counted again)."""
    if outcome in ("repeat", "unknown"):
        return
    if kind == "complaint":
        COMPLAINTS.inc()
    else:
        BOUNCES.labels(kind).inc()


def render() -> bytes:
    return generate_latest(REGISTRY)
