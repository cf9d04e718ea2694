"""Sign-ups from the web form, handled after the answer.

The subscribe form does the same work for every address (check it, queue the request) and
gives the same answer, so neither its page, its status nor its timing tells whether an
address is subscribed. The queue lives in the database and is drained every ``TICK``
seconds by the running service (``digest serve`` or ``digest run``), not by the request:
a request becomes a pending subscriber and a confirmation email a moment after its answer,
and a confirmation that could not be sent is retried with backoff, across restarts, until
``GIVE_UP_AFTER``.
Addresses that are already active get nothing (nothing to confirm); bounced ones and
complainers are not mailed (:func:`digest.subscribers.suppressed`); someone who unsubscribed
may sign up again this way, and confirm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any

from digest import subscribers
from digest.cadence import Rhythm
from digest.config import Settings
from digest.dates import to_iso
from digest.errors import SendError
from digest.mail.channels import transport_for
from digest.mail.compose import Outgoing
from digest.mail.send import confirmation_message
from digest.mail.transport import Permanent, Transport
from digest.store import Signup, Store, Subscriber

log = logging.getLogger("digest")
TICK = 2.0  # seconds between looks at the queue
FIRST_RETRY = 60.0  # seconds; doubled after each failure
MAX_RETRY = 3600.0
GIVE_UP_AFTER = 20  # attempts, about a day of retries
CLAIM = 300.0  # seconds a worker holds a request it is handling
BATCH = 50  # requests handled per look at the queue


def enqueue(
    store: Store,
    email: str,
    regions: Sequence[str],
    themes: Sequence[str],
    *,
    rhythm: Rhythm | None = None,
    topics: Sequence[str] = (),
) -> None:
    """Queue one request from the form (the address, slugs, rhythm and topics already checked)."""
    store.enqueue_signup(email, list(regions), list(themes), now=store.now(), rhythm=rhythm, topics=topics)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY))


def _prepare(store: Store, request: Signup) -> Subscriber | None:
    """The pending subscriber a request is for (made pending now if it is new), or None
    when there is nothing to send."""
    if request.subscriber_id is None:
        existing = store.subscriber(email=request.email)
        if existing is not None and (
            existing.status == "active" or subscribers.suppressed(existing, by_reader=True)
        ):
            return None  # active: nothing to confirm; bounced or a complainer: never mailed
        added = subscribers.add(
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
    moment: datetime = now if now is not None else await offload(lambda: store_for_thread().now())

    def claim() -> Signup | None:
        # One at a time, so a claim never runs out while a slow (rate-limited) batch is sent.
        found = store_for_thread().claim_signups(moment, until=moment + timedelta(seconds=CLAIM), limit=1)
        return found[0] if found else None

    def prepare(request: Signup) -> Outgoing | None:
        """The request's confirmation; None when there is nothing to send (the address is
        active or bounced, or no longer pending), and the request is done with."""
        store = store_for_thread()
        row = _prepare(store, request)
        if row is None:
            store.finish_signup(request.id)
            return None
        return confirmation_message(store, settings, row)

    async def defer(request: Signup, problem: BaseException) -> None:
        number, attempts = request.id, request.attempts + 1
        if attempts >= GIVE_UP_AFTER:
            log.error("sign-up %s: giving up after %d attempts: %s", number, attempts, problem)
            await offload(_finish, store_for_thread, number)
            return
        retry = moment + _backoff(attempts)
        log.warning("sign-up %s: confirmation not sent (%s); retry at %s", number, problem, to_iso(retry))
        await offload(_retry, store_for_thread, number, retry, str(problem))

    sent = 0
    async with AsyncExitStack() as stack:
        channel: Transport | None = None
        for _ in range(BATCH):
            request = await offload(claim)
            if request is None:
                break
            number = request.id
            try:
                message = await offload(prepare, request)
                if message is None:
                    continue
                if channel is None:  # opened for the first message: an idle tick costs nothing
                    channel = await stack.enter_async_context(transport_for(settings))
                await channel.send(message, f"confirm-{number}")
            except Permanent as exc:  # the server refuses this address for good
                log.error("sign-up %s: the mail server refused the confirmation: %s", number, exc)
            except SendError as exc:  # no server to talk to, or no outbox: the rest waits too
                await defer(request, exc)
                until = moment + _backoff(request.attempts + 1)
                await offload(_postpone, store_for_thread, moment, until)
                break
            except Exception as exc:  # one request's trouble must not stop the queue
                await defer(request, exc)
                continue
            else:
                sent += 1
            await offload(_finish, store_for_thread, number)
    return sent


def _finish(store_for_thread: Callable[[], Store], number: int) -> None:
    store_for_thread().finish_signup(number)


def _postpone(store_for_thread: Callable[[], Store], now: datetime, until: datetime) -> None:
    store_for_thread().postpone_signups(now, until)


def _retry(store_for_thread: Callable[[], Store], number: int, when: datetime, error: str) -> None:
    store_for_thread().retry_signup(number, when, error)
