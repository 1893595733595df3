"""The rebeam CLI presents the current kubeconfig user's bearer token to a cluster's NATS
when no other credential is given (docs/kubernetes.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


def test_the_kubeconfig_users_token_is_found(tmp_path: Path) -> None:
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
    # A process of its own, as the CLI is: the kubernetes client reads KUBECONFIG on import.
    found = subprocess.run(
        [sys.executable, "-c", "from rebeam.cli._common import kubeconfig_token as t; print(t())"],
        env={**os.environ, "KUBECONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert found.stdout.strip() == "the-token"
