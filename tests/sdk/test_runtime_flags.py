"""The runtime's flags: the parser is built once (the zygote builds it before it forks), but
every absent flag is read from the environment of the process that parses, at that moment:
each forked actor has an environment of its own."""

from __future__ import annotations

import pytest

from rebeam.runtime._main import parse_args, prepare


def test_absent_flags_come_from_the_environment_at_parse_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepare()
    monkeypatch.setenv("REBEAM_NAMESPACE", "first")
    monkeypatch.setenv("REBEAM_MAILBOX_MAX_MESSAGES", "7")
    assert parse_args(["m:C"]).namespace == "first"
    monkeypatch.setenv("REBEAM_NAMESPACE", "second")
    monkeypatch.delenv("REBEAM_MAILBOX_MAX_MESSAGES")
    ns = parse_args(["m:C", "--incarnation", "3"])
    assert (ns.namespace, ns.mailbox_max_messages, ns.incarnation) == ("second", None, 3)
    assert parse_args(["m:C", "--namespace", "flag"]).namespace == "flag"  # flags win


def test_a_bad_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBEAM_MAILBOX_MAX_MESSAGES", "none")
    with pytest.raises(SystemExit, match="REBEAM_MAILBOX_MAX_MESSAGES must be a positive"):
        parse_args(["m:C"])
