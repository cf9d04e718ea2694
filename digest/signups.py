"""Sign-ups from the web form, handled after the answer.

The subscribe form does the same work for every address (check it, queue the request) and
gives the same answer, so neither its page, its status nor its timing tells whether an
address is subscribed. The queue lives in the database and is drained every ``TICK``
seconds by the running service (``digest serve`` or ``digest run``), not by the request:
a request becomes a pending subscriber and a confirmation email a moment after its answer,
and a confirmation that could not be sent is retried with backoff, across restarts, until
``GIVE_UP_AFTER``.
Addresses that are already active get nothing (nothing to confirm); bounced ones are not
mailed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from digest import subscribers
from digest.config import Settings
from digest.dates import to_iso, utcnow
from digest.errors import DigestError, SendError
from digest.mail.compose import Outgoing
from digest.mail.send import Permanent, Temporary, confirmation_message, transport_for
from digest.store import Store

log = logging.getLogger("digest")
TICK = 2.0  # seconds between looks at the queue
FIRST_RETRY = 60.0  # seconds; doubled after each failure
MAX_RETRY = 3600.0
GIVE_UP_AFTER = 20  # attempts, about a day of retries
CLAIM = 300.0  # seconds a worker holds a request it is handling
BATCH = 50


def enqueue(store: Store, email: str, regions: Sequence[str], themes: Sequence[str]) -> None:
    """Queue one request from the form (the address and slugs already checked)."""
    store.enqueue_signup(email, list(regions), list(themes), now=utcnow())


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY))


def _prepare(store: Store, request: dict[str, Any]) -> dict[str, object] | None:
    """The pending subscriber a request is for (made pending now if it is new), or None
    when there is nothing to send."""
    if request["subscriber_id"] is None:
        existing = store.subscriber(email=request["email"])
        if existing is not None and existing["status"] in ("active", "bounced"):
            return None
        added = subscribers.add(store, request["email"], regions=request["regions"], themes=request["themes"])
        store.signup_for(int(request["id"]), int(str(added["id"])))
        return added
    found = store.subscriber(subscriber_id=int(request["subscriber_id"]))
    return found if found is not None and found["status"] == "pending" else None


async def drain(
    store_for_thread: Callable[[], Store],
    settings: Settings,
    *,
    now: datetime | None = None,
    run: Callable[..., Any] | None = None,
) -> int:
    """Handle every queued request that is due: the number of confirmations sent.

    ``store_for_thread`` gives a store usable in the calling thread; database work runs
    through ``run`` (a function that runs a callable off the event loop, asyncio's
    ``to_thread`` by default)."""
    offload = run or asyncio.to_thread
    moment = now or utcnow()

    def claim() -> list[dict[str, Any]]:
        return store_for_thread().claim_signups(moment, until=moment + timedelta(seconds=CLAIM), limit=BATCH)

    def prepare(claimed: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Outgoing]]:
        """Each request as its pending subscriber's confirmation; those with nothing to send
        (the address is active or bounced, or no longer pending) are done with."""
        store = store_for_thread()
        out = []
        for request in claimed:
            row = _prepare(store, request)
            if row is None:
                store.finish_signup(int(request["id"]))
            else:
                out.append((request, confirmation_message(store, settings, row)))
        return out

    async def defer(request: dict[str, Any], problem: Exception) -> None:
        number, attempts = int(request["id"]), int(request["attempts"]) + 1
        if attempts >= GIVE_UP_AFTER:
            log.error("sign-up %s: giving up after %d attempts: %s", number, attempts, problem)
            await offload(_finish, store_for_thread, number)
            return
        retry = moment + _backoff(attempts)
        log.warning("sign-up %s: confirmation not sent (%s); retry at %s", number, problem, to_iso(retry))
        await offload(_retry, store_for_thread, number, retry, str(problem))

    claimed = await offload(claim)
    if not claimed:
        return 0
    try:
        ready = await offload(prepare, claimed)
    except DigestError as exc:  # the database or a template: the whole batch waits
        for request in claimed:
            await defer(request, exc)
        return 0
    sent = 0
    async with transport_for(settings) as channel:
        for index, (request, message) in enumerate(ready):
            number = int(request["id"])
            try:
                await channel.send(message, f"confirm-{number}")
            except Permanent as exc:  # the server refuses this address for good
                log.error("sign-up %s: %s refused the confirmation: %s", number, channel.name, exc)
            except SendError as exc:  # no server to talk to: the rest waits too
                for waiting, _ in ready[index:]:
                    await defer(waiting, exc)
                break
            except Temporary as exc:
                await defer(request, exc)
                continue
            else:
                sent += 1
            await offload(_finish, store_for_thread, number)
    return sent


def _finish(store_for_thread: Callable[[], Store], number: int) -> None:
    store_for_thread().finish_signup(number)


def _retry(store_for_thread: Callable[[], Store], number: int, when: datetime, error: str) -> None:
    store_for_thread().retry_signup(number, when, error)
