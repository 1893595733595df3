"""One scenario, two backends: ``rebeam run`` on this machine and the operator on the test
control plane, driven through one interface and observed the same way.

A scenario (:class:`Row`) is a manifest, a list of steps and what must come of them: the
lifecycle events as normalized lines, and the answers of the management requests and calls
the steps made. :func:`play` runs a row on a :class:`Backend` and returns a
:class:`Transcript`; the test compares it with the row and with the other backend's.

Normalized event lines keep what both backends must agree on and drop what differs by nature
(times, pids, OS pids, pod names)::

    app/b#1 exited killed        <supervisor>/<child>#<incarnation> <event> <reason kind>
    app/b restarting killed      (events about a child, without an incarnation)
    app shutdown shutdown        (the supervisor's own exit)

Every wait is on a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import nats
from infra.procs import wait_for

import rebeam
from rebeam import _subjects
from rebeam.exits import ExitReason

Json = dict[str, Any]
REBEAM = str(Path(sys.executable).parent / "rebeam")
DEADLINE = 60.0  # generous: the operator's pods start on a busy 2-core machine
BOUNDED = 0.5  # a caller's short timeout: the gate holds the start for as long as the test likes


def event_line(event: Json) -> str:
    """The normalized line of one lifecycle event (see the module's docstring)."""
    subject = "/".join(p for p in (event.get("supervisor"), event.get("child")) if p)
    if event.get("incarnation"):
        subject += f"#{event['incarnation']}"
    reason = event.get("reason")
    kind = (reason if isinstance(reason, str) else next(iter(reason))) if reason else ""
    return " ".join(p for p in (subject, event["event"], kind) if p)


def answer_line(result: subprocess.CompletedProcess[str]) -> str:
    """A CLI answer as ``<exit code> <its output>``: stdout on success, stderr on refusal."""
    text = (result.stdout if result.returncode == 0 else result.stderr).strip()
    return f"{result.returncode} {text}"


def tree_lines(roots: list[Json]) -> list[str]:
    """``rebeam tree --json`` as one line per node: its path and every field but the ones a
    backend cannot know alike (an OS pid locally, a pod on the cluster); a pid's value is
    ``<pid>`` (a running actor has one on both backends)."""
    out: list[str] = []

    def walk(node: Json) -> None:
        fields = []
        for key, value in node.items():
            if key in ("os_pid", "pod", "children", "path"):
                continue
            if key == "pid" and isinstance(value, str):
                value = "<pid>"
            fields.append(f"{key}={json.dumps(value, sort_keys=True)}")
        out.append(f"{node['path']}: {' '.join(fields)}")
        for child in node.get("children") or []:
            walk(child)

    for root in roots:
        walk(root)
    return out


class Backend(Protocol):
    """What a scenario needs of a backend."""

    name: str
    workdir: Path  # files the scenario's children and the test share

    def apply(self, manifest: Json) -> None:
        """Run the manifest's tree; returns once management requests reach the backend (they
        may then wait for the tree's start), not once the tree is up."""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``rebeam ARGS`` from another terminal, aimed at this backend's namespace."""

    def events(self) -> list[Json]:
        """Every lifecycle event so far, in order."""

    def kill(self, path: str, incarnation: int) -> None:
        """SIGKILL that incarnation's OS process from outside."""

    def stop(self) -> None:
        """Stop the whole tree as a user does (Ctrl-C; delete the Supervisor)."""

    def connect(self) -> Any:
        """``rebeam.connect(...)`` as the tree's owner (an async context manager)."""

    def start_failure(self) -> str:
        """Once the tree's start has failed: why, as ``rebeam run`` ends with it
        (``<supervisor> failed to start: child <name>: <reason>``)."""


@dataclass
class Transcript:
    """What a row made happen on one backend."""

    events: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)


class Step(Protocol):
    def do(self, backend: Backend, out: Transcript) -> None: ...


def lines(backend: Backend) -> list[str]:
    """The tree's events (a client, such as a step's own connection, may publish its own
    end, which is no supervisor's business)."""
    return [event_line(e) for e in backend.events() if e.get("supervisor")]


def wait_line(backend: Backend, line: str, count: int = 1) -> None:
    wait_for(
        lambda: lines(backend).count(line) >= count,
        timeout=DEADLINE,
        what=f"{count}x '{line}' on {backend.name} (got {lines(backend)})",
        interval=0.05,
    )


def running_incarnation(backend: Backend, path: str) -> int:
    """The incarnation of ``path`` that started last and has not exited."""
    started = exited = 0
    for e in backend.events():
        if "/".join(p for p in (e.get("supervisor"), e.get("child")) if p) == path:
            if e["event"] == "started":
                started = max(started, e.get("incarnation") or 0)
            elif e["event"] == "exited":
                exited = max(exited, e.get("incarnation") or 0)
    assert started > exited, f"{path} is not running on {backend.name}: {lines(backend)}"
    return started


