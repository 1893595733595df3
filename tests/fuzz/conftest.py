"""The fuzz tier: hypothesis over every input surface, bounded in time; see report.py."""

from __future__ import annotations

import pytest

from tests.fuzz.report import SURFACES, table


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SURFACES:
        return
    terminalreporter.section("fuzz tier: inputs per surface")
    for row in table():
        terminalreporter.write_line(row)
