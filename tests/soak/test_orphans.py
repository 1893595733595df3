"""The soak's orphan report says what each orphan is: a real process left running (and
stopped, as a SIGSTOP fault leaves one) is found and described by its label, command line,
state, parent, group and session; on Kubernetes, by the pod it was started for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.soak import procs
from tests.soak.kube import KubeObserver, pod_of
from tests.soak.observer import Observer
from tests.soak.orphans import orphans_of
from tests.soak.report import orphan_lines

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)", "leftover-marker"]


@pytest.fixture
def leftover(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own, as a container is, stopped as a hang leaves one."""
    pod = tmp_path / "pods" / "elsewhere_acct-1-7_0123abcd" / "actor"
    env = {**os.environ, "REBEAM_TERMINATION_LOG": str(pod / "termination-log")}
    process = subprocess.Popen(SLEEPER, env=env, start_new_session=True)
    try:
        os.kill(process.pid, signal.SIGSTOP)
        yield process
    finally:
        process.kill()  # SIGKILL ends a stopped process too
        process.wait()


def _seeing(observer: Observer, pid: int) -> Observer:
    observer.seen[pid] = procs.start_time(pid)
    observer.owners[pid] = "bank/acct-1"
    return observer


def test_an_orphan_is_described_by_what_it_is(
    leftover: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    observer = _seeing(Observer(os.getpid(), tmp_path, tmp_path / "events.jsonl"), leftover.pid)
    [orphan] = orphans_of(observer, timeout=0.2)
    assert (orphan.pid, orphan.label, orphan.argv) == (leftover.pid, "bank/acct-1", SLEEPER)
    assert (orphan.state, orphan.ppid) == ("T", os.getpid())
    assert (orphan.pgid, orphan.sid) == (leftover.pid, leftover.pid)
    text = orphan.describe()
    for said in (
        f"pid {leftover.pid} `bank/acct-1`: stopped (SIGSTOP)",
        f"parent {os.getpid()} (rebeam run, the run's head)",
        f"group {leftover.pid} (its own), session {leftover.pid}",
        "leftover-marker",
    ):
        assert said in text


def test_on_kubernetes_an_orphan_names_its_pod_and_its_namespace(
    leftover: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    observer = KubeObserver(os.getpid(), tmp_path, tmp_path / "events.jsonl", namespace="soak")
    [orphan] = orphans_of(_seeing(observer, leftover.pid), timeout=0.2)
    assert orphan.parent == "the test process, whose test kubelet starts every container"
    assert orphan.where == "pod elsewhere/acct-1-7 (not the soak's namespace soak)"


def test_the_report_lists_every_orphan(leftover: subprocess.Popen[bytes], tmp_path: Path) -> None:
    observer = _seeing(Observer(os.getpid(), tmp_path, tmp_path / "events.jsonl"), leftover.pid)
    orphans = orphans_of(observer, timeout=0.2)
    assert f"* {orphans[0].describe()}" in orphan_lines(orphans)
    assert orphan_lines([]) == []


def test_a_process_that_ended_is_no_orphan(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    observer = _seeing(Observer(os.getpid(), tmp_path, tmp_path / "events.jsonl"), process.pid)
    process.wait()
    assert orphans_of(observer, timeout=5.0) == []


def test_a_pod_is_read_from_the_kubelets_termination_log_path() -> None:
    log = "/w/pods/ns-1_bank-acct-0-3_89abcdef/actor/termination-log"
    assert pod_of({"REBEAM_TERMINATION_LOG": log}) == ("ns-1", "bank-acct-0-3")
    assert pod_of({"HOME": "/root"}) is None
