"""The rebeam CLI presents the current kubeconfig user's bearer token to a cluster's NATS
when no other credential is given (docs/kubernetes.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rebeam.cli._common import kubeconfig_token


def test_the_kubeconfig_users_token_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "the-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert kubeconfig_token() == "the-token"
