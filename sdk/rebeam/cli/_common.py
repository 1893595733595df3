"""What several subcommands share: finding the running instance, printing errors."""

from __future__ import annotations

import argparse
import os

from rebeam.local.control import InstanceFile


def add_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        default=os.environ.get("REBEAM_NAMESPACE", "default"),
        help="the namespace of the tree (default: $REBEAM_NAMESPACE or 'default')",
    )


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


def nats_url(args: argparse.Namespace) -> str:
    """The NATS URL to talk to; raises NoInstance with a clear message when there is none."""
    if args.nats:
        return str(args.nats)
    return str(InstanceFile.read(args.namespace)["nats_url"])
