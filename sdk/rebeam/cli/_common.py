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
from rebeam.pids import Pid


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


def nats_url(args: argparse.Namespace) -> str:
    """The NATS URL to talk to; raises NoInstance with a clear message when there is none."""
    if args.nats:
        return str(args.nats)
    return str(InstanceFile.read(args.namespace)["nats_url"])


def credentials(args: argparse.Namespace) -> str | None:
    """The credential to connect with (docs/security.md): the owner's, from the instance
    file of the `rebeam run` for the namespace; with --nats, --credentials-file, else
    $REBEAM_CREDENTIALS, else the bearer token of the current kubeconfig user (against a
    cluster, the operator checks it with the API server and asks RBAC what it may do)."""
    if not args.nats:
        found = InstanceFile.read(args.namespace).get("credentials")
        return str(found) if found else None
    if getattr(args, "credentials_file", None):
        return str(args.credentials_file.read_text().strip())
    return os.environ.get("REBEAM_CREDENTIALS") or kubeconfig_token()


def kubeconfig_token() -> str | None:
    """The bearer token of the current kubeconfig user, when the ``kubernetes`` package is
    installed (it is optional) and the user has one (a token, or an exec plugin that gives
    one); otherwise None."""
    try:
        from kubernetes import client, config
    except ImportError:
        return None
    configuration = client.Configuration()
    try:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call,unused-ignore]
    except Exception:  # no kubeconfig, or one without a usable context: no token from it
        return None
    header = str((configuration.api_key or {}).get("authorization") or "")
    token = header.removeprefix("Bearer ").strip()
    return token or None


async def admin_connect(args: argparse.Namespace, **options: Any) -> tuple[Any, Pid]:
    """A NATS connection as the owner, under a fresh client pid of the namespace (what the
    issuer binds an owner's connection to), and that pid."""
    pid = Pid.for_client(args.namespace)
    nc = await nats_connect(
        nats_url(args),
        name=str(pid),
        token=credentials(args),
        inbox_prefix=f"{_subjects.inbox_prefix(pid)}.{secrets.token_hex(8)}",
        **options,
    )
    return nc, pid
