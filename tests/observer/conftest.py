"""Fixtures for the observer: a real ``rebeam run``, a real ``rebeam observe`` against it,
and a real headless Chromium driven by selenium (helpers shared with the cluster's observer
test: tests/observer/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.conftest import (  # noqa: F401 - fixtures used by this directory's tests
    DEADLINE,
    REBEAM,
    Run,
    StartRun,
    rebeam_run,
)
from tests.observer.browser import (  # noqa: F401 - re-exported for this directory's tests
    Observe,
    launch_observer,
    open_browser,
    stop_observers,
    stop_process,
    wait_for,
)


def start_observer(run: Run, *extra: str) -> Observe:
    """``rebeam observe`` against ``run``; returns once it printed its URL."""
    return launch_observer(["--namespace", run.namespace, *extra], run.env)


@pytest.fixture
def observe() -> Iterator[list[Observe]]:
    """Observers started by the test (append to the list); each stopped by its pid."""
    started: list[Observe] = []
    yield started
    stop_observers(started)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """A headless Chromium under chromedriver, stopped with everything it started."""
    with open_browser(tmp_path) as driver:
        yield driver
