"""DKIM: keys made by `digest dkim keygen`, and every message digest sends (digests,
confirmations) signed so that dkimpy, an implementation that is not ours, verifies it
against the published record; a message changed after signing does not verify."""

from __future__ import annotations

import stat
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest

from .helpers import SEEDS_SOURCE, add_subscribers, run, smtp_section, write_config
from .servers import SmtpSink


def _config(tmp_path: Path, smtp: SmtpSink) -> Path:
    return write_config(
        tmp_path,
        smtp_section(smtp.port, timeout="5s", sender="Digest <digest@example.org>")
        + '[dkim]\ndomain = "example.org"\nselector = "s1"\nkey_file = "keys/dkim.pem"\n'
        + SEEDS_SOURCE,
    )


def _dns(record: str) -> object:
    name, _, value = record.partition(" TXT ")

    def lookup(asked: bytes, timeout: int = 5) -> bytes:  # DNS answered here: nothing leaves the machine
        return value.strip('"').encode() if asked.decode().rstrip(".") == name else b""

    return lookup


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_every_message_is_signed_and_verifies_and_a_changed_one_does_not(
    tmp_path: Path, smtp: SmtpSink, algorithm: str
) -> None:
    config = str(_config(tmp_path, smtp))
    (tmp_path / "keys").mkdir()
    made = run("--config", config, "dkim", "keygen", "--algorithm", algorithm, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    record = made.stdout.strip()
    kind = "rsa" if algorithm == "rsa" else "ed25519"
    assert record.startswith(f's1._domainkey.example.org TXT "v=DKIM1; k={kind}; p=')
    key_file = tmp_path / "keys" / "dkim.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = run("--config", config, "dkim", "keygen", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    add_subscribers(config, "ann@example.org", "bob@example.org")
    add_subscribers(config, "cid@example.org", options=())  # a confirmation
    assert run("--config", config, "send", cwd=tmp_path).returncode == 0
    assert len(smtp.raw) == 3
    lookup = _dns(record)
    for raw in smtp.raw:
        message = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert message.startswith(b"DKIM-Signature: v=1; a=" + (b"rsa" if algorithm == "rsa" else b"ed25519"))
        assert dkim.verify(message, dnsfunc=lookup), message[:400]
        signed = dkim.DKIM(message)
        signed.verify(dnsfunc=lookup)
        assert {b"from", b"to", b"subject", b"date", b"message-id"} <= {
            n.lower() for n, _ in signed.signed_headers
        }
    digests = [raw for raw in smtp.raw if b"List-Unsubscribe-Post" in raw]
    assert len(digests) == 2
    tags = dkim.util.parse_tag_value(digests[0].split(b"\r\n", 1)[0].split(b": ", 1)[1])
    assert tags[b"h"] == b"from:to:subject:date:message-id:list-unsubscribe:list-unsubscribe-post"
    # Changed after signing: the body, a signed header, or the key that answers.
    body = digests[0].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert not dkim.verify(body.replace(b"Xi meets", b"Xi greets", 1), dnsfunc=lookup)
    assert not dkim.verify(
        body.replace(b"To: ann@", b"To: eve@", 1).replace(b"To: bob@", b"To: eve@", 1), dnsfunc=lookup
    )
    other = run("--config", str(write_config(tmp_path / "keys", '[dkim]\ndomain = "example.org"\nselector = "s1"\n'
                                              'key_file = "other.pem"\n')), "dkim", "keygen",
                "--algorithm", algorithm, cwd=tmp_path)  # fmt: skip
    assert not dkim.verify(body, dnsfunc=_dns(other.stdout.strip()))


def test_a_key_that_cannot_be_used_is_one_line(tmp_path: Path, smtp: SmtpSink) -> None:
    config = str(_config(tmp_path, smtp))
    (tmp_path / "keys").mkdir()
    assert run("--config", config, "pull", cwd=tmp_path).returncode == 0
    missing = run("--config", config, "send", "--to", "ann@example.org", cwd=tmp_path)
    assert missing.returncode == 1 and "dkim.key_file:" in missing.stderr and "cannot read" in missing.stderr
    (tmp_path / "keys" / "dkim.pem").write_text("not a key")
    broken = run("--config", config, "send", "--to", "ann@example.org", cwd=tmp_path)
    assert broken.returncode == 1 and "not an unencrypted PEM private key" in broken.stderr
    for done in (missing, broken):
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert smtp.messages == []
    half = write_config(tmp_path / "keys", '[dkim]\ndomain = "example.org"\n')
    unset = run("--config", str(half), "send", "--dry-run", cwd=tmp_path)
    assert unset.returncode == 1 and "dkim: selector must be set" in unset.stderr
