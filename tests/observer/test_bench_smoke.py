"""The observer's benchmark still runs, as a smoke run with a small tree: every row is
printed and nothing fails. No figure is checked (a shared 2-core machine moves them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_the_observer_benchmark_prints_its_rows() -> None:
    # subprocess.run kills the benchmark by its pid on a timeout; the processes it starts
    # die with it (PR_SET_PDEATHSIG), Chromium with its driver.
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_observer", "--children", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "first paint, 30 children" in out.stdout
    assert "observer RSS" in out.stdout
