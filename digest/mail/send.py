"""Sending digests through the delivery ledger, and the one-off messages (confirmations, test
copies).

Every delivery is a ledger row (digest, subscriber) written as *pending* when the digest is
planned and as *sent* (with its Message-ID) or *failed* (with the server's reply) right
after the server answers, each in its own transaction. A rerun resumes the pending rows, so
a crash can at worst resend the one message whose 250 reply was not yet recorded. The
bounce rule lives here: a refusal for good is a strike, and ``BOUNCE_STRIKES`` in a row
mark the subscriber bounced.

The database and the rendering go through ``run`` (by default: called in place). ``digest
run`` passes a function that runs them in the store's own worker thread, so the event loop
it shares with the web server only ever waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from digest.config import Settings
from digest.dates import utcnow
from digest.digests import Selection, newcomer_since
from digest.errors import DigestError, SendError
from digest.mail import compose
from digest.mail.compose import Outgoing, outgoing
from digest.mail.planner import Planner, sample_links
from digest.mail.transport import Permanent, Temporary, Transport, send_once, transport_for
from digest.store import PendingDelivery, Store, Subscriber
from digest.subscribers import token
from digest.tokens import CONFIRM_SECONDS, secret_for

BOUNCE_STRIKES = 3
T = TypeVar("T")
Run = Callable[..., Awaitable[Any]]


async def in_place(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``function`` right here (a CLI command owns its loop and its store)."""
    return function(*args, **kwargs)


@dataclass
class Report:
    digest_id: str
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    first_problem: str | None = None

    def summary(self) -> str:
        line = f"digest {self.digest_id}: {self.sent} sent, {self.failed} failed, {self.deferred} deferred"
        return line + (f"; {self.first_problem}" if self.first_problem else "")


