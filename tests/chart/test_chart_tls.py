"""TLS of the chart's NATS (docs/security.md, "TLS"): the certificates the chart makes, or
asks cert-manager for; the CA given to the operator and `helm test`; a tls:// URL; refusals of
values that disagree with the NATS chart's. The chart's certificate is then served by real
nats-servers: to the SDK, and between two servers' routes (mutual TLS, as the NATS chart
configures them).

`helm template` cannot look up the Secrets of a previous release, so the path that keeps the
certificates across upgrades is tested against an API server (tests/e2e/install)."""

from __future__ import annotations

import base64
import datetime
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from rebeam._nats_fixes import connect as nats_connect
from rebeam.natsd import NatsServer, ServerOptions, TlsFiles, find_nats_server
from tests.chart.chart_helpers import CHART, KUBE_VERSION, by_kind, helm, render

Json = dict[str, Any]
CERT_MANAGER = ("cert-manager.io/v1",)
SECRET = "rebeam-nats-tls"


def _secrets(objects: list[Json]) -> dict[str, Json]:
    return {o["metadata"]["name"]: o for o in by_kind(objects, "Secret")}


def _pem(secret: Json, key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


def _operator(objects: list[Json]) -> Json:
    (deployment,) = by_kind(objects, "Deployment")
    return dict(deployment["spec"]["template"]["spec"])


def _env(container: Json) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def _template(chart: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``helm template`` that may fail: its result."""
    command = ["template", "rb", str(chart), "-n", "ops", "--kube-version", KUBE_VERSION]
    return helm(*command, *args, home=home, check=False)


def _ca_volume(pod: Json) -> Json:
    (volume,) = [v for v in pod["volumes"] if v["name"] == "nats-ca"]
    return dict(volume)


def test_the_chart_makes_a_ca_and_a_server_certificate(chart: Path, helm_home: Path) -> None:
    objects = render(chart, helm_home, namespace="ops")
    secrets = _secrets(objects)
    assert set(secrets) == {"rb-rebeam-nats-ca", SECRET}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["nats"]["config"]["nats"]["tls"]["secretName"] == SECRET  # what NATS mounts
    ca_secret, tls_secret = secrets["rb-rebeam-nats-ca"], secrets[SECRET]
    assert tls_secret["type"] == "kubernetes.io/tls"
    assert _pem(tls_secret, "ca.crt") == _pem(ca_secret, "tls.crt")
    ca = x509.load_pem_x509_certificate(_pem(ca_secret, "tls.crt"))
    server = x509.load_pem_x509_certificate(_pem(tls_secret, "tls.crt"))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Signed by the CA.
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert server.signature_hash_algorithm is not None
    public.verify(
        server.signature,
        server.tbs_certificate_bytes,
        padding.PKCS1v15(),
        server.signature_hash_algorithm,
    )
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(names.get_values_for_type(x509.DNSName))
    assert {"rb-nats", "rb-nats.ops.svc", "rb-nats.ops.svc.cluster.local", "localhost"} <= dns
    assert "*.rb-nats-headless" in dns  # the routes connect to rb-nats-0.rb-nats-headless
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    # Its expiry, where the next upgrade reads it.
    days = (server.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).days
    assert 363 <= days <= 365
    stated = tls_secret["metadata"]["annotations"]["rebeam.io/not-after"]
    recorded = datetime.datetime.fromisoformat(stated.replace("Z", "+00:00"))
    assert abs((recorded - server.not_valid_after_utc).total_seconds()) < 120
    assert tls_secret["metadata"]["annotations"]["rebeam.io/names"]


def test_clients_get_the_ca_and_a_tls_url(chart: Path, helm_home: Path) -> None:
    objects = render(chart, helm_home, namespace="ops")
    pod = _operator(objects)
    (container,) = pod["containers"]
    env = _env(container)
    assert env["REBEAM_NATS_URL"] == "tls://rb-nats.ops.svc:4222"
    assert env["REBEAM_NATS_CA"] == "/etc/rebeam/nats-ca/ca.crt"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "nats-ca")
    assert mount == {"name": "nats-ca", "mountPath": "/etc/rebeam/nats-ca", "readOnly": True}
    # Only the CA certificate of the Secret: never the server's key.
    assert _ca_volume(pod)["secret"] == {
        "secretName": SECRET,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    (test_pod,) = [
        o for o in by_kind(objects, "Pod") if "helm.sh/hook" in o["metadata"]["annotations"]
    ]
    (tester,) = test_pod["spec"]["containers"]
    assert _env(tester)["REBEAM_NATS_CA"] == "/etc/rebeam/nats-ca/ca.crt"
    assert _ca_volume(test_pod["spec"])["secret"]["secretName"] == SECRET
    assert "rebeam._nats_fixes import connect" in tester["args"][1]  # TLS as the operator


def test_cert_manager_makes_them_when_its_api_is_served(chart: Path, helm_home: Path) -> None:
    objects = render(chart, helm_home, namespace="ops", api_versions=CERT_MANAGER)
    assert not _secrets(objects)  # cert-manager writes them
    issuers = {o["metadata"]["name"]: o["spec"] for o in by_kind(objects, "Issuer")}
    assert issuers == {
        "rb-rebeam-nats-selfsigned": {"selfSigned": {}},
        "rb-rebeam-nats-ca": {"ca": {"secretName": "rb-rebeam-nats-ca"}},
    }
    certificates = {o["metadata"]["name"]: o["spec"] for o in by_kind(objects, "Certificate")}
    ca, server = certificates["rb-rebeam-nats-ca"], certificates["rb-rebeam-nats"]
    assert ca["isCA"] is True
    assert ca["issuerRef"]["name"] == "rb-rebeam-nats-selfsigned"
    assert ca["duration"] == f"{3650 * 24}h"
    assert ca["privateKey"]["rotationPolicy"] == "Never"  # a renewal keeps clients trusting
    assert server["secretName"] == SECRET
    assert server["issuerRef"] == {
        "name": "rb-rebeam-nats-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert server["duration"] == f"{365 * 24}h"
    assert server["renewBefore"] == f"{30 * 24}h"  # cert-manager rotates
    assert server["privateKey"]["rotationPolicy"] == "Always"
    assert {"server auth", "client auth"} <= set(server["usages"])
    assert {"rb-nats.ops.svc", "*.rb-nats-headless", "localhost"} <= set(server["dnsNames"])
    assert server["ipAddresses"] == ["127.0.0.1"]
    # The clients' side does not change: the same Secret's ca.crt.
    assert _ca_volume(_operator(objects))["secret"]["secretName"] == SECRET


@pytest.mark.parametrize(
    ("choice", "api", "cert_manager"),
    [("true", (), True), ("false", CERT_MANAGER, False), ("auto", (), False)],
)
def test_cert_manager_can_be_chosen(
    chart: Path, helm_home: Path, choice: str, api: tuple[str, ...], cert_manager: bool
) -> None:
    objects = render(chart, helm_home, f"tls.certManager.enabled={choice}", api_versions=api)
    assert bool(by_kind(objects, "Certificate")) is cert_manager
    assert bool(_secrets(objects)) is not cert_manager


def test_extra_names_and_validity(chart: Path, helm_home: Path) -> None:
    objects = render(
        chart, helm_home, "tls.extraDNSNames={nats.example.com}", "tls.validityDays=90"
    )
    server = x509.load_pem_x509_certificate(_pem(_secrets(objects)[SECRET], "tls.crt"))
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "nats.example.com" in names.get_values_for_type(x509.DNSName)
    assert (server.not_valid_after_utc - server.not_valid_before_utc).days in (89, 90)


def test_tls_off_takes_the_nats_charts_values_too(
    chart: Path, helm_home: Path, tmp_path: Path
) -> None:
    refused = _template(chart, helm_home, "--set", "tls.enabled=false")
    assert refused.returncode != 0
    assert "nats.config.nats.tls.enabled=false" in refused.stderr
    assert "nats.tlsCA.enabled=false" in refused.stderr
    off = [
        "tls.enabled=false",
        "nats.config.nats.tls.enabled=false",
        "nats.config.cluster.tls.enabled=false",
        "nats.tlsCA.enabled=false",
    ]
    objects = render(chart, helm_home, *off, namespace="ops")
    assert not _secrets(objects)
    pod = _operator(objects)
    (container,) = pod["containers"]
    assert _env(container)["REBEAM_NATS_URL"] == "nats://rb-nats.ops.svc:4222"
    assert "REBEAM_NATS_CA" not in _env(container)
    assert not [v for v in pod["volumes"] if v["name"] == "nats-ca"]
    half = _template(chart, helm_home, "--set", "nats.config.nats.tls.enabled=false")
    assert half.returncode != 0
    assert "tls.enabled=true needs nats.config.nats.tls.enabled=true" in half.stderr


def test_renewal_must_come_before_expiry(chart: Path, helm_home: Path) -> None:
    refused = _template(chart, helm_home, "--set", "tls.renewBeforeDays=400")
    assert refused.returncode != 0
    assert "tls.renewBeforeDays (400) must be less than tls.validityDays (365)" in refused.stderr


def test_an_external_tls_nats_with_its_ca(chart: Path, helm_home: Path, tmp_path: Path) -> None:
    from tests.tlsfiles import make_ca

    ca, _ = make_ca(tmp_path)
    values = tmp_path / "values.yaml"
    external = {"enabled": False}
    values.write_text(
        yaml.safe_dump(
            {
                "nats": external,
                "natsUrl": "tls://nats.shared:4222",
                "tls": {"externalCA": ca.read_text()},
            }
        )
    )
    out = _template(chart, helm_home, "-f", str(values))
    assert out.returncode == 0, out.stderr
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    (config_map,) = by_kind(objects, "ConfigMap")
    assert config_map["data"]["ca.crt"] == ca.read_text()
    assert not _secrets(objects)
    pod = _operator(objects)
    assert _env(pod["containers"][0])["REBEAM_NATS_CA"] == "/etc/rebeam/nats-ca/ca.crt"
    assert _ca_volume(pod)["configMap"]["name"] == "rb-rebeam-nats-ca"
    # Without one, a tls:// NATS is checked against the system's trust store.
    plain = render(chart, helm_home, "nats.enabled=false", "natsUrl=tls://nats.shared:4222")
    assert "REBEAM_NATS_CA" not in _env(_operator(plain)["containers"][0])


# -- the chart's certificate, served by real nats-servers ------------------------------------


@pytest.fixture
def chart_tls(chart: Path, helm_home: Path, tmp_path: Path) -> TlsFiles:
    """The certificate, key and CA of a rendered release, as files."""
    secret = _secrets(render(chart, helm_home, release="rb", namespace="ops"))[SECRET]
    files = {}
    for key in ("tls.crt", "tls.key", "ca.crt"):
        path = tmp_path / key
        path.write_bytes(_pem(secret, key))
        path.chmod(0o600)
        files[key] = path
    return TlsFiles(cert=files["tls.crt"], key=files["tls.key"], ca=files["ca.crt"])


async def test_the_sdk_trusts_the_charts_certificate(chart_tls: TlsFiles, tmp_path: Path) -> None:
    with NatsServer.start(tmp_path / "nats", ServerOptions(secure=False, tls=chart_tls)) as server:
        # By address, and by name as through `kubectl port-forward svc/... 4222`.
        for url in (server.url, server.url.replace("127.0.0.1", "localhost")):
            nc = await nats_connect(url, tls_ca=str(chart_tls.ca), allow_reconnect=False)
            await nc.close()


def _start(config: Path) -> subprocess.Popen[bytes]:
    with open(config.with_suffix(".log"), "wb") as log:
        return subprocess.Popen(
            [find_nats_server(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )


def _ports(ports: Path, proc: subprocess.Popen[bytes], deadline: float) -> Json:
    path = ports / f"nats-server_{proc.pid}.ports"
    while time.monotonic() < deadline:
        assert proc.poll() is None, "nats-server exited at start"
        if path.exists():
            try:
                return dict(json.loads(path.read_text()))
            except ValueError:
                pass  # being written
        time.sleep(0.02)
    raise AssertionError("nats-server did not report its ports")


@pytest.fixture
def two_servers(chart_tls: TlsFiles, tmp_path: Path) -> Iterator[list[Json]]:
    """Two nats-servers whose cluster block is what the NATS chart renders for this
    release's values: route TLS with the chart's certificate, ca_file from tlsCA. The second
    one's route names the first as ``localhost`` (the real ones use the headless Service)."""
    ports = tmp_path / "ports"
    ports.mkdir()
    tls = (
        f'tls {{ cert_file: "{chart_tls.cert}", key_file: "{chart_tls.key}", '
        f'ca_file: "{chart_tls.ca}", timeout: 5 }}'
    )
    procs: list[subprocess.Popen[bytes]] = []
    found: list[Json] = []
    deadline = time.monotonic() + 15
    try:
        for i in range(2):
            routes = (
                f'routes: ["tls://localhost:{found[0]["cluster"][0].rsplit(":", 1)[1]}"]'
                if found
                else ""
            )
            config = tmp_path / f"s{i}.conf"
            config.write_text(
                f'server_name: s{i}\nlisten: "127.0.0.1:-1"\nhttp: "127.0.0.1:-1"\n'
                f'ports_file_dir: "{ports}"\n'
                f'cluster {{ name: c, listen: "127.0.0.1:-1", {tls}, {routes} }}\n'
            )
            procs.append(_start(config))
            found.append(_ports(ports, procs[-1], deadline))
        yield found
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_routes_connect_with_the_charts_certificate(two_servers: list[Json]) -> None:
    """Route TLS is mutual: each server presents the certificate as a client too, which
    needs its client-auth usage and the CA as ca_file."""
    deadline = time.monotonic() + 20
    while True:
        counts = []
        for ports in two_servers:
            with urllib.request.urlopen(f"{ports['monitoring'][0]}/routez", timeout=5) as r:
                counts.append(json.load(r)["num_routes"])
        if all(counts):
            return
        assert time.monotonic() < deadline, f"routes did not connect: {counts}"
        time.sleep(0.1)
