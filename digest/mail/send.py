"""Sending digests: a pool of SMTP connections (aiosmtplib), retries, and the delivery ledger.

Every delivery is a ledger row (digest, subscriber) written as *pending* before any SMTP
work and as *sent* (with its Message-ID) or *failed* (with the server's reply) right after
the server answers, each in its own transaction. A rerun resumes the pending rows, so a
crash can at worst resend the one message whose 250 reply was not yet recorded.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import aiosmtplib

from digest import digests
from digest.config import Settings, SmtpSettings
from digest.dates import from_iso, to_iso, utcnow
from digest.digests import Content, Selection
from digest.errors import SendError
from digest.grouping.classify import taxonomy_for
from digest.grouping.regions import regions
from digest.mail import compose
from digest.mail.compose import Outgoing, outgoing
from digest.mail.outbox import Outbox
from digest.store import Store
from digest.subscribers import token
from digest.tokens import CONFIRM_SECONDS, secret_for

BOUNCE_LIMIT = 3
ATTEMPTS = 3


class Permanent(Exception):
    """The server refused this message for good (5xx): mark it failed."""


class Temporary(Exception):
    """The server asked us to try later (4xx) or the connection broke."""


class Transport(Protocol):
    name: str

    async def __aenter__(self) -> Transport: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def send(self, msg: Outgoing, key: str) -> str: ...


class SmtpPool:
    """Up to ``size`` SMTP connections, each reused for many messages, with an optional
    global rate limit (messages per second)."""

    def __init__(
        self, config: SmtpSettings, *, size: int = 2, rate: float = 0.0, backoff: float = 0.5
    ) -> None:
        self.config = config
        self.name = f"{config.host}:{config.port}"
        self.size = size
        self.backoff = backoff
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._made = 0
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._idle.empty() and self._made < self.size:
            self._made += 1
            try:
                return await self._connect()
            except BaseException:
                self._made -= 1
                raise
        return await self._idle.get()

    async def _connect(self) -> aiosmtplib.SMTP:
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            timeout=c.timeout,
            use_tls=c.security == "tls",
            start_tls=c.security == "starttls",
            tls_context=ssl.create_default_context() if c.security != "none" else None,
        )
        try:
            await client.connect()
            if c.username:
                await client.login(c.username, c.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SendError(f"SMTP {self.name}: authentication failed: {exc.code} {exc.message}") from None
        except ssl.SSLError as exc:
            raise SendError(f"SMTP {self.name}: TLS failed: {_why(exc)}") from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise Temporary(f"cannot connect to {self.name}: {_why(exc)}") from None
        return client

    async def _pace(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            wait = self._next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next = max(self._next, time.monotonic()) + self._interval

    async def send(self, msg: Outgoing, key: str) -> str:
        """Send one message; returns the server's reply. Temporary failures are retried
        with backoff on a fresh connection; Permanent and SendError are not."""
        last, unreachable = "", 0
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            await self._pace()
            try:
                client = await self._connection()
            except Temporary as exc:
                last, unreachable = str(exc), unreachable + 1
                continue
            try:
                _, reply = await client.sendmail(msg.sender, list(msg.recipients), msg.data)
            except (aiosmtplib.SMTPException, OSError) as exc:
                # Whatever went wrong, this connection is in an unknown state: drop it.
                client.close()
                self._made -= 1
                code = _code(exc)
                if code is not None and code >= 500:
                    raise Permanent(_reply(exc)) from None
                last = _reply(exc)
                continue
            self._idle.put_nowait(client)
            return reply
        if unreachable == ATTEMPTS:
            # No server to talk to: stop the whole run (the ledger keeps every delivery pending).
            raise SendError(f"SMTP {last}")
        raise Temporary(last)


def _code(exc: BaseException) -> int | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return exc.recipients[0].code
    return exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None


def _reply(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refusal = exc.recipients[0]
        return f"{refusal.code} {refusal.message}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return f"connection lost: {_why(exc)}"


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def transport_for(settings: Settings, *, backoff: float = 0.5) -> Transport:
    if settings.smtp is None:
        return Outbox(settings.outbox.path)
    return SmtpPool(settings.smtp, size=settings.smtp.pool, rate=settings.smtp.rate, backoff=backoff)


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

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.names = regions() if settings.digest.group_by == "region" else taxonomy_for(settings).titles()
        self.env = compose.environment(settings.digest.templates)
        self.secret = secret_for(store, settings.secret)

    def content(
        self, selection: Selection, until: datetime, *, limit: int | None = digests.MAX_ITEMS
    ) -> Content:
        articles = self.store.articles(since=from_iso(selection.since), until=until)
        return digests.build(articles, selection, self.names, by=self.settings.digest.group_by, limit=limit)

    def plan(self, now: datetime | None = None, since: datetime | None = None) -> str | None:
        """Create the next digest and its pending ledger rows; None when nobody has news.
        ``since`` makes every subscriber's digest start there instead of at their last one."""
        until = now or utcnow()
        chosen = self.selections(until, since)
        contents: dict[Selection, Content] = {}
        rows = []
        for subscriber_id, selection in chosen.items():
            if selection not in contents:
                contents[selection] = self.content(selection, until)
            if not contents[selection].empty:
                rows.append((subscriber_id, selection.since))
        if not rows:
            return None
        digest_id = base_id = until.strftime("%Y%m%dT%H%M%SZ")
        for n in range(2, 100):
            if self.store.digest(digest_id) is None:
                break
            digest_id = f"{base_id}-{n}"
        self.store.create_digest(digest_id, until, rows)
        return digest_id

    def selections(self, until: datetime, since: datetime | None = None) -> dict[int, Selection]:
        """Who would get a new digest cut at ``until``, with what. Not a subscriber whose
        previous digest is still pending: it goes out first, and the next one starts where it
        ends, so no article reaches anyone twice however long a server defers."""
        waiting = self.store.subscribers_with_pending()
        active = [s for s in self.store.subscribers("active") if int(str(s["id"])) not in waiting]
        return digests.selections(active, self.store.last_delivered(), until, since)

    def links(self, subscriber: Mapping[str, object]) -> tuple[str, str]:
        """The subscriber's unsubscribe and preferences links (a row with id, email, created)."""
        base = self.settings.site.base_url
        return (
            f"{base}/unsubscribe/{token(self.secret, 'unsubscribe', subscriber)}",
            f"{base}/preferences/{token(self.secret, 'preferences', subscriber)}",
        )

    async def deliver(
        self,
        digest_id: str,
        transport: Transport,
        progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Report:
        """Send every pending delivery of one digest; record each outcome as it happens."""
        digest = self.store.digest(digest_id)
        if digest is None:
            raise SendError(f"no digest {digest_id!r}")
        until = from_iso(digest["until"])
        report = Report(digest_id)
        pending = self.store.pending_deliveries(digest_id)
        rendered: dict[Selection, compose.Prepared | None] = {}
        domain = compose.site_host(self.settings)
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        for row in pending:
            if row["subscriber_status"] != "active":
                # Unsubscribed since the digest was planned: not sent, and not pending any more.
                self.store.record_delivery(
                    digest_id, int(row["subscriber_id"]), "failed", reply="unsubscribed"
                )
                report.skipped += 1
                continue
            queue.put_nowait(row)
        fatal: list[SendError] = []

        async def worker() -> None:
            # On shutdown, stop taking messages; the one in flight is still recorded.
            while not queue.empty() and not fatal and not (should_stop and should_stop()):
                row = queue.get_nowait()
                selection = Selection.of(str(row["since"]), str(row["regions"]), str(row["themes"]))
                if selection not in rendered:
                    content = self.content(selection, until)
                    rendered[selection] = (
                        None
                        if content.empty
                        else compose.prepare(
                            compose.render(content, self.settings, digest_id, self.env), self.settings
                        )
                    )
                body = rendered[selection]
                subscriber_id = int(str(row["subscriber_id"]))
                if body is None:
                    self.store.record_delivery(digest_id, subscriber_id, "failed", reply="nothing new")
                    report.skipped += 1
                    continue
                unsubscribe, preferences = self.links(
                    {"id": subscriber_id, "email": row["email"], "created": row["created"]}
                )
                msg, message_id = compose.personal_bytes(
                    body,
                    to=str(row["email"]),
                    unsubscribe_url=unsubscribe,
                    preferences_url=preferences,
                    date=until,
                    domain=domain,
                )
                try:
                    reply = await transport.send(msg, f"{digest_id}-{subscriber_id}")
                except Permanent as exc:
                    self.store.record_delivery(digest_id, subscriber_id, "failed", reply=str(exc))
                    self._maybe_bounced(subscriber_id)
                    report.failed += 1
                    report.first_problem = (
                        report.first_problem or f"{row['email']}: {transport.name} said {exc}"
                    )
                except Temporary as exc:
                    report.deferred += 1  # stays pending: the next run resumes it
                    report.first_problem = report.first_problem or f"{row['email']}: {transport.name}: {exc}"
                except SendError as exc:
                    fatal.append(exc)
                else:
                    self.store.record_delivery(
                        digest_id, subscriber_id, "sent", message_id=message_id, reply=reply
                    )
                    report.sent += 1
                if progress:
                    progress(1)

        workers = getattr(transport, "size", 1)
        await asyncio.gather(*(worker() for _ in range(workers)))
        if fatal:
            raise fatal[0]
        report.deferred += queue.qsize()  # left for the next run when stopping early
        self.store.finish_digest(digest_id)
        return report

    def _maybe_bounced(self, subscriber_id: int) -> None:
        found = self.store.subscriber(subscriber_id=subscriber_id)
        if found and found["bounces"] >= BOUNCE_LIMIT:
            self.store.update_subscriber(subscriber_id, status="bounced")


async def send_all(
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    transport: Transport | None = None,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    since: datetime | None = None,
) -> list[Report]:
    """Resume unfinished digests, then plan and send a new one; a report per digest."""
    mailer = Mailer(store, settings)
    reports = []
    async with transport or transport_for(settings) as channel:
        for digest in store.unfinished_digests():
            reports.append(await mailer.deliver(digest["id"], channel, progress, should_stop))
        digest_id = None if should_stop and should_stop() else mailer.plan(now, since)
        if digest_id is not None:
            reports.append(await mailer.deliver(digest_id, channel, progress, should_stop))
    return reports


def confirmation_message(store: Store, settings: Settings, row: Mapping[str, object]) -> Outgoing:
    """The double opt-in email for a pending subscriber (blocking: reads the token secret)."""
    secret = secret_for(store, settings.secret)
    confirm_url = f"{settings.site.base_url}/confirm/{token(secret, 'confirm', row)}"
    msg = compose.confirmation(
        settings,
        compose.environment(settings.digest.templates),
        to=str(row["email"]),
        confirm_url=confirm_url,
        days=CONFIRM_SECONDS // 86400,
        date=utcnow(),
    )
    return outgoing(msg)


async def send_confirmation(store: Store, settings: Settings, row: Mapping[str, object]) -> str:
    """Send the double opt-in email now (the operator's `subscribers add`); where it went
    (the server's reply, or the outbox file)."""
    msg = confirmation_message(store, settings, row)
    async with transport_for(settings) as channel:
        return await _once(channel, msg, f"confirm-{row['id']}-{int(time.time())}")


async def send_test_copy(store: Store, settings: Settings, email: str, since: datetime | None = None) -> str:
    """One copy of this week's (or since ``since``) full digest to ``email``, outside the ledger."""
    mailer = Mailer(store, settings)
    now = utcnow()
    start = to_iso(since) if since else digests.newcomer_since(now)
    content = mailer.content(Selection(start), now)
    if content.empty:
        raise SendError("nothing new in the last week: no test copy to send")
    rendered = compose.render(content, settings, "test", mailer.env)
    base = settings.site.base_url
    msg, _ = compose.personal_bytes(
        compose.prepare(rendered, settings),
        to=email,
        unsubscribe_url=f"{base}/unsubscribe/TEST",
        preferences_url=f"{base}/preferences/TEST",
        date=now,
        domain=compose.site_host(settings),
    )
    async with transport_for(settings) as channel:
        return await _once(channel, msg, f"test-{int(time.time())}")


async def _once(channel: Transport, msg: Outgoing, key: str) -> str:
    try:
        return await channel.send(msg, key)
    except (Permanent, Temporary) as exc:
        raise SendError(f"{channel.name}: {exc}") from None


def dry_run_lines(store: Store, settings: Settings) -> list[str]:
    """What `digest send` would do now, without doing it."""
    mailer = Mailer(store, settings)
    lines = [
        f"digest {d['id']}: {len(store.pending_deliveries(d['id']))} deliveries to resume"
        for d in store.unfinished_digests()
    ]
    now = utcnow()
    chosen = mailer.selections(now)
    contents: dict[Selection, Content] = {}
    count = 0
    for selection in chosen.values():
        if selection not in contents:
            contents[selection] = mailer.content(selection, now)
        count += not contents[selection].empty
    lines.append(
        f"new digest: {count} of {len(chosen)} active subscribers have something new"
        f" ({len(contents)} distinct selections)"
    )
    return lines
