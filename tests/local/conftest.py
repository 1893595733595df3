"""Fixtures for the local backend: ``rebeam run`` as users run it — a real process with a
private nats-server, real children, real signals — observed through its ``--events`` file.

Waiting is always on an event with a deadline (the events file is read as it grows), never
a fixed sleep. Every ``rebeam run`` a test starts is stopped by its own pid at teardown; its
children are its own business, and test_no_orphans checks that it minds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REBEAM = str(Path(sys.executable).parent / "rebeam")
DEADLINE = 30.0
# A tree's start is a dozen processes (the CLI, nats-server, zygote, reaper, each actor):
# a whole `rebeam run` of one short child, start to exit, is 2.4 CPU-seconds (measured with
# time(1)), and on a 2-core machine at load 28 it took 30 s of wall time. Waits in that phase
# may last until START_DEADLINE after the launch, longer than DEADLINE from their own start.
START_DEADLINE = 60.0

Event = dict[str, Any]


@dataclass
class EventLog:
    """The JSON lines of ``--events FILE``, read as they are written."""

    path: Path
    events: list[Event] = field(default_factory=list)
    _offset: int = 0
    start_by: float = 0.0  # the launch's time.monotonic() plus START_DEADLINE

    def poll(self) -> list[Event]:
        if self.path.exists():
            with self.path.open() as f:
                f.seek(self._offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            self._offset += len(complete.encode())
            self.events += [json.loads(line) for line in complete.splitlines() if line]
        return self.events

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = DEADLINE, what: str = ""
    ) -> Event:
        deadline = max(time.monotonic() + timeout, self.start_by)
        seen = 0
        while True:
            events = self.poll()
            for event in events[seen:]:
                if predicate(event):
                    return event
            seen = len(events)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no event {what or predicate} within {timeout}s"
                    f" (nor {START_DEADLINE}s after the launch); got:\n"
                    + "\n".join(map(str, events))
                )
            time.sleep(0.02)

    def wait(
        self, event: str, child: str | None = None, timeout: float = DEADLINE, **match: Any
    ) -> Event:
        def fits(e: Event) -> bool:
            return (
                e["event"] == event
                and (child is None or e.get("child") == child)
                and all(e.get(k) == v for k, v in match.items())
            )

        return self.wait_for(fits, timeout, what=f"{event} {child or ''} {match or ''}")

    def since(self, index: int) -> list[Event]:
        return self.poll()[index:]

    def lines(self, since: int = 0) -> list[str]:
        """Compact ``event child#incarnation`` strings, for order assertions."""
        return [
            f"{e['event']} {e.get('child') or e.get('supervisor')}"
            + (f"#{e['incarnation']}" if e.get("incarnation") else "")
            for e in self.since(since)
        ]


