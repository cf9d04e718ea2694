"""Confirmations for the sign-up queue (:mod:`digest.subscribers.signups`), sent after the
form's answer: drained every ``TICK`` seconds by the running service (``digest serve`` or
``digest run``), not by the request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from digest.common.dates import to_iso
from digest.common.errors import SendError
from digest.config import Settings
from digest.mail.channels import destination, transport_for
from digest.mail.compose import Outgoing
from digest.mail.send import confirmation_message
from digest.mail.transport import Permanent, Transport
from digest.store import Signup, SubscribersStore
from digest.subscribers import signups
from digest.subscribers.signups import CLAIM, GIVE_UP_AFTER, backoff

if TYPE_CHECKING:
    from digest.store.contract import SettingsAndSubscribers

log = logging.getLogger("digest")
TICK = 2.0  # seconds between looks at the queue
BATCH = 50  # requests handled per look at the queue


async def drain(
    store_for_thread: Callable[[], SettingsAndSubscribers],
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
        row = signups.pending_for(store, request)
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
        retry = moment + backoff(attempts)
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
                until = moment + backoff(request.attempts + 1)
                await offload(_postpone, store_for_thread, moment, until)
                break
            except Exception as exc:  # one request's trouble must not stop the queue
                await defer(request, exc)
                continue
            else:
                sent += 1
                log.info(
                    "sign-up %s: confirmation %s", number, destination(settings), extra={"event": "signup"}
                )
            await offload(_finish, store_for_thread, number)
    return sent


def _finish(store_for_thread: Callable[[], SubscribersStore], number: int) -> None:
    store_for_thread().finish_signup(number)


def _postpone(store_for_thread: Callable[[], SubscribersStore], now: datetime, until: datetime) -> None:
    store_for_thread().postpone_signups(now, until)


def _retry(store_for_thread: Callable[[], SubscribersStore], number: int, when: datetime, error: str) -> None:
    store_for_thread().retry_signup(number, when, error)
