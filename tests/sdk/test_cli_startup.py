"""The ``rebeam`` command answers ``--version``, ``--help`` and usage errors without importing
the SDK's runtime and its dependencies (docs/sdk.md, "A fast command line"): each command's
body, and what it needs, is imported when that command runs."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from rebeam import cli
from rebeam.auth.serverconf import SHARED_ACCOUNT
from rebeam.cli.parsers import secrets
from rebeam.cli.parsers._shared import Body

HEAVY_PACKAGES = (
    "aiohttp",
    "kubernetes",
    "msgpack",
    "nats",
    "opentelemetry",
    "pydantic",
    "rich",
    "uvloop",
    "yaml",
)
"""Third-party packages a command imports only when it runs."""

LIGHT_REBEAM = (
    "rebeam",
    "rebeam._limits",
    "rebeam.errors",
    "rebeam.exits",
    "rebeam.pids",
    "rebeam.readiness",
)
"""The rebeam modules the parser may import (standard library only, below them); any other
rebeam module outside rebeam.cli.parsers is a command's body or the SDK's runtime."""

# Runs main() for each argv in turn in one fresh interpreter and says, after each, which
# modules it had imported that it must not have: the first argv that brings one in is named.
PROBE = """
import contextlib, io, json, sys
from rebeam.cli import main

heavy, light = tuple(sys.argv[1].split(",")), tuple(sys.argv[2].split(","))

def unwanted():
    return sorted(
        name for name in sys.modules
        if name.split(".")[0] in heavy
        or (name.split(".")[0] == "rebeam" and name not in light
            and name != "rebeam.cli" and not name.startswith("rebeam.cli.parsers"))
    )

report = [("import rebeam.cli", None, unwanted())]
for argv in json.loads(sys.argv[3]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    report.append((" ".join(["rebeam", *argv]), code, unwanted()))
print(json.dumps(report))
"""


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    return next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )


def light_argvs() -> list[list[str]]:
    """--version, --help, every command's --help (and its actions'), and usage errors."""
    argvs: list[list[str]] = [["--version"], ["--help"], [], ["no-such-command"]]
    for name, sub in subcommands().items():
        argvs.append([name, "--help"])
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):  # rebeam mailbox ACTION
                argvs += [[name, inner, "--help"] for inner in action.choices]
    argvs += [
        ["validate"],  # no FILE
        ["run", "x.yaml", "--quiet", "--plain"],  # options that exclude each other
        ["tree", "--namespace", "Not A Namespace"],
        ["call", "someone"],  # no JSON
        ["call", "someone", "1", "--timeout", "soon"],
        ["mailbox", "parked"],  # no SLOT
        ["nats-secrets"],  # no --namespace
        ["--debug", "events", "--count", "many"],
    ]
    return argvs


def test_help_version_and_usage_errors_import_no_heavy_module() -> None:
    argvs = light_argvs()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            ",".join(HEAVY_PACKAGES),
            ",".join(LIGHT_REBEAM),
            json.dumps(argvs),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for said, code, unwanted in report:
        assert unwanted == [], f"`{said}` imported {unwanted}"
        if said != "import rebeam.cli":
            # --version and --help end well; everything else is a usage error.
            assert code == (0 if "--help" in said or said == "rebeam --version" else 2), said
    assert len(report) == len(argvs) + 1


def test_every_command_names_a_body_that_exists() -> None:
    """A command's body is imported only when it runs: a misspelt one would otherwise only
    be found by the person running that command."""
    bodies: list[Body] = []
    for sub in subcommands().values():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        parsers = [p for a in nested for p in a.choices.values()] or [sub]
        bodies += [p.get_default("run") for p in parsers]
    assert bodies
    assert all(isinstance(body, Body) for body in bodies), bodies
    for body in bodies:
        assert callable(getattr(importlib.import_module(body.module), body.function)), body


def test_the_nats_secrets_default_account_is_the_servers() -> None:
    assert secrets.SHARED_ACCOUNT == SHARED_ACCOUNT


RUN_MACHINERY = ("rebeam.local.processes", "rebeam.local.runner")
"""What runs a tree's processes: ``rebeam run`` needs it, commands that look at a tree do not."""

# Runs main() for each argv in turn in one fresh interpreter and says, after each, its exit
# code, what it wrote to stderr, and which modules of rebeam.local it had imported by then.
LOOK_PROBE = """
import contextlib, io, json, sys
from rebeam.cli import main

report = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    local = sorted(name for name in sys.modules if name.startswith("rebeam.local"))
    report.append((argv, code, err.getvalue(), local))
print(json.dumps(report))
"""


def test_tree_and_events_import_no_run_machinery(tmp_path: Path) -> None:
    """``rebeam tree`` draws the tree a run or the operator answers with, and ``rebeam
    events`` describes each event: of rebeam.local they need the instance files that say
    where a run is, not the machinery of processes that the run itself uses. Each command
    runs in full up to finding no run (no instance file is there), which it says in a line."""
    argvs = [
        ["tree", "-n", "probe"],
        ["tree", "--json", "-n", "probe"],
        ["tree", "--watch", "-n", "probe"],
        ["events", "-n", "probe"],
    ]
    env = {name: value for name, value in os.environ.items() if not name.startswith("REBEAM_")}
    env["XDG_STATE_HOME"] = str(tmp_path)  # where instance files are looked for: none here
    result = subprocess.run(
        [sys.executable, "-c", LOOK_PROBE, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [argv for argv, *_ in report] == argvs
    for argv, code, said, local in report:
        assert code == 1, (argv, said)
        assert "no rebeam run is running for namespace 'probe'" in said, (argv, said)
        assert not set(local) & set(RUN_MACHINERY), f"`rebeam {' '.join(argv)}` imported {local}"
