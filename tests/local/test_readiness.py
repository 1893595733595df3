"""Readiness of command children under ``rebeam run`` (docs/readiness.md), with real programs:
a child counts as started only once it is ready; one that ends first, or takes longer than
startTimeout, has failed its start as OTP defines it; a watchdog kills one that stops
answering, and says so in its exit reason."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import rebeam.readiness
from rebeam.events import read_exit_record
from rebeam.exits import KILLED, from_process_end
from tests.local.conftest import (
    REBEAM,
    SLEEPER,
    StartRun,
    processes_with_arg,
    supervisor,
    wait_gone,
    wait_until,
)

PY = json.dumps(sys.executable)


def free_port() -> int:
    """A port nothing listens on now (the kernel picks it; the child binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def python_child(name: str, source: str, readiness: str, extra: str = "") -> str:
    """A child running ``source`` with this interpreter (YAML flow style)."""
    return (
        f"    - {{name: {name}, {extra}actor: {{command: [{PY}, -c, {json.dumps(source)}], "
        f"readiness: {readiness}}}}}\n"
    )


# Each program marks "<name>.up" just before it becomes ready, after a pause: a child
# reported started before its mark exists was reported at spawn, not when ready.
SERVE_TCP = """
import socket, time, pathlib
time.sleep(0.5)
pathlib.Path('{name}.up').touch()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {port})); s.listen()
while True: s.accept()[0].close()
"""
SERVE_HTTP = """
import http.server, time, pathlib
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/healthz' else 404); self.end_headers()
    def log_message(self, *a): pass
time.sleep(0.5)
pathlib.Path('{name}.up').touch()
http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()
"""
NOTIFY = """
import os, socket, time, pathlib
time.sleep(0.5)
pathlib.Path('{name}.up').touch()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'READY=1\\nSTATUS=serving requests', os.environ['NOTIFY_SOCKET'])
time.sleep(300)
"""
FD = """
import os, time, pathlib
time.sleep(0.5)
pathlib.Path('{name}.up').touch()
fd = int(os.environ['REBEAM_READY_FD'])
os.write(fd, b'ready\\n')
time.sleep(0.5)
os.write(fd, b'a later line must not kill it\\n')
pathlib.Path('{name}.later').touch()
time.sleep(300)
"""
EXEC_TARGET = """
import time, pathlib
time.sleep(0.5)
pathlib.Path('{name}.up').touch()
time.sleep(300)
"""


def test_each_kind_is_started_only_once_ready(rebeam_run: StartRun, tmp_path: Path) -> None:
    tcp, http = free_port(), free_port()
    children = (
        python_child("tcp", SERVE_TCP.format(name="tcp", port=tcp), f"{{tcp: {{port: {tcp}}}}}")
        + python_child(
            "http",
            SERVE_HTTP.format(name="http", port=http),
            f"{{http: {{port: {http}, path: /healthz}}}}",
        )
        + python_child("notify", NOTIFY.format(name="notify"), "{notify: {}}")
        + python_child("fd", FD.format(name="fd"), "{fd: {}}")
        + python_child(
            "exec",
            EXEC_TARGET.format(name="exec"),
            "{exec: {command: [test, -e, exec.up]}}",
        )
    )
    run = rebeam_run(supervisor("kinds", children))
    for name in ("tcp", "http", "notify", "fd", "exec"):
        run.events.wait("started", name)
        assert (tmp_path / f"{name}.up").exists(), f"{name} was reported started before ready"
    wait_until(lambda: (tmp_path / "fd.later").exists(), what="fd's later write")
    tree = run.rebeam("tree", "--json")
    assert tree.returncode == 0, tree.stderr
    (root,) = json.loads(tree.stdout)
    statuses = {c["name"]: c.get("status") for c in root["children"]}
    assert statuses["notify"] == "serving requests"


def test_exit_before_ready_fails_the_start_at_init(rebeam_run: StartRun) -> None:
    children = (
        f"    - {{name: first, actor: {SLEEPER}}}\n"
        f"    - {{name: quitter, actor: {{command: [sh, -c, 'exit 3'], "
        f"readiness: {{tcp: {{port: {free_port()}}}}}}}}}\n"
    )
    run = rebeam_run(supervisor("app", children))
    failed = run.events.wait("start_failed", "quitter")
    assert failed["reason"] == {
        "crash": {
            "exception_type": "NotReady",
            "message": "exited before it was ready (exit code 3)",
            "exit_code": 3,
        }
    }
    assert run.exit_code() == 1
    stderr = run.stderr()
    assert (
        "app failed to start: child quitter: crash (NotReady: exited before it was ready "
        "(exit code 3))" in stderr
    ), stderr
    # The tree did not start: the child started before it was stopped again.
    run.events.wait("exited", "first", reason="shutdown")


def test_exit_0_before_ready_is_no_start_either(rebeam_run: StartRun) -> None:
    children = "    - {name: brief, actor: {command: ['true'], readiness: {notify: {}}}}\n"
    run = rebeam_run(supervisor("app", children))
    failed = run.events.wait("start_failed", "brief")
    assert failed["reason"]["crash"]["message"] == "exited before it was ready (exit code 0)"
    assert run.exit_code() == 1


def test_a_failed_restart_is_retried_and_counted(rebeam_run: StartRun, tmp_path: Path) -> None:
    # Ready the first time, then it ends; each restart ends before it is ready.
    program = (
        "if [ -e ran ]; then exit 4; fi; touch ran; "
        'echo ready >&"$REBEAM_READY_FD"; '
        "while [ ! -e stop ]; do sleep 0.05; done; exit 1"
    )
    children = (
        f"    - {{name: flaky, actor: {{command: [sh, -c, {json.dumps(program)}], "
        "readiness: {fd: {}}}}\n"
    )
    run = rebeam_run(supervisor("app", children, intensity=2, period="60s"))
    run.events.wait("started", "flaky", incarnation=1)
    (tmp_path / "stop").touch()  # the first incarnation ends (the run's folder is tmp_path)
    run.events.wait("gave_up", "flaky")
    failures = [e for e in run.events.poll() if e["event"] == "start_failed"]
    assert [e["incarnation"] for e in failures] == [2, 3]  # retried, then over intensity
    for failure in failures:
        assert failure["reason"]["crash"]["message"] == "exited before it was ready (exit code 4)"
    assert "app gave up: flaky needed more than 2 restarts in 60s" in run.stderr()
    assert run.exit_code() == 1


def run_entry(
    tmp_path: Path, check: str, program: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The readiness entry as a backend runs it, on ``sh -c program``: the process, the
    read end of its ready pipe, and its exit record."""
    record = tmp_path / "exit.json"
    read_fd, write_fd = os.pipe()
    entry = [sys.executable, "-I", rebeam.readiness.__file__, "--ready-fd", str(write_fd)]
    process = subprocess.Popen(
        [*entry, "--exit-record", str(record), "--check", check, "--", "sh", "-c", program],
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    return process, read_fd, record


def test_the_record_says_not_ready_until_ready(tmp_path: Path) -> None:
    # Both backends read a start failure's reason from the exit record (in a pod, the
    # termination message): the entry marks it until the command is ready.
    check = rebeam.readiness.check_argument("tcp", {"port": free_port()}, None)
    process, read_fd, record = run_entry(tmp_path, check, "exit 3")
    assert process.wait(timeout=30) == 3
    os.close(read_fd)
    reason = from_process_end(3, recorded=read_exit_record(record))
    assert str(reason) == "crash (NotReady: exited before it was ready (exit code 3))"

    check = rebeam.readiness.check_argument("fd", {}, None)
    process, read_fd, record = run_entry(
        tmp_path, check, 'echo up >&"$REBEAM_READY_FD"; exec sleep 300'
    )
    try:
        with os.fdopen(read_fd, "rb") as ready:
            assert ready.readline() == b"ready\n"
        assert read_exit_record(record) is None  # cleared before ready was said
    finally:
        process.kill()
        process.wait(timeout=30)
    assert from_process_end(-signal.SIGKILL, recorded=read_exit_record(record)) == KILLED


def test_start_timeout(rebeam_run: StartRun) -> None:
    children = (
        "    - {name: mute, startTimeout: 1s, actor: {command: [sleep, '300'], "
        "readiness: {notify: {}}}}\n"
    )
    run = rebeam_run(supervisor("app", children))
    failed = run.events.wait("start_failed", "mute")
    assert failed["reason"] == {
        "crash": {"exception_type": "StartTimeout", "message": "not ready within startTimeout 1s"}
    }
    assert run.exit_code() == 1
    assert "app failed to start: child mute:" in run.stderr()


NOTIFY_THEN_HANG = """
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
assert os.environ['WATCHDOG_USEC'] == '1000000', os.environ['WATCHDOG_USEC']
assert os.environ['WATCHDOG_PID'] == str(os.getpid())
s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])
s.sendto(b'WATCHDOG=1', os.environ['NOTIFY_SOCKET'])
time.sleep(300)
"""


def test_notify_watchdog_kills_a_child_that_stops_pinging(rebeam_run: StartRun) -> None:
    children = python_child(
        "hung",
        NOTIFY_THEN_HANG,
        "{notify: {}, watchdog: {interval: 1s}}",
        extra="restart: permanent, ",
    )
    run = rebeam_run(supervisor("app", children, intensity=5))
    exited = run.events.wait("exited", "hung", incarnation=1)
    assert exited["reason"] == {
        "crash": {
            "exception_type": "Watchdog",
            "message": "did not answer its watchdog within 1s",
        }
    }
    run.events.wait("started", "hung", incarnation=2)  # restarted like any crash


SLOW_TO_STOP = """
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(3), sys.exit(0)))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])
while True:
    s.sendto(b'WATCHDOG=1', os.environ['NOTIFY_SOCKET'])
    time.sleep(0.2)
