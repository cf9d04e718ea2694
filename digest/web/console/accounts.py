"""Console passwords and sessions, apart from any page: argon2id hashes (argon2-cffi's
defaults, RFC 9106's second recommended set), a session's cookie secret and form token,
and what the store keeps of them (the hash of the cookie's secret, never the secret)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from digest.store import AdminRecord, ConsoleStore, SessionRecord

_HASHER = PasswordHasher()
# Verified when the name is unknown, so a login takes as long whether or not it exists.
_DECOY = _HASHER.hash(secrets.token_urlsafe(16))


def hashed_password(password: str) -> str:
    """What the store keeps of a password: its argon2id hash (salted, in PHC form)."""
    return _HASHER.hash(password)


def check_password(account: AdminRecord | None, password: str) -> bool:
    """Whether ``password`` is the account's (as long to say for an unknown account)."""
    try:
        return _HASHER.verify(account.hash if account else _DECOY, password) and account is not None
    except (VerificationError, InvalidHashError):
        return False


def session_key(secret: str) -> str:
    """What the store keeps of a session cookie's secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class NewSession:
    secret: str  # the cookie's value: shown to the browser once, never kept
    csrf: str  # the form token of every form of this session
    expires: datetime


def start(store: ConsoleStore, account: AdminRecord, now: datetime, lifetime: timedelta) -> NewSession:
    """A session for ``account`` from ``now``, ending after ``lifetime`` at the latest."""
    made = NewSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + lifetime)
    store.start_session(session_key(made.secret), account.id, made.csrf, now=now, expires=made.expires)
    return made


def live(store: ConsoleStore, secret: str | None, now: datetime, idle: timedelta) -> SessionRecord | None:
    """The session a cookie names, if it has not ended (logged out, expired, idle too long,
    its account's password changed or the account removed)."""
    if not secret or len(secret) > 200:
        return None
    found = store.session(session_key(secret))
    if found is None or found.expires <= now or found.seen + idle <= now:
        return None
    return found
