"""The same manifest under ``rebeam run`` and on the cluster: the same lifecycle events, in
the same order, for a crash and a shutdown. Both backends drive one supervision core."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from operator_helpers import Lifecycle, Objects, Operator, event_lines, sleeper, supervisor

pytestmark = pytest.mark.e2e

MANIFEST = supervisor(
    "app",
    [sleeper("a"), sleeper("b"), sleeper("c")],
    strategy="one_for_all",
    intensity=3,
    period="60s",
)


def _read(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def local_events(tmp_path: Path) -> list[str]:
    """rebeam run: start, SIGKILL b's process, wait for the group restart, Ctrl-C."""
    manifest = tmp_path / "app.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST))
    events = tmp_path / "events.jsonl"
    rebeam = str(Path(sys.executable).parent / "rebeam")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    process = subprocess.Popen(
        [rebeam, "run", str(manifest), "--plain", "--namespace", f"cmp{os.getpid()}",
         "--events", str(events)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )  # fmt: skip
    try:

        def started(child: str, incarnation: int) -> dict[str, object] | None:
            return next(
                (
                    e
                    for e in _read(events)
                    if e["event"] == "started"
                    and e.get("child") == child
                    and e.get("incarnation") == incarnation
                ),
                None,
            )

        b = wait_for(lambda: started("b", 1), timeout=60, what="b started locally")
        wait_for(lambda: started("c", 1), timeout=60, what="c started locally")
        os.kill(int(b["os_pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        wait_for(lambda: started("c", 2), timeout=60, what="the local group restart")
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return event_lines(_read(events))


def test_same_events_as_rebeam_run_for_a_crash(
    operator: Operator,
    objects: Objects,
    lifecycle: Lifecycle,
    kubelet: ProcessKubelet,
    namespace: str,
    tmp_path: Path,
) -> None:
    expected = local_events(tmp_path)
    assert "exited b killed" in expected  # the scenario did happen locally

    objects.apply(MANIFEST)
    objects.wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    kubelet.kill_container(namespace, "app-b-1", "actor", signal.SIGKILL)
    objects.wait_status(
        "app",
        lambda s: s.get("ready") == "3/3" and s.get("incarnations") == {"a": 2, "b": 2, "c": 2},
        what="the group restart on the cluster",
    )
    objects.delete("app")
    wait_for(lambda: objects.get("app") is None, timeout=60, what="the Supervisor gone")
    wait_for(
        lambda: len(lifecycle.lines()) >= len(expected),
        timeout=30,
        what=f"the cluster's events {expected}",
    )
    assert lifecycle.lines() == expected
