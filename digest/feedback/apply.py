"""Bounces and complaints, wherever they come from (the receiver's bounce mailbox, a
provider's webhook), applied to subscribers through one store call each (the rule itself:
:mod:`digest.store.feedback`), logged, and counted for /metrics.

A bounce address is believed only when its VERP token verifies (:mod:`digest.mail.verp`): a
forged or altered one is refused at RCPT TO and changes nothing. A provider's report is
believed only after its signature was checked (:mod:`digest.feedback.webhooks`); it names the
subscriber by address and, when it can, the delivery by Message-ID.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from digest.common import confined, metrics
from digest.common.errors import StoreError
from digest.config import Settings
from digest.feedback import bounces
from digest.feedback.inbound import READERS, TryLater
from digest.mail import verp
from digest.store import Store
from digest.subscribers.lifecycle import bindings
from digest.subscribers.tokens import BadToken, secret_for

if TYPE_CHECKING:
    from digest.store.contract import FeedbackAndSubscribers, SettingsAndSubscribers

log = logging.getLogger("digest")
T = TypeVar("T")
Runner = Callable[[Callable[[Store], T]], Awaitable[T]]


def apply(
    store: FeedbackAndSubscribers,
    settings: Settings,
    subscriber_id: int,
    digest_id: str | None,
    kind: str,
    detail: str,
    via: str,
) -> str:
    """Record one report; the outcome's name (see digest.store.feedback.OUTCOMES)."""
    soft_limit = settings.bounces.soft_limit if settings.bounces else 3
    outcome = store.record_feedback(
        subscriber_id, digest_id, kind, detail, soft_limit=soft_limit, now=store.now()
    )
    metrics.feedback(kind, outcome)
    found = store.subscriber(subscriber_id=subscriber_id)
    who = found.email if found else f"subscriber {subscriber_id}"
    log.info(
        "%s via %s: %s (%s): %s",
        "complaint" if kind == "complaint" else f"{kind} bounce",
        via,
        who,
        detail,
        outcome,
        extra={"event": "feedback", "kind": kind, "outcome": outcome},
    )
    return outcome


def delivery_named(store: SettingsAndSubscribers, secret: bytes, address: str) -> verp.Delivery:
    """The delivery a bounce address names; BadToken when it names none (or is forged)."""
    return verp.read(secret, address, bindings(store, "unsubscribe"))


def from_bounce(store: Store, settings: Settings, address: str, report: bounces.Report) -> str | None:
    """What a report that came back to ``address`` (a bounce address) does; None when it
    changes nothing: a report in prose about someone else (an auto-reply quoting a bounce),
    or one about a digest too old to be among the subscriber's recent ones (an address from
    an old or forwarded message is no evidence about today)."""
    delivery = delivery_named(store, secret_for(store, settings.secret), address)
    subscriber = store.subscriber(subscriber_id=delivery.subscriber_id)
    if subscriber is None or not report.is_about(subscriber.email):
        log.info("a report at a bounce address names someone else; ignored", extra={"event": "feedback"})
        return None
    digest_id = next((d for d in store.sent_digests(delivery.subscriber_id) if delivery.is_for(d)), None)
    if digest_id is None:
        log.info("a report about a digest long gone; ignored", extra={"event": "feedback"})
        return None
    return apply(store, settings, delivery.subscriber_id, digest_id, report.kind, report.detail, "smtp")


def from_provider(
    store: FeedbackAndSubscribers,
    settings: Settings,
    email: str,
    message_id: str | None,
    kind: str,
    detail: str,
    via: str,
) -> str:
    """A provider's report about ``email`` (and the message it names, when it names one)."""
    subscriber = store.subscriber(email=email.strip())
    if subscriber is None:
        log.info("%s: a report about %r, who is no subscriber; ignored", via, bounces.line(email))
        return "unknown"
    found = store.delivery_of_message(message_id) if message_id else None
    digest_id = found[0] if found and found[1] == subscriber.id else None
    return apply(store, settings, subscriber.id, digest_id, kind, bounces.line(detail), via)


class BounceMailbox:
    """The receiver's mailbox for ``bounces+TOKEN@<bounce domain>``: it claims an address only
    when the token verifies."""

    def __init__(self, settings: Settings, run: Runner[object]) -> None:
        assert settings.bounces is not None
        self.settings = settings
        self.domain = settings.bounces.domain
        self.run = run
        # Reading a message is CPU work for a confined child process (never this process, nor
        # the store's thread, which the digest's ledger writes wait on), a few at a time.
        self.readers = asyncio.Semaphore(READERS)

    async def claims(self, address: str, sender: str) -> bool:
        if address.rpartition("@")[2].lower().rstrip(".") != self.domain:
            return False
        try:
            await self.run(lambda s: delivery_named(s, secret_for(s, self.settings.secret), address))
        except BadToken:
            return False
        except StoreError as exc:
            raise TryLater from exc
        return True

    async def receive(self, address: str, raw: bytes) -> None:
        async with self.readers:
            try:
                report = bounces.report_of(await confined.run("bounce", raw))
            except (confined.Overrun, ValueError) as exc:
                log.warning(
                    "a message to a bounce address could not be read (%s); ignored",
                    exc,
                    extra={"event": "feedback"},
                )
                return
        if report is None:
            log.info("a message to a bounce address reported nothing; ignored", extra={"event": "feedback"})
            return
        try:
            await self.run(lambda s: from_bounce(s, self.settings, address, report))
        except BadToken:
            pass  # the subscriber left between RCPT and DATA: nothing to change
        except StoreError as exc:
            raise TryLater from exc
