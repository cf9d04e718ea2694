"""The service: scheduled pulls, the weekly digest and the web server in one asyncio loop.

- Pulls: one APScheduler job per source on its interval (with jitter); a pull runs in a
  daemon thread (fetching and the database are blocking), at most ``[fetch] workers`` at
  once and ``[fetch] per_host`` at a time per server, and waits out backoff and cache lifetimes the source's
  answers asked for. A hanging source holds only its own slot. Of several processes on
  one database, one pulls each source (a claim). Grouping follows in a task of its own,
  one run at a time, by one process at a time (a lease).
- Digest: a cron job in the configured time zone for subscribers on the site's schedule.
  The last due time handled is kept in the database, so a restart neither resends nor
  skips: a digest missed while the process was down is sent once on start, within
  ``[schedule] grace``. Subscribers on a rhythm of their own are looked at each minute
  (``RHYTHM_TICK``): whoever's due time has passed gets their digest, one per period (the
  ledger's key), however the process or the clock jumps. One process plans each digest
  (a lease); every process helps send it (claimed batches of deliveries).
- Shutdown (SIGTERM, Ctrl-C): the server stops, the digest stops taking new messages but
  records the one in flight, pulls are abandoned (their threads die with the process; a
  half-done transaction rolls back).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from digest.common import metrics, redact
from digest.common.dates import from_iso, to_iso, utcnow
from digest.common.egress import origin_of
from digest.common.errors import DigestError
from digest.config import Settings, SourceSettings
from digest.feedback.apply import BounceMailbox
from digest.feedback.inbound import Inbound, Mailbox
from digest.grouping.classify import group_shared
from digest.intake import websub
from digest.intake.fetch import Fetcher
from digest.intake.newsletters import NewsletterMailbox
from digest.intake.pull import pull_source
from digest.intake.sources import current
from digest.intake.sync import spec_of, sync_sources
from digest.mail import confirmations
from digest.mail.channels import destination
from digest.mail.planner import Planner
from digest.mail.schedule import cron_trigger, last_due
from digest.mail.send import PLAN_LEASE, PLAN_SECONDS, send_all
from digest.service import alerting, webhooks
from digest.service.alerts import OPEN, load_state
from digest.service.logs import configure_logging
from digest.service.webhooks import Delivered
from digest.store import DigestSummary, SourceSummary, Store, open_database
from digest.store.holders import holder_name, take_lease
from digest.store.worker import StoreWorker
from digest.web.app import create_app
from digest.web.listen import listening_socket

log = logging.getLogger("digest")
LAST_DUE = "digest_last_due"
RHYTHM_TICK = 60.0
WEBHOOK_TICK = 10.0  # how often events are queued and due webhooks sent
STOP_WITHIN = 8.0


class Service:
    """One `digest run` process."""

    def __init__(self, settings: Settings) -> None:
        self.configured = settings  # as the file says; ``settings`` adds the store's sources
        self.settings = settings
        self.trigger = cron_trigger(settings)
        self.holder = holder_name()
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = asyncio.Event()
        self.host_slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self.slots = asyncio.Semaphore(settings.fetch.workers)
        self.grouping_wanted = asyncio.Event()
        self.last_pull: str | None = None
        self.last_digest: str | None = None
        # The service's own database work (leases, the schedule's state, the ledger) runs in
        # the worker's thread; other threads (pulls, health, sign-ups) open their own stores.
        self.worker = StoreWorker(lambda: open_database(settings.database))
        self._local = threading.local()

    # --- health -------------------------------------------------------------------------------

    async def health(self) -> tuple[int, dict[str, Any]]:
        """The service's state for /healthz (its reads in a thread of the default pool: never
        queued behind the worker's writes, never on the loop)."""
        running = self.scheduler is not None and self.scheduler.running and not self.stopping.is_set()
        job = self.scheduler.get_job("digest") if self.scheduler else None
        sources, digests, problems = await asyncio.to_thread(self._health_reads)
        failing = [
            {"source": s.name, "failures": s.consecutive_failures, "error": redact.text(s.last_error or "")}
            for s in sources
            if s.consecutive_failures and not s.removed
        ]
        body = {
            "status": "ok" if running else "stopped",
            "last_pull": self.last_pull,
            "last_digest": self.last_digest or next((to_iso(d.digest.created) for d in digests), None),
            "next_digest": job.next_run_time.isoformat() if job and job.next_run_time else None,
            "failing_sources": failing,
            "problems": [
                {"problem": key, "since": value.get("since"), "summary": value.get("summary")}
                for key, value in sorted(problems.items())
            ],
        }
        return (200 if running else 503), body

    def _health_reads(self) -> tuple[list[SourceSummary], list[DigestSummary], dict[str, dict[str, str]]]:
        store = self._thread_store()
        problems = load_state(store.get_setting(OPEN))  # as the alert check last saw them
        return store.source_summaries(), store.digests(limit=1), problems

    # --- pulls --------------------------------------------------------------------------------

    async def pull(self, source: SourceSettings) -> None:
        server = origin_of(source.url)  # as `digest pull` counts them (digest.intake.fetch)
        per_server = self.host_slots.setdefault(server, asyncio.Semaphore(self.settings.fetch.per_host))
        async with self.slots, per_server:
            if self.stopping.is_set():
                return
            with metrics.PULL_SECONDS.time():
                report = await _in_daemon_thread(lambda: self._pull_blocking(source))
        self.last_pull = to_iso(utcnow())
        metrics.PULLS.labels("error" if report.error else "ok").inc()
        metrics.ARTICLES.inc(report.new)
        if report.new or report.updated:
            self.grouping_wanted.set()
        if report.error:
            log.warning(
                "pull %s: %s", source.name, report.error, extra={"source": source.name, "event": "pull"}
            )
        elif report.new or report.updated:
            log.info("pull %s", report.summary(), extra={"source": source.name, "event": "pull"})

    def _pull_blocking(self, source: SourceSettings) -> Any:
        with open_database(self.settings.database) as store, Fetcher(self.settings.fetch) as fetcher:
            if not source.added:  # (an added one is the store's already)
                store.sync_sources([spec_of(source)])
            return pull_source(store, fetcher, source, self.settings, scheduled=True, holder=self.holder)

    async def group(self) -> None:
        """Group what the pulls stored: one run at a time, for all the pulls that asked since
        the last began, so a pull never waits for grouping (a host's next pull would) and a
        burst of pulls is grouped in a few runs, not one each."""
        while not self.stopping.is_set():
            await self.grouping_wanted.wait()
            self.grouping_wanted.clear()
            try:
                await _in_daemon_thread(self._group_blocking)
            except Exception as exc:  # the schedule must outlive any one failure
                log.warning(
                    "grouping: %s", redact.text(str(exc)) or type(exc).__name__, extra={"event": "group"}
                )

    def _group_blocking(self) -> None:
        with open_database(self.settings.database) as store:
            group_shared(store, self.settings, self.holder)
        websub.ping(self.settings)  # the feeds changed: tell the hub, if there is one

    # --- digest -------------------------------------------------------------------------------

    async def digest(self, due: datetime | None = None) -> None:
        """The digest due at ``due`` (for the cron job: the due time just passed, the same
        in every process). One process plans it, under the lease, unless it was handled;
        then every process helps send whatever digest is unfinished, claiming deliveries in
        batches, so several workers share the sending and none sends a message twice."""
        now = utcnow()
        # Off the loop: working out due times is arithmetic enough to be felt by the web.
        due = due or await asyncio.to_thread(last_due, self.trigger, now, now - timedelta(days=1)) or now
        worker = self.worker
        try:
            if await worker.call(lambda s: take_lease(s, PLAN_LEASE, self.holder, PLAN_SECONDS)):
                try:
                    await self._plan(due)
                finally:
                    await worker.call(lambda s: s.release_lease(PLAN_LEASE, self.holder))
            else:
                log.info(
                    "digest due %s: another process is planning it", to_iso(due), extra={"event": "digest"}
                )
                await self._planned_elsewhere()
            await self._send_unfinished()
        except DigestError as exc:
            log.error("digest: %s", exc, extra={"event": "digest"})

    async def _plan(self, due: datetime) -> None:
        """Plan the digest due at ``due`` unless some process handled that due time."""
        worker = self.worker
        handled = await worker.call(lambda s: s.get_setting(LAST_DUE))
        if handled and from_iso(handled) >= due:
            log.info("digest due %s: already handled", to_iso(due), extra={"event": "digest"})
            return
        # Recorded first: a crash from here on resumes the unfinished digest on restart
        # (every run sends unfinished digests first) instead of planning a second one.
        await worker.call(lambda s: s.put_setting(LAST_DUE, to_iso(due)))
        digest_id = await worker.call(lambda s: Planner(s, self.settings).create(utcnow()))
        if digest_id is None:
            log.info("digest due %s: nothing new for anyone", to_iso(due), extra={"event": "digest"})

    async def rhythms(self) -> None:
        """Each tick: the digest of everyone on a rhythm of their own whose due time has
        passed, planned by one process (the lease; the others skip this tick) and sent by
        every process that is free to help."""
        worker = self.worker
        try:
            if not await worker.call(lambda s: bool(s.due_subscribers(utcnow()))):
                return
            if not await worker.call(lambda s: take_lease(s, PLAN_LEASE, self.holder, PLAN_SECONDS)):
                return  # another process is planning: it sends, and this one helps next tick
            try:
                digest_id = await worker.call(
                    lambda s: Planner(s, self.settings).create(utcnow(), site_schedule=False)
                )
            finally:
                await worker.call(lambda s: s.release_lease(PLAN_LEASE, self.holder))
            if digest_id is None:
                return
            await self._send_unfinished()
        except DigestError as exc:
            log.error("digest: %s", exc, extra={"event": "digest"})

    async def _send_unfinished(self) -> None:
        """Send (with whichever processes help) every digest with deliveries still to make."""
        reports = await send_all(
            self.worker.store,
            self.settings,
            should_stop=self.stopping.is_set,
            run=self.worker.run,
            plan=False,
        )
        self.last_digest = to_iso(utcnow())
        for report in reports:
            for outcome in ("sent", "failed", "deferred", "skipped"):
                metrics.DELIVERIES.labels(outcome).inc(getattr(report, outcome))
            log.info(
                "%s; %s",
                report.summary(),
                destination(self.settings),
                extra={"event": "digest", "digest": report.digest_id},
            )
        if reports:  # how this run ended, for the alert check (whichever process makes it)
            failed, deferred = sum(r.failed for r in reports), sum(r.deferred for r in reports)
            total = sum(r.sent + r.failed + r.deferred for r in reports)
            problem = next((r.first_problem for r in reports if r.first_problem), None)
            await self.worker.call(
                alerting.record_run,
                reports[-1].digest_id,
                total,
                failed,
                deferred,
                redact.text(problem or ""),
            )

    async def _planned_elsewhere(self) -> None:
        """Wait until the process planning the digest has let go of the lease (its digest is
        then in the ledger, ready to be shared), or until the lease would expire."""
        deadline = time.monotonic() + PLAN_SECONDS
        while time.monotonic() < deadline and not self.stopping.is_set():
            if await self.worker.call(lambda s: take_lease(s, PLAN_LEASE, self.holder, 1.0)):
                await self.worker.call(lambda s: s.release_lease(PLAN_LEASE, self.holder))
                return
            await asyncio.sleep(0.5)

    async def catch_up(self) -> None:
        """On start: send a digest that fell due while the process was down (within grace)."""
        now = utcnow()
        handled = await self.worker.call(lambda s: s.get_setting(LAST_DUE))
        if handled is None:  # a new install owes no past digest
            await self.worker.call(lambda s: s.put_setting(LAST_DUE, to_iso(now)))
            log.info("no digest owed: a new database", extra={"event": "catch-up"})
            return
        since = max(from_iso(handled), now - timedelta(seconds=self.settings.schedule.grace))
        missed = await asyncio.to_thread(last_due, self.trigger, now, since)
        if missed is None:
            log.info("no digest missed since %s", handled, extra={"event": "catch-up"})
            return
        log.info("digest due %s was missed: sending it now", to_iso(missed), extra={"event": "catch-up"})
        await self.digest(missed)

    async def alerts(self) -> None:
        try:
            await alerting.check(self.worker.call, self.settings, self.holder, utcnow())
        except Exception as exc:  # the schedule must outlive any one failure
            log.warning("alerts: %s", redact.text(str(exc)) or type(exc).__name__, extra={"event": "alert"})

    async def signups(self) -> None:
        """Confirmations queued by the subscribe form that are due (retries, and any left
        by a restart)."""
        try:
            await confirmations.drain(self._thread_store, self.settings)
        except Exception as exc:  # the schedule must outlive any one failure
            log.warning(
                "sign-ups: %s", redact.text(str(exc)) or type(exc).__name__, extra={"event": "signups"}
            )

    def _thread_store(self) -> Store:
        """A store for the calling worker thread (sqlite3 connections stay in their thread)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = open_database(self.settings.database)
        return store

    # --- the loop -----------------------------------------------------------------------------

    async def run(self, *, web: bool = True) -> int:
        """The service until SIGTERM or Ctrl-C: the jobs scheduled, mail coming back taken
        (with ``[inbound]``), the web server serving (with ``web``); then stopped in order."""
        loop = asyncio.get_running_loop()
        # What listens is taken first: a port in use is one line, before any job starts.
        sock = listening_socket(self.settings.web.host, self.settings.web.port) if web else None
        inbound = self._inbound()
        if inbound is not None:
            try:
                await inbound.start()
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
        self.scheduler = AsyncIOScheduler(event_loop=loop, timezone=ZoneInfo(self.settings.schedule.timezone))
        now = utcnow()
        await self.worker.call(sync_sources, self.settings)  # also opens the worker's store there
        self.settings = await self.worker.call(lambda s: current(self.configured, s))
        self._schedule(self.scheduler, now)
        self.scheduler.start()
        log.info(
            "running: %d sources, digest %r (%s); messages %s",
            len(self.settings.sources),
            self.settings.schedule.digest_cron,
            self.settings.schedule.timezone,
            destination(self.settings),
            extra={"event": "start"},
        )
        catch_up = asyncio.create_task(self.catch_up())
        grouping = asyncio.create_task(self.group())
        try:
            await self._serve(loop, sock)
        finally:
            await self._shut_down(self.scheduler, catch_up, grouping, inbound)
        return 0

    def _schedule(self, scheduler: AsyncIOScheduler, now: datetime) -> None:
        """The service's jobs: each source's pulls, the digest, rhythms, sign-ups, alerts, and
        a look at the sources added at run time."""
        for source in self.settings.sources:
            self._schedule_pulls(scheduler, source, now)
        scheduler.add_job(
            self.sources,
            IntervalTrigger(seconds=self.settings.schedule.sources_every),
            id="sources",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self.digest, self.trigger, id="digest", max_instances=1, coalesce=True, misfire_grace_time=None
        )
        scheduler.add_job(
            self.rhythms,
            IntervalTrigger(seconds=RHYTHM_TICK),
            id="rhythms",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self.signups,
            IntervalTrigger(seconds=confirmations.TICK),
            id="signups",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self.webhooks,
            IntervalTrigger(seconds=WEBHOOK_TICK),
            id="webhooks",
            next_run_time=now + timedelta(seconds=5),
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(  # problems for /healthz, and with [alerts] email, alerts
            self.alerts,
            IntervalTrigger(seconds=alerting.ALERT_TICK),
            id="alerts",
            next_run_time=now + timedelta(seconds=30),  # the first pulls have had a chance
            max_instances=1,
            coalesce=True,
        )

    def _schedule_pulls(self, scheduler: AsyncIOScheduler, source: SourceSettings, now: datetime) -> None:
        if not source.enabled or not source.pulled:
            return
        every = source.every or self.settings.schedule.pull_every
        scheduler.add_job(
            self.pull,
            IntervalTrigger(seconds=every, jitter=min(every / 10, 30)),
            args=[source],
            id=f"pull:{source.name}",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
        )

    async def sources(self) -> None:
        """Take up what operators changed in the sources added at run time (in this process
        or another on the database): a new or resumed source is pulled now and on its
        interval, a changed one on its new interval, a paused or removed one no more."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        try:
            fresh = await self.worker.call(lambda s: current(self.configured, s))
        except DigestError as exc:
            log.warning("sources: %s", exc, extra={"event": "sources"})
            return
        before = {s.name: s for s in self.settings.sources}
        after = {s.name: s for s in fresh.sources}
        self.settings = fresh
        now = utcnow()
        for name, source in after.items():
            if before.get(name) != source:
                if scheduler.get_job(f"pull:{name}") is not None:
                    scheduler.remove_job(f"pull:{name}")
                self._schedule_pulls(scheduler, source, now)
                said = "paused" if not source.enabled else "added" if name not in before else "changed"
                log.info("source %s: %s", name, said, extra={"source": name, "event": "sources"})
        for name in before.keys() - after.keys():
            if scheduler.get_job(f"pull:{name}") is not None:
                scheduler.remove_job(f"pull:{name}")
            log.info("source %s: removed", name, extra={"source": name, "event": "sources"})

    async def webhooks(self) -> None:
        """Queue what happened for the outgoing webhooks and send what is due (every
        process helps: claims keep them from sending one message twice)."""
        try:
            done = await _in_daemon_thread(self._webhooks_blocking)
        except DigestError as exc:
            log.warning("webhooks: %s", exc, extra={"event": "webhooks"})
            return
        if done.delivered or done.failed:
            log.info("webhooks: %d delivered, %d retrying, %d given up", done.delivered, done.retrying,
                     done.failed, extra={"event": "webhooks"})  # fmt: skip

    def _webhooks_blocking(self) -> Delivered:
        with open_database(self.settings.database) as store:
            return webhooks.run_once(store, self.settings, self.holder, utcnow())

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket | None) -> None:
        """Serve the web app on ``sock`` (if any) until it stops, else wait to be stopped;
        SIGTERM and SIGINT stop either."""
        if sock is not None:
            app = create_app(self.settings, health=self.health)
            config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            host, port = sock.getsockname()[:2]
            log.info("feeds and pages: http://%s:%d/", host, port, extra={"event": "web"})
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop, server)
            await serving
        else:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop, None)
            await self.stopping.wait()

    async def _shut_down(
        self,
        scheduler: AsyncIOScheduler,
        catch_up: asyncio.Task[Any],
        grouping: asyncio.Task[Any],
        inbound: Inbound | None,
    ) -> None:
        """Stop in order: no new jobs, a digest in flight given time to record its current
        message, then the inbound server and the store's worker."""
        self.stopping.set()
        grouping.cancel()  # a run in flight is abandoned as pulls are: it rolls back
        scheduler.shutdown(wait=False)
        # Let a digest in flight record its current message, then go.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_WITHIN)
        catch_up.cancel()
        if inbound is not None:
            await inbound.close()
        await asyncio.to_thread(self.worker.close)
        log.info("stopped", extra={"event": "stop"})

    def _inbound(self) -> Inbound | None:
        """The SMTP server for mail coming back, when ``[inbound]`` asks for one."""
        if self.settings.inbound is None:
            return None
        mailboxes: list[Mailbox] = []
        if self.settings.bounces is not None:
            mailboxes.append(BounceMailbox(self.settings, self.worker.call))
        if any(s.address for s in self.settings.sources):
            mailboxes.append(NewsletterMailbox(self.settings, self.worker.call, self.grouping_wanted.set))
        return Inbound(self.settings.inbound, mailboxes)

    def _stop(self, server: uvicorn.Server | None) -> None:
        self.stopping.set()
        if server is not None:
            server.should_exit = True


async def _in_daemon_thread(work: Callable[[], Any]) -> Any:
    """Run blocking work in a daemon thread, so an abandoned pull cannot hold up the exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def target() -> None:
        try:
            result = work()
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=target, daemon=True, name="digest-pull").start()
    return await future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def run_service(settings: Settings, *, log_format: str = "text") -> int:
    """`digest run`: the whole service until SIGTERM or Ctrl-C."""
    configure_logging(log_format)
    started = time.monotonic()
    code = asyncio.run(_main(settings))
    log.debug("ran %.0f s", time.monotonic() - started)
    return code


async def _main(settings: Settings) -> int:
    return await Service(settings).run()
