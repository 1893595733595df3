"""The parser of ``rebeam runs``."""

from __future__ import annotations

from typing import Any

from rebeam.cli.parsers._shared import Body, namespace_type


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("runs", help="list the running `rebeam run`s and their NATS")
    parser.add_argument(
        "--namespace",
        "-n",
        type=namespace_type,
        help="only the runs of this namespace (default: every namespace)",
    )
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    parser.set_defaults(run=Body("rebeam.cli.runs"))
