"""``rebeam nats-secrets``: the two Secrets a cluster's secured NATS needs, as YAML.

* ``rebeam-nats-issuer`` (``issuer.json``): the issuer's account key and passwords, mounted
  into the operator (its ``--issuer-secrets``);
* ``rebeam-nats-auth`` (``auth.conf``): the matching accounts and auth callout of the NATS
  server, which the chart's NATS includes (include it in your own NATS's configuration).

Fresh secrets by default; ``--issuer-file`` makes the Secrets of an existing ``issuer.json``
(a server started by ``rebeam.natsd``, say). Print them into ``kubectl apply -f -``; they
are secrets: do not keep the output anywhere else (docs/kubernetes.md, "Install with Helm").
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from rebeam.auth.issuer import IssuerSecrets
from rebeam.auth.serverconf import auth_include
from rebeam.natsd import issuer_secrets_json, read_issuer_secrets
from rebeam.pids import validate_namespace


def run(args: argparse.Namespace) -> int:
    try:
        validate_namespace(args.namespace)
        issuer = (
            read_issuer_secrets(args.issuer_file) if args.issuer_file else IssuerSecrets.create()
        )
        server = auth_include(issuer, shared_account=args.account)
    except ValueError as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        return 2
    documents = [
        secret(args.issuer_secret, args.namespace, "issuer.json", issuer_secrets_json(issuer)),
        secret(args.server_secret, args.namespace, "auth.conf", server),
    ]
    sys.stdout.write(yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False))
    return 0


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks: auth.conf stays readable."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def secret(name: str, namespace: str, key: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "rebeam"},
        },
        "type": "Opaque",
        "stringData": {key: value},
    }
