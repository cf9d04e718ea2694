"""Where messages go: the transport protocol, and the SMTP pool (aiosmtplib) that speaks it
(the outbox in ``outbox.py`` is the other). A transport knows nothing of digests or the
ledger: it takes bytes and says what the server said, or raises :class:`Permanent` (the
server refused this message for good), :class:`Temporary` (try later) or
:class:`~digest.common.errors.SendError` (no server to talk to at all)."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Protocol

import aiosmtplib

from digest.common.errors import SendError
from digest.config import SmtpSettings
from digest.mail.compose import Outgoing

ATTEMPTS = 3


class Permanent(Exception):
    """The server refused this message for good (5xx)."""


class Temporary(Exception):
    """The server asked us to try later (4xx) or the connection broke."""


class Transport(Protocol):
    name: str
    size: int  # how many messages it can have in flight at once

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
            raise SendError(f"SMTP {self.name}: authentication failed: {exc.code} {exc.message}") from exc
        except ssl.SSLError as exc:
            raise SendError(f"SMTP {self.name}: TLS failed: {_why(exc)}") from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise Temporary(f"cannot connect to {self.name}: {_why(exc)}") from exc
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
                reply = await _transaction(client, msg)
            except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
                # Whatever went wrong, this connection is in an unknown state: drop it.
                client.close()
                self._made -= 1
                if isinstance(exc, ValueError):  # an address no SMTP command line can carry
                    raise Permanent(f"refused before sending: {exc}") from exc
                code = _code(exc)
                if code is not None and code >= 500:
                    raise Permanent(_reply(exc)) from exc
                last = _reply(exc)
                continue
            self._idle.put_nowait(client)
            return reply
        if unreachable == ATTEMPTS:
            # No server to talk to: stop the whole run (the ledger keeps every delivery pending).
            raise SendError(f"SMTP {last}")
        raise Temporary(last)


async def _transaction(client: aiosmtplib.SMTP, msg: Outgoing) -> str:
    """One mail transaction; the server's reply to the message. ``sendmail`` would pass over
    the whole message with a regular expression to learn its size, which costs as much as
    the pass that sends it: counting line ends is enough. A message built with CRLF line
    ends (every digest) is sent as is, its dots stuffed."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    data = msg.data
    size = (
        len(data)
        if msg.crlf
        else len(data) + data.count(b"\n") - data.count(b"\r\n") + (0 if data.endswith(b"\n") else 2)
    )
    await client.mail(msg.sender, options=[f"SIZE={size}"] if client.supports_extension("size") else [])
    for recipient in msg.recipients:
        await client.rcpt(recipient)
    if not msg.crlf or client.protocol is None:
        return (await client.data(data)).message
    # Line ends known to be CRLF: only the dots need stuffing (RFC 5321 4.5.2), one bytes
    # replace instead of data()'s two regular expressions over every byte.
    start = await client.execute_command(b"DATA")
    if start.code != aiosmtplib.SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    stuffed = (b"." if data.startswith(b".") else b"") + data.replace(b"\r\n.", b"\r\n..")
    client.protocol.write(stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    done = await client.protocol.read_response(timeout=client.timeout)
    if done.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(done.code, done.message)
    return done.message


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


async def send_once(channel: Transport, msg: Outgoing, key: str) -> str:
    """Send one message outside the ledger; any refusal is a SendError naming the transport."""
    try:
        return await channel.send(msg, key)
    except (Permanent, Temporary) as exc:
        raise SendError(f"{channel.name}: {exc}") from exc
