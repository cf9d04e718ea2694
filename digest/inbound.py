"""The one SMTP server digest runs (``[inbound] listen``), for mail coming back to it: the
transport only. What an address means is a *mailbox*'s business (the bounce mailbox of
:mod:`digest.feedback` today; newsletters later): the server asks each mailbox whether it
claims a recipient, and hands it each message for that recipient.

Everything arriving is hostile, so:

- a recipient no mailbox claims is refused (``550 5.1.1``) before any data is sent;
- at most ``max_bytes`` of message (``552``), ``MAX_RECIPIENTS`` recipients a message,
  ``COMMANDS_PER_SESSION`` of each command a connection (then ``421`` and goodbye);
- at most ``per_minute`` messages a minute from one client address (``421`` at MAIL FROM,
  which well-behaved servers take as "try later"), and at most ``connections`` connections
  open at once (``421`` at the greeting);
- a mailbox that cannot take a message now (the database is busy) answers ``451``, so the
  sending server keeps it and tries again: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.config import InboundSettings
from digest.errors import DigestError

log = logging.getLogger("digest")
MAX_RECIPIENTS = 20
MAX_CLIENTS = 10_000  # client addresses remembered for the rate limit
COMMANDS_PER_SESSION = 100  # of each command (refused RCPTs too: each may cost a lookup)
WINDOW = 60.0
SESSION_TIMEOUT = 60.0


class TryLater(Exception):
    """A mailbox cannot take this message now; the sender should try again (451)."""


class Mailbox(Protocol):
    async def claims(self, address: str) -> bool: ...
    async def receive(self, address: str, raw: bytes) -> None: ...


class _PerClient:
    """Messages a client may start in a sliding minute. Clients are kept least recently seen
    first, so forgetting the stale ones (and, past ``MAX_CLIENTS``, the oldest) costs O(1)
    a call however many addresses an attacker uses."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        times = self.seen.pop(client, None) or deque()
        while times and times[0] <= now - WINDOW:
            times.popleft()
        allowed = len(times) < self.limit
        if allowed:
            times.append(now)
        self.seen[client] = times
        while self.seen:
            oldest = next(iter(self.seen.values()))
            if len(self.seen) <= MAX_CLIENTS and oldest and oldest[-1] > now - WINDOW:
                break
            self.seen.popitem(last=False)
        return allowed


class _Handler:
    def __init__(self, mailboxes: list[Mailbox], per_client: _PerClient) -> None:
        self.mailboxes = mailboxes
        self.per_client = per_client
        self.owners: dict[int, dict[str, Mailbox]] = {}

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        client = str(session.peer[0]) if session.peer else "unknown"
        if not self.per_client.allow(client):
            log.warning("inbound: too many messages from %s", client, extra={"event": "inbound"})
            return "421 4.7.0 Too many messages from you: try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        for mailbox in self.mailboxes:
            try:
                claimed = await mailbox.claims(address)
            except TryLater:
                return "451 4.3.0 Cannot check this address now: try again later"
            except Exception:
                log.exception("inbound: an address could not be checked", extra={"event": "inbound"})
                return "451 4.3.0 Cannot check this address now: try again later"
            if claimed:
                envelope.rcpt_tos.append(address)
                self.owners.setdefault(id(envelope), {})[address] = mailbox
                return "250 OK"
        return "550 5.1.1 No such mailbox here"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        owners = self.owners.pop(id(envelope), {})
        raw = envelope.original_content or b""
        try:
            for address in envelope.rcpt_tos:
                await owners[address].receive(address, raw)
        except TryLater:
            return "451 4.3.0 Cannot take this message now: try again later"
        except Exception:  # a fault of ours: the sender keeps the message and tries again
            log.exception("inbound: a message could not be handled", extra={"event": "inbound"})
            return "451 4.3.0 Cannot take this message now: try again later"
        return "250 2.0.0 Accepted"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.owners.pop(id(envelope), None)
        return "250 OK"


class _Busy(asyncio.Protocol):
    """Answers a connection past the limit, and hangs up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.7.0 Too many connections: try again later\r\n")
        transport.close()


class _Counted(SMTP):
    """An SMTP session that counts itself among the server's open connections."""

    def __init__(self, inbound: Inbound, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbound = inbound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inbound.open += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.inbound.open -= 1
        super().connection_lost(error)


class Inbound:
    """The server: ``await start()``, then ``await close()``."""

    def __init__(self, settings: InboundSettings, mailboxes: list[Mailbox]) -> None:
        self.settings = settings
        self.handler = _Handler(mailboxes, _PerClient(settings.per_minute))
        self.open = 0
        self.server: asyncio.Server | None = None

    def _protocol(self) -> asyncio.Protocol:
        if self.open >= self.settings.connections:
            return _Busy()
        return _Counted(
            self,
            self.handler,
            data_size_limit=self.settings.max_bytes,
            enable_SMTPUTF8=False,
            decode_data=False,
            timeout=SESSION_TIMEOUT,
            hostname="digest",
            command_call_limit=COMMANDS_PER_SESSION,
        )

    async def start(self) -> tuple[str, int]:
        """Listen; the address bound (port 0 in the settings: any free port)."""
        host, port = self.settings.listen
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(self._protocol, host, port)
        except OSError as exc:
            raise DigestError(
                f"inbound.listen: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        bound: Any = self.server.sockets[0].getsockname()
        log.info("inbound SMTP on %s:%d", bound[0], bound[1], extra={"event": "inbound"})
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
