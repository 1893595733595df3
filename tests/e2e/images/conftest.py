"""The operator image against the test control plane: the images ``make images`` built (a
missing one fails, never skips); their sizes are reported at the end (tests/images/report.py)."""

from __future__ import annotations

import pytest
from tests.images.containers import built_images
from tests.images.report import print_table
from tools.images import Engine


@pytest.fixture(scope="session")
def images() -> Engine:
    return built_images()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    print_table(terminalreporter)
