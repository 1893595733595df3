"""The parser of ``rebeam observe``."""

from __future__ import annotations

from typing import Any

from rebeam.cli.parsers._shared import Body, add_target, subcommand

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    parser = subcommand(
        subparsers,
        "observe",
        "serve a live web view of the running tree",
        "Serve a web page showing the running tree live: each child's state, incarnation, "
        "restarts and last exit, lifecycle events, mailbox depth, message rates and handler "
        "latency, registered names and process groups; restart or terminate a child from it. "
        "Open the URL it prints (it holds the access token).",
    )
    add_target(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; the token is the "
        "only protection elsewhere, and HTTP is not encrypted)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: any free port)"
    )
    parser.set_defaults(run=Body("rebeam.cli.observe", "run_observe"))
