"""Real servers for the tests, each on 127.0.0.1 and each a context manager (started on
entering, stopped and joined on leaving): an HTTP server whose answers a test sets per path
(sources, pages, robots.txt), the web app under uvicorn in a thread, a DNS server, an SMTP
sink with faults to order, and `digest run` or `digest serve` in a process of their own.

Contract: nothing here reaches beyond loopback, and nothing is a fake of digest's own code:
what digest talks to is a real server, and digest itself is the real thing. The fixtures
that hand these to tests are in ``conftest.py``.
"""

from __future__ import annotations

import gzip
import itertools
import json
import signal
import smtplib
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from digest.config import Settings

from .helpers import free_port, start, within

# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the test server answers: status, headers, body, and an optional delay per chunk."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0  # seconds between 1-byte chunks; 0 sends the body at once
    gzip: bool = False


@dataclass
class Seen:
    """A request the test server was sent: its path (with the query) and headers (lower case)."""

    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


Handler = Callable[[Seen], Reply]


class HttpServer:
    """A threaded HTTP server on a free port of 127.0.0.1 answering with ``handler``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FeedServer(HttpServer):
    """An HTTP server whose answers tests set per path (``routes``: a Reply, or a function of
    the request that returns one); 404 elsewhere. Every request is kept in ``requests``."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler | Reply] = {}
        self.requests: list[Seen] = []
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
                server.requests.append(seen)
                route = server.routes.get(self.path.split("?")[0])
                reply = (
                    Reply(404, b"not found")
                    if route is None
                    else route
                    if isinstance(route, Reply)
                    else route(seen)
                )
                body = gzip.compress(reply.body) if reply.gzip else reply.body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.gzip:
                        self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if reply.trickle:
                        for byte in body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.trickle)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(RequestHandler)

    def hits(self, path: str) -> int:
        """How many requests asked for ``path`` (whatever their query)."""
        return sum(1 for r in self.requests if r.path.split("?")[0] == path)


@dataclass
class Received:
    """A POST the receiver was sent: its headers (lower case), its body, the status answered."""

    headers: dict[str, str]
    body: bytes
    status: int


