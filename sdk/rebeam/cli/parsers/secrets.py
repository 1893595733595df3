"""The parser of ``rebeam nats-secrets``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rebeam.cli.parsers._shared import Body, subcommand

ISSUER_SECRET = "rebeam-nats-issuer"
SERVER_SECRET = "rebeam-nats-auth"
SHARED_ACCOUNT = "REBEAM"
"""rebeam.auth.serverconf.SHARED_ACCOUNT, written out: that module imports nats-py, which
``--help`` must not wait for (a test checks that the two agree)."""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(
        subparsers,
        "nats-secrets",
        "print the Secrets of a secured NATS on Kubernetes (for kubectl apply -f -)",
        "Print, as YAML, the operator's issuer Secret and the NATS server's auth.conf "
        "Secret, made from the same fresh (or given) issuer secrets.",
    )
    parser.add_argument(
        "--namespace", "-n", required=True, help="the namespace of the rebeam release"
    )
    parser.add_argument(
        "--issuer-file",
        type=Path,
        metavar="FILE",
        help="an existing issuer.json to use instead of fresh secrets",
    )
    parser.add_argument(
        "--account",
        default=SHARED_ACCOUNT,
        help=f"the NATS account of every namespace (the chart's natsAuth.account; default "
        f"{SHARED_ACCOUNT})",
    )
    parser.add_argument("--issuer-secret", default=ISSUER_SECRET, help="its Secret's name")
    parser.add_argument("--server-secret", default=SERVER_SECRET, help="its Secret's name")
    parser.set_defaults(run=Body("rebeam.cli.secrets"))
