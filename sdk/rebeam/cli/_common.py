"""What several subcommands share: finding the running instance, printing errors."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Any

from rebeam import _subjects
from rebeam._nats_fixes import connect as nats_connect
from rebeam.local.control import InstanceFile
from rebeam.pids import Pid, validate_namespace


def add_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        type=_namespace,  # also applied to the default, so a bad $REBEAM_NAMESPACE is refused
        default=os.environ.get("REBEAM_NAMESPACE", "default"),
        help="the namespace of the tree (default: $REBEAM_NAMESPACE or 'default')",
    )


def _namespace(text: str) -> str:
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
            "$REBEAM_CREDENTIALS; without --nats, the running instance's own)"
        ),
    )
    add_nats_ca(parser)


def add_nats_ca(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-ca",
        metavar="FILE",
        help=(
            "the CA certificates (PEM) a tls:// NATS server's certificate must be signed by "
            "(default: $REBEAM_NATS_CA, else the system's trust store)"
        ),
    )


def nats_url(args: argparse.Namespace) -> str:
    """The NATS URL to talk to; raises NoInstance with a clear message when there is none."""
    if args.nats:
        return str(args.nats)
    return str(InstanceFile.read(args.namespace)["nats_url"])


def credentials(args: argparse.Namespace) -> str | None:
    """The credential to connect with (docs/security.md): the owner's, from the instance
    file of the `rebeam run` for the namespace, or the one given with --nats."""
    if not args.nats:
        found = InstanceFile.read(args.namespace).get("credentials")
        return str(found) if found else None
    if getattr(args, "credentials_file", None):
        return str(args.credentials_file.read_text().strip())
    return os.environ.get("REBEAM_CREDENTIALS") or None


def nats_ca(args: argparse.Namespace) -> str | None:
    """The CA file to trust (docs/security.md, "TLS"): --nats-ca, else, without --nats, the
    one the running instance was given; None leaves it to $REBEAM_NATS_CA."""
    if getattr(args, "nats_ca", None):
        return str(args.nats_ca)
    if args.nats:
        return None
    found = InstanceFile.read(args.namespace).get("nats_ca")
    return str(found) if found else None


async def admin_connect(args: argparse.Namespace, **options: Any) -> Any:
    """A NATS connection as the owner, under a fresh client pid of the namespace (what the
    issuer binds an owner's connection to)."""
    pid = Pid.for_client(args.namespace)
    return await nats_connect(
        nats_url(args),
        name=str(pid),
        token=credentials(args),
        inbox_prefix=f"{_subjects.inbox_prefix(pid)}.{secrets.token_hex(8)}",
        tls_ca=nats_ca(args),
        **options,
    )
