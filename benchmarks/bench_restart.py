"""Restart latency under ``rebeam run``: from SIGKILL of an actor to the first successful call
on its next incarnation, on a secured server, against three baselines measured in the same
run:

* security off: the same under a second ``rebeam run`` on an open server. ``rebeam run`` has
  no switch to turn security off, so both runs are given a server: the secured one with
  ``--nats URL --issuer FILE`` (that server's issuer secrets: the run hands each incarnation
  a credential), the open one with ``--nats URL`` alone (a run on an open server hands out
  none). The same processes either way: the run, its actor, a nats-server, and this process
  as the caller (the tree owner's ADMIN grant on the secured side);
* the floor: a fresh Python process that imports the runtime and connects to the secured
  server with an actor's credential: what any restart of a Python actor process has to pay;
* Ray: an actor with ``max_restarts=-1`` whose OS process is SIGKILLed by its pid, to the
  first call answered by a process with another pid (benchmarks/_ray_restart.py says why).

The caller retries a failed call every 2 ms, so the figure includes the time to notice the
new incarnation through the registry, as a user's client would.

``--steps``: both runs also timestamp each step of every restart (rebeam.runtime._steps; both,
so that the few file writes weigh on each side alike) and the median time of each step is
printed after the table, the secured run's with its issuer's part of the connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import rebeam
from benchmarks._harness import child_env, write_private
from benchmarks._measure import Row, print_table
from rebeam import _loop
from rebeam._orphans import die_with_parent
from rebeam.auth.grants import Grant, Role
from rebeam.errors import RebeamError
from rebeam.natsd import NatsServer, ServerOptions
from rebeam.pids import Pid

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench-restart"
RETRY_EVERY = 0.002
DEADLINE = 60.0  # seconds for one restart on a busy machine before the benchmark gives up
# A restart's steps in the order they happen; "end." ones are the killed incarnation's,
# "issuer." ones the auth callout of the new incarnation's connect, in the run's issuer.
STEPS = (
    "kill", "end.seen", "end.observed", "end.released", "start", "credential", "claimed",
    "fork", "forked", "main", "loop", "loaded", "issuer.callout", "issuer.answering",
    "issuer.verified", "issuer.granted", "issuer.signed", "issuer.replied", "connected",
    "slot checked", "registered", "init done", "ready heard", "answered",
)  # fmt: skip


MANIFEST = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: bench}
spec:
  intensity: 1000
  period: 1s
  children:
    - {name: target, actor: {module: 'benchmarks._pinger:Pinger', register: target}}
"""

FLOOR = textwrap.dedent(
    """
    import asyncio, os, sys
    import nats
    import rebeam.runtime  # what the actor process imports before it can do anything
    from rebeam import _loop  # and the same event loop

    async def main():
        with open(os.environ["REBEAM_CREDENTIALS_FILE"]) as source:
            token = source.read().strip()
        nc = await nats.connect(sys.argv[1], token=token)
        print("up", flush=True)
        await nc.close()

    _loop.run(main())
    """
)


async def _started_os_pid(events: Path, incarnation: int) -> int:
    """The OS pid of the target's given incarnation, from rebeam run's events file."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if events.exists():  # noqa: ASYNC240 - a local file, read outside any timing
            for line in events.read_text().splitlines():  # noqa: ASYNC240
                event = json.loads(line)
                if (
                    event["event"] == "started"
                    and event.get("child") == "target"
                    and event.get("incarnation") == incarnation
                ):
                    return int(event["os_pid"])
        await asyncio.sleep(0.005)
    raise RuntimeError(f"incarnation {incarnation} of the target did not start")


async def _call_until_answered(node: rebeam.Node, incarnation: int) -> None:
    """Until ``incarnation`` of the target answers a call (an answer from an earlier one, had
    it one to give, would not stop the clock)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        with contextlib.suppress(RebeamError):
            if await node.call("target", "ping", 0.5) == incarnation:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"incarnation {incarnation} of the target never answered")
        await asyncio.sleep(RETRY_EVERY)


