"""Shared fixtures: a real HTTP server on 127.0.0.1, settings and stores in a temp folder."""

from __future__ import annotations

import gzip
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings, parse_settings
from digest.store import Store, open_store

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
SHARED = REPO.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"


def require(path: Path, what: str) -> None:
    """Skip when ``path`` (something in ../shared) is missing on a user's machine; fail in
    CI (``CI`` set), where it must be, so a missing folder can never pass as green."""
    if path.exists():
        return
    message = f"{what} not found at {path} (it lives in ../shared)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


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
    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


Handler = Callable[[Seen], Reply]


class FeedServer:
    """A threaded HTTP server on 127.0.0.1 whose answers tests set per path."""

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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path.split("?")[0] == path)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def mondays(count: int) -> list[str]:
    """``count`` Mondays at 08:00 UTC (the site's weekly digest, by default) a week apart, the
    first more than a day from now: moments for ``digest send --at`` by which whatever was
    pulled now is new, on whatever date the suite runs."""
    soon = datetime.now(UTC) + timedelta(days=1)
    first = (soon + timedelta(days=-soon.weekday() % 7)).replace(hour=8, minute=0, second=0, microsecond=0)
    if first <= soon:
        first += timedelta(weeks=1)
    return [(first + timedelta(weeks=n)).isoformat() for n in range(count)]


def cron_away() -> str:
    """A yearly cron (six fields, UTC) on the first of the month half a year from now: a site
    schedule that never fires while a test watches a running service, on whatever date the
    suite runs (the default, Mondays 08:00, would when the suite runs across one)."""
    return f"0 0 0 1 {(datetime.now(UTC).month + 5) % 12 + 1} *"


def write_config(folder: Path, body: str) -> Path:
    """A config file in ``folder`` with a database inside it."""
    path = folder / "digest.toml"
    path.write_text(f'[database]\npath = "test.db"\n\n{body}', encoding="utf-8")
    return path


def settings_for(folder: Path, body: str) -> Settings:
    """Settings from TOML ``body``, with the database in ``folder``."""
    text = f'[database]\npath = "test.db"\n\n{body}'
    return parse_settings(text, origin="test.toml", base_dir=folder, env={})


@pytest.fixture(scope="session")
def shim() -> Iterator[Path]:
    """The library that moves a process's clock (tests/clock.py), built once; not under
    pytest's temporary folders, so PostgreSQL's user can load it too. Without a compiler:
    a skip here, a failure in CI."""
    import tempfile

    from tests import clock

    with tempfile.TemporaryDirectory(prefix="digest-clock-") as folder:
        try:
            library = clock.build(Path(folder))
        except clock.ClockError as exc:
            if os.environ.get("CI"):
                pytest.fail(str(exc))
            pytest.skip(str(exc))
        yield library


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "test.db") as st:
        yield st


def rss(items: list[dict[str, str]], *, extra_ns: str = "", channel_extra: str = "") -> bytes:
    """A small RSS 2.0 document; each item dict's keys become child elements."""
    parts = []
    for item in items:
        inner = "".join(f"<{k}>{v}</{k}>" for k, v in item.items())
        parts.append(f"<item>{inner}</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<rss version="2.0" {extra_ns}><channel><title>Test feed</title>'
        f"<link>http://example.org/</link><description>d</description>{channel_extra}"
        f"{''.join(parts)}</channel></rss>"
    ).encode()


class AppServer:
    """The digest web app under uvicorn, in a thread, on a free port of 127.0.0.1."""

    def __init__(self, settings: Settings, *, port: int | None = None, **app_options: Any) -> None:
        import socket

        import uvicorn

        from digest.web.app import create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = port or sock.getsockname()[1]
        self.app = create_app(settings, **app_options)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def served_seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, Settings]]:
    """The seeds pulled into a fresh database, served by the app (site title "China Watch")."""
    from digest.intake.pull import pull

    folder = tmp_path_factory.mktemp("served")
    settings = settings_for(
        folder, f'[site]\ntitle = "China Watch"\n[[sources]]\nname = "seeds"\nurl = "{SEEDS}"\n'
    )
    with open_store(settings.database.path) as store:
        pull(settings, store)
    with AppServer(settings) as server:
        yield server, settings


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


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records every message, with faults
    to order: reject some recipients (550), answer 421 after some messages, drop a
    connection, require STARTTLS and AUTH."""

    def __init__(
        self, *, tls_context: Any = None, users: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        import socket

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

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = port or sock.getsockname()[1]
        options: dict[str, Any] = {}
        if tls_context is not None:
            options.update(tls_context=tls_context, require_starttls=True)
        if users is not None:
            options.update(
                authenticator=authenticate, auth_required=True, auth_require_tls=tls_context is not None
            )
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)

    def recipients(self) -> list[str]:
        return [rcpt for rcpts, _ in self.messages for rcpt in rcpts]

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


class Serving:
    """`digest serve` as a real subprocess on a free port of 127.0.0.1."""

    def __init__(self, config: Path, cwd: Path) -> None:
        import os
        import socket
        import subprocess
        import sys

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        command = [sys.executable, "-m", "digest", "--config", str(config), "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def __enter__(self) -> Serving:
        import httpx

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url("/healthz"), timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("digest serve did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def rss_bytes(self) -> int:
        """The process's resident memory now."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")
