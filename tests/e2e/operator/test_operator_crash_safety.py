"""The operator killed (SIGKILL) in the middle of a restart and started again: the restart
is finished once, counted once, and no child ever has two live incarnations."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from operator_helpers import (
    Objects,
    Operator,
    Watchdog,
    child_state,
    sleeper,
    slow_stopper,
    supervisor,
    wait_armed,
)

pytestmark = pytest.mark.e2e


def test_operator_killed_mid_restart_loses_and_doubles_nothing(
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    watchdog: Watchdog,
    namespace: str,
    tmp_path: Path,
) -> None:
    armed = tmp_path / "c-armed"
    children = [sleeper("a"), sleeper("b"), slow_stopper("c", 3, armed, shutdown="20s")]
    objects.apply(supervisor("app", children, strategy="one_for_all", intensity=5, period="120s"))
    objects.wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    wait_armed(armed)  # else c may die of SIGTERM at once, and never be seen stopping

    # 1. Killed while the group restart waits for c to stop (a plan in progress).
    kubelet.kill_container(namespace, "app-a-1", "actor", signal.SIGKILL)
    objects.wait_status(
        "app", lambda s: child_state(s, "c")["state"] == "stopping", what="c stopping"
    )
    operator.kill()
    operator.start()
    status = objects.wait_status(
        "app",
        lambda s: s.get("ready") == "3/3" and s.get("incarnations") == {"a": 2, "b": 2, "c": 2},
        what="the group restart finished",
    )
    assert len(status["restartHistory"]) == 1
    assert child_state(status, "a")["lastExit"]["reason"] == "killed"

    # 2. Killed right after a crash, before or while it reacts.
    kubelet.kill_container(namespace, "app-b-2", "actor", signal.SIGKILL)
    operator.kill()
    operator.start()
    status = objects.wait_status(
        "app",
        lambda s: s.get("ready") == "3/3" and s.get("incarnations") == {"a": 3, "b": 3, "c": 3},
        what="the second group restart finished",
        timeout=90,
    )
    assert len(status["restartHistory"]) == 2
    assert child_state(status, "b")["lastExit"]["reason"] == "killed"
    live = {"app-a-3", "app-b-3", "app-c-3"}
    wait_for(lambda: set(objects.pods()) == live, timeout=30, what=f"only {live} left")
    assert watchdog.close() == []
    operator.check_running()
