"""Fuzz the command line: random argv for every subcommand, in-process through ``main``.

The subcommands and their options are read from the parser itself, so a new one is fuzzed
without a change here. The environment has no running instance (HOME and XDG_STATE_HOME are
an empty directory), so a command that needs one fails fast with "no running instance", and
where a command takes a NATS URL it gets a closed loopback port. ``rebeam run`` only ever
gets a manifest that fails validation: its argument parsing is fuzzed, nothing is started
(starting would fail the test). Every input must end with an int exit code of 0, 1 or 2:
no traceback on stderr, no "internal error" (exit 70).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rebeam import cli
from rebeam.cli import run as run_command
from tests.fuzz.report import tally

PARSER = cli.build_parser()
SUBCOMMANDS: dict[str, argparse.ArgumentParser] = next(
    a.choices for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)
)
NATS_OPTIONS = {"--nats", "--nats-url"}
CONNECTING = sorted(
    name
    for name, sub in SUBCOMMANDS.items()
    if name != "run" and any(NATS_OPTIONS & set(a.option_strings) for a in sub._actions)
)
REFUSED = "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: s}\nspec: 5\n"
PER_CALL = 20.0  # seconds; a command still running after this has hung


@dataclass(frozen=True)
class Place:
    """An empty home, and a manifest that fails validation in it."""

    home: Path
    refused: Path
    closed_url: str


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Place]:
    home = tmp_path_factory.mktemp("cli-home")
    refused = home / "refused.yaml"
    refused.write_text(REFUSED)
    with socket.socket() as s:  # a port nothing listens on: bound, then closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def never_start(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the CLI fuzzer must never start a run")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_STATE_HOME", str(home / "state"))
        for name in ("REBEAM_NATS_URL", "REBEAM_NAMESPACE", "REBEAM_DEBUG"):
            mp.delenv(name, raising=False)
        mp.chdir(home)
        mp.setattr(run_command, "LocalRun", never_start)
        yield Place(home, refused, f"nats://127.0.0.1:{port}")


class Hung(BaseException):
    """A command did not return in time (BaseException: main must not turn it into 70)."""


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Turn a hang into a failure. SIGALRM is also pytest-timeout's: its handler and the rest
    of its time are put back afterwards."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"{what} still running after {seconds:g}s")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    remaining, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if remaining:
            left = max(remaining - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left)


@contextlib.contextmanager
def logging_as_in_a_fresh_process() -> Iterator[None]:
    """No handlers on the root logger, as in a new ``rebeam`` process: a library's warnings
    (and the tracebacks it logs) then reach stderr through logging's last resort, where the
    test sees them, instead of pytest's capture."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def run_main(argv: list[str]) -> tuple[object, str]:
    """``main(argv)``: its result and what it wrote to stderr (stdout is dropped)."""
    err = io.StringIO()
    with (
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
        logging_as_in_a_fresh_process(),
        deadline(PER_CALL, "rebeam " + _short(argv)),
    ):
        code = cli.main(argv)
    return code, err.getvalue()


def check(surface: str, argv: list[str]) -> None:
    with tally(surface) as t:
        code, err = run_main(argv)
        said = f"rebeam {_short(argv)} -> {code!r}: {err[-2000:]}"
        if "Traceback" in err:
            t.traceback()
        assert "Traceback" not in err, said
        assert isinstance(code, int), said
        assert "internal error" not in err, said
        assert code in (0, 1, 2), said


def _short(argv: list[str]) -> str:
    return " ".join(repr(a) if len(a) <= 60 else repr(a[:40]) + f"...({len(a)})" for a in argv)


# --- argv --------------------------------------------------------------------------------

# What a real argv can hold: no NUL; bytes that are not UTF-8 arrive as lone surrogates.
WORDS = st.one_of(
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20),
    st.sampled_from(
        [
            "",
            " ",
            "-",
            "--",
            "\udcff\udcfe",
            "a\nb",
            "../../etc/passwd",
            "/",
            ".",
            "-1",
            "0",
            "1e999",
            "nan",
            "inf",
            "99999999999999999999999",
            "x" * 5000,
        ]
    ),
)
JSON_TEXTS = st.one_of(
    st.sampled_from(
        [
            "{}",
            "null",
            '"x"',
            "[1, 2",
            '{"a": NaN}',
            "1e999",
            "[" * 5000 + "]" * 5000,
            '{"a":' * 3000 + "1" + "}" * 3000,
            "\udcff",
        ]
    ),
    WORDS,
)


def _safe_word(word: str) -> bool:
    # A token that argparse could read as (an abbreviation of) --nats would send the next
    # token to a resolver as a host name; only the fixed closed port is ever a NATS URL.
    return not word.startswith("--n")


@st.composite
def argv_for(draw: st.DrawFn, command: str, place: Place) -> list[str]:
    sub = SUBCOMMANDS[command]
    options = [a for a in sub._actions if a.option_strings and "-h" not in a.option_strings]
    tokens: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["option", "word", "json"]))
        if kind == "option":
            action = draw(st.sampled_from(options))
            flag = draw(st.sampled_from(action.option_strings))
            if flag in NATS_OPTIONS:
                url = place.closed_url if command == "run" else ""  # "" means: not given
                tokens.append(f"{flag}={url}")
            elif action.nargs == 0:
                tokens.append(flag)
            else:
                tokens += [flag, draw(WORDS.filter(_safe_word))]
        elif kind == "json":
            tokens.append(draw(JSON_TEXTS.filter(_safe_word)))
        else:
            tokens.append(draw(WORDS.filter(_safe_word)))
    if command == "run":
        tokens.insert(draw(st.integers(0, len(tokens))), str(place.refused))
    if draw(st.booleans()):
        tokens.insert(0, "--debug")
    return [command, *tokens]


@st.composite
def any_argv(draw: st.DrawFn, place: Place) -> list[str]:
    if draw(st.integers(0, 9)) == 0:  # now and then no known subcommand at all
        return draw(st.lists(WORDS.filter(_safe_word), max_size=3))
    return draw(argv_for(draw(st.sampled_from(sorted(SUBCOMMANDS))), place))


@settings(
    max_examples=500,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_random_argv_never_shows_a_traceback(place: Place, data: st.DataObject) -> None:
    check("cli argv", data.draw(any_argv(place)))


@pytest.mark.parametrize("command", ["call", "cast", "send"])
def test_a_lone_double_dash_as_a_value_is_a_usage_error(command: str) -> None:
    """Found by the test above: Python 3.11's argparse handed the JSON argument an empty list
    for a second ``--``, and the command failed with an internal error."""
    code, err = run_main([command, "--", "--credentials-file", "--"])
    assert code == 2, err
    assert "argument JSON: expected a value, not '--'" in err, err


@settings(
    max_examples=20,  # each tries a real connection: about a second apiece
    deadline=None,
    print_blob=True,
    # A failure here is usually a hang: shrinking would wait for it again and again.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(data=st.data())
def test_commands_against_an_unreachable_nats_end_in_a_line(
    place: Place, data: st.DataObject
) -> None:
    command = data.draw(st.sampled_from(CONNECTING))
    sub = SUBCOMMANDS[command]
    positionals = [a for a in sub._actions if not a.option_strings]
    argv = [command, f"--nats={place.closed_url}"]
    for action in positionals:
        if action.nargs == "?" and data.draw(st.booleans()):
            continue
        argv.append(data.draw(JSON_TEXTS.filter(_safe_word)))
    check("cli against closed NATS", argv)
