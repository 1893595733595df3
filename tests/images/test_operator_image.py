"""The operator image runs the chart's command under the chart's security settings (the
Deployment as `helm template` renders it). Reaching an API server with a ServiceAccount
token: tests/e2e/images."""

from __future__ import annotations

from pathlib import Path

from tools.images import Engine

from tests.chart.chart_helpers import by_kind, offline_chart, render
from tests.images.containers import pod_run_args, run_once

Json = dict[str, object]


def test_the_operator_command_runs_as_the_chart_runs_it(images: Engine, tmp_path: Path) -> None:
    chart = offline_chart(tmp_path / "chart")
    (deployment,) = by_kind(render(chart, tmp_path / "helm"), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    # Its Secrets (issuer, NATS CA) are not read by --help: empty directories stand for them.
    empty = tmp_path / "empty"
    empty.mkdir()
    files = {v["name"]: empty for v in spec["volumes"] if "emptyDir" not in v}
    args = pod_run_args(spec, container, files)
    result = run_once(images, images.name("operator"), args, [*container["command"], "--help"])
    assert result.returncode == 0, result.stderr
    assert "usage: rebeam-operator" in result.stdout
    assert "Traceback" not in result.stderr