class WebhookReceiver(HttpServer):
    """An HTTP server that takes POSTs (outgoing webhooks), keeping each in ``received``;
    it answers the statuses in ``answers`` in turn, then 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[int] = []
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = server.answers.pop(0) if server.answers else 200
                server.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, status)
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(RequestHandler)


class AppServer:
    """The digest web app under uvicorn, in a thread, on a free port of 127.0.0.1 (or
    ``port``); ``app_options`` go to ``create_app``."""

    def __init__(self, settings: Settings, *, port: int | None = None, **app_options: Any) -> None:
        import uvicorn

        from digest.web.app import create_app

        self.port = port or free_port()
        self.app = create_app(settings, **app_options)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        if not within(lambda: self.server.started, 10, every=0.02):
            raise RuntimeError("uvicorn did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# --- DNS and mail -------------------------------------------------------------------------------


class DnsServer:
    """A real DNS server on 127.0.0.1 (UDP) answering TXT questions from ``records`` (name →
    text), NXDOMAIN for everything else: where newsletters' DKIM keys are published."""

    def __init__(self) -> None:
        import socket

        self.records: dict[str, str] = {}
        self.asked: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # looks at ``stopping`` this often (a closed socket wakes nobody)
        self.port = int(self.sock.getsockname()[1])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        while not self.stopping.is_set():
            try:
                data, client = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            answer = dns.message.make_response(query)
            for question in query.question:
                name = question.name.to_text().rstrip(".").lower()
                self.asked.append(name)
                text = self.records.get(name)
                if text is None or question.rdtype != dns.rdatatype.TXT:
                    answer.set_rcode(dns.rcode.NXDOMAIN)
                    continue
                chunks = " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))
                answer.answer.append(dns.rrset.from_text(question.name, 300, "IN", "TXT", chunks))
            self.sock.sendto(answer.to_wire(), client)

    def publish_dkim_key(self, selector: str, domain: str) -> bytes:
        """A new RSA key for ``selector._domainkey.domain``, published; its private key (PEM)."""
        import base64

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.records[f"{selector}._domainkey.{domain}"] = (
            f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
        )
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __enter__(self) -> DnsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Joined, not left behind: a live thread keeps later tests from forking (parallel.py).
        self.stopping.set()
        self.thread.join(timeout=10)
        self.sock.close()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records every message, with faults
    to order: reject some recipients (550), answer 421 after some messages, drop a
    connection, require STARTTLS and AUTH."""

    def __init__(
        self, *, tls_context: Any = None, users: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[Any] = []
        self.reject: set[str] = set()
        self.fail_after: int | None = None  # answer 421 to every message after this many
        self.drop_next = 0  # drop the connection instead of answering, this many times
        self.delay = 0.0  # seconds to take over each message (a slow server)
        self.paused = False  # hold every message's answer until set False again
        self.holding = 0  # messages waiting for their answer meanwhile
        self.sizes: list[tuple[str, int]] = []  # (MAIL FROM options, octets received) each
        self.raw: list[bytes] = []  # each message as received, dots unstuffed
        self.senders: list[str] = []  # each message's envelope sender (MAIL FROM)
        sink = self

        class Handler:
            async def handle_RCPT(
                self, server: Any, session: Any, envelope: Any, address: str, options: Any
            ) -> str:
                if address in sink.reject:
                    return "550 5.1.1 No such user here"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                import asyncio

                if sink.delay:
                    await asyncio.sleep(sink.delay)
                if sink.paused:
                    sink.holding += 1
                    while sink.paused:
                        await asyncio.sleep(0.01)
                    sink.holding -= 1
                    if server.transport is None or server.transport.is_closing():
                        return "421 gone"  # the client left before the answer: not accepted
                if sink.drop_next:
                    sink.drop_next -= 1
                    server.transport.close()
                    return "421 gone"
                if sink.fail_after is not None and len(sink.messages) >= sink.fail_after:
                    return "421 4.7.0 Too many messages, try again later"
                import email
                import email.policy

                sink.sizes.append((" ".join(envelope.mail_options), len(envelope.original_content)))
                sink.raw.append(envelope.original_content)
                sink.senders.append(envelope.mail_from)
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                sink.messages.append((list(envelope.rcpt_tos), message))
                return "250 2.0.0 Accepted"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
            ok = users is not None and users.get(auth_data.login.decode()) == auth_data.password.decode()
            return AuthResult(success=ok, handled=False)

        self.port = port or free_port()
        options: dict[str, Any] = {}
        if tls_context is not None:
            options.update(tls_context=tls_context, require_starttls=True)
        if users is not None:
            options.update(
                authenticator=authenticate, auth_required=True, auth_require_tls=tls_context is not None
            )
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)

    def recipients(self) -> list[str]:
        """Every recipient of every message, in the order received."""
        return [rcpt for rcpts, _ in self.messages for rcpt in rcpts]

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


# --- digest in a process of its own --------------------------------------------------------------


class DigestProcess:
    """`digest --config CONFIG ARGS` as a real subprocess in ``cwd``, left running until
    ``stop``. All it writes (stdout and stderr) goes to ``log``, a file of its own in ``cwd``:
    there to read while it runs, and after a failure."""

    _numbers = itertools.count(1)

    def __init__(self, config: Path, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = cwd / f"digest-{'-'.join(args[:1])}-{next(self._numbers)}.log"
        with self.log.open("wb") as out:
            self.process = start(
                "--config", str(config), *args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def text(self) -> str:
        """What it has written so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    @property
    def lines(self) -> list[str]:
        """The whole lines it has written so far (a line being written is left for later)."""
        return [line for line in self.text().splitlines(keepends=True) if line.endswith("\n")]

    def events(self) -> list[dict[str, Any]]:
        """Its log events so far, with ``--log-format json``."""
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def count(self, event: str, words: str = "") -> int:
        """How many log events of this kind (and with these words) it has written."""
        return sum(1 for e in self.events() if e.get("event") == event and words in str(e.get("message")))

    def ready(self, check: Callable[[], object], seconds: float, what: str) -> None:
        """Wait until ``check`` is true; else stop the process and fail, saying ``what`` and
        showing the log."""
        if not within(check, seconds):
            self.stop()
            raise RuntimeError(f"{what}: {self.text()}")

    def memory(self) -> int:
        """The process's resident memory now, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self, timeout: float = 20) -> tuple[int, float]:
        """SIGTERM, and wait for the end: (its exit code, the seconds it took)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started


class Running(DigestProcess):
    """`digest run`, its log in JSON lines (for ``events`` and ``count``) unless ``json_log``
    is false."""

    def __init__(
        self, config: Path, cwd: Path, *, env: Mapping[str, str] | None = None, json_log: bool = True
    ) -> None:
        super().__init__(config, "run", *(("--log-format", "json") if json_log else ()), cwd=cwd, env=env)


class Receiving(Running):
    """`digest run` (its log in plain lines) with its [inbound] SMTP server on ``port``:
    handed over once that answers."""

    def __init__(self, config: Path, cwd: Path, port: int) -> None:
        super().__init__(config, cwd, json_log=False)
        self.port = port
        self.ready(lambda: _smtp_answers(port), 30, "digest run did not listen")


def _smtp_answers(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as probe:
            probe.noop()
    except OSError:
        return False
    return True


class Serving(DigestProcess):
    """`digest serve [OPTIONS]` on a free port of 127.0.0.1, answering /healthz once entered."""

    def __init__(self, config: Path, cwd: Path, *options: str) -> None:
        self.port = free_port()
        super().__init__(config, "serve", "--port", str(self.port), *options, cwd=cwd)

    def __enter__(self) -> Serving:
        self.ready(lambda: _answers(self.url("/healthz")), 20, "digest serve did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(timeout=10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _answers(url: str) -> bool:
    import httpx

    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True
