"""`rebeam validate`, as a user runs it: a real process, its exit code and its output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def rebeam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # The console script users run, installed beside this interpreter.
        [str(Path(sys.executable).parent / "rebeam"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_valid_examples_exit_zero_with_a_summary() -> None:
    result = rebeam("validate", *map(str, sorted((ROOT / "examples").glob("*.yaml"))))
    assert result.returncode == 0, result.stderr
    assert "Supervisor/pipeline: ok (rest_for_one, 3 actors)" in result.stdout


def test_problems_go_to_stderr_one_per_line_and_exit_one(tmp_path: Path) -> None:
    bad = tmp_path / "app.yaml"
    bad.write_text(
        "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: s}\n"
        "spec:\n  strategy: sideways\n  children:\n    - {name: a, restart: never}\n"
    )
    result = rebeam("validate", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{bad}:5: Supervisor/s: spec.strategy: must be one of one_for_one, one_for_all, "
        "rest_for_one, simple_one_for_one",
        f"{bad}:7: Supervisor/s: spec.children[0].restart: must be one of permanent, "
        "transient, temporary",
        "2 problems found",
    ]
    assert "Traceback" not in result.stderr
