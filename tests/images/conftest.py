"""The image tier: the images of images/ as ``make images`` built them, run with the chart's
and the operator's security settings (containers.py); a table of their sizes at the end.

Images that were not built are a failure, never a skip: run ``make images`` first."""

from __future__ import annotations

import pytest
from tools.images import Engine

from tests.images.containers import built_images
from tests.images.report import print_table


@pytest.fixture(scope="session")
def images() -> Engine:
    return built_images()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    print_table(terminalreporter)
