"""DKIM signatures (RFC 6376) on every message digest sends, and the keys they are made with.

Relaxed/relaxed canonicalisation; ``rsa-sha256`` with an RSA key, ``ed25519-sha256`` (RFC
8463) with an Ed25519 one, through ``cryptography``. The signature covers From, To,
Subject, Date, Message-ID, List-Unsubscribe, List-Unsubscribe-Post (those a message has)
and the body. Signing is a transport of its own (:class:`Signed`) in front of the real one,
so digests, confirmations and test copies are all signed, after their bytes are final.

``keygen`` writes a new private key (mode 0600, never over an existing file) and gives the
DNS TXT record to publish.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from digest.common.errors import ConfigError, DigestError
from digest.mail.compose import Outgoing
from digest.mail.transport import Transport

SIGNED = ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post")
_WSP = re.compile(rb"[ \t]+")
_RUNS = re.compile(rb"[ \t][ \t]+|\t")  # whitespace a single space does not already stand for
_FOLD = re.compile(rb"\r\n(?=[ \t])")


@dataclass(frozen=True)
class Signer:
    domain: str
    selector: str
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @property
    def algorithm(self) -> str:
        return "rsa-sha256" if isinstance(self.key, rsa.RSAPrivateKey) else "ed25519-sha256"

    def sign(self, message: bytes, now: float | None = None) -> bytes:
        """``message`` (CRLF line ends) with a DKIM-Signature header in front."""
        head, _, body = message.partition(b"\r\n\r\n")
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
        fields = _fields(head)
        signed, names = [], []
        for name in SIGNED:
            if name in fields:  # the last occurrence, as a verifier takes it
                signed.append(_relaxed_header(name, fields[name]))
                names.append(name)
        value = (
            f"v=1; a={self.algorithm}; c=relaxed/relaxed; d={self.domain}; s={self.selector};"
            f" t={int(now if now is not None else time.time())}; h={':'.join(names)}; bh={body_hash}; b="
        ).encode()
        data = b"".join(signed) + _relaxed_header("dkim-signature", value).rstrip(b"\r\n")
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = self.key.sign(hashlib.sha256(data).digest())
        return b"DKIM-Signature: " + value + base64.b64encode(signature) + b"\r\n" + message


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: no whitespace at line ends, runs of it one space, no empty lines at the end."""
    if b"\t" in body or b"  " in body:  # (most bodies have neither: no regular expression over them)
        body = _RUNS.sub(b" ", body)
    body = body.replace(b" \r\n", b"\r\n")  # after that, at most one space ends a line
    body = body.rstrip(b"\r\n")
    body = body[:-1] if body.endswith(b" ") else body
    return body + b"\r\n" if body else b""


def _fields(head: bytes) -> dict[str, bytes]:
    """Each header's value by lowercase name (the last of several), unfolded."""
    found: dict[str, bytes] = {}
    for line in _FOLD.sub(b"", head).split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon:
            found[name.strip().lower().decode("ascii", "replace")] = value
    return found


def _relaxed_header(name: str, value: bytes) -> bytes:
    return name.encode() + b":" + _WSP.sub(b" ", value).strip(b" \t") + b"\r\n"


def dns_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, domain: str, selector: str) -> str:
    """The TXT record that publishes ``key``'s public half."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        kind = "rsa"
        raw = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        kind = "ed25519"
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f'{selector}._domainkey.{domain} TXT "v=DKIM1; k={kind}; p={base64.b64encode(raw).decode()}"'


def load_signer(domain: str, selector: str, key_file: Path) -> Signer:
    """The signer of ``[dkim]``: its key read from ``key_file`` (PEM, RSA of 1024 bits or
    more, or Ed25519); ConfigError saying what is wrong."""
    try:
        data = key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"dkim.key_file: {key_file}: cannot read: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"dkim.key_file: {key_file}: not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 1024:
        raise ConfigError(
            f"dkim.key_file: {key_file}: an RSA key of {key.key_size} bits is too weak (1024 at least)"
        )
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError(
            f"dkim.key_file: {key_file}: DKIM keys are RSA or Ed25519, not {type(key).__name__}"
        )
    return Signer(domain, selector, key)


def keygen(key_file: Path, algorithm: str, domain: str, selector: str) -> str:
    """Write a new private key to ``key_file`` (0600; never over an existing file) and give
    its DNS record."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        handle = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise DigestError(f"{key_file}: already exists; not overwritten (move it away first)") from None
    except OSError as exc:
        raise DigestError(f"{key_file}: cannot create: {exc.strerror or exc}") from exc
    with os.fdopen(handle, "wb") as out:
        out.write(pem)
    return dns_record(key, domain, selector)


class Signed:
    """A transport that signs each message, then hands it to ``inner``."""

    def __init__(self, inner: Transport, signer: Signer) -> None:
        self.inner, self.signer = inner, signer
        self.name, self.size = inner.name, inner.size

    async def __aenter__(self) -> Signed:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)

    async def send(self, msg: Outgoing, key: str) -> str:
        data = msg.data if msg.crlf else re.sub(rb"\r?\n", b"\r\n", msg.data)
        # Signed right here: handing each message to a thread and back cost more than it
        # won on two cores (benchmarks/dkim.py measured both).
        return await self.inner.send(replace(msg, data=self.signer.sign(data), crlf=True), key)
