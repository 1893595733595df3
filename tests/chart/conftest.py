"""Fixtures of the chart tests: helm's state directory and the offline copy of the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.chart_helpers import helm_binary, offline_chart


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    helm_binary()  # fail early and plainly when helm has not been built
    return tmp_path_factory.mktemp("helm")


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return offline_chart(tmp_path_factory.mktemp("chart"))
