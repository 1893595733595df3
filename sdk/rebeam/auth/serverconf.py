"""The configuration of a nats-server that lets nobody in without a rebeam credential.

Every client connection is sent to the issuer (auth callout). Three kinds of account:

* ``AUTH`` holds only the issuer's callout connection;
* ``SYS`` is the server's system account; the issuer's second connection lives there, to
  close connections whose credential was revoked;
* the accounts of rebeam namespaces, with JetStream: one ``ns_<namespace>`` account per
  namespace by default (actors of different namespaces cannot see each other's subjects,
  streams or buckets at all), or one shared account for every namespace
  (``shared_account``). A server whose accounts are fixed before anyone knows the
  namespaces, as on a cluster, shares one; namespaces are then kept apart by the
  permissions of each grant (docs/security.md, "Kubernetes identity").

:func:`render` writes a whole server's configuration (``rebeam run``'s embedded server, the
tests'); :func:`auth_include` only the accounts and the callout, for a server configured
elsewhere (the NATS Helm chart includes it).

The monitoring port is off unless asked for (tests read subscription counts from it): it
would list every connection's subscriptions to anyone who can reach it.

With :class:`TlsFiles` the client port speaks only TLS (:func:`tls_block`): a client that
does not is refused before it can send a credential.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rebeam.auth.issuer import Issuer, IssuerSecrets, account_of
from rebeam.pids import validate_namespace

__all__ = ["SHARED_ACCOUNT", "TlsFiles", "auth_include", "render", "tls_block"]

SHARED_ACCOUNT = "REBEAM"  # the account of every namespace on a cluster
_ACCOUNT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

# Seconds a client has for its TLS handshake (nats-server's default is 2): a busy machine
# must not turn a slow handshake into a refused connection.
TLS_TIMEOUT = 5


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate and key (PEM files), and the CA that signed the certificate:
    what its clients must trust (``tls_ca=``, ``REBEAM_NATS_CA``)."""

    cert: Path
    key: Path
    ca: Path


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid quoted string in NATS's config syntax


def render(
    *,
    port: int,
    ports_dir: Path,
    store_dir: Path | None,
    namespaces: Iterable[str],
    issuer_secrets: IssuerSecrets,
    monitoring: bool = False,
    shared_account: str | None = None,
    tls: TlsFiles | None = None,
) -> str:
    lines = [
        f"listen: {_q(f'127.0.0.1:{port}')}",
        f"ports_file_dir: {_q(str(ports_dir))}",
    ]
    if tls is not None:
        lines.append(tls_block(tls))
    if monitoring:
        lines.append(f"http: {_q('127.0.0.1:-1')}")
    if store_dir is not None:
        lines.append(f"jetstream {{ store_dir: {_q(str(store_dir))} }}")
    include = auth_include(
        issuer_secrets,
        namespaces=namespaces,
        shared_account=shared_account,
        jetstream=store_dir is not None,
    )
    return "\n".join(lines) + "\n" + include


def auth_include(
    issuer_secrets: IssuerSecrets,
    *,
    namespaces: Iterable[str] = (),
    shared_account: str | None = None,
    jetstream: bool = True,
) -> str:
    """The accounts, the system account and the auth callout: what makes a server require
    rebeam credentials. It holds the issuer's passwords: keep it secret."""
    if shared_account is not None:
        if not _ACCOUNT_NAME.fullmatch(shared_account) or shared_account in ("AUTH", "SYS"):
            raise ValueError(
                f"invalid account name {shared_account!r}: a letter, then letters, digits, "
                "'_' or '-' (at most 64; not AUTH or SYS)"
            )
        accounts = [shared_account]
    else:
        accounts = [account_of(ns) for ns in sorted({validate_namespace(n) for n in namespaces})]
    if not accounts:
        raise ValueError("a secured server needs at least one namespace, or a shared account")
    auth = f"{{ user: {_q(Issuer.AUTH_USER)}, password: {_q(issuer_secrets.auth_password)} }}"
    system = f"{{ user: {_q(Issuer.SYSTEM_USER)}, password: {_q(issuer_secrets.system_password)} }}"
    js = " jetstream: enabled " if jetstream else " "
    lines = ["accounts {"]
    lines.append(f"  AUTH {{ users: [ {auth} ] }}")
    lines.append(f"  SYS {{ users: [ {system} ] }}")
    lines += [f"  {account} {{{js}}}" for account in accounts]
    lines.append("}")
    lines.append("system_account: SYS")
    lines += [
        "authorization {",
        # Seconds a client has to be let in: the issuer may ask an API server first.
        "  timeout: 5",
        "  auth_callout {",
        f"    issuer: {_q(issuer_secrets.account.public_key)}",
        f"    auth_users: [ {_q(Issuer.AUTH_USER)}, {_q(Issuer.SYSTEM_USER)} ]",
        "    account: AUTH",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def tls_block(files: TlsFiles) -> str:
    """The client port's ``tls {}``: TLS required, no client certificate asked for (a
    credential says who a client is)."""
    cert, key = _q(str(files.cert)), _q(str(files.key))
    return f"tls {{ cert_file: {cert}, key_file: {key}, timeout: {TLS_TIMEOUT} }}"
