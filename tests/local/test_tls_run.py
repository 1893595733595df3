"""``rebeam run --nats tls://... --nats-ca FILE``: a run on a NATS that speaks only TLS. The
run's own connection, its issuer, its children and the CLI of another terminal all trust the
CA it was given (docs/security.md, "TLS")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rebeam.natsd import NatsServer, ServerOptions, TlsFiles
from tests.local.conftest import COUNTER, StartRun, supervisor
from tests.tlsfiles import make_tls_files

NAMESPACE = "tlsrun"


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "pki")


@pytest.fixture
def tls_server(
    tmp_path: Path, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NatsServer]:
    monkeypatch.delenv("REBEAM_NATS_CA", raising=False)
    monkeypatch.delenv("REBEAM_NATS_CA_PEM", raising=False)
    with NatsServer.start(
        tmp_path / "nats", ServerOptions(namespaces=(NAMESPACE,), tls=tls)
    ) as server:
        yield server


def test_a_run_on_a_tls_nats(
    rebeam_run: StartRun, tmp_path: Path, tls_server: NatsServer, tls: TlsFiles
) -> None:
    (tmp_path / "counting.py").write_text(COUNTER)
    manifest = supervisor(
        "app", "    - {name: counter, actor: {module: 'counting:Counter', register: counter}}\n"
    )
    issuer = str(tls_server.workdir / "issuer.json")
    flags = ("--nats", tls_server.url, "--issuer", issuer)
    run = rebeam_run(manifest, *flags, "--nats-ca", str(tls.ca), namespace=NAMESPACE)
    run.events.wait("started", "counter")
    # Another terminal: the URL, the owner's credential and the CA come from the run.
    called = run.rebeam("call", "counter", '{"add": 2}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"n": 2}


def test_a_run_without_the_ca_says_so(
    rebeam_run: StartRun, tmp_path: Path, tls_server: NatsServer
) -> None:
    issuer = str(tls_server.workdir / "issuer.json")
    manifest = supervisor("app", "    - {name: idle, actor: {command: [sleep, '300']}}\n")
    run = rebeam_run(manifest, "--nats", tls_server.url, "--issuer", issuer, namespace=NAMESPACE)
    assert run.exit_code() == 1
    err = run.stderr()
    assert f"rebeam: NATS at {tls_server.url}: TLS: the server's certificate is not trusted" in err
    assert "Traceback" not in err