@dataclass
class Run:
    process: subprocess.Popen[str]
    events: EventLog
    namespace: str
    env: dict[str, str]

    def exit_code(self, timeout: float = DEADLINE) -> int:
        return self.process.wait(timeout)

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def stdout(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def instance_files(self) -> list[Path]:
        """The instance files of this test's runs of this namespace."""
        runs = Path(self.env["XDG_STATE_HOME"]) / "rebeam" / "runs"
        return sorted(runs.glob(f"{self.namespace}.*.json"))

    def instance_file(self) -> Path:
        """This run's instance file, once it is written."""
        wait_until(
            lambda: any(_pid_in(f) == self.process.pid for f in self.instance_files()),
            timeout=max(DEADLINE, self.events.start_by - time.monotonic()),
            what=f"the instance file of pid {self.process.pid} to be written",
        )
        return next(f for f in self.instance_files() if _pid_in(f) == self.process.pid)

    def wait_ready(self) -> None:
        """Until other terminals can find this run (its instance file exists)."""
        self.instance_file()

    def instance(self) -> dict[str, Any]:
        """What this run's instance file says (its NATS URL, the owner's credential...)."""
        info: dict[str, Any] = json.loads(self.instance_file().read_text())
        return info

    def rebeam(self, *args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
        """Another terminal's command against this run (its namespace unless one is given)."""
        target = [] if "--namespace" in args else ["--namespace", self.namespace]
        return subprocess.run(
            [REBEAM, *args, *target],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )


def _pid_in(instance_file: Path) -> int | None:
    try:
        return int(json.loads(instance_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


StartRun = Callable[..., Run]
"""The rebeam_run fixture: ``rebeam_run(manifest_text, *extra_flags) -> Run``."""


def kill_os_pid(os_pid: int, signum: int = signal.SIGKILL) -> None:
    os.kill(os_pid, signum)


@pytest.fixture
def rebeam_run(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartRun]:
    runs: list[Run] = []
    counter = iter(range(1000))

    def start(manifest: str, *extra: str, ready: bool = True, namespace: str | None = None) -> Run:
        n = next(counter)
        path = tmp_path / f"app{n}.yaml"
        path.write_text(manifest)
        namespace = namespace or f"t{os.getpid()}-{n}-{abs(hash(request.node.name)) % 10**6}"
        env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
        env.pop("REBEAM_CREDENTIALS", None)  # the run's CLI uses the owner's, from its file
        events = EventLog(tmp_path / f"events{n}.jsonl", start_by=time.monotonic() + START_DEADLINE)
        process = subprocess.Popen(
            [REBEAM, "run", str(path), "--plain", "--namespace", namespace,
             "--events", str(events.path), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )  # fmt: skip
        run = Run(process, events, namespace, env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            try:
                run.process.wait(20)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
        for stream in (run.process.stdout, run.process.stderr):
            if stream:
                stream.close()


def supervisor(name: str, children: str, **flags: Any) -> str:
    """A Supervisor manifest; ``children`` is the YAML list of children, indented 4."""
    lines = [
        "apiVersion: rebeam.io/v1alpha1",
        "kind: Supervisor",
        f"metadata: {{name: {name}}}",
        "spec:",
    ]
    lines += [f"  {key}: {value}" for key, value in flags.items()]
    lines += ["  children:", children.rstrip("\n")]
    return "\n".join(lines) + "\n"


SLEEPER = "{command: [sleep, '300']}"

# A Python actor's module (write it as counting.py next to the manifest): each call adds the
# message's "add" (1 when absent) and answers the total, so a test sees whether state survived.
COUNTER = """\
import rebeam
class Counter(rebeam.Actor):
    async def init(self, args):
        self.n = 0
    async def handle_call(self, msg, from_):
        self.n += msg.get("add", 1)
        return {"n": self.n}
"""


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def alive(os_pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{os_pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(os_pids: list[int], timeout: float = DEADLINE) -> None:
    wait_until(lambda: not any(alive(p) for p in os_pids), timeout, f"{os_pids} to be gone")


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (by parent pid), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def processes_with_arg(arg: str) -> list[int]:
    """The OS pids of every process with ``arg`` as one of its arguments, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if arg.encode() in argv and alive(int(entry)):
            found.append(int(entry))
    return found


def kill_leftovers(arg: str) -> None:
    """Teardown for tests of escaping processes: SIGKILL whatever is left, each by its pid."""
    for os_pid in processes_with_arg(arg):
        with contextlib.suppress(ProcessLookupError):
            os.kill(os_pid, signal.SIGKILL)


@dataclass
class Terminal:
    """A process in a pseudo-terminal of its own, as a person starts it in a terminal window:
    the session leader, with the pty as its controlling terminal, so that a Ctrl-C typed
    into the master goes to the terminal's foreground process group — not to a pid."""

    process: subprocess.Popen[bytes]
    master: int
    _output: bytearray = field(default_factory=bytearray)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def output(self) -> str:
        with self._lock:
            return self._output.decode(errors="replace")

    def _drain(self) -> None:
        """Read everything written to the terminal (a full pty would block the writer)."""
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def in_terminal(argv: list[str], env: dict[str, str], cwd: Path) -> Terminal:
    master, slave = os.openpty()
    # A size, as a terminal window has (a fresh pty says 0x0).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))

    def take_terminal() -> None:  # runs after setsid(): make the pty our controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
    finally:
        os.close(slave)
    terminal = Terminal(process, master)
    threading.Thread(target=terminal._drain, daemon=True).start()
    return terminal