class Mailer:
    """Plans digests and delivers them through a transport, keeping the ledger."""

    def __init__(self, store: Store, settings: Settings, *, run: Run = in_place) -> None:
        self.store = store
        self.settings = settings
        self.planner = Planner(store, settings)
        self.env = compose.environment(settings.digest.templates)
        self.secret = secret_for(store, settings.secret)
        self.run = run

    def links(self, subscriber: Subscriber) -> tuple[str, str]:
        """The subscriber's unsubscribe and preferences links."""
        base = self.settings.site.base_url
        return (
            f"{base}/unsubscribe/{token(self.secret, 'unsubscribe', subscriber)}",
            f"{base}/preferences/{token(self.secret, 'preferences', subscriber)}",
        )

    async def plan(self, now: datetime | None = None, since: datetime | None = None) -> str | None:
        """Create the next digest and its pending ledger rows; None when nobody has news.
        ``since`` makes every subscriber's digest start there instead of at their last one."""
        until = now or utcnow()
        return await self.run(self.planner.create, until, since)  # type: ignore[no-any-return]

    def _prepared(self, selection: Selection, until: datetime, digest_id: str) -> compose.Prepared | None:
        content = self.planner.content(selection, until)
        if content.empty:
            return None
        return compose.prepare(compose.render(content, self.settings, digest_id, self.env), self.settings)

    def _record(self, digest_id: str, delivery: PendingDelivery, outcome: str, **details: Any) -> None:
        self.store.record_delivery(digest_id, delivery.subscriber.id, outcome, **details)

    async def deliver(
        self,
        digest_id: str,
        transport: Transport,
        progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Report:
        """Send every pending delivery of one digest; record each outcome as it happens."""
        digest = await self.run(self.store.digest, digest_id)
        if digest is None:
            raise SendError(f"no digest {digest_id!r}")
        report = Report(digest_id)
        pending: list[PendingDelivery] = await self.run(self.store.pending_deliveries, digest_id)
        rendered: dict[Selection, compose.Prepared | None] = {}
        domain = compose.site_host(self.settings)
        queue: asyncio.Queue[PendingDelivery] = asyncio.Queue()
        for delivery in pending:
            if delivery.subscriber.status != "active":
                # Unsubscribed since the digest was planned: not sent, and not pending any more.
                await self.run(self._record, digest_id, delivery, "failed", reply="unsubscribed")
                report.skipped += 1
                continue
            queue.put_nowait(delivery)
        fatal: list[SendError] = []

        async def worker() -> None:
            # On shutdown, stop taking messages; the one in flight is still recorded.
            while not queue.empty() and not fatal and not (should_stop and should_stop()):
                delivery = queue.get_nowait()
                selection = Selection.of(delivery.since, delivery.subscriber)
                if selection not in rendered:
                    rendered[selection] = await self.run(self._prepared, selection, digest.until, digest_id)
                body = rendered[selection]
                if body is None:
                    await self.run(self._record, digest_id, delivery, "failed", reply="nothing new")
                    report.skipped += 1
                    continue
                unsubscribe, preferences = self.links(delivery.subscriber)
                msg, message_id = compose.personal_bytes(
                    body,
                    to=delivery.subscriber.email,
                    unsubscribe_url=unsubscribe,
                    preferences_url=preferences,
                    date=digest.until,
                    domain=domain,
                )
                try:
                    reply = await transport.send(msg, f"{digest_id}-{delivery.subscriber.id}")
                except Permanent as exc:
                    # A refusal for good is a strike; BOUNCE_STRIKES in a row: bounced.
                    await self.run(
                        self._record,
                        digest_id,
                        delivery,
                        "failed",
                        reply=str(exc),
                        strike=True,
                        strikes_to_bounce=BOUNCE_STRIKES,
                    )
                    report.failed += 1
                    problem = f"{delivery.subscriber.email}: {transport.name} said {exc}"
                    report.first_problem = report.first_problem or problem
                except Temporary as exc:
                    report.deferred += 1  # stays pending: the next run resumes it
                    problem = f"{delivery.subscriber.email}: {transport.name}: {exc}"
                    report.first_problem = report.first_problem or problem
                except SendError as exc:
                    fatal.append(exc)
                else:
                    await self.run(
                        self._record, digest_id, delivery, "sent", message_id=message_id, reply=reply
                    )
                    report.sent += 1
                if progress:
                    progress(1)

        await asyncio.gather(*(worker() for _ in range(transport.size)))
        if fatal:
            raise fatal[0]
        report.deferred += queue.qsize()  # left for the next run when stopping early
        await self.run(self.store.finish_digest, digest_id)
        return report


async def send_all(
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    transport: Transport | None = None,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    since: datetime | None = None,
    run: Run = in_place,
) -> list[Report]:
    """Resume unfinished digests, then plan and send a new one; a report per digest."""
    mailer: Mailer = await run(Mailer, store, settings)
    mailer.run = run
    reports = []
    async with transport or transport_for(settings) as channel:
        for digest in await run(store.unfinished_digests):
            reports.append(await mailer.deliver(digest.id, channel, progress, should_stop))
        digest_id = None if should_stop and should_stop() else await mailer.plan(now, since)
        if digest_id is not None:
            reports.append(await mailer.deliver(digest_id, channel, progress, should_stop))
    return reports


def confirmation_message(store: Store, settings: Settings, subscriber: Subscriber) -> Outgoing:
    """The double opt-in email for a pending subscriber (blocking: reads the token secret)."""
    secret = secret_for(store, settings.secret)
    confirm_url = f"{settings.site.base_url}/confirm/{token(secret, 'confirm', subscriber)}"
    msg = compose.confirmation(
        settings,
        compose.environment(settings.digest.templates),
        to=subscriber.email,
        confirm_url=confirm_url,
        days=CONFIRM_SECONDS // 86400,
        date=utcnow(),
    )
    return outgoing(msg)


async def send_confirmation(store: Store, settings: Settings, subscriber: Subscriber) -> str:
    """Send the double opt-in email now (the operator's `subscribers add`); where it went
    (the server's reply, or the outbox file)."""
    msg = confirmation_message(store, settings, subscriber)
    async with transport_for(settings) as channel:
        return await send_once(channel, msg, f"confirm-{subscriber.id}-{int(time.time())}")


async def send_test_copy(store: Store, settings: Settings, email: str, since: datetime | None = None) -> str:
    """One copy of this week's (or since ``since``) full digest to ``email``, outside the ledger."""
    mailer = Mailer(store, settings)
    now = utcnow()
    content = mailer.planner.content(Selection(since or newcomer_since(now)), now)
    if content.empty:
        raise SendError("nothing new in the last week: no test copy to send")
    rendered = compose.render(content, settings, "test", mailer.env)
    unsubscribe, preferences = sample_links(settings)
    msg, _ = compose.personal_bytes(
        compose.prepare(rendered, settings),
        to=email,
        unsubscribe_url=unsubscribe,
        preferences_url=preferences,
        date=now,
        domain=compose.site_host(settings),
    )
    async with transport_for(settings) as channel:
        return await send_once(channel, msg, f"test-{int(time.time())}")


def preview_body(
    store: Store, settings: Settings, *, email: str | None, since: datetime | None, part: str = "html"
) -> str:
    """The digest ``email`` (a subscriber) would get now, or the everything-digest of the last
    week (or since ``since``), as ``part`` (html or text); SendError-free, sends nothing."""
    from digest.subscribers import normalise_email

    planner = Planner(store, settings)
    now = utcnow()
    selection, address = Selection(since or newcomer_since(now)), "a subscriber"
    if email:
        subscriber = store.subscriber(email=normalise_email(email))
        if subscriber is None:
            raise DigestError(f"{email}: no such subscriber")
        selection, address = planner.for_subscriber(subscriber, now, since), subscriber.email
    content = planner.content(selection, now)
    if content.empty:
        raise DigestError("nothing new for this digest: no email would be sent")
    rendered = compose.render(content, settings, "preview", compose.environment(settings.digest.templates))
    unsubscribe, preferences = sample_links(settings)
    return rendered.filled(part, email=address, unsubscribe_url=unsubscribe, preferences_url=preferences)


def dry_run_lines(store: Store, settings: Settings, since: datetime | None = None) -> list[str]:
    """What `digest send` (with ``since``, as `--since` says) would do now, doing nothing."""
    planner = Planner(store, settings)
    lines = [
        f"digest {d.id}: {len(store.pending_deliveries(d.id))} deliveries to resume"
        for d in store.unfinished_digests()
    ]
    plan = planner.plan(utcnow(), since)
    start = f" from {since:%Y-%m-%d %H:%M} UTC" if since else ""
    lines.append(
        f"new digest{start}: {len(plan.deliveries)} of {plan.considered} active subscribers have something"
        f" new ({plan.distinct} distinct selections)"
    )
    return lines
