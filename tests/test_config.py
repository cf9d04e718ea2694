"""Configuration: defaults, files, environment overrides, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.common.errors import ConfigError
from digest.common.resources import bundled
from digest.config import load_settings, parse_duration, parse_settings

from .helpers import REPO


def _parse(text: str, env: dict[str, str] | None = None, base: Path = Path("/srv/digest")):
    return parse_settings(text, origin="digest.toml", base_dir=base, env=env or {})


def test_embedded_default_when_there_is_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={})
    assert settings.origin == "embedded default"
    assert settings.database.path == tmp_path / "digest.db"
    assert [s.name for s in settings.sources] == ["seeds"]
    assert Path(settings.sources[0].url) == bundled("seeds")
    assert settings.smtp is None and settings.outbox.path == tmp_path / "outbox"
    assert (settings.web.host, settings.web.port) == ("127.0.0.1", 8080)


def test_config_file_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text('[site]\ntitle = "Local"\n')
    other = tmp_path / "other.toml"
    other.write_text('[site]\ntitle = "From env"\n')
    assert load_settings(None, env={}).site.title == "Local"
    assert load_settings(None, env={"DIGEST_CONFIG": str(other)}).site.title == "From env"
    assert load_settings(other, env={}).site.title == "From env"


def test_a_named_config_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: config file not found \(given by --config\)"):
        load_settings(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="DIGEST_CONFIG"):
        load_settings(None, env={"DIGEST_CONFIG": str(tmp_path / "gone.toml")})


def test_relative_paths_are_relative_to_the_file() -> None:
    settings = _parse('[database]\npath = "data/d.db"\n[[sources]]\nname = "local"\nurl = "dumps/"\n')
    assert settings.database.path == Path("/srv/digest/data/d.db")
    assert settings.sources[0].url == "/srv/digest/dumps"


def test_seeds_fall_back_to_the_bundled_sample_site(tmp_path: Path) -> None:
    settings = _parse('[[sources]]\nname = "seeds"\nurl = "seeds/"\n', base=tmp_path)
    assert Path(settings.sources[0].url) == bundled("seeds")
    (tmp_path / "seeds").mkdir()
    settings = _parse('[[sources]]\nname = "seeds"\nurl = "seeds/"\n', base=tmp_path)
    assert Path(settings.sources[0].url) == tmp_path / "seeds"


def test_environment_overrides_and_secrets() -> None:
    env = {"DIGEST_SMTP_PASSWORD": "s3cret", "DIGEST_WEB_PORT": "9000", "DIGEST_SECRET": "k"}
    settings = _parse('[smtp]\nhost = "mail.example.org"\n', env)
    assert settings.smtp is not None and settings.smtp.password == "s3cret"
    assert settings.web.port == 9000 and settings.secret == "k"
    assert _parse("", {"DIGEST_SMTP_PASSWORD": "x"}).smtp is None  # a password alone is no server


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[sources]]\nname = "a"\nurl = "x"\n[[sources]]\nname = "b"\nurl = "y"\nkind = "podcast"\n',
            "digest.toml: sources[1].kind: 'podcast' is not one of auto, feed, html, text",
        ),
        ("[[sources]]\nname = 'a'\n", "digest.toml: sources[0].url: missing"),
        ('[schedule]\npull_every = "soon"\n', "digest.toml: schedule.pull_every: 'soon' is not a duration"),
        (
            '[schedule]\ndigest_cron = "every monday"\n',
            "digest.toml: schedule.digest_cron: 'every monday' is not a cron",
        ),
        (
            '[schedule]\ntimezone = "Mars/Olympus"\n',
            "digest.toml: schedule.timezone: 'Mars/Olympus' is not a time zone",
        ),
        ('[smtp]\nsecurity = "ssl"\n', "digest.toml: smtp.security: 'ssl' is not one of none, starttls, tls"),
        ("[web]\nport = 70000\n", "digest.toml: web.port: 70000 (int) is not a whole number from 0 to 65535"),
        (
            '[site]\nbase_url = "example.org"\n',
            "digest.toml: site.base_url: 'example.org' is not an absolute http(s) URL",
        ),
        ('[[sources]]\nname = "a b"\nurl = "x"\n', "digest.toml: sources[0].name: 'a b' is not a valid name"),
        (
            '[[sources]]\nname = "a"\nurl = "x"\n[[sources]]\nname = "a"\nurl = "y"\n',
            "sources[1].name: 'a' is used twice",
        ),
        ("[site\ntitle = 1\n", "digest.toml: invalid TOML"),
        ('[smtp]\npassword = "hunter2"\n', "digest.toml: smtp.password: secrets are not read from the file"),
    ],
)
def test_errors_name_the_file_the_key_and_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_toml_syntax_errors_give_the_line() -> None:
    with pytest.raises(ConfigError, match=r"line 3"):
        _parse('[site]\ntitle = "ok"\nbase_url = \n')


def test_unknown_keys_are_warnings_not_errors() -> None:
    settings = _parse('[site]\ntitel = "typo"\n[extra]\nx = 1\n')
    assert any("site.titel: unknown key" in w for w in settings.warnings)
    assert any("extra: unknown" in w for w in settings.warnings)


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    for bad in ("", "h", "10 parsecs", "-5m", "0s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    example = (REPO / "config.example.toml").read_text()
    settings = _parse(example)
    assert not settings.warnings
    from digest.config import _SECTIONS  # every key of every section appears in the example

    for section, keys in _SECTIONS.items():
        assert f"[{section}]" in example
        for key in keys:
            assert f"{key} =" in example, f"{section}.{key} is not in config.example.toml"


@pytest.mark.parametrize(
    ("port", "security"), [(465, "tls"), (587, "starttls"), (25, "none"), (1025, "none")]
)
def test_smtp_security_follows_the_port_unless_set(port: int, security: str) -> None:
    settings = _parse(f'[smtp]\nhost = "smtp.example.org"\nport = {port}\n')
    assert settings.smtp is not None and settings.smtp.security == security
    chosen = _parse(f'[smtp]\nhost = "smtp.example.org"\nport = {port}\nsecurity = "tls"\n')
    assert chosen.smtp is not None and chosen.smtp.security == "tls"


def test_a_password_never_goes_out_in_clear_by_default() -> None:
    for body in (
        '[smtp]\nhost = "smtp.example.org"\nusername = "digest"\n',  # port 1025, no TLS
        '[smtp]\nhost = "smtp.example.org"\nport = 25\nsecurity = "none"\nusername = "digest"\n',
        '[smtp]\nhost = "10.0.0.5"\nport = 2525\nusername = "digest"\n',
    ):
        with pytest.raises(
            ConfigError, match=r"digest.toml: smtp.security: .*unencrypted.*allow_plaintext_auth"
        ):
            _parse(body)
    # Encrypted, on this machine, or allowed by the operator: fine.
    for body in (
        '[smtp]\nhost = "smtp.example.org"\nport = 587\nusername = "digest"\n',
        '[smtp]\nhost = "127.0.0.1"\nport = 1025\nusername = "digest"\n',
        '[smtp]\nhost = "localhost"\nusername = "digest"\n',
        '[smtp]\nhost = "smtp.example.org"\nusername = "digest"\nallow_plaintext_auth = true\n',
    ):
        assert _parse(body).smtp is not None


def test_database_url_sqlite_postgresql_and_the_environment() -> None:
    lite = _parse('[database]\nurl = "sqlite:///data/d.db"\n').database
    assert (lite.url, lite.target) == ("", Path("/srv/digest/data/d.db"))  # relative to the config
    assert _parse('[database]\nurl = "sqlite:////var/d.db"\n').database.target == Path("/var/d.db")
    pg = _parse(
        '[database]\nurl = "postgresql://digest@db.example.org:5432/digest"\npath = "x.db"\n'
    ).database
    assert pg.target == "postgresql://digest@db.example.org:5432/digest"  # url wins over path
    assert pg.shown == "postgresql://db.example.org:5432/digest"
    env = {"DIGEST_DATABASE_URL": "postgresql://w@other/db", "DIGEST_DATABASE_PASSWORD": "s3cret"}
    over = _parse('[database]\nurl = "postgresql://digest@db/digest"\n', env).database
    assert (over.target, over.password) == ("postgresql://w@other/db", "s3cret")
    assert "s3cret" not in repr(over.shown)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('url = "postgresql://digest:hunter2@db/digest"', "holds a password; set DIGEST_DATABASE_PASSWORD"),
        ('url = "postgresql://digest@db/digest?sslmode=require&Password=hunter2"', "holds a password"),
        ('url = "mysql://db/digest"', "expected sqlite:/// or postgresql://"),
        ('url = "sqlite://host/d.db"', "sqlite:///relative/path"),
        ('password = "hunter2"', "password"),
        ('claim_seconds = "forever"', "not a duration"),
    ],
)
def test_bad_database_settings_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        _parse(f"[database]\n{text}\n")
    assert "\n" not in str(raised.value) and "hunter2" not in str(raised.value)
