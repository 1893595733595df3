"""The command line as a new user meets it: the version, pids that can be pasted back, events
without the CLI's own noise, a tree that fits 80 columns and can be watched, ``--quiet``, and
a last line that says what a second Ctrl-C really did."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.local.conftest import (
    DEADLINE,
    REBEAM,
    SLEEPER,
    Run,
    StartRun,
    supervisor,
    wait_until,
)

ECHO = """
import rebeam

class Echo(rebeam.Actor):
    async def handle_call(self, message, from_):
        return {"me": self.pid} if message == "pid" else message
"""

# Asks to be told of SIGTERM and stays: the ordered shutdown waits for it.
DAWDLER = (
    '{command: [sh, -c, \'trap "touch asked" TERM; touch armed; '
    "while :; do sleep 300 & wait $!; done']}"
)


def echo_tree(rebeam_run: StartRun, tmp_path: Path, *extra: str) -> Run:
    (tmp_path / "edges.py").write_text(ECHO)
    children = "    - {name: echo, actor: {module: 'edges:Echo', register: echo}}\n"
    run = rebeam_run(supervisor("app", children), *extra)
    run.events.wait("started", "echo")
    run.wait_ready()
    return run


def test_version_is_the_installed_distributions() -> None:
    result = subprocess.run([REBEAM, "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rebeam {importlib.metadata.version('rebeam')}"


def test_a_pid_in_a_reply_is_printed_so_that_it_can_be_pasted_back(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    run = echo_tree(rebeam_run, tmp_path)
    first = run.rebeam("call", "echo", '"pid"')
    assert first.returncode == 0, first.stderr
    pid = json.loads(first.stdout)["me"]
    assert pid.startswith(f"{run.namespace}."), pid
    assert pid.endswith(".1"), pid

    again = run.rebeam("call", pid, '"hello"')  # the printed text, pasted as NAME
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == "hello"


def follow(run: Run, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [REBEAM, "events", "--count", "3", "--namespace", run.namespace, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run.env,
    )


PROGRAM = """
import asyncio, sys
import rebeam

async def main():
    async with rebeam.connect(sys.argv[1], namespace=sys.argv[2]) as node:
        await node.call("echo", "x")

