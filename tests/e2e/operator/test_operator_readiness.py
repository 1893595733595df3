"""Readiness of command children on the cluster (docs/readiness.md): the operator reports a
command with a readiness block started only once it is ready, one that ends before it is
ready has failed its start, and a watchdog kill says why — as rebeam run does
(tests/local/test_readiness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from infra.hostnet import free_port
from operator_helpers import Lifecycle, Objects, Operator, child_state, sleeper, supervisor

pytestmark = pytest.mark.e2e

# Marks "up" just before it listens, after a pause: reported started before the mark exists
# would be reported at spawn, not once ready.
SERVE = """
import pathlib, socket, sys, time
time.sleep(1)
pathlib.Path(sys.argv[2]).touch()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()
while True: s.accept()[0].close()
"""


def test_a_command_is_started_once_its_port_accepts(
    operator: Operator, objects: Objects, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    port, up = free_port(), tmp_path / "up"
    server = {
        "name": "srv",
        "actor": {
            "command": ["python", "-c", SERVE],
            "args": [str(port), str(up)],
            "readiness": {"tcp": {"port": port}},
        },
    }
    objects.apply(supervisor("web", [server]))
    lifecycle.wait("started srv")
    assert up.exists(), "started before its port accepted a connection"
    status = objects.wait_status("web", lambda s: s.get("phase") == "Running")
    assert child_state(status, "srv")["state"] == "running"


def test_a_command_that_exits_before_ready_fails_its_start(
    operator: Operator, objects: Objects, lifecycle: Lifecycle
) -> None:
    quitter = {
        "name": "quitter",
        "actor": {
            "command": ["sh", "-c", "exit 3"],
            "readiness": {"tcp": {"port": free_port()}},
        },
    }
    objects.apply(supervisor("app", [sleeper("first"), quitter]))
    lines = lifecycle.wait("start_failed quitter crash")
    assert "started quitter" not in lines
    failed = next(
        e for e in lifecycle.events() if e["event"] == "start_failed" and e["child"] == "quitter"
    )
    assert failed["reason"]["crash"]["exit_code"] == 3


def test_a_watchdog_kill_says_why(
    operator: Operator, objects: Objects, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    # Ready while "alive" exists; the child removes it once the check has seen it, and from
    # then on the check fails: the watchdog kills it, and the pod's exit says why.
    alive, probed = tmp_path / "alive", tmp_path / "probed"
    program = (
        f"touch {alive}; while [ ! -e {probed} ]; do sleep 0.05; done; rm {alive}; exec sleep 600"
    )
    wedged = {
        "name": "wedged",
        "restart": "temporary",
        "actor": {
            "command": ["sh", "-c", program],
            "readiness": {
                "exec": {"command": ["sh", "-c", f"test -e {alive} && touch {probed}"]},
                "watchdog": {"interval": "1s"},
            },
        },
    }
    objects.apply(supervisor("app", [wedged]))
    lifecycle.wait("exited wedged crash")
    exited = next(
        e for e in lifecycle.events() if e["event"] == "exited" and e["child"] == "wedged"
    )
    assert exited["reason"] == {
        "crash": {
            "exception_type": "Watchdog",
            "message": "did not answer its watchdog within 1s",
        }
    }


NOTIFY = """
import os, pathlib, socket, sys, time
time.sleep(1)
pathlib.Path(sys.argv[1]).touch()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])
time.sleep(600)
"""


def test_a_notify_command_is_started_once_it_says_ready(
    operator: Operator, objects: Objects, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    up = tmp_path / "up"
    unit = {
        "name": "unit",
        "actor": {
            "command": ["python", "-c", NOTIFY],
            "args": [str(up)],
            "readiness": {"notify": {}},
        },
    }
    objects.apply(supervisor("svc", [unit]))
    lifecycle.wait("started unit")
    assert up.exists(), "started before it sent READY=1"