@dataclass(frozen=True)
class Await:
    """Wait for an event line (its ``count``-th occurrence)."""

    line: str
    count: int = 1

    def do(self, backend: Backend, out: Transcript) -> None:
        wait_line(backend, self.line, self.count)


@dataclass(frozen=True)
class Kill:
    """kill -9 the running incarnation of a child from outside, and wait for its exit."""

    path: str

    def do(self, backend: Backend, out: Transcript) -> None:
        incarnation = running_incarnation(backend, self.path)
        backend.kill(self.path, incarnation)
        wait_line(backend, f"{self.path}#{incarnation} exited killed")


@dataclass(frozen=True)
class Exit:
    """The running child exits by itself with ``code`` (a :func:`quitter` child)."""

    path: str
    code: int

    def do(self, backend: Backend, out: Transcript) -> None:
        incarnation = running_incarnation(backend, self.path)
        trigger = trigger_file(backend.workdir, self.path)
        staged = trigger.with_suffix(".tmp")
        staged.write_text(str(self.code))
        staged.replace(trigger)  # whole, or not there: the child reads it once
        reason = "normal" if self.code == 0 else "crash"
        wait_line(backend, f"{self.path}#{incarnation} exited {reason}")


@dataclass(frozen=True)
class Wedge:
    """The running :func:`served` child stops answering (its port, or its watchdog pings),
    and stays up: only its watchdog can end it."""

    path: str

    def do(self, backend: Backend, out: Transcript) -> None:
        running_incarnation(backend, self.path)
        trigger = trigger_file(backend.workdir, self.path)
        staged = trigger.with_suffix(".tmp")
        staged.write_text("wedge")
        staged.replace(trigger)


@dataclass(frozen=True)
class Reason:
    """The whole exit reason, in words, of the event at ``line`` (the line has its kind
    only): how a start failed, or what a watchdog said."""

    line: str

    def do(self, backend: Backend, out: Transcript) -> None:
        wait_line(backend, self.line)
        event = next(
            e for e in backend.events() if e.get("supervisor") and event_line(e) == self.line
        )
        out.answers.append(f"{self.line}: {ExitReason.from_wire(event['reason'])}")


@dataclass(frozen=True)
class FailedToStart:
    """Wait until the tree's start has failed, and say why (:meth:`Backend.start_failure`)."""

    def do(self, backend: Backend, out: Transcript) -> None:
        out.answers.append(backend.start_failure())


@dataclass(frozen=True)
class Marked:
    """Once ``line`` is seen, whether the child had made the file ``mark`` (in the scratch
    directory) by then: a child that makes it just before it becomes ready shows so that
    ``started`` came after it was ready."""

    line: str
    mark: str

    def do(self, backend: Backend, out: Transcript) -> None:
        wait_line(backend, self.line)
        made = (backend.workdir / self.mark).exists()
        out.answers.append(f"{self.mark} made before '{self.line}': {made}")


@dataclass(frozen=True)
class Armed:
    """Wait until a stubborn :func:`quitter` ignores SIGTERM."""

    path: str

    def do(self, backend: Backend, out: Transcript) -> None:
        armed = Path(f"{trigger_file(backend.workdir, self.path)}.armed")
        wait_for(armed.exists, timeout=DEADLINE, what=f"{self.path} ignoring SIGTERM")


@dataclass(frozen=True)
class Cli:
    """A management request from another terminal; its answer goes to the transcript."""

    args: tuple[str, ...]

    def do(self, backend: Backend, out: Transcript) -> None:
        out.answers.append(answer_line(backend.cli(*self.args)))


@dataclass(frozen=True)
class Tree:
    """``rebeam tree --json``, normalized (:func:`tree_lines`), into the transcript."""

    def do(self, backend: Backend, out: Transcript) -> None:
        result = backend.cli("tree", "--json")
        assert result.returncode == 0, result.stderr
        out.answers += tree_lines(json.loads(result.stdout))


@dataclass(frozen=True)
class CallChild:
    """``rebeam call <the child's pid> MESSAGE``; the reply goes to the transcript."""

    path: str
    message: Json

    def do(self, backend: Backend, out: Transcript) -> None:
        incarnation = running_incarnation(backend, self.path)
        pid = next(
            e["pid"]
            for e in backend.events()
            if e["event"] == "started"
            and "/".join((e["supervisor"], e["child"])) == self.path
            and e["incarnation"] == incarnation
        )
        out.answers.append(answer_line(backend.cli("call", pid, json.dumps(self.message))))


