"""Fixtures for the observer: a real ``rebeam run``, a real ``rebeam observe`` against it,
and a real headless Chromium driven by selenium (helpers shared with the cluster's observer
test: tests/observer/browser.py)."""

from __future__ import annotations

from tests.local.conftest import (  # noqa: F401 - fixtures used by this directory's tests
    DEADLINE,
    REBEAM,
    Run,
    StartRun,
    rebeam_run,
)
from tests.observer.browser import (  # noqa: F401 - fixtures, and re-exported for the tests
    Observe,
    browser_fixture,
    launch_observer,
    observers_fixture,
    stop_process,
    wait_for,
)


def start_observer(run: Run, *extra: str) -> Observe:
    """``rebeam observe`` against ``run``; returns once it printed its URL."""
    return launch_observer(["--namespace", run.namespace, *extra], run.env)
