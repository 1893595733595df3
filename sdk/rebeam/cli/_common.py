"""What several subcommands share: finding the running instance, connecting to its NATS,
printing errors."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats

from rebeam import _subjects
from rebeam._limits import MAX_CREDENTIAL_BYTES, TooLarge, read_bounded
from rebeam._loop import within
from rebeam._nats_fixes import connect as nats_connect
from rebeam.errors import TlsError
from rebeam.local.instances import InstanceFile, NoInstance
from rebeam.pids import Pid

__all__ = [
    "CONNECT_TIMEOUT",
    "FAILURES",
    "Credential",
    "Unreachable",
    "admin_connect",
    "client_node",
    "connect",
    "credentials",
    "instance",
    "nats_url",
    "read_credentials_file",
    "refreshed",
    "unreachable",
]

CONNECT_TIMEOUT = 3.0
"""A command that cannot reach NATS within this many seconds says so and ends."""


class Unreachable(RuntimeError):
    """NATS did not answer; the message names the URL and what happened."""


FAILURES = (NoInstance, Unreachable, OSError, nats.errors.Error)
"""What a command that talks to a running tree reports in one line (``rebeam: ...``)."""


def nats_url(args: argparse.Namespace) -> str:
    """The NATS URL to talk to; raises NoInstance with a clear message when there is none."""
    if args.nats:
        return str(args.nats)
    return str(instance(args)["nats_url"])


def instance(args: argparse.Namespace) -> dict[str, Any]:
    """The instance file of the `rebeam run` to talk to (--run, else the one started last).
    When the namespace has several runs and none was picked, says which one on stderr."""
    chosen: dict[str, Any] | None = getattr(args, "chosen_instance", None)
    if chosen is None:
        picked = getattr(args, "run_id", None)
        chosen = InstanceFile.read(args.namespace, picked)
        others = len(InstanceFile.runs(args.namespace)) - 1
        if others > 0 and not picked:
            print(
                f"rebeam: namespace {args.namespace!r} has {others + 1} runs; talking to run "
                f"{chosen['run_id']} (NATS {chosen['nats_url']}), the one started last; pick "
                f"another with --run ID (`rebeam runs -n {args.namespace}` lists them)",
                file=sys.stderr,
            )
        args.chosen_instance = chosen
    return chosen


def unreachable(url: str, exc: BaseException) -> Unreachable:
    """One line for a connection that failed: the URL, and why in words."""
    if isinstance(exc, TlsError):
        return Unreachable(str(exc))  # it names the URL and the TLS problem already
    if "authorization violation" in str(exc).lower():
        return Unreachable(
            f"NATS at {url} refused the credential (the owner's is in the instance file of "
            "the rebeam run; see docs/security.md)"
        )
    if isinstance(exc, ConnectionRefusedError):
        why = "connection refused (is the server running?)"
    elif isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        why = f"no answer within {CONNECT_TIMEOUT:g}s"
    elif isinstance(exc, nats.errors.NoServersError):
        why = "no server answered"
    elif isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror.lower()
    else:
        why = str(exc) or type(exc).__name__
    return Unreachable(f"cannot reach NATS at {url}: {why}")


async def connect(url: str, **callbacks: Any) -> Any:
    """A NATS connection for one command, or :class:`Unreachable` within CONNECT_TIMEOUT.

    One attempt and one retry: a command is asked for by a person, who wants an answer, not a
    wait. A command that follows (``rebeam events``) may allow reconnects once connected, by
    setting ``options["allow_reconnect"]`` on the connection."""
    failures: list[BaseException] = []

    async def keep(exc: Exception) -> None:
        """nats-py would log a traceback for every failure; the caller says it in a line."""
        failures.append(exc)

    callbacks.setdefault("error_cb", keep)
    try:
        nc = await within(
            nats_connect(
                url,
                connect_timeout=CONNECT_TIMEOUT / 2,
                allow_reconnect=False,
                # nats-py retries the first connect within the reconnect budget: 1 is one retry.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                **callbacks,
            ),
            CONNECT_TIMEOUT + 0.5,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise unreachable(url, failures[-1] if failures else exc) from None
    nc.options["max_reconnect_attempts"] = -1  # only used once reconnects are allowed
    nc.options["reconnect_time_wait"] = 0.5
    return nc


Credential = str | Callable[[], str] | None
"""A credential as nats-py takes it: fixed, or a function it calls at every (re)connection."""

CREDENTIALS_FILE_LIMIT = MAX_CREDENTIAL_BYTES
"""A credentials file larger than this holds no credential: it is refused, not read."""

STALE_WARNING_INTERVAL = 60.0
"""At most one line a minute says that a credential could not be read again."""


def credentials(args: argparse.Namespace) -> Credential:
    """The credential to connect with (docs/security.md): the owner's, from the instance
    file of the `rebeam run` for the namespace; with --nats, --credentials-file, else
    $REBEAM_CREDENTIALS, else the bearer token of the current kubeconfig user (against a
    cluster, the operator checks it with the API server and asks RBAC what it may do).

    A file's credential and a kubeconfig's token expire, and are replaced where they are
    read from (docs/observability.md, "Against a cluster"): those are read now, so that a
    missing one fails the command by name, and again at every reconnection, so that a
    command that follows (``rebeam observe``, ``rebeam events``) presents the current one
    to a restarted NATS server."""
    if not args.nats:
        found = instance(args).get("credentials")
        return str(found) if found else None
    path = getattr(args, "credentials_file", None)
    if path:
        return refreshed(lambda: read_credentials_file(path), f"the credentials file {path}")
    return os.environ.get("REBEAM_CREDENTIALS") or refreshed(
        kubeconfig_token, "the current kubeconfig user"
    )


def read_credentials_file(path: Path) -> str:
    """The credential in ``path``; OSError naming the file when it cannot be one."""
    try:
        data = read_bounded(path, CREDENTIALS_FILE_LIMIT)
    except TooLarge:
        raise OSError(
            f"the credentials file {path} is larger than {CREDENTIALS_FILE_LIMIT // 1024} KiB: "
            "no credential is that long"
        ) from None
    except OSError as exc:
        raise OSError(f"cannot read the credentials file {path}: {exc.strerror}") from None
    try:
        return data.decode().strip()
    except UnicodeDecodeError:
        raise OSError(f"the credentials file {path} is not UTF-8 text") from None


def refreshed(read: Callable[[], str | None], source: str) -> Credential:
    """``read()`` now (None: no credential), then a function that reads it again at each
    call. A read that fails or finds nothing keeps the last credential read: the server says
    whether it is still good, and stderr says, at most once a minute, why it was kept."""
    first = read()
    if not first:
        return None
    last = first
    warned = -STALE_WARNING_INTERVAL

    def current() -> str:
        nonlocal last, warned
        try:
            fresh = read()
            why = f"no credential found in {source}"
        except OSError as exc:
            fresh, why = None, str(exc)  # it names the file
        if fresh:
            last = fresh
        elif time.monotonic() - warned >= STALE_WARNING_INTERVAL:
            warned = time.monotonic()
            print(f"rebeam: {why}; reconnecting with the one read before", file=sys.stderr)
        return last

    return current


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
    # Newer clients keep it under "BearerToken", older ones under "authorization".
    keys = configuration.api_key or {}
    header = str(keys.get("BearerToken") or keys.get("authorization") or "")
    token = header.removeprefix("Bearer ").strip()
    return token or None


def nats_ca(args: argparse.Namespace) -> str | None:
    """The CA file to trust (docs/security.md, "TLS"): --nats-ca, else, without --nats, the
    one the running instance was given; None leaves it to $REBEAM_NATS_CA."""
    if getattr(args, "nats_ca", None):
        return str(args.nats_ca)
    if args.nats:
        return None
    found = instance(args).get("nats_ca")
    return str(found) if found else None


async def client_node(args: argparse.Namespace) -> Any:
    """A rebeam node for one command (no lease: a command is no actor), or :class:`Unreachable`
    naming why within CONNECT_TIMEOUT."""
    from rebeam._api import connect as connect_node  # the node, above this module's layer

    url = nats_url(args)
    try:
        return await within(
            connect_node(
                url,
                namespace=args.namespace,
                lease=False,
                connect_deadline=1.0,
                credentials=credentials(args),
                tls_ca=nats_ca(args),
            ),
            CONNECT_TIMEOUT,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        # The node's connect only knows that it failed; one plain attempt says why.
        probe = await connect(url)  # raises Unreachable with the reason
        await probe.close()
        raise unreachable(url, exc) from None


async def admin_connect(args: argparse.Namespace, **callbacks: Any) -> tuple[Any, Pid]:
    """:func:`connect` as the owner, under a fresh client pid of the namespace (what the
    issuer binds an owner's connection to), and that pid."""
    pid = Pid.for_client(args.namespace)
    nc = await connect(
        nats_url(args),
        name=str(pid),
        token=credentials(args),
        inbox_prefix=f"{_subjects.inbox_prefix(pid)}.{secrets.token_hex(8)}",
        tls_ca=nats_ca(args),
        **callbacks,
    )
    return nc, pid
