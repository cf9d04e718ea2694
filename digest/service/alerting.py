"""The alert check `digest run` makes each ``ALERT_TICK`` (and ``digest alerts check`` on
demand): read the sources, the recent digests and how the last run ended; decide
(:mod:`digest.service.alerts`); send each notice to ``[alerts] email``; keep what was said.

One process checks at a time (the ``alerts`` lease). A notice that cannot be sent (no mail
server) leaves its problem's state as it was, so it goes out on a later tick: an alert is
delayed, never lost, and never sent twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

from digest.common.dates import to_iso
from digest.common.errors import SendError
from digest.config import Settings
from digest.mail.channels import transport_for
from digest.mail.compose import outgoing
from digest.mail.transport import Transport, send_once
from digest.publish import events
from digest.service import alerts
from digest.store import SettingsStore, Store
from digest.store.holders import take_lease

log = logging.getLogger("digest")
ALERT_TICK = 300.0
LEASE = "alerts"


async def check(
    run: Callable[[Callable[[Store], Any]], Awaitable[Any]], settings: Settings, holder: str, now: datetime
) -> list[alerts.Notice]:
    """Look for problems now, keep them for /healthz, and (with ``[alerts] email``) send
    what is due; the notices sent."""

    def read(store: Store) -> Any:
        if not take_lease(store, LEASE, holder, 120.0):
            return None  # another process is checking
        last_run = alerts.load_state(store.get_setting(alerts.LAST_RUN)) or None
        return (
            store.source_summaries(),
            store.digests(limit=200),
            last_run,
            alerts.load_state(store.get_setting(alerts.STATE)),
        )

    found: Any = await run(read)
    if found is None:
        return []
    sources, digests, last_run, state = found
    try:
        found_now = alerts.problems(sources, digests, last_run, settings.alerts, now)
        notices, after = alerts.decide(state, found_now, now)
        opened = alerts.opened(found_now, state, now)
        await run(lambda s: s.put_setting(alerts.OPEN, json.dumps(opened, sort_keys=True)))
        await run(lambda s: events.failing(s, settings, opened, now))  # (webhooks: source.failing)
        if not settings.alerts.email:
            return []
        # What was said, as it stands; each notice changes it only once it is sent, so an
        # alert or a recovery that could not go out goes out on a later tick.
        noticed = {notice.key for notice in notices}
        kept = {key: value if key in noticed else after.get(key, value) for key, value in state.items()}
        sent: list[alerts.Notice] = []
        async with AsyncExitStack() as stack:
            channel: Transport | None = None
            for notice in notices:
                try:
                    if channel is None:
                        channel = await stack.enter_async_context(transport_for(settings))
                    msg = outgoing(alerts.message(settings, notice, now))
                    await send_once(channel, msg, f"alert-{notice.key}-{to_iso(now)}")
                except SendError as exc:
                    log.error("alert not sent (%s): %s", notice.key, exc, extra={"event": "alert"})
                    continue
                sent.append(notice)
                if notice.recovered:
                    kept.pop(notice.key, None)
                else:
                    kept[notice.key] = after[notice.key]
                log.warning(
                    "%s %s: %s",
                    "recovered" if notice.recovered else "alert",
                    notice.key,
                    notice.summary,
                    extra={"event": "alert"},
                )
        await run(lambda s: s.put_setting(alerts.STATE, json.dumps(kept, sort_keys=True)))
        return sent
    finally:
        await run(lambda s: s.release_lease(LEASE, holder))


def record_run(
    store: SettingsStore, digest_id: str, total: int, failed: int, deferred: int, problem: str | None
) -> None:
    """How the last digest run ended, for the alert check."""
    value = {"digest": digest_id, "total": total, "failed": failed, "deferred": deferred, "problem": problem}
    store.put_setting(alerts.LAST_RUN, json.dumps(value))
