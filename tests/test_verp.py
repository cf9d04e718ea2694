"""VERP: each delivery's envelope sender names its subscriber and digest in a signed token
that survives a change of case, dies with the subscriber, and cannot be forged."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import load_settings
from digest.mail import verp
from digest.store import open_store
from digest.subscribers.lifecycle import binding, bindings
from digest.subscribers.tokens import BadToken, Binding, secret_for

from .helpers import SEEDS_SOURCE, add_subscribers, mondays, run, smtp_section, write_config
from .servers import SmtpSink

SECRET = b"s" * 32


def test_a_token_names_its_delivery_and_nothing_else() -> None:
    ann, bob = Binding("ann@example.org\x00t0"), Binding("bob@example.org\x00t0")
    known = {7: ann, 8: bob}
    address = verp.envelope_sender(SECRET, "20261207T080000Z", 7, ann, "bounces.example.org")
    local = address.split("@")[0]
    assert local.startswith("bounces+") and len(local) <= 64 and local == local.lower()
    found = verp.read(SECRET, address.upper(), known.get)  # a server changed the case
    assert (
        found.subscriber_id == 7 and found.is_for("20261207T080000Z") and not found.is_for("20261214T080000Z")
    )
    assert verp.read(SECRET, f"<{address}>", known.get) == found
    token = local.removeprefix("bounces+")
    for forged in (
        address.replace(token, token[:-1] + ("a" if token[-1] != "a" else "b")),  # altered
        verp.envelope_sender(b"other-secret", "20261207T080000Z", 7, ann, "bounces.example.org"),
        address.replace(token, token[:10]),  # cut short
        "bounces+!!!@bounces.example.org",
        "ann@example.org",
        "bounces+" + "a" * 80 + "@bounces.example.org",
    ):
        with pytest.raises(BadToken):
            verp.read(SECRET, forged, known.get)
    # Bound to the subscriber: another id, or the same id for someone else, is refused.
    swapped = verp.envelope_sender(SECRET, "d", 7, ann, "x.org")
    with pytest.raises(BadToken):
        verp.read(SECRET, swapped, {7: Binding("someone-else@example.org\x00t1")}.get)
    with pytest.raises(BadToken):
        verp.read(SECRET, swapped, {}.get)


def test_digests_go_out_with_verp_senders_that_read_back(tmp_path: Path, smtp: SmtpSink) -> None:
    body = smtp_section(smtp.port, timeout="5s", sender="Digest <digest@example.org>") + SEEDS_SOURCE
    plain = write_config(tmp_path, body)
    assert run("--config", str(plain), "pull", cwd=tmp_path).returncode == 0
    add_subscribers(plain, "ann@example.org", "bob@example.org")
    assert run("--config", str(plain), "send", cwd=tmp_path).returncode == 0
    assert smtp.senders == ["digest@example.org"] * 2  # without [bounces]: as before
    with_verp = write_config(tmp_path, body + '[bounces]\ndomain = "Bounces.Example.org"\n')
    sent = run(
        "--config",
        str(with_verp),
        "send",
        "--at",
        mondays(1)[0],
        "--since",
        "2000-01-01",
        cwd=tmp_path,
    )
    assert sent.returncode == 0, sent.stderr
    assert len(smtp.messages) == 4  # both again, now with VERP senders
    settings = load_settings(with_verp, env={})
    with open_store(settings.database.path) as store:
        secret = secret_for(store, None)
        digest = store.digests()[0].digest  # the newest
        lookup = bindings(store, "unsubscribe")
        for (recipients, message), sender in zip(smtp.messages[2:], smtp.senders[2:], strict=True):
            assert (
                sender.endswith("@bounces.example.org") and message["From"] == "Digest <digest@example.org>"
            )
            found = verp.read(secret, sender, lookup)
            subscriber = store.subscriber(subscriber_id=found.subscriber_id)
            assert subscriber is not None and [subscriber.email] == recipients and found.is_for(digest.id)
            assert binding(subscriber, "unsubscribe") is not None
    (tmp_path / "x").mkdir()
    bad = write_config(
        tmp_path / "x",
        '[bounces]\ndomain = "not a domain"\n',
    )
    refused = run("--config", str(bad), "send", "--dry-run", cwd=tmp_path)
    assert (
        refused.returncode == 1
        and "bounces.domain" in refused.stderr
        and "not a domain name" in refused.stderr
    )
