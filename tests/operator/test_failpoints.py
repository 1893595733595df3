"""failpoints.py: off unless armed; the armed point kills the process by SIGKILL on its n-th
pass, and only then (a real child process, a real signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rebeam_operator import failpoints


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    failpoints.watch(None)
    failpoints.arm(None)
    yield
    failpoints.watch(None)
    failpoints.arm(None)


def test_off_by_default_and_every_point_is_a_no_op() -> None:
    assert failpoints.armed() == {}
    for point in failpoints.POINTS:
        failpoints.hit(point)  # still alive


def test_arm_parses_names_and_counts() -> None:
    failpoints.arm(" decided , pod-created:3,")
    assert failpoints.armed() == {"decided": 1, "pod-created": 3}
    failpoints.arm("")
    assert failpoints.armed() == {}


@pytest.mark.parametrize(("spec", "says"), [("nope", "unknown failpoint"), ("decided:0", "1")])
def test_a_bad_spec_is_refused(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        failpoints.arm(spec)


def test_an_unknown_name_at_a_call_site_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        failpoints.hit("no-such-point")


def run(spec: str, hits: int) -> subprocess.CompletedProcess[str]:
    code = (
        "from rebeam_operator import failpoints\n"
        f"for i in range({hits}):\n"
        "    print(i, flush=True)\n"
        "    failpoints.hit('pod-created')\n"
        "    failpoints.hit('decided')\n"
    )
    env = {**os.environ, failpoints.ENV: spec}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_nth_pass_kills_the_process_by_sigkill() -> None:
    done = run("pod-created:3", hits=5)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1", "2"]  # died in the third pass, not before
    assert '"failpoint": "pod-created", "hit": 3' in done.stderr


def test_a_point_never_reached_often_enough_does_nothing() -> None:
    done = run("pod-created:9", hits=5)
    assert done.returncode == 0
    assert done.stdout.split() == ["0", "1", "2", "3", "4"]


def test_a_bad_env_stops_the_process_at_import() -> None:
    done = run("pod-creatd", hits=1)
    assert done.returncode == 1
    assert "unknown failpoint 'pod-creatd'" in done.stderr


def test_a_watched_file_arms_and_disarms_a_running_process(tmp_path: Path) -> None:
    spec = tmp_path / "failpoint"
    failpoints.watch(str(spec))  # no file yet: nothing armed
    failpoints.hit("decided")
    assert failpoints.armed() == {}
    spec.write_text("notified:2")
    failpoints.hit("decided")  # any pass reads the change
    assert failpoints.armed() == {"notified": 2}
    spec.write_text("")
    failpoints.hit("decided")
    assert failpoints.armed() == {}
    spec.write_text("typo")  # refused and disarmed, never a crash of the operator
    failpoints.hit("decided")
    assert failpoints.armed() == {}


def test_the_file_counts_afresh_in_a_child_process(tmp_path: Path) -> None:
    spec = tmp_path / "failpoint"
    spec.write_text("pod-created:2")
    code = (
        "import pathlib\n"
        "from rebeam_operator import failpoints\n"
        "failpoints.hit('pod-created')\n"
        f"pathlib.Path({str(spec)!r}).write_text('pod-created:3')\n"
        "for i in range(5):\n"
        "    print(i, flush=True)\n"
        "    failpoints.hit('pod-created')\n"
    )
    env = {**os.environ, failpoints.ENV_FILE: str(spec)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1", "2"]  # the new spec's third hit, not the old second
