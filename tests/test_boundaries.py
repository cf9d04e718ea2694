"""Boundaries an audit's mutations crossed without a test noticing: each test here fails if
the rule it names moves by one (a term, a day, a refusal) or flips (a timeout, a warning)."""

from __future__ import annotations

import time

import pytest

from digest.common import rules
from digest.common.query import MAX_TERMS, QueryError, parse
from digest.feedback import bounces
from digest.store import Store
from digest.subscribers.lifecycle import add, bindings, token
from digest.subscribers.tokens import BadToken, read, secret_for

from . import bounce_mail


def test_a_drop_rule_whose_regex_runs_out_of_time_drops_the_item() -> None:
    """A regex that backtracks past its time limit cannot say "no": the drop rule drops (an
    item a rule cannot judge is not let through)."""
    dropping = rules.parse([], ["/(a|aa)+$/"], "s")
    evil = rules.fields_of("a" * 40 + "!", "", None, None, (), ())
    assert dropping.verdict(evil, grouped=False) == "drop: /(a|aa)+$/"
    assert dropping.verdict(rules.fields_of("calm", "", None, None, (), ()), grouped=False) is None
    # A keep rule that runs out of time does not keep either.
    keeping = rules.parse(["/(a|aa)+$/"], [], "s")
    assert keeping.verdict(evil, grouped=False) is not None


def test_a_delay_warning_is_no_bounce() -> None:
    """RFC 3464's ``Action: delayed`` says the message may yet arrive: no report at all; the
    same notice with ``Action: failed`` and a 4.x.x status is a soft bounce."""
    fields = {"status": "4.2.2", "diagnostic": "452 4.2.2 mailbox full"}
    delayed = bounce_mail.dsn(
        "bounces+x@b.example.org", "ann@example.org", "<m@x>", action="delayed", **fields
    )
    failed = bounce_mail.dsn("bounces+x@b.example.org", "ann@example.org", "<m@x>", action="failed", **fields)
    assert bounces.read(delayed) is None
    report = bounces.read(failed)
    assert report is not None and report.kind == "soft"


def test_a_confirmation_link_lives_seven_days_to_the_second(store: Store) -> None:
    """The confirmation email says 7 days: the link works at 7 days less a minute and not
    a second after."""
    pending = add(store, "ann@example.org")
    secret = secret_for(store, None)
    made = time.time()
    link = token(secret, "confirm", pending)
    lookup = bindings(store, "confirm")
    assert read(secret, link, "confirm", lookup, now=made + 7 * 86400 - 60) == pending.id
    with pytest.raises(BadToken, match="expired"):
        read(secret, link, "confirm", lookup, now=made + 7 * 86400 + 1)


def test_a_search_takes_eight_terms_and_not_nine() -> None:
    assert len(parse(" ".join(f"w{n}" for n in range(MAX_TERMS))).all_of) == MAX_TERMS == 8
    assert len(parse("a b c d e f g -h").none_of) == 1  # NOT terms count among the eight
    with pytest.raises(QueryError, match="at most 8"):
        parse(" ".join(f"w{n}" for n in range(9)))
    with pytest.raises(QueryError, match="at most 8"):
        parse("a b c d e f g h -i")
