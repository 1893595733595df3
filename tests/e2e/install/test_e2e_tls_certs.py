"""The NATS certificates the chart makes without cert-manager are kept across upgrades and
renewed when due (docs/security.md, "TLS"): the chart reads the Secrets of the previous release
back with `lookup`, which needs an API server. `helm template --dry-run=server` renders as
`helm upgrade` would, against the Secrets that are there; the test writes them as a release
would have.
"""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from infra.cluster import Cluster
from tests.chart.chart_helpers import KUBE_VERSION, offline_chart

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
CA, TLS = "rb-rebeam-nats-ca", "rebeam-nats-tls"


def _render(cluster: Cluster, chart: Path, namespace: str, *sets: str) -> dict[str, Json]:
    """The certificate Secrets an upgrade of release ``rb`` would write now."""
    args = ["template", "rb", str(chart), "-n", namespace, "--dry-run=server"]
    args += ["--kube-version", KUBE_VERSION]  # helm template does not ask the server for it
    for value in ("tls.certManager.enabled=false", *sets):
        args += ["--set", value]
    result = cluster.helm(*args, check=False)
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] == "Secret"]
    return {o["metadata"]["name"]: o for o in objects}


def _store(cluster: Cluster, namespace: str, secrets: dict[str, Json], tmp_path: Path) -> None:
    """What `helm install`/`upgrade` does with them."""
    for name, secret in secrets.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(secret))
        cluster.kubectl("apply", "-n", namespace, "-f", str(path))


def _cert(secret: Json, key: str = "tls.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def test_certificates_are_kept_and_renewed_by_upgrades(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    chart = offline_chart(tmp_path)
    first = _render(cluster, chart, namespace)
    assert set(first) == {CA, TLS}
    _store(cluster, namespace, first, tmp_path)

    # An upgrade keeps both, byte for byte.
    again = _render(cluster, chart, namespace)
    assert again[CA]["data"] == first[CA]["data"]
    assert again[TLS]["data"] == first[TLS]["data"]

    # tls.rotate: a new server certificate, from the same CA (clients keep trusting it).
    rotated = _render(cluster, chart, namespace, "tls.rotate=true")
    assert rotated[CA]["data"] == first[CA]["data"]
    assert rotated[TLS]["data"]["tls.crt"] != first[TLS]["data"]["tls.crt"]
    assert rotated[TLS]["data"]["ca.crt"] == first[TLS]["data"]["ca.crt"]
    _cert(rotated[TLS]).verify_directly_issued_by(_cert(first[CA]))

    # A server certificate that expires within renewBeforeDays is renewed by the next upgrade.
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
    expiring = json.loads(json.dumps(first[TLS]))
    expiring["metadata"]["annotations"]["rebeam.io/not-after"] = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    _store(cluster, namespace, {TLS: expiring}, tmp_path)
    renewed = _render(cluster, chart, namespace)
    assert renewed[TLS]["data"]["tls.crt"] != first[TLS]["data"]["tls.crt"]
    assert renewed[CA]["data"] == first[CA]["data"]
    _store(cluster, namespace, renewed, tmp_path)
    assert _render(cluster, chart, namespace)[TLS]["data"] == renewed[TLS]["data"]  # kept again

    # New names: a new server certificate that has them.
    named = _render(cluster, chart, namespace, "tls.extraDNSNames={nats.example.com}")
    names = _cert(named[TLS]).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "nats.example.com" in names.value.get_values_for_type(x509.DNSName)
    assert named[CA]["data"] == first[CA]["data"]

    # tls.rotateCA: a new CA, and a server certificate it signs.
    new_ca = _render(cluster, chart, namespace, "tls.rotateCA=true")
    assert new_ca[CA]["data"]["tls.crt"] != first[CA]["data"]["tls.crt"]
    assert new_ca[TLS]["data"]["ca.crt"] == new_ca[CA]["data"]["tls.crt"]
    _cert(new_ca[TLS]).verify_directly_issued_by(_cert(new_ca[CA]))
