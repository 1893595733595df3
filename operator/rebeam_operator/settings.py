"""The operator's settings: flags win over ``REBEAM_OPERATOR_*`` environment variables.

===========================  ======================================  ========================
flag                         environment                             default
===========================  ======================================  ========================
``--namespace NS`` (repeat)  ``REBEAM_OPERATOR_NAMESPACES`` (a,b,c)  every namespace
``--nats-url URL``           ``REBEAM_NATS_URL``                     ``nats://nats:4222``
``--log-format json|text``   ``REBEAM_OPERATOR_LOG_FORMAT``          ``json``
``--log-level LEVEL``        ``REBEAM_OPERATOR_LOG_LEVEL``           ``INFO``
``--image IMAGE``            ``REBEAM_OPERATOR_IMAGE``               the actor base image
``--exit-record PATH``       ``REBEAM_OPERATOR_EXIT_RECORD``         ``/dev/termination-log``
``--lease-ttl SECONDS``      ``REBEAM_LEASE_TTL``                    (the runtime's default)
``--issuer-secrets FILE``    ``REBEAM_ISSUER_SECRETS``               none: NATS must be open
``--nats-account NAME``      ``REBEAM_NATS_ACCOUNT``                 ``REBEAM``
``--nats-ca FILE``           ``REBEAM_NATS_CA``                      the system's trust store
``--metrics-port PORT``      ``REBEAM_OPERATOR_METRICS_PORT``        none: no HTTP endpoint
``--actor-metrics-port PORT``  ``REBEAM_OPERATOR_ACTOR_METRICS_PORT``  none: pods serve none
``--shards N``               ``REBEAM_OPERATOR_SHARDS``              0: one replica, no leases
``--shard-namespace NS``     ``REBEAM_OPERATOR_POD_NAMESPACE``       (required with shards)
``--replica-name NAME``      ``REBEAM_OPERATOR_POD_NAME``            the host name
``--shard-lease-seconds S``  ``REBEAM_OPERATOR_SHARD_LEASE_SECONDS``  15
``--shard-lease-prefix P``   ``REBEAM_OPERATOR_SHARD_LEASE_PREFIX``  ``rebeam-operator``
===========================  ======================================  ========================

``--shards N`` (N >= 1) lets several replicas share the trees: each namespace belongs to one
of N shards, each shard is held through a Lease in ``--shard-namespace`` (keeper.py,
docs/operator.md "Replicas and shards").

``--metrics-port`` serves the operator's ``/metrics``, ``/healthz`` and ``/readyz``;
``--actor-metrics-port`` gives every actor pod ``REBEAM_METRICS_PORT`` and the
``prometheus.io/*`` annotations that point a scraper at it (docs/observability.md).

``--issuer-secrets`` names the ``issuer.json`` of the NATS server (``rebeam nats-secrets``
makes one, with the server's matching configuration): the operator is then the server's
credential issuer, and every namespace lives in the account ``--nats-account`` of that
configuration (docs/security.md, "Kubernetes identity").

``--nats-ca`` names the CA certificates (PEM) a ``tls://`` NATS server's certificate is signed
by: the operator trusts them, and gives them to every actor pod (nats_ca.py).

``--exit-record`` is the value pods get in ``REBEAM_EXIT_RECORD``: where the runtime writes its
exit reason. It is the container's ``terminationMessagePath`` on a real kubelet; a kubelet that
hands each container a file of its own (the e2e process kubelet exports it as
``$REBEAM_TERMINATION_LOG``) is served with ``--exit-record '$(REBEAM_TERMINATION_LOG)'``.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

__all__ = ["DEFAULT_IMAGE", "TERMINATION_MESSAGE_PATH", "Settings", "parse"]

DEFAULT_IMAGE = "ghcr.io/rebeam/actor:0.1.0"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    nats_url: str = "nats://nats:4222"
    log_format: str = "json"
    log_level: str = "INFO"
    image: str = DEFAULT_IMAGE
    exit_record: str = TERMINATION_MESSAGE_PATH
    lease_ttl: float | None = None
    nats_ca: str | None = None  # a file of CA certificates (PEM) for a tls:// NATS
    resync_seconds: float = 10.0  # a level-triggered look at every tree, events or not
    issuer_secrets: str | None = None  # the NATS server's issuer.json; None: an open server
    nats_account: str = "REBEAM"  # the shared account of every namespace
    metrics_port: int | None = None  # the operator's /metrics, /healthz, /readyz
    actor_metrics_port: int | None = None  # every actor pod's metrics port
    shards: int = 0  # 0: this is the only replica, no leases
    shard_namespace: str | None = None  # where the shard leases live (the operator's own)
    replica_name: str = ""  # this replica's name in its leases (plus a random suffix)
    shard_lease_seconds: int = 15
    shard_lease_prefix: str = "rebeam-operator"

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


# Each flag's environment variable: its default, and named with the flag when it is refused.
_ENV = {
    "--nats-url": "REBEAM_NATS_URL",
    "--log-format": "REBEAM_OPERATOR_LOG_FORMAT",
    "--log-level": "REBEAM_OPERATOR_LOG_LEVEL",
    "--image": "REBEAM_OPERATOR_IMAGE",
    "--exit-record": "REBEAM_OPERATOR_EXIT_RECORD",
    "--lease-ttl": "REBEAM_LEASE_TTL",
    "--issuer-secrets": "REBEAM_ISSUER_SECRETS",
    "--nats-account": "REBEAM_NATS_ACCOUNT",
    "--nats-ca": "REBEAM_NATS_CA",
    "--metrics-port": "REBEAM_OPERATOR_METRICS_PORT",
    "--actor-metrics-port": "REBEAM_OPERATOR_ACTOR_METRICS_PORT",
    "--shards": "REBEAM_OPERATOR_SHARDS",
    "--shard-namespace": "REBEAM_OPERATOR_POD_NAMESPACE",
    "--replica-name": "REBEAM_OPERATOR_POD_NAME",
    "--shard-lease-seconds": "REBEAM_OPERATOR_SHARD_LEASE_SECONDS",
    "--shard-lease-prefix": "REBEAM_OPERATOR_SHARD_LEASE_PREFIX",
}


def parse(argv: list[str] | None = None) -> Settings:
    p = _parser()
    args = p.parse_args(argv)
    lease_ttl = _check(p, args)
    ports = {flag: _port(p, args, flag) for flag in ("--metrics-port", "--actor-metrics-port")}
    shards = _whole(p, args, "--shards", 0, MAX_SHARDS)
    lease_seconds = _whole(p, args, "--shard-lease-seconds", 3, 300)
    _check_sharding(p, args, shards)
    env_ns = _env("REBEAM_OPERATOR_NAMESPACES", "") or ""
    namespaces = args.namespaces or [n.strip() for n in env_ns.split(",") if n.strip()]
    return Settings(
        namespaces=tuple(namespaces),
        nats_url=args.nats_url,
        log_format=args.log_format,
        log_level=args.log_level.upper(),
        image=args.image,
        exit_record=args.exit_record,
        lease_ttl=lease_ttl,
        issuer_secrets=args.issuer_secrets,
        nats_account=args.nats_account,
        nats_ca=args.nats_ca,
        metrics_port=ports["--metrics-port"],
        actor_metrics_port=ports["--actor-metrics-port"],
        shards=shards,
        shard_namespace=args.shard_namespace,
        replica_name=args.replica_name or "",
        shard_lease_seconds=lease_seconds,
        shard_lease_prefix=args.shard_lease_prefix,
    )


# The operator's options besides --namespace: (flag, help, default, metavar). Each may also be
# given by its environment variable (_ENV), which the flag overrides.
_OPTIONS: list[tuple[str, str, str | None, str | None]] = [
    (
        "--nats-url",
        "NATS for lifecycle events, names and leases; given to pods (REBEAM_NATS_URL)",
        Settings.nats_url,
        None,
    ),
    (
        "--log-format",
        "json (one object a line) or text (REBEAM_OPERATOR_LOG_FORMAT)",
        Settings.log_format,
        None,
    ),
    (
        "--log-level",
        "DEBUG, INFO, WARNING, ... (REBEAM_OPERATOR_LOG_LEVEL)",
        Settings.log_level,
        None,
    ),
    ("--image", "image of actors that name none (REBEAM_OPERATOR_IMAGE)", DEFAULT_IMAGE, None),
    (
        "--exit-record",
        "REBEAM_EXIT_RECORD of pods: the termination-message path (REBEAM_OPERATOR_EXIT_RECORD)",
        TERMINATION_MESSAGE_PATH,
        None,
    ),
    (
        "--lease-ttl",
        "REBEAM_LEASE_TTL of pods: how soon a runtime on a lost node counts as dead",
        None,
        None,
    ),
    (
        "--issuer-secrets",
        "the NATS server's issuer.json: the operator issues and checks every NATS "
        "credential (REBEAM_ISSUER_SECRETS; without it, NATS must let anyone in)",
        None,
        "FILE",
    ),
    (
        "--nats-account",
        "the NATS account of every namespace, as the server's configuration names it "
        "(REBEAM_NATS_ACCOUNT)",
        Settings.nats_account,
        None,
    ),
    (
        "--nats-ca",
        "the CA certificates (PEM) of a tls:// NATS, trusted by the operator and given to "
        "actor pods (REBEAM_NATS_CA)",
        None,
        "FILE",
    ),
    (
        "--metrics-port",
        "serve /metrics, /healthz and /readyz on this port (REBEAM_OPERATOR_METRICS_PORT)",
        None,
        "PORT",
    ),
    (
        "--actor-metrics-port",
        "actor pods serve their metrics on this port, annotated for Prometheus "
        "(REBEAM_OPERATOR_ACTOR_METRICS_PORT)",
        None,
        "PORT",
    ),
    (
        "--shards",
        "share the trees with other replicas: N shards of namespaces, each held through a "
        "Lease; 0: this is the only replica (REBEAM_OPERATOR_SHARDS)",
        "0",
        "N",
    ),
    (
        "--shard-namespace",
        "the namespace of the shard Leases, the operator's own (REBEAM_OPERATOR_POD_NAMESPACE)",
        None,
        "NS",
    ),
    (
        "--replica-name",
        "this replica's name in the Leases, e.g. its pod's (REBEAM_OPERATOR_POD_NAME; "
        "default: the host name)",
        None,
        "NAME",
    ),
    (
        "--shard-lease-seconds",
        "a shard Lease's duration: a dead replica's shards are taken over after about this "
        "long (REBEAM_OPERATOR_SHARD_LEASE_SECONDS)",
        str(Settings.shard_lease_seconds),
        "S",
    ),
    (
        "--shard-lease-prefix",
        "the name prefix (and label) of the Leases of one set of replicas "
        "(REBEAM_OPERATOR_SHARD_LEASE_PREFIX)",
        Settings.shard_lease_prefix,
        "P",
    ),
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rebeam-operator",
        description="Run rebeam Supervisor and Actor resources as pods with OTP semantics.",
    )
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        help="a namespace to watch (repeat; default: REBEAM_OPERATOR_NAMESPACES or all)",
    )
    for flag, help_text, default, metavar in _OPTIONS:
        p.add_argument(flag, default=_env(_ENV[flag], default), metavar=metavar, help=help_text)
    return p


def _port(p: argparse.ArgumentParser, args: argparse.Namespace, flag: str) -> int | None:
    text = getattr(args, flag.lstrip("-").replace("-", "_"))
    if text is None:
        return None
    if not (str(text).isdigit() and 1 <= int(text) <= 65535):
        p.error(f"{flag} (or {_ENV[flag]}): {text!r}: a port number (1-65535)")
    return int(text)


MAX_SHARDS = 1024
# What Lease names are made of: the prefix is a DNS label of at most 40; a replica's name is a
# pod's (a DNS subdomain), at most 190, so that "<prefix>-replica-<name>-<suffix>" fits in 253.
_NAMES = {
    "--shard-lease-prefix": (r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", "'-'", 40),
    "--replica-name": (r"[a-z0-9]([-.a-z0-9]{0,188}[a-z0-9])?", "'-', '.'", 190),
}


def _whole(
    p: argparse.ArgumentParser, args: argparse.Namespace, flag: str, low: int, high: int
) -> int:
    text = str(getattr(args, flag.lstrip("-").replace("-", "_")))
    if not (text.isdigit() and low <= int(text) <= high):
        p.error(f"{flag} (or {_ENV[flag]}): {text!r}: a whole number from {low} to {high}")
    return int(text)


def _check_sharding(p: argparse.ArgumentParser, args: argparse.Namespace, shards: int) -> None:
    """The names that make up Lease names must be valid in one, and shards need a home."""
    for flag, (pattern, marks, most) in _NAMES.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None and not re.fullmatch(pattern, value):
            p.error(
                f"{flag} (or {_ENV[flag]}): {value!r}: lower-case letters, digits and {marks}, "
                f"at most {most}, starting and ending with a letter or digit"
            )
    if shards and not args.shard_namespace:
        p.error(
            "--shards (or REBEAM_OPERATOR_SHARDS) needs --shard-namespace (or "
            "REBEAM_OPERATOR_POD_NAMESPACE): where the shard Leases live"
        )


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> float | None:
    """Refuse a bad value by its flag and variable; returns the lease TTL, the one value that
    is not kept as given."""
    # argparse checks neither choices nor types of defaults, and ours come from the
    # environment: check every value here, so a bad one is refused by name wherever it came from.

    def refuse(flag: str, problem: str) -> NoReturn:
        p.error(f"{flag} (or {_ENV[flag]}): {problem}")

    if args.log_format not in ("json", "text"):
        refuse("--log-format", f"{args.log_format!r}: json or text")
    if args.log_level.upper() not in _LEVELS:
        refuse("--log-level", f"{args.log_level!r}: one of {', '.join(_LEVELS)}")
    lease_ttl: float | None = None
    if args.lease_ttl is not None:
        try:
            lease_ttl = float(args.lease_ttl)
        except ValueError:
            lease_ttl = -1.0
        if not lease_ttl > 0:
            refuse("--lease-ttl", f"{args.lease_ttl!r}: a number of seconds above 0")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", args.nats_account):
        refuse(
            "--nats-account",
            f"{args.nats_account!r}: a NATS account name (a letter, then letters, digits, '_' "
            "or '-')",
        )
    if args.issuer_secrets:
        from rebeam.natsd import read_issuer_secrets

        try:
            read_issuer_secrets(Path(args.issuer_secrets))
        except ValueError as exc:
            refuse("--issuer-secrets", str(exc))
    if args.nats_ca:
        from rebeam_operator.nats_ca import check

        try:
            check(args.nats_ca)
        except (OSError, ValueError) as exc:
            refuse("--nats-ca", str(exc))
    return lease_ttl
