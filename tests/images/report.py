"""The image tier's report: the size of each image, printed as a table at the end of the
session (by the conftest.py of tests/images and of tests/e2e/images, once), so that a change
that bloats an image shows in every test run."""

from __future__ import annotations

import pytest

SIZES: dict[str, int] = {}  # image reference -> bytes, as the engine reports it
_printed: list[bool] = []


def table() -> list[str]:
    rows = [f"{'image':<36} {'size (MB)':>10}"]
    rows += [f"{name:<36} {SIZES[name] / 1e6:>10.1f}" for name in sorted(SIZES)]
    return rows


def print_table(terminalreporter: pytest.TerminalReporter) -> None:
    if not SIZES or _printed:
        return
    _printed.append(True)
    terminalreporter.section("images: sizes")
    for row in table():
        terminalreporter.write_line(row)
