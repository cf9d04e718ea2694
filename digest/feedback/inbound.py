"""The one SMTP server digest runs (``[inbound] listen``), for mail coming back to it: the
transport only. What an address means is a *mailbox*'s business (the bounce mailbox of
:mod:`digest.feedback.apply` today; newsletters later): the server asks each mailbox whether it
claims a recipient, and hands it each message for that recipient.

Everything arriving is hostile, so:

- a recipient no mailbox claims is refused (``550 5.1.1``) before any data is sent;
- at most ``max_bytes`` of message (``552``), ``MAX_RECIPIENTS`` recipients a message, each
  once (a duplicate is refused: each recipient costs a reading of the message),
  ``COMMANDS_PER_SESSION`` of each command a connection (then ``421`` and goodbye);
- at most ``per_minute`` messages a minute from one client (``421`` at MAIL FROM, which
  well-behaved servers take as "try later"), at most ``connections`` connections open at
  once and ``PER_CLIENT_CONNECTIONS`` from one client (``421`` at the greeting), each for
  at most ``SESSION_LIFETIME``; a client is an IPv4 address or an IPv6 /64;
- a mailbox that cannot take a message now (the database is busy) answers ``451``, so the
  sending server keeps it and tries again: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.common.clients import client_key
from digest.common.errors import DigestError
from digest.config import InboundSettings

log = logging.getLogger("digest")
MAX_RECIPIENTS = 20
MAX_CLIENTS = 10_000  # client addresses remembered for the rate limit
# Of each command in one session (refused RCPTs too: each may cost a lookup).
COMMANDS_PER_SESSION = {"RCPT": 40, "NOOP": 10, "*": 20}
PER_CLIENT_CONNECTIONS = 5  # open at once from one client (an IPv4 address, an IPv6 /64)
READERS = 2  # messages a mailbox reads at once (parsing is CPU work: off the loop, a few at a time)
WINDOW = 60.0
SESSION_TIMEOUT = 60.0  # between commands
SESSION_LIFETIME = 600.0  # a whole connection, however busy


class TryLater(Exception):
    """A mailbox cannot take this message now; the sender should try again (451)."""


class Rejected(Exception):
    """A mailbox refuses this recipient or message for good; the argument is the SMTP reply."""


class Mailbox(Protocol):
    async def claims(self, address: str, sender: str) -> bool: ...
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
        # Which mailbox claimed each recipient, per message: gone with the envelope, however
        # the session ends (DATA, RSET, QUIT, a timeout, a dropped connection).
        self.owners: WeakKeyDictionary[Envelope, dict[str, Mailbox]] = WeakKeyDictionary()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        client = peer_key(session.peer)
        if not self.per_client.allow(client):
            log.warning("inbound: too many messages from %s", client, extra={"event": "inbound"})
            return "421 4.7.0 Too many messages from you: try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.strip().lower() in (taken.strip().lower() for taken in envelope.rcpt_tos):
            # Each recipient costs a reading of the message: once is all anyone needs.
            return "550 5.5.1 Duplicate recipient: this address is in the message already"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        for mailbox in self.mailboxes:
            try:
                claimed = await mailbox.claims(address, str(envelope.mail_from or ""))
            except Rejected as exc:
                return str(exc)
            except TryLater:
                return "451 4.3.0 Cannot check this address now: try again later"
            except Exception:
                log.exception("inbound: an address could not be checked", extra={"event": "inbound"})
                return "451 4.3.0 Cannot check this address now: try again later"
            if claimed:
                envelope.rcpt_tos.append(address)
                self.owners.setdefault(envelope, {})[address] = mailbox
                return "250 OK"
        return "550 5.1.1 No such mailbox here"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        owners = self.owners.pop(envelope, {})
        raw = envelope.original_content or b""
        try:
            for address in envelope.rcpt_tos:
                await owners[address].receive(address, raw)
        except Rejected as exc:
            return str(exc)
        except TryLater:
            return "451 4.3.0 Cannot take this message now: try again later"
        except Exception:  # a fault of ours: the sender keeps the message and tries again
            log.exception("inbound: a message could not be handled", extra={"event": "inbound"})
            return "451 4.3.0 Cannot take this message now: try again later"
        return "250 2.0.0 Accepted"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.owners.pop(envelope, None)
        return "250 OK"


def peer_key(peer: Any) -> str:
    """Who a connected client is for the limits (see :func:`digest.common.clients.client_key`)."""
    return client_key(str(peer[0]) if isinstance(peer, tuple) and peer else "unknown")


class _Counted(SMTP):
    """An SMTP session that counts itself among the server's open connections (refused with
    421 past the limits, and closed after ``SESSION_LIFETIME`` whatever it does)."""

    def __init__(self, inbound: Inbound, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbound = inbound
        self.client = ""
        self.counted = False
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        inbound = self.inbound
        self.client = peer_key(transport.get_extra_info("peername"))
        if (
            inbound.open >= inbound.settings.connections
            or inbound.connections_from.get(self.client, 0) >= PER_CLIENT_CONNECTIONS
        ):
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.7.0 Too many connections: try again later\r\n")
            transport.close()
            return
        self.counted = True
        inbound.open += 1
        inbound.connections_from[self.client] = inbound.connections_from.get(self.client, 0) + 1
        self.deadline = asyncio.get_running_loop().call_later(SESSION_LIFETIME, transport.close)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self.counted:
            return  # refused at the door: none of the session was set up
        inbound = self.inbound
        inbound.open -= 1
        left = inbound.connections_from.pop(self.client, 1) - 1
        if left:
            inbound.connections_from[self.client] = left
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(error)


class Inbound:
    """The server: ``await start()``, then ``await close()``."""

    def __init__(self, settings: InboundSettings, mailboxes: list[Mailbox]) -> None:
        self.settings = settings
        self.handler = _Handler(mailboxes, _PerClient(settings.per_minute))
        self.open = 0
        self.connections_from: dict[str, int] = {}  # open connections per client_key
        self.server: asyncio.Server | None = None

    def _protocol(self) -> asyncio.Protocol:
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
