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
===========================  ======================================  ========================

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
}


def parse(argv: list[str] | None = None) -> Settings:
    p = _parser()
    args = p.parse_args(argv)
    lease_ttl = _check(p, args)
    ports = {flag: _port(p, args, flag) for flag in ("--metrics-port", "--actor-metrics-port")}
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
    )


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

    def option(
        flag: str, help: str, default: str | None = None, metavar: str | None = None
    ) -> None:
        p.add_argument(flag, default=_env(_ENV[flag], default), metavar=metavar, help=help)

    option(
        "--nats-url",
        "NATS for lifecycle events, names and leases; given to pods (REBEAM_NATS_URL)",
        Settings.nats_url,
    )
    option(
        "--log-format",
        "json (one object a line) or text (REBEAM_OPERATOR_LOG_FORMAT)",
        Settings.log_format,
    )
    option(
        "--log-level", "DEBUG, INFO, WARNING, ... (REBEAM_OPERATOR_LOG_LEVEL)", Settings.log_level
    )
    option("--image", "image of actors that name none (REBEAM_OPERATOR_IMAGE)", DEFAULT_IMAGE)
    option(
        "--exit-record",
        "REBEAM_EXIT_RECORD of pods: the termination-message path (REBEAM_OPERATOR_EXIT_RECORD)",
        TERMINATION_MESSAGE_PATH,
    )
    option(
        "--lease-ttl",
        "REBEAM_LEASE_TTL of pods: how soon a runtime on a lost node counts as dead",
    )
    option(
        "--issuer-secrets",
        "the NATS server's issuer.json: the operator issues and checks every NATS "
        "credential (REBEAM_ISSUER_SECRETS; without it, NATS must let anyone in)",
        metavar="FILE",
    )
    option(
        "--nats-account",
        "the NATS account of every namespace, as the server's configuration names it "
        "(REBEAM_NATS_ACCOUNT)",
        Settings.nats_account,
    )
    option(
        "--nats-ca",
        "the CA certificates (PEM) of a tls:// NATS, trusted by the operator and given to "
        "actor pods (REBEAM_NATS_CA)",
        metavar="FILE",
    )
    option(
        "--metrics-port",
        "serve /metrics, /healthz and /readyz on this port (REBEAM_OPERATOR_METRICS_PORT)",
        metavar="PORT",
    )
    option(
        "--actor-metrics-port",
        "actor pods serve their metrics on this port, annotated for Prometheus "
        "(REBEAM_OPERATOR_ACTOR_METRICS_PORT)",
        metavar="PORT",
    )
    return p


def _port(p: argparse.ArgumentParser, args: argparse.Namespace, flag: str) -> int | None:
    text = getattr(args, flag.lstrip("-").replace("-", "_"))
    if text is None:
        return None
    if not (str(text).isdigit() and 1 <= int(text) <= 65535):
        p.error(f"{flag} (or {_ENV[flag]}): {text!r}: a port number (1-65535)")
    return int(text)


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
