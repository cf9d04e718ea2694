"""The sign-up queue: requests from the web form, kept in the database until the running
service answers each with a confirmation (:mod:`digest.mail.confirmations`).

The subscribe form does the same work for every address (check it, queue the request) and
gives the same answer, so neither its page, its status nor its timing tells whether an
address is subscribed. A request becomes a pending subscriber a moment after its answer;
a confirmation that could not be sent is retried with backoff, across restarts, until
``GIVE_UP_AFTER``.
Addresses that are already active get nothing (nothing to confirm); bounced ones and
complainers are not mailed (:func:`digest.subscribers.lifecycle.suppressed`); someone who
unsubscribed may sign up again this way, and confirm.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from digest.common.rhythms import Rhythm
from digest.store import Signup, Subscriber, SubscribersStore
from digest.subscribers import lifecycle

FIRST_RETRY = 60.0  # seconds; doubled after each failure
MAX_RETRY = 3600.0
GIVE_UP_AFTER = 20  # attempts, about a day of retries
CLAIM = 300.0  # seconds a worker holds a request it is handling


def enqueue(
    store: SubscribersStore,
    email: str,
    regions: Sequence[str],
    themes: Sequence[str],
    *,
    rhythm: Rhythm | None = None,
    topics: Sequence[str] = (),
) -> None:
    """Queue one request from the form (the address, slugs, rhythm and topics already checked)."""
    store.enqueue_signup(email, list(regions), list(themes), now=store.now(), rhythm=rhythm, topics=topics)


def backoff(attempts: int) -> timedelta:
    """How long a request waits after its ``attempts``-th failure."""
    return timedelta(seconds=min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY))


def pending_for(store: SubscribersStore, request: Signup) -> Subscriber | None:
    """The pending subscriber a request is for (made pending now if it is new), or None
    when there is nothing to send."""
    if request.subscriber_id is None:
        existing = store.subscriber(email=request.email)
        if existing is not None and (
            existing.status == "active" or lifecycle.suppressed(existing, by_reader=True)
        ):
            return None  # active: nothing to confirm; bounced or a complainer: never mailed
        added = lifecycle.add(
            store,
            request.email,
            regions=request.regions,
            themes=request.themes,
            rhythm=request.rhythm,
            topics=request.topics,
            by_reader=True,
        )
        store.signup_for(request.id, added.id)
        return added
    found = store.subscriber(subscriber_id=request.subscriber_id)
    return found if found is not None and found.status == "pending" else None