class Run:
    """One ``rebeam run`` of the manifest on ``server``, and a caller connected to it."""

    def __init__(self, server: NatsServer, workdir: Path, steps: Path | None = None) -> None:
        self.server = server
        self.workdir = workdir
        self.steps = steps  # where the run and this caller timestamp each step, if anywhere
        self.events = workdir / "events.jsonl"
        self.samples: list[float] = []
        self.os_pid = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Run]:
        self.workdir.mkdir(parents=True)
        manifest = self.workdir / "bench.yaml"
        manifest.write_text(MANIFEST)
        argv = [
            str(Path(sys.executable).parent / "rebeam"), "run", str(manifest), "--quiet",
            "--nats", self.server.url, "--namespace", NAMESPACE, "--events", str(self.events),
        ]  # fmt: skip
        if self.server.issuer is not None:
            argv += ["--issuer", str(self.server.workdir / "issuer.json")]
        # (state apart from the manifest: a folder named rebeam beside it would shadow the
        # package of an editable install)
        env = {**child_env(None), "XDG_STATE_HOME": str(self.workdir / "state")}
        if self.steps is not None:
            env["REBEAM_RESTART_STEPS"] = str(self.steps)
        run = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        try:
            # Started children mean the run has provisioned the namespace: its buckets are
            # there for the caller's lease (a tree owner may not create them).
            self.os_pid = await _started_os_pid(self.events, 1)
            owner = self.server.admin_credentials(NAMESPACE)  # None on an open server
            async with rebeam.connect(
                self.server.url, namespace=NAMESPACE, credentials=owner
            ) as node:
                self.node = node
                await _call_until_answered(node, 1)
                yield self
        finally:
            run.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(run.wait(), 30)
            except TimeoutError:
                run.kill()
                await run.wait()

    async def restart(self, incarnation: int) -> None:
        """SIGKILL the target; time it until a call is answered, by ``incarnation``."""
        self._mark("kill", incarnation)
        started = time.perf_counter()
        os.kill(self.os_pid, signal.SIGKILL)
        await _call_until_answered(self.node, incarnation)
        self.samples.append((time.perf_counter() - started) * 1000)
        self._mark("answered", incarnation)
        self.os_pid = await _started_os_pid(self.events, incarnation)

    def _mark(self, step: str, incarnation: int) -> None:
        if self.steps is not None:
            with self.steps.open("a") as out:
                out.write(f"{time.monotonic_ns()} 0 {os.getpid()} {incarnation} {step}\n")


def print_steps(steps: Path, title: str) -> None:
    """The median time of each step of a restart, from the kill and from the step before
    (the latest one noted: an open run has no issuer steps), and the CPU time the step took
    where the step before was in the same process."""
    at: dict[tuple[int, str], tuple[int, int, int]] = {}
    for line in steps.read_text().splitlines():
        ns, cpu, os_pid, incarnation, step = line.split(" ", 4)
        at[(int(incarnation), step)] = (int(ns), int(cpu), int(os_pid))
    restarts = sorted({i for i, step in at if step == "kill"})

    def when(n: int, step: str) -> tuple[int, int, int] | None:
        return at.get((n - 1, step) if step.startswith("end.") else (n, step))

    print(f"\n{title}: steps of {len(restarts)} restarts, median ms: since the kill, the step")
    print("before; CPU")
    for i, step in enumerate(STEPS[1:], 1):
        since_kill, since_before, cpu = [], [], []
        for n in restarts:
            t, k = when(n, step), when(n, "kill")
            b = next((w for s in reversed(STEPS[:i]) if (w := when(n, s)) is not None), None)
            if t is not None and k is not None:
                since_kill.append((t[0] - k[0]) / 1e6)
            if t is not None and b is not None:
                since_before.append((t[0] - b[0]) / 1e6)
                if t[2] == b[2]:
                    cpu.append((t[1] - b[1]) / 1e6)
                elif step == "main":  # the actor's first step: its CPU time since the fork
                    cpu.append(t[1] / 1e6)
        if since_kill:
            used = f"{p50(cpu):7.1f}" if cpu else "      -"
            print(f"  {step:<16} {p50(since_kill):7.1f} {p50(since_before):7.1f} {used}")


async def measure(
    secured: NatsServer, open_: NatsServer, workdir: Path, n: int, steps: Path | None = None
) -> tuple[list[float], list[float], list[float]]:
    """Milliseconds from SIGKILL to the first answered call, secured and open, and for the
    floor, n times each, alternating so that the machine's other load falls on all alike
    (the i-th samples of each were taken one after the other)."""
    floor = []
    async with (
        Run(secured, workdir / "secured", steps / "secured" if steps else None).running() as a,
        Run(open_, workdir / "open", steps / "open" if steps else None).running() as b,
    ):
        for incarnation in range(2, n + 2):
            # Each goes first every other round: the second restart starts while the first
            # run may still be writing down the one it just made.
            for run in (a, b) if incarnation % 2 else (b, a):
                await run.restart(incarnation)
            # A credential of its own, as each incarnation has (written before the clock
            # starts: the floor is the least a restart can cost).
            pid = Pid.for_incarnation(NAMESPACE, "floor", incarnation)
            token = secured.credentials(Grant(Role.ACTOR, NAMESPACE, pid)) or ""
            credentials = write_private(workdir / f"floor-{incarnation}", token)
            floor.append(await asyncio.to_thread(_floor_once, secured.url, credentials))
    return a.samples, b.samples, floor


