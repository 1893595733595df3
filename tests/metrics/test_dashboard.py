"""The Grafana dashboard (charts/rebeam/dashboards/rebeam.json) queries only series that
exist: every rebeam_* name it references, but the operator's, is in a real scrape of
``rebeam run --metrics`` (the operator's are checked against a real operator in
tests/e2e/operator/test_operator_metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.local.conftest import COUNTER, StartRun, supervisor
from tests.local.conftest import rebeam_run as rebeam_run  # the fixture, shared
from tests.metrics.conftest import metrics_url, names, value
from tests.metrics.test_run_metrics import scrape_until

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "rebeam" / "dashboards" / "rebeam.json"


def referenced() -> set[str]:
    """Every metric name in the dashboard's queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {name for expr in exprs for name in re.findall(r"\brebeam_[a-z_]+\b", expr)}


def test_every_metric_the_dashboard_queries_is_scraped(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    (tmp_path / "counting.py").write_text(COUNTER)
    run = rebeam_run(
        supervisor("app", "    - {name: counter, actor: {module: 'counting:Counter'}}\n"),
        "--metrics",
        "0",
    )
    url = metrics_url(run.process)
    seen = scrape_until(url, lambda s: value(s, "rebeam_scrape_answered") == 1, "the actor")
    wanted = {n for n in referenced() if not n.startswith("rebeam_operator_")}
    assert len(wanted) > 10, wanted
    assert wanted - names(seen) == set()
