"""The parser of ``rebeam run FILE...``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rebeam.cli.parsers._shared import Body, add_namespace, add_nats_ca, subcommand


def add_parser(subparsers: Any) -> None:
    parser = subcommand(
        subparsers,
        "run",
        "run supervision trees on this machine",
        "Run the Supervisors and Actors of the given manifests as OS processes, with a "
        "private nats-server, until Ctrl-C.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML manifests")
    add_namespace(parser)
    parser.add_argument("--nats", metavar="URL", help="use this NATS instead of a private one")
    parser.add_argument(
        "--issuer",
        metavar="FILE",
        type=Path,
        help="with --nats: the issuer secrets of that server (the issuer.json a rebeam "
        "nats-server wrote), so this run can give its processes credentials",
    )
    add_nats_ca(parser)
    parser.add_argument(
        "--events", metavar="FILE", type=Path, help="append every lifecycle event as a JSON line"
    )
    parser.add_argument(
        "--no-prefork",
        action="store_true",
        help="start every Python actor as a fresh interpreter instead of forking a "
        "pre-imported one (slower restarts)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no live view, no event lines and no output of the children: only warnings and "
        "the final line (with --show-output, the children's output still)",
    )
    output.add_argument("--plain", action="store_true", help="plain event lines even in a terminal")
    parser.add_argument(
        "--show-output",
        action="store_true",
        help="with --quiet: still show the children's output, each line under its child's path",
    )
    parser.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        help="serve the whole tree's Prometheus metrics on http://HOST:PORT/metrics "
        "(HOST: 127.0.0.1 unless given; docs/observability.md)",
    )
    parser.set_defaults(run=Body("rebeam.cli.run"))