@dataclass(frozen=True)
class Stop:
    """Stop the tree as its user does, and wait for the supervisor's own exit event."""

    supervisor: str = "app"

    def do(self, backend: Backend, out: Transcript) -> None:
        backend.stop()
        wait_line(backend, f"{self.supervisor} shutdown shutdown")


@dataclass(frozen=True)
class DuringSlowStart:
    """Requests while a :func:`gate` child is in its init: a tree request waits for the start
    to end (one with a short timeout gets no answer in that time), a start_child to an
    already running ``pool`` is answered at once, and the tree answer, once the gate opens,
    shows every child running. The gate holds until this step lets it go, so "waits" is
    shown by order, not by time."""

    pool: str

    def do(self, backend: Backend, out: Transcript) -> None:
        gate = socket.socket(socket.AF_UNIX)
        try:
            gate.settimeout(DEADLINE)
            gate.bind(str(gate_socket(backend.workdir)))
            gate.listen()
            waiting, _ = gate.accept()  # the gate child is in its init
        finally:
            gate.close()
        with waiting:
            out.answers += asyncio.run(self._meanwhile(backend, waiting))

    async def _meanwhile(self, backend: Backend, waiting: socket.socket) -> list[str]:
        async with backend.connect() as node:
            inbox = node.nc.new_inbox()
            replies = await node.nc.subscribe(inbox, max_msgs=1)
            tree = _subjects.control(node.namespace, "tree", node.pid)
            await node.nc.publish(tree, b"{}", reply=inbox)
            await node.nc.flush()
            try:  # one more, bounded by this caller's timeout
                await node.nc.request(tree, b"{}", timeout=BOUNDED)
                bounded = "answered"
            except nats.errors.TimeoutError:
                bounded = f"no answer within {BOUNDED}s"
            # Sent after the tree request on the same connection: once this is answered,
            # the tree request has arrived too.
            started = await rebeam.start_child(self.pool, timeout=DEADLINE)
            early = replies.pending_msgs
            waiting.sendall(b"!")  # the gate's init returns
            answer = await replies.next_msg(timeout=DEADLINE)
        roots = json.loads(answer.data)["ok"]
        return [
            f"tree with a timeout: {bounded}",
            f"start_child {started}",
            f"tree answered early: {early > 0}",
            *tree_lines(roots),
        ]


@dataclass(frozen=True)
class Row:
    """One scenario: ``manifest(workdir)``, its steps, the expected normalized events and
    answers. ``operator_differs``: why the operator is known to differ (its run is then an
    expected failure, strict, so that a fix shows); ``operator_race``: the operator differs
    only now and then (a race), so its run is an expected failure that may pass."""

    name: str
    manifest: Callable[[Path], Json]
    steps: Sequence[Step]
    events: Sequence[str]
    answers: Sequence[str] = ()
    operator_differs: str | None = None
    operator_race: bool = False


def play(row: Row, backend: Backend) -> Transcript:
    out = Transcript()
    backend.apply(row.manifest(backend.workdir))
    for step in row.steps:
        step.do(backend, out)
    out.events = lines(backend)
    return out


# --- children -------------------------------------------------------------------------

SLEEPER: Json = {"command": ["sleep", "600"]}


def supervisor(name: str, children: list[Json], **spec: Any) -> Json:
    return {
        "apiVersion": "rebeam.io/v1alpha1",
        "kind": "Supervisor",
        "metadata": {"name": name},
        "spec": {**spec, "children": children},
    }


def sleeper(name: str, **child: Any) -> Json:
    """Runs until stopped (SIGTERM ends it at once: exit ``shutdown``)."""
    return {"name": name, **child, "actor": SLEEPER}


QUIT = (
    "import os, signal, sys, time\n"
    "trigger = sys.argv[1]\n"
    "if sys.argv[2:] == ['stubborn']:\n"
    "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(trigger + '.armed', 'w').close()\n"
    "while not os.path.exists(trigger):\n"
    "    time.sleep(0.02)\n"
    "code = int(open(trigger).read())\n"
    "os.remove(trigger)  # the next incarnation waits for a trigger of its own\n"
    "sys.exit(code)\n"
)


def trigger_file(workdir: Path, path: str) -> Path:
    return workdir / f"{path.replace('/', '_')}.exit"


def quitter(workdir: Path, path: str, *, stubborn: bool = False, **child: Any) -> Json:
    """A child at ``path`` that runs until the test's :class:`Exit` step tells it to exit,
    with the code it gives. (It watches for a file: the test cannot know when a signal
    handler would be in place, and a file waits for the child however late it looks.)
    ``stubborn``: it ignores SIGTERM, so a stop with a timeout has to kill it; it creates
    ``<trigger>.armed`` once that is so (:class:`Armed`)."""
    command = [sys.executable, "-c", QUIT, str(trigger_file(workdir, path))]
    if stubborn:
        command.append("stubborn")
    return {"name": path.rsplit("/", 1)[-1], **child, "actor": {"command": command}}