asyncio.run(main())
"""


def connected_program(run: Run) -> None:
    """A program connected with rebeam.connect, as each CLI command is one: it reports its
    own exit when it ends."""
    url = run.instance()["nats_url"]
    subprocess.run(
        [sys.executable, "-c", PROGRAM, url, run.namespace],
        env=run.env,
        timeout=DEADLINE,
        check=True,
    )


def ended(follower: subprocess.Popen[str]) -> str:
    try:
        return follower.communicate(timeout=DEADLINE)[0]
    except subprocess.TimeoutExpired:
        raise AssertionError("a follower saw too few events") from None


def test_events_hide_the_exits_of_cli_commands_unless_all_is_asked(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    run = echo_tree(rebeam_run, tmp_path)
    default, everything = follow(run), follow(run, "--all")
    try:
        # Rounds of (a program's own exit, the echo's exit, its start) until both followers
        # have seen three events each, whenever they began to listen. Nothing tells when a
        # follower has subscribed, and each round starts four Python processes (seconds each
        # on a loaded machine), so the bound is not a time for all rounds: the followers get
        # DEADLINE to subscribe, as any command does, and two whole rounds after it give each
        # at least three events (the echo's exit and start in each); then they end.
        subscribed_by = time.monotonic() + DEADLINE
        rounds_after = 0
        while default.poll() is None or everything.poll() is None:
            if time.monotonic() > subscribed_by:
                rounds_after += 1
                if rounds_after > 2:
                    break
            assert run.rebeam("call", "echo", '"x"').returncode == 0
            connected_program(run)
            assert run.rebeam("terminate-child", "app/echo").returncode == 0
            assert run.rebeam("restart-child", "app/echo").returncode == 0
        shown, shown_all = (ended(default), ended(everything))
    finally:
        for follower in (default, everything):
            if follower.poll() is None:
                follower.kill()
                follower.wait()
    assert "client-" not in shown, shown
    assert all("app/echo" in line for line in shown.splitlines()), shown
    assert "client-" in shown_all, shown_all  # every third event is a program's exit


def test_the_tree_fits_80_columns_and_says_terminated(rebeam_run: StartRun) -> None:
    long_name = "a-child-with-a-name-long-enough-to-wrap-any-table-in-80-columns"
    children = (
        f"    - {{name: {long_name}, actor: {SLEEPER}}}\n"
        "    - {name: done, restart: transient, actor: {command: [sh, -c, 'exit 0']}}\n"
    )
    run = rebeam_run(supervisor("app", children))
    run.events.wait("exited", "done")
    run.wait_ready()
    result = subprocess.run(
        [REBEAM, "tree", "--namespace", run.namespace],
        capture_output=True,
        text=True,
        env=dict(run.env, COLUMNS="80"),
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout  # the header, the supervisor, two children: no wrap
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert "…" in lines[2], result.stdout  # the long name is cut, visibly
    assert "undefined" not in result.stdout
    assert "terminated" in lines[3], result.stdout
    assert "normal" in lines[3], result.stdout  # and how it ended


def test_tree_watch_redraws_on_lifecycle_events_and_ends_on_ctrl_c(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    run = echo_tree(rebeam_run, tmp_path)
    watch = subprocess.Popen(
        [REBEAM, "tree", "--watch", "--namespace", run.namespace],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(run.env, COLUMNS="80"),
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(watch.stdout or []), daemon=True)
    reader.start()
    try:
        began = time.monotonic()
        wait_until(lambda: any("running" in line for line in output), what="the first drawing")
        assert run.rebeam("terminate-child", "app/echo").returncode == 0
        wait_until(lambda: any("terminated" in line for line in output), what="a redraw")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(DEADLINE) == 0, watch.stderr.read() if watch.stderr else ""
        elapsed = time.monotonic() - began
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    reader.join(DEADLINE)
    drawings = sum(1 for line in output if line.startswith("child"))
    assert 2 <= drawings <= elapsed / 0.5 + 2, (drawings, elapsed)  # bounded redraw rate


CHATTY = (
    "    - name: talker\n"
    "      restart: transient\n"
    "      significant: true\n"
    "      actor: {command: [sh, -c, 'echo hello-from-the-child']}\n"
)


def run_to_its_end(tmp_path: Path, manifest: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """``rebeam run`` of a tree that ends by itself (--quiet excludes the fixture's --plain)."""
    path = tmp_path / "app.yaml"
    path.write_text(manifest)
    return subprocess.run(
        [REBEAM, "run", str(path), "--namespace", f"t{os.getpid()}-quiet", *flags],
        capture_output=True,
        text=True,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state")),
        timeout=DEADLINE,
        check=False,
    )


def test_quiet_shows_neither_events_nor_the_childrens_output(tmp_path: Path) -> None:
    result = run_to_its_end(
        tmp_path, supervisor("app", CHATTY, autoShutdown="any_significant"), "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "rebeam: app shut down: significant child talker exited (normal)"
    ]


def test_quiet_with_show_output_shows_only_the_childrens_output(tmp_path: Path) -> None:
    manifest = supervisor("app", CHATTY, autoShutdown="any_significant")
    result = run_to_its_end(tmp_path, manifest, "--quiet", "--show-output")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["app/talker | hello-from-the-child"]


def test_a_second_ctrl_c_names_the_children_it_killed(rebeam_run: StartRun, tmp_path: Path) -> None:
    # The newest child is stopped first, in order; the dawdler is then asked and stays, and
    # a second Ctrl-C kills it: the others had been shut down in order by then.
    (tmp_path / "edges.py").write_text(ECHO)
    children = (
        f"    - {{name: dawdler, shutdown: 60s, actor: {DAWDLER}}}\n"
        "    - {name: echo, actor: {module: 'edges:Echo'}}\n"
    )
    run = rebeam_run(supervisor("app", children))
    run.events.wait("started", "echo")
    wait_until((tmp_path / "armed").exists, what="the dawdler's trap")
    run.signal(signal.SIGINT)
    wait_until((tmp_path / "asked").exists, what="the ordered shutdown to reach the dawdler")
    run.events.wait("exited", "echo", reason="shutdown")
    run.signal(signal.SIGINT)
    assert run.exit_code() == 1
    last = run.stderr().splitlines()[-1]
    assert last == "rebeam: stopped by a second SIGINT: killed at once (SIGKILL): app/dawdler"


def test_no_traceback_from_any_of_it() -> None:
    """--version and --help of the new flags are plain text."""
    for argv in (["--version"], ["tree", "--help"], ["events", "--help"], ["run", "--help"]):
        result = subprocess.run(
            [REBEAM, *argv], capture_output=True, text=True, check=False, env=dict(os.environ)
        )
        assert result.returncode == 0, argv
        assert "Traceback" not in result.stderr, argv