def _floor_once(url: str, credentials: Path) -> float:
    """Milliseconds for a fresh process to import the runtime and connect to NATS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOOR, url],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=child_env(credentials),
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = (time.perf_counter() - started) * 1000
    proc.wait(30)
    proc.stdout.close()
    if line.strip() != b"up":
        raise RuntimeError("the floor process did not connect")
    return elapsed


def measure_ray(python: Path, n: int) -> float | None:
    """Ray's restart p50 in milliseconds, measured in the benchmark venv."""
    out = subprocess.run(
        [str(python), str(ROOT / "benchmarks" / "_ray_restart.py"), str(n)],
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=die_with_parent,
        check=False,
    )
    try:
        return float(json.loads(out.stdout.strip().splitlines()[-1])["p50_ms"])
    except (IndexError, ValueError, KeyError):
        print(f"Ray restart benchmark failed: {out.stderr[-500:]}", file=sys.stderr)
        return None


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def main() -> int:
    import argparse

    from benchmarks.__main__ import _ensure_ray

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_restart")
    parser.add_argument("-n", type=int, default=40, help="restarts to time (default 40)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray comparison")
    parser.add_argument(
        "--steps", action="store_true", help="time each step of both runs' restarts"
    )
    ns = parser.parse_args()
    # The secured server's own issuer lives in this process; the run's issuer answers for
    # the credentials it hands out, and this one refuses them too, a moment later, when
    # the server no longer listens (rebeam.auth.issuer): expected here, not worth a line.
    logging.getLogger("rebeam.auth").setLevel(logging.ERROR)
    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer.start(Path(tmp) / "secured", ServerOptions(namespaces=(NAMESPACE,))) as secured,
        NatsServer.start(Path(tmp) / "open", ServerOptions(secure=False)) as open_,
    ):
        steps = Path(tmp) / "steps" if ns.steps else None
        if steps is not None:
            steps.mkdir()
        restarts, unsecured, floor = _loop.run(
            measure(secured, open_, Path(tmp) / "runs", ns.n, steps)
        )
        load = os.getloadavg()
        if steps is not None:
            print_steps(steps / "secured", "secured")
            print_steps(steps / "open", "open")
    ours, base, off = p50(restarts), p50(floor), p50(unsecured)
    # Paired: each round's secured restart against the open one and the floor process beside
    # it in time.
    paired = p50([x / y for x, y in zip(restarts, unsecured, strict=True)])
    to_floor = p50([x / y for x, y in zip(restarts, floor, strict=True)])
    rows = [
        Row(
            "restart p50 (SIGKILL to first answered call) vs process floor",
            f"{ours:.0f} ms",
            f"{base:.0f} ms",
            to_floor,
            "<= 1.3x",
            to_floor <= 1.3,
            note=f"{ns.n} restarts under rebeam run on a secured server, alternating with "
            f"{ns.n} floor processes (import rebeam.runtime + connect with a credential); "
            "ratio: the median of the rounds' ratios",
        ),
        Row(
            "restart p50, secured vs open",
            f"{ours:.0f} ms",
            f"{off:.0f} ms",
            paired,
            "<= 1.10x",
            paired <= 1.10,
            note=f"{ns.n} restarts each, alternating: rebeam run --nats URL --issuer FILE on "
            "a secured server against rebeam run --nats URL on an open one; ratio: the median "
            "of the rounds' ratios",
        ),
    ]
    python = None if ns.no_ray else _ensure_ray()
    ray_p50 = measure_ray(python, ns.n) if python else None
    if ray_p50 is not None:
        rows.append(
            Row(
                "restart p50 vs Ray actor restart",
                f"{ours:.0f} ms",
                f"{ray_p50:.0f} ms",
                ours / ray_p50,
                "<= 0.1x",
                ours / ray_p50 <= 0.1,
                note="Ray: the actor's OS process SIGKILLed by its pid, then calls until another "
                "process answers",
            )
        )
    print_table(rows)
    print(f"load average at the end of the restarts: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
