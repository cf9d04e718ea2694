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
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from digest.common import metrics
from digest.common.errors import DigestError, SendError
from digest.common.sanitize import one_line
from digest.config import Settings
from digest.mail import compose, verp
from digest.mail.channels import transport_for
from digest.mail.compose import Outgoing, outgoing
from digest.mail.contents import Selection, newcomer_since
from digest.mail.planner import Planner, sample_links
from digest.mail.transport import Permanent, Temporary, Transport, send_once
from digest.store import PendingDelivery, SettingsStore, Store, Subscriber
from digest.store.holders import died_here, holder_name, take_lease
from digest.subscribers.lifecycle import binding, token
from digest.subscribers.tokens import CONFIRM_SECONDS, secret_for

BOUNCE_STRIKES = 3
# One process at a time plans a digest (the scheduler's due digests and `digest send` alike).
PLAN_LEASE = "digest"
PLAN_SECONDS = 600.0
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

    async def plan(
        self,
        now: datetime | None = None,
        since: datetime | None = None,
        *,
        site_schedule: bool = True,
        everyone: bool = False,
    ) -> str | None:
        """Create the digest of everyone due at ``now`` and its pending ledger rows; None when
        nobody has news. ``since`` makes every subscriber's digest start there instead of at
        their last one; ``site_schedule``: those on the site's schedule are due too;
        ``everyone``: every active subscriber is (see :meth:`Planner.selections`)."""
        until = now or self.store.now()
        return await self.run(  # type: ignore[no-any-return]
            self.planner.create, until, since, site_schedule=site_schedule, everyone=everyone
        )

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
        """Send this digest's pending deliveries, claimed a batch at a time, so any number of
        processes send one digest together, each message once; record each outcome as it
        happens. Returns when nothing is left that this run may send, having waited out
        other holders' live claims (taking them over if they expire: their holder died)."""
        digest = await self.run(self.store.digest, digest_id)
        if digest is None:
            raise SendError(f"no digest {digest_id!r}")
        claims = _Claims(self, digest_id, batch=max(4 * transport.size, 16))
        await claims.begin()
        sending = _Sending(self, digest_id, digest.until, transport, claims, should_stop)
        keeping = asyncio.create_task(claims.keep_alive())
        try:
            await asyncio.gather(*(sending.worker(progress) for _ in range(transport.size)))
        finally:
            keeping.cancel()
            sending.report.deferred += claims.unsent()  # left for the next run when stopping early
            if not sending.unrecorded:
                # (A message sent but not recorded keeps its claim until it runs out: given
                # back now, it would be sent again at once.)
                with contextlib.suppress(DigestError):
                    await self.run(self.store.release_deliveries, digest_id, claims.holder)
        if sending.fatal:
            raise sending.fatal[0]
        await self.run(self.store.finish_digest, digest_id)
        return sending.report


async def _persist(write: Callable[[], Awaitable[Any]], attempts: int = 3) -> None:
    """A ledger write that must not be lost to a passing database hiccup (a lock held a
    moment too long): tried again after a pause, then given up as the error it is."""
    for attempt in range(attempts):
        try:
            await write()
            return
        except DigestError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5 * 2**attempt)