# Python actors of the scenarios, written next to the manifest (the module path is given in
# the actor's env, so both backends find it).
MODULES = {
    "echoing": (
        "import rebeam\n"
        "class Echo(rebeam.Actor):\n"
        "    async def init(self, args):\n"
        "        self.args = args\n"
        "    async def handle_call(self, msg, from_):\n"
        "        return {'init': self.args, 'call': msg}\n"
    ),
    "gating": (
        "import asyncio\n"
        "import rebeam\n"
        "class Gate(rebeam.Actor):\n"
        "    async def init(self, args):\n"
        "        while True:  # the test listens once it is ready for the gate\n"
        "            try:\n"
        "                reader, writer = await asyncio.open_unix_connection(args['socket'])\n"
        "                break\n"
        "            except (FileNotFoundError, ConnectionRefusedError):\n"
        "                await asyncio.sleep(0.05)\n"
        "        await reader.read(1)\n"
        "        writer.close()\n"
    ),
}


def python_actor(workdir: Path, module: str, cls: str, args: Any = None) -> Json:
    (workdir / f"{module}.py").write_text(MODULES[module])
    template: Json = {
        "module": f"{module}:{cls}",
        "env": [{"name": "PYTHONPATH", "value": str(workdir)}],
    }
    if args is not None:
        template["args"] = args
    return template


def gate_socket(workdir: Path) -> Path:
    return workdir / "gate.sock"


def gate(workdir: Path, name: str) -> Json:
    """A child whose init waits until :class:`DuringSlowStart` lets it go."""
    return {
        "name": name,
        "startTimeout": 120,
        "actor": python_actor(workdir, "gating", "Gate", {"socket": str(gate_socket(workdir))}),
    }


SERVE = (
    "import os, socket, sys, time\n"
    "trigger, kind, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]\n"
    "with open(trigger + '.runs', 'a') as runs:\n"
    "    runs.write('.')\n"
    "if mode == 'once' and os.path.getsize(trigger + '.runs') > 1:\n"
    "    sys.exit(3)  # only the first incarnation gets ready\n"
    "if mode.isdigit():\n"
    "    sys.exit(int(mode))  # never ready\n"
    "if mode == 'hang':\n"
    "    time.sleep(600)  # never ready\n"
    "time.sleep(0.5)  # late: a 'started' seen before the mark was not waiting for it\n"
    "open(trigger + '.up', 'w').close()\n"
    "if kind == 'tcp':\n"
    "    server = socket.socket()\n"
    "    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    server.bind(('127.0.0.1', port))\n"
    "    server.listen()\n"
    "    server.settimeout(0.05)\n"
    "else:\n"
    "    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "    notify.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
    "while not os.path.exists(trigger):\n"
    "    if kind == 'tcp':\n"
    "        try:\n"
    "            server.accept()[0].close()\n"
    "        except OSError:\n"
    "            pass\n"
    "    else:\n"
    "        notify.sendto(b'WATCHDOG=1', os.environ['NOTIFY_SOCKET'])\n"
    "        time.sleep(0.05)\n"
    "said = open(trigger).read()\n"
    "os.remove(trigger)  # the next incarnation waits for a trigger of its own\n"
    "if said != 'wedge':\n"
    "    sys.exit(int(said))\n"
    "if kind == 'tcp':\n"
    "    server.close()\n"
    "time.sleep(600)  # up, and answering no more\n"
)


def served(
    workdir: Path,
    path: str,
    kind: str,
    mode: str,
    *,
    port: int = 0,
    watchdog: str | None = None,
    **child: Any,
) -> Json:
    """A command child at ``path`` with ``kind`` readiness (``tcp`` on ``port``, or
    ``notify``), ready half a second after it starts, just after it makes the file
    ``<trigger>.up``. ``mode``: ``serve`` it then runs until :class:`Exit` or :class:`Wedge`;
    ``once`` the same, but every later incarnation exits 3 before it is ready; ``hang``
    never ready; a number: exits with it at once, never ready."""
    readiness: Json = {"tcp": {"port": port}} if kind == "tcp" else {"notify": {}}
    if watchdog is not None:
        readiness["watchdog"] = {"interval": watchdog}
    trigger = str(trigger_file(workdir, path))
    command = [sys.executable, "-c", SERVE, trigger, kind, str(port), mode]
    return {
        "name": path.rsplit("/", 1)[-1],
        **child,
        "actor": {"command": command, "readiness": readiness},
    }
