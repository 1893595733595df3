"""What several commands' parsers share: the body a command runs, and the options that
pick the running instance to talk to."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
from typing import Any

from rebeam.pids import validate_namespace

__all__ = ["Body", "add_namespace", "add_nats_ca", "add_target", "namespace_type", "subcommand"]


class Body:
    """A command's function, imported when the command runs, not when the parser is built.
    Looked up at each call, so a test that replaces the function in its module is obeyed."""

    def __init__(self, module: str, function: str = "run") -> None:
        self.module = module
        self.function = function

    def __call__(self, args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(self.module), self.function)(args))

    def __repr__(self) -> str:
        return f"Body({self.module}.{self.function})"


def subcommand(subparsers: Any, name: str, summary: str, details: str) -> argparse.ArgumentParser:
    """A subcommand's parser: ``summary`` in ``rebeam --help``, ``details`` in its own."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=summary, description=details)
    return parser


def add_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        type=namespace_type,  # also applied to the default, so a bad $REBEAM_NAMESPACE is refused
        default=os.environ.get("REBEAM_NAMESPACE", "default"),
        help="the namespace of the tree (default: $REBEAM_NAMESPACE or 'default')",
    )


def namespace_type(text: str) -> str:
    """A namespace no tree can have is a usage error (exit 2), before anything is looked up."""
    try:
        return validate_namespace(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_target(parser: argparse.ArgumentParser) -> None:
    """--namespace and --nats, for commands that talk to a running instance."""
    add_namespace(parser)
    parser.add_argument(
        "--nats",
        "--nats-url",
        dest="nats",
        metavar="URL",
        default=os.environ.get("REBEAM_NATS_URL"),
        help=(
            "NATS to use (default: the one of the `rebeam run` for this namespace); on "
            "Kubernetes, the cluster's NATS, with --namespace the Kubernetes namespace: the "
            "operator answers"
        ),
    )
    parser.add_argument(
        "--credentials-file",
        metavar="FILE",
        type=Path,
        help=(
            "a file holding the NATS credential to use with --nats (default: "
            "$REBEAM_CREDENTIALS, else on Kubernetes the current kubeconfig user's token; "
            "without --nats, the running instance's own)"
        ),
    )
    add_nats_ca(parser)
    parser.add_argument(
        "--run",
        dest="run_id",  # args.run is the subcommand's function
        metavar="ID",
        default=os.environ.get("REBEAM_RUN"),
        help=(
            "which `rebeam run` of the namespace to talk to, by its id or a prefix of it "
            "(`rebeam runs` lists them; default: $REBEAM_RUN, else the one started last)"
        ),
    )


def add_nats_ca(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-ca",
        metavar="FILE",
        help=(
            "the CA certificates (PEM) a tls:// NATS server's certificate must be signed by "
            "(default: $REBEAM_NATS_CA, else the system's trust store)"
        ),
    )
