"""nats_ca.py: actor pods get the CA of a tls:// NATS in their environment
(``REBEAM_NATS_CA_PEM``), read again after a rotation; a CA file the operator cannot use is
refused at start by name, and later keeps the last good one."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from rebeam.pids import Pid
from rebeam_operator import nats_ca
from rebeam_operator.hosts import host_from_body
from rebeam_operator.pods import pod_manifest
from rebeam_operator.settings import Settings, parse
from tests.operator.bodies import supervisor_body
from tests.tlsfiles import make_ca

Json = dict[str, Any]
OWNER: Json = {"apiVersion": "rebeam.io/v1alpha1", "kind": "Actor", "name": "app-a", "uid": "u"}
CHILD: Json = {"name": "a", "actor": {"module": "m:A"}}


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REBEAM_NATS_CA", raising=False)
    monkeypatch.setattr(nats_ca, "_cache", {})
    monkeypatch.setattr(nats_ca, "_logged_at", {})


def _pod_env(settings: Settings) -> dict[str, str]:
    host = host_from_body(supervisor_body({"children": [CHILD]}))
    pid = Pid.for_incarnation("ns", "slot-uid", 1)
    pod = pod_manifest(host, host.spec.children[0], 1, pid, 5.0, OWNER, settings, decided_seq=1)
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def _rewrite(path: Path, text: str) -> None:
    """Replace the file as the kubelet updates a mounted Secret: a new file, a new mtime."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_pods_carry_the_ca_and_follow_a_rotation(tmp_path: Path) -> None:
    first, _ = make_ca(tmp_path / "one", "first")
    second, _ = make_ca(tmp_path / "two", "second")
    mounted = tmp_path / "ca.crt"
    mounted.write_text(first.read_text())
    settings = parse(["--nats-ca", str(mounted)])
    assert settings.nats_ca == str(mounted)
    assert _pod_env(settings)["REBEAM_NATS_CA_PEM"] == first.read_text()
    _rewrite(mounted, second.read_text())  # cert-manager or the chart made a new CA
    assert _pod_env(settings)["REBEAM_NATS_CA_PEM"] == second.read_text()


def test_no_ca_no_variable() -> None:
    assert "REBEAM_NATS_CA_PEM" not in _pod_env(Settings())


def test_a_broken_file_keeps_the_last_good_ca(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, _ = make_ca(tmp_path / "one")
    mounted = tmp_path / "ca.crt"
    mounted.write_text(good.read_text())
    settings = Settings(nats_ca=str(mounted))
    assert _pod_env(settings)["REBEAM_NATS_CA_PEM"] == good.read_text()
    _rewrite(mounted, "garbage\n")
    with caplog.at_level(logging.ERROR, logger="rebeam.operator"):
        for _ in range(3):
            assert _pod_env(settings)["REBEAM_NATS_CA_PEM"] == good.read_text()
    refusals = [r for r in caplog.records if "NATS CA for actor pods" in r.getMessage()]
    assert len(refusals) == 1  # at most once a minute
    assert "no usable PEM certificate" in refusals[0].getMessage()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot read"),
        ("not a certificate\n", "no usable PEM certificate"),
        ("-" * (nats_ca.MAX_PEM + 1), "larger than"),
    ],
)
def test_an_unusable_ca_file_is_refused_at_start(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    content: str | None,
    why: str,
) -> None:
    path = tmp_path / "ca.crt"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("REBEAM_NATS_CA", str(path))
    with pytest.raises(SystemExit) as exited:
        parse([])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--nats-ca (or REBEAM_NATS_CA)" in err
    assert why in err
