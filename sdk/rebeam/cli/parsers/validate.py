"""The parser of ``rebeam validate FILE...``."""

from __future__ import annotations

from typing import Any

from rebeam.cli.parsers._shared import Body, subcommand


def add_parser(subparsers: Any) -> None:
    parser = subcommand(
        subparsers,
        "validate",
        "check manifests and report every problem",
        "Check Supervisor and Actor manifests; report every problem, one a line.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML manifests")
    parser.set_defaults(run=Body("rebeam.cli.validate"))