class _Sending:
    """This process's run through the deliveries of digest ``digest_id`` (cut at ``until``):
    what its workers share (the report, each selection's rendered body, the first fatal
    error, and the messages sent that the ledger could not be told of)."""

    def __init__(
        self,
        mailer: Mailer,
        digest_id: str,
        until: datetime,
        transport: Transport,
        claims: _Claims,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.mailer = mailer
        self.digest_id = digest_id
        self.until = until
        self.transport = transport
        self.claims = claims
        self.should_stop = should_stop
        self.report = Report(digest_id)
        self.rendered: dict[Selection, compose.Prepared | None] = {}
        self.domain = compose.site_host(mailer.settings)
        self.fatal: list[Exception] = []
        self.unrecorded: list[int] = []  # sent, but the ledger could not be told: keep their claims

    def stopping(self) -> bool:
        return bool(self.fatal) or bool(self.should_stop and self.should_stop())

    async def worker(self, progress: Callable[[int], None] | None) -> None:
        """Send claimed deliveries one after another until none is left or the run stops."""
        # On shutdown or a fatal error elsewhere, stop taking messages; the one in flight
        # still finishes and is recorded, so no claim is given up on a message half sent.
        try:
            while not self.stopping():
                delivery = await self.claims.next(self.stopping)
                if delivery is None:
                    return
                await self.send(delivery)
                if progress:
                    progress(1)
        except Exception as exc:
            self.fatal.append(exc)

    async def send(self, delivery: PendingDelivery) -> None:
        """Send one delivery and record its outcome (or skip it, recorded as failed)."""
        if delivery.subscriber.status != "active":
            # Unsubscribed since the digest was planned: not sent, and not pending any more.
            await self._record(delivery, "failed", reply="unsubscribed")
            self.report.skipped += 1
            return
        selection = Selection.of(delivery.since, delivery.subscriber, delivery.period)
        if selection not in self.rendered:
            self.rendered[selection] = await self.mailer.run(
                self.mailer._prepared, selection, self.until, self.digest_id
            )
        body = self.rendered[selection]
        if body is None:
            await self._record(delivery, "failed", reply="nothing new")
            self.report.skipped += 1
            return
        msg, message_id = self._message(delivery, body)
        if not self.claims.holds(delivery):
            return  # the claim was lost (this process stalled past it): another sends it
        try:
            with metrics.SEND_SECONDS.time():
                reply = await self.transport.send(msg, f"{self.digest_id}-{delivery.subscriber.id}")
        except Permanent as exc:
            # A refusal for good is a strike; BOUNCE_STRIKES in a row: bounced.
            await self._record(
                delivery, "failed", reply=str(exc), strike=True, strikes_to_bounce=BOUNCE_STRIKES
            )
            self.report.failed += 1
            self._problem(f"{delivery.subscriber.email}: {self.transport.name} said {exc}")
        except Temporary as exc:
            # Stays pending, unclaimed, for the next run (not this one: see _Claims).
            await self._record(delivery, "pending", reply=str(exc))
            self.report.deferred += 1
            self._problem(f"{delivery.subscriber.email}: {self.transport.name}: {exc}")
        else:
            self.report.sent += 1
            try:
                await _persist(lambda: self._record(delivery, "sent", message_id=message_id, reply=reply))
            except Exception:
                self.unrecorded.append(delivery.subscriber.id)
                raise

    def _message(self, delivery: PendingDelivery, body: compose.Prepared) -> tuple[Outgoing, str]:
        """The subscriber's message and its Message-ID (with VERP, its envelope sender names
        this delivery, so that a bounce does)."""
        mailer = self.mailer
        unsubscribe, preferences = mailer.links(delivery.subscriber)
        msg, message_id = compose.personal_bytes(
            body,
            to=delivery.subscriber.email,
            unsubscribe_url=unsubscribe,
            preferences_url=preferences,
            date=self.until,
            domain=self.domain,
        )
        if mailer.settings.bounces is not None:
            bound = binding(delivery.subscriber, "unsubscribe")
            assert bound is not None  # only confirmations have no binding without a sign-up
            sender = verp.envelope_sender(
                mailer.secret, self.digest_id, delivery.subscriber.id, bound, mailer.settings.bounces.domain
            )
            msg = replace(msg, sender=sender)
        return msg, message_id

    async def _record(self, delivery: PendingDelivery, outcome: str, **details: Any) -> None:
        await self.mailer.run(self.mailer._record, self.digest_id, delivery, outcome, **details)

    def _problem(self, problem: str) -> None:
        # A server's reply may span lines: the report is said on one (the CLI, the log).
        self.report.first_problem = self.report.first_problem or one_line(problem)


class _Claims:
    """This process's share of one digest: batches of deliveries claimed from the ledger as
    the senders need them, kept alive while the process lives (a task renews them, however
    long a message takes), and at the end a wait for other holders' live claims (they
    finish, or their holder dies and they run out, and this process takes them)."""

    def __init__(self, mailer: Mailer, digest_id: str, *, batch: int) -> None:
        self.mailer = mailer
        self.store = mailer.store
        self.digest_id = digest_id
        self.batch = batch
        self.holder = holder_name()
        self.seconds = mailer.settings.database.claim_seconds
        self.started: datetime | None = None
        self.queue: list[PendingDelivery] = []
        self.held: set[int] = set()
        self.lock = asyncio.Lock()

    async def begin(self) -> None:
        # By the database's clock, as every time a claim is compared with: what a server
        # deferred from now on waits for the next run.
        self.started = await self.mailer.run(self.store.ledger_now)

    async def next(self, stopping: Callable[[], bool]) -> PendingDelivery | None:
        """The next delivery to send, or None when this run is done with the digest."""
        assert self.started is not None
        async with self.lock:
            while not self.queue and not stopping():
                claimed = await self.mailer.run(
                    self.store.claim_deliveries,
                    self.digest_id,
                    self.holder,
                    limit=self.batch,
                    seconds=self.seconds,
                    tried_before=self.started,
                )
                if claimed:
                    self.queue.extend(reversed(claimed))
                    self.held.update(d.subscriber.id for d in claimed)
                    break
                others = await self.mailer.run(self.store.claim_holders, self.digest_id, self.holder)
                if not others:
                    return None
                for dead in filter(died_here, others):
                    await self.mailer.run(self.store.release_deliveries, self.digest_id, dead)
                await asyncio.sleep(min(1.0, self.seconds / 4))
            return self.queue.pop() if self.queue and not stopping() else None

    def holds(self, delivery: PendingDelivery) -> bool:
        return delivery.subscriber.id in self.held

    async def keep_alive(self) -> None:
        """Renew this holder's claims a few times per claim period while it runs; forget
        (and do not send) any it lost meanwhile."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            held = await self.mailer.run(self.store.renew_claims, self.digest_id, self.holder, self.seconds)
            self.held &= held
            self.queue = [d for d in self.queue if d.subscriber.id in held]

    def unsent(self) -> int:
        return len(self.queue)


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
    plan: bool = True,
    site_schedule: bool = True,
    everyone: bool = False,
) -> list[Report]:
    """Resume unfinished digests, then (with ``plan``) plan the digest of everyone due at
    ``now`` and send it; a report per digest. Due: those whose own rhythm's due time has
    passed, and (with ``site_schedule``: the operator sends, or the site's cron fired) those
    on the site's schedule; with ``everyone``, every active subscriber. Other processes on
    the database may be doing the same: one plans at a time (the others wait, then help
    send what it planned), and they share the deliveries."""
    if run is in_place and store.networked:
        # Each write waits on the server: made from a thread of their own, the messages in
        # flight go on meanwhile. One thread, so the store sees its calls one at a time.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-store") as thread:

            async def threaded(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
                return await asyncio.get_running_loop().run_in_executor(
                    thread, functools.partial(function, *args, **kwargs)
                )

            return await send_all(
                store, settings, now=now, transport=transport, progress=progress,
                should_stop=should_stop, since=since, run=threaded, plan=plan, site_schedule=site_schedule,
                everyone=everyone,
            )  # fmt: skip
    mailer: Mailer = await run(Mailer, store, settings)
    mailer.run = run
    reports: list[Report] = []
    handled: set[str] = set()  # a digest is delivered once per call: deferred ones wait

    async def unfinished() -> None:
        for digest in await run(store.unfinished_digests):
            if digest.id not in handled and not (should_stop and should_stop()):
                handled.add(digest.id)
                reports.append(await mailer.deliver(digest.id, channel, progress, should_stop))

    async with transport or transport_for(settings) as channel:
        await unfinished()
        if plan and not (should_stop and should_stop()):
            holder = holder_name()
            while not await run(take_lease, store, PLAN_LEASE, holder, PLAN_SECONDS):
                if should_stop and should_stop():
                    return reports
                await asyncio.sleep(0.25)  # another process is planning: its digest is ours to help send
            try:
                await mailer.plan(now, since, site_schedule=site_schedule, everyone=everyone)
            finally:
                await run(store.release_lease, PLAN_LEASE, holder)
            await unfinished()
    return reports


def one_off(now: datetime) -> str:
    """The rest of a message's outbox name outside the ledger: when, and something unique
    (two in one second, or at one moment of a fixed clock, must not replace each other)."""
    return f"{int(now.timestamp())}-{uuid.uuid4().hex[:12]}"


def confirmation_message(store: SettingsStore, settings: Settings, subscriber: Subscriber) -> Outgoing:
    """The double opt-in email for a pending subscriber (blocking: reads the token secret)."""
    secret = secret_for(store, settings.secret)
    confirm_url = f"{settings.site.base_url}/confirm/{token(secret, 'confirm', subscriber)}"
    msg = compose.confirmation(
        settings,
        compose.environment(settings.digest.templates),
        to=subscriber.email,
        confirm_url=confirm_url,
        days=CONFIRM_SECONDS // 86400,
        date=store.now(),
        cadence=subscriber.rhythm.cadence if subscriber.rhythm else None,
    )
    return outgoing(msg)


async def send_confirmation(store: SettingsStore, settings: Settings, subscriber: Subscriber) -> str:
    """Send the double opt-in email now (the operator's `subscribers add`); where it went
    (the server's reply, or the outbox file)."""
    msg = confirmation_message(store, settings, subscriber)
    async with transport_for(settings) as channel:
        return await send_once(channel, msg, f"confirm-{subscriber.id}-{one_off(store.now())}")


async def send_test_copy(store: Store, settings: Settings, email: str, since: datetime | None = None) -> str:
    """One copy of this week's (or since ``since``) full digest to ``email``, outside the ledger."""
    mailer = Mailer(store, settings)
    now = store.now()
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
        return await send_once(channel, msg, f"test-{one_off(now)}")


def preview_body(
    store: Store,
    settings: Settings,
    *,
    email: str | None,
    since: datetime | None,
    part: str = "html",
    now: datetime | None = None,
) -> str:
    """The digest ``email`` (a subscriber) would get now, or the everything-digest of the last
    week (or since ``since``), as ``part`` (html or text); SendError-free, sends nothing."""
    from digest.common.addresses import normalise_email

    planner = Planner(store, settings)
    now = now or store.now()
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


def dry_run_lines(
    store: Store,
    settings: Settings,
    since: datetime | None = None,
    now: datetime | None = None,
    *,
    everyone: bool = False,
) -> list[str]:
    """What `digest send` (with ``since``, as `--since` says; ``everyone``, as
    `--everyone`) would do at ``now``, doing nothing: it writes nothing at all (a dump of
    the database before and after is equal)."""
    planner = Planner(store, settings, record=False)
    lines = [
        f"digest {d.id}: {len(store.pending_deliveries(d.id))} deliveries to resume"
        for d in store.unfinished_digests()
    ]
    plan = planner.plan(now or store.now(), since, everyone=everyone)
    start = f" from {since:%Y-%m-%d %H:%M} UTC" if since else ""
    lines.append(
        f"new digest{start}: {len(plan.deliveries)} of {plan.considered} subscribers due have something"
        f" new ({plan.distinct} distinct selections)"
    )
    return lines