"""


def test_a_child_being_stopped_is_no_watchdog_case(rebeam_run: StartRun) -> None:
    # Its stop takes longer than the watchdog interval, and it does not ping meanwhile (the
    # handler blocks): the stop, not the watchdog, decides how it ends.
    children = python_child(
        "slow", SLOW_TO_STOP, "{notify: {}, watchdog: {interval: 1s}}", extra="shutdown: 20s, "
    )
    run = rebeam_run(supervisor("app", children))
    run.events.wait("started", "slow")
    run.signal(2)
    exited = run.events.wait("exited", "slow")
    assert exited["reason"] == "shutdown"
    assert run.exit_code() == 0


def test_probe_watchdog_kills_a_child_that_stops_answering(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    # Ready while "alive" exists; the child removes it once the check has seen it.
    program = "touch alive; while [ ! -e probed ]; do sleep 0.05; done; rm alive; exec sleep 300"
    children = (
        f"    - {{name: wedged, actor: {{command: [sh, -c, {json.dumps(program)}], "
        "readiness: {exec: {command: [sh, -c, 'test -e alive && touch probed']}, "
        "watchdog: {interval: 1s}}}}\n"
    )
    run = rebeam_run(supervisor("app", children, intensity=0))
    exited = run.events.wait("exited", "wedged", incarnation=1)
    assert exited["reason"]["crash"]["message"] == "did not answer its watchdog within 1s"
    assert (tmp_path / "probed").exists()


@pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="systemd-notify is absent")
def test_systemd_notify_works_unchanged(rebeam_run: StartRun) -> None:
    program = "systemd-notify --ready --status='warming up done'; exec sleep 300"
    children = (
        f"    - {{name: unit, actor: {{command: [sh, -c, {json.dumps(program)}], "
        "readiness: {notify: {}}}}\n"
    )
    run = rebeam_run(supervisor("app", children))
    run.events.wait("started", "unit")
    tree = run.rebeam("tree", "--json")
    assert tree.returncode == 0, tree.stderr
    (root,) = json.loads(tree.stdout)
    assert root["children"][0]["status"] == "warming up done"
    shown = run.rebeam("tree")
    assert "status: warming up done" in shown.stdout, shown.stdout


def test_notify_refuses_oversized_datagrams_and_stays_up(rebeam_run: StartRun) -> None:
    source = """
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
for _ in range(20): s.sendto(b'STATUS=' + b'x' * 10000, os.environ['NOTIFY_SOCKET'])
s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])
time.sleep(300)
"""
    run = rebeam_run(supervisor("app", python_child("big", source, "{notify: {}}")))
    run.events.wait("started", "big")
    run.signal(2)
    assert run.exit_code() == 0
    out = run.stdout() + run.stderr()
    assert "notify message refused: larger than 4096 bytes" in out
    assert out.count("notify message refused:") <= 5  # a bounded log rate


def test_the_example_runs(rebeam_run: StartRun) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "readiness.yaml"
    run = rebeam_run(example.read_text())
    run.events.wait("started", "web")
    run.events.wait("started", "worker")
    assert [e["child"] for e in run.events.poll() if e["event"] == "started"] == ["web", "worker"]
    watchers = processes_with_arg(rebeam.readiness.__file__)
    assert len(watchers) == 2  # web's (its watchdog) and worker's (reading its descriptor)
    run.signal(2)
    assert run.exit_code() == 0
    wait_gone(watchers)  # each went with its command


@pytest.mark.parametrize(
    "bad",
    [
        {  # the shape: checked first
            "{tcp: {port: 70000}}": "a port is a number from 1 to 65535",
            "{http: {port: 80, path: healthz}}": "must start with /",
            "{notify: {}, watchdog: {interval: 0s}}": "must be more than 0",
        },
        {  # then the rules between fields
            "{fd: {}, watchdog: {interval: 1s}}": "a watchdog needs notify, tcp, http or exec",
            "{tcp: {port: 1}, fd: {}}": "readiness needs exactly one of",
        },
    ],
)
def test_validate_refuses_bad_readiness_blocks(tmp_path: Path, bad: dict[str, str]) -> None:
    children = "".join(
        f"    - {{name: c{i}, actor: {{command: ['true'], readiness: {block}}}}}\n"
        for i, block in enumerate(bad)
    )
    path = tmp_path / "bad.yaml"
    path.write_text(supervisor("app", children))
    done = subprocess.run(
        [REBEAM, "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    said = done.stdout + done.stderr
    for i, sentence in enumerate(bad.values()):
        assert f"spec.children[{i}].actor.readiness" in said, said
        assert sentence in said, said
    assert "Traceback" not in said
