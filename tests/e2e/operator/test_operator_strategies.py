"""Every restart strategy with real pod exits: a container SIGKILLed through the process
kubelet, the operator's decision (the supervision core's), and OTP's stop and start order
as the lifecycle events on NATS show it."""

from __future__ import annotations

import signal

import pytest
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from operator_helpers import Lifecycle, Objects, Operator, Watchdog, sleeper, supervisor

pytestmark = pytest.mark.e2e

STARTED = ["started a", "started b", "started c"]

AFTER_KILLING_B = {
    "one_for_one": ["exited b killed", "restarting b killed", "started b"],
    "one_for_all": [
        "exited b killed",
        "restarting b killed",
        "exited c shutdown",  # the others stop in reverse start order ...
        "exited a shutdown",
        "started a",  # ... and all start again in start order
        "started b",
        "started c",
    ],
    "rest_for_one": [
        "exited b killed",
        "restarting b killed",
        "exited c shutdown",  # the children after b stop, c first
        "started b",
        "started c",
    ],
}
INCARNATIONS = {
    "one_for_one": {"a": 1, "b": 2, "c": 1},
    "one_for_all": {"a": 2, "b": 2, "c": 2},
    "rest_for_one": {"a": 1, "b": 2, "c": 2},
}


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
def test_strategy_restarts_in_otp_order(
    strategy: str,
    operator: Operator,
    objects: Objects,
    lifecycle: Lifecycle,
    kubelet: ProcessKubelet,
    watchdog: Watchdog,
    namespace: str,
) -> None:
    children = [sleeper(n, shutdown="2s") for n in "abc"]
    objects.apply(supervisor("app", children, strategy=strategy, intensity=3, period="60s"))
    objects.wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    # NATS events are published after the status write that says 3/3: wait for them.
    wait_for(lambda: len(lifecycle.lines()) >= len(STARTED), timeout=30, what=f"events {STARTED}")
    assert lifecycle.lines() == STARTED

    kubelet.kill_container(namespace, "app-b-1", "actor", signal.SIGKILL)

    expected = STARTED + AFTER_KILLING_B[strategy]
    wait_for(
        lambda: len(lifecycle.lines()) >= len(expected),
        timeout=60,
        what=f"the restart's events {expected}",
    )
    status = objects.wait_status(
        "app",
        lambda s: s.get("ready") == "3/3" and s.get("incarnations") == INCARNATIONS[strategy],
        what="every child running again",
    )
    assert lifecycle.lines() == expected
    assert status["restartsInWindow"] == 1
    b = next(c for c in status["children"] if c["name"] == "b")
    assert b["lastExit"]["reason"] == "killed"
    assert b["restarts"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "GaveUp": "False",
        "Converged": "True",
    }
    restarting = [e for e in objects.events("app") if e["reason"] == "Restarting"]
    assert len(restarting) == 1
    assert "b exited (killed)" in restarting[0]["message"]
    live = {f"app-{c}-{n}" for c, n in INCARNATIONS[strategy].items()}
    wait_for(lambda: set(objects.pods()) == live, timeout=30, what=f"only {live} left")
    assert watchdog.close() == []
    operator.check_running()
