"""Helm against charts/rebeam, with the helm binary that ``testinfra/build.sh`` builds.

helm 3.22 refuses to ``template`` or ``install`` a chart whose Chart.yaml declares a
dependency that is not in its ``charts/`` directory, even when the dependency's condition is
false (``helm lint`` only warns). The NATS chart cannot be fetched on this machine, so tests
render :func:`offline_chart`: a copy of the chart whose only difference is that the
``dependencies:`` entry is gone (checked here, so nothing else can differ). With network,
``helm dependency build charts/rebeam`` makes the chart itself installable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CHART",
    "KUBE_VERSION",
    "REPO",
    "helm",
    "helm_binary",
    "offline_chart",
    "render",
]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rebeam"
# `helm template` has no cluster to ask; a helm built from source defaults to v1.20, which the
# chart's kubeVersion (>=1.25, for the CRDs' CEL rules) refuses.
KUBE_VERSION = "1.31.0"

Json = dict[str, Any]


def helm_binary() -> Path:
    """The built helm: missing is a failure (``make controlplane`` builds it), never a skip."""
    base = Path(os.environ.get("REBEAM_CONTROLPLANE_BIN") or REPO / ".cache" / "controlplane")
    path = base / "helm"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(f"helm not found at {path}: run `make controlplane`")
    return path


def helm(
    *args: str, home: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run helm with its cache, config and data under ``home`` (no user state)."""
    full_env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        **(env or {}),
    }
    result = subprocess.run(
        [str(helm_binary()), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        )
    return result


def offline_chart(dest: Path) -> Path:
    """A copy of charts/rebeam without its ``dependencies:`` entry (nothing else differs)."""
    target = dest / "rebeam"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(CHART, target, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert [d["name"] for d in meta.get("dependencies") or []] == ["nats"]
    del meta["dependencies"]
    (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return target


def render(
    chart: Path,
    home: Path,
    *sets: str,
    release: str = "rb",
    namespace: str = "rebeam-system",
    api_versions: tuple[str, ...] = (),
) -> list[Json]:
    """``helm template`` with ``--set`` values, as if the cluster served ``api_versions``
    too (e.g. cert-manager's); the rendered objects (hooks included)."""
    args = ["template", release, str(chart), "--namespace", namespace]
    args += ["--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    for api in api_versions:
        args += ["--api-versions", api]
    out = helm(*args, home=home).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: list[Json], kind: str) -> list[Json]:
    return [o for o in objects if o["kind"] == kind]
