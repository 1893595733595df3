"""Restart latency under ``rebeam run``: from SIGKILL of an actor to the first successful call
on its next incarnation, against two baselines measured in the same run:

* the floor: a fresh Python process that imports the runtime and connects to NATS — what any
  restart of a Python actor process has to pay;
* Ray: an actor with ``max_restarts=-1`` killed with ``ray.kill(no_restart=False)``, to the
  first successful call on the restarted actor.

The caller retries a failed call every 2 ms, so the figure includes the time to notice the
new incarnation through the registry, as a user's client would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import rebeam
from rebeam.errors import RebeamError

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench-restart"
RETRY_EVERY = 0.002


class Pinger(rebeam.Actor):
    """The restarted actor: answers every call at once."""

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        return "pong"


MANIFEST = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: bench}
spec:
  intensity: 1000
  period: 1s
  children:
    - {name: target, actor: {module: 'benchmarks.bench_restart:Pinger', register: target}}
"""

FLOOR = textwrap.dedent(
    """
    import asyncio, sys
    import nats
    import rebeam.runtime  # what the actor process imports before it can do anything

    async def main():
        nc = await nats.connect(sys.argv[1])
        print("up", flush=True)
        await nc.close()

    asyncio.run(main())
    """
)


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _started_os_pid(events: Path, incarnation: int, timeout: float = 30.0) -> int:
    """The OS pid of the target's given incarnation, from rebeam run's events file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events.exists():
            for line in events.read_text().splitlines():
                event = json.loads(line)
                if (
                    event["event"] == "started"
                    and event.get("child") == "target"
                    and event.get("incarnation") == incarnation
                ):
                    return int(event["os_pid"])
        time.sleep(0.005)
    raise RuntimeError(f"incarnation {incarnation} of the target did not start")


async def _call_until_answered(node: rebeam.Node) -> None:
    while True:
        try:
            await node.call("target", "ping", 0.5)
            return
        except RebeamError:
            await asyncio.sleep(RETRY_EVERY)


async def measure(url: str, n: int) -> tuple[list[float], list[float]]:
    """Milliseconds from SIGKILL to the first answered call, and for the floor, n times each,
    alternating so that the machine's other load falls on both alike."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "bench.yaml"
        manifest.write_text(MANIFEST)
        events = Path(tmp) / "events.jsonl"
        # (state apart from the manifest: a folder named rebeam beside it would shadow the
        # package of an editable install)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": f"{tmp}/state"}
        run = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "rebeam"), "run", str(manifest), "--quiet",
            "--nats", url, "--namespace", NAMESPACE, "--events", str(events),
            env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )  # fmt: skip
        samples, floor = [], []
        try:
            async with rebeam.connect(url, namespace=NAMESPACE) as node:
                os_pid = _started_os_pid(events, 1)
                await _call_until_answered(node)
                for incarnation in range(2, n + 2):
                    started = time.perf_counter()
                    os.kill(os_pid, signal.SIGKILL)
                    await _call_until_answered(node)
                    samples.append((time.perf_counter() - started) * 1000)
                    os_pid = _started_os_pid(events, incarnation)
                    floor.append(await asyncio.to_thread(_floor_once, url))
        finally:
            run.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(run.wait(), 30)
            except TimeoutError:
                run.kill()
                await run.wait()
        return samples, floor


def _floor_once(url: str) -> float:
    """Milliseconds for a fresh process to import the runtime and connect to NATS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOOR, url],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
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
        preexec_fn=_die_with_parent,
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

    from benchmarks.__main__ import Row, _ensure_ray, print_table
    from rebeam.natsd import NatsServer

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_restart")
    parser.add_argument("-n", type=int, default=20, help="restarts to time (default 20)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray comparison")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer.start(Path(tmp) / "nats")
        try:
            restarts, floor = asyncio.run(measure(server.url, ns.n))
        finally:
            server.stop()
    ours, base = p50(restarts), p50(floor)
    rows = [
        Row(
            "restart p50 (SIGKILL to first answered call) vs process floor",
            f"{ours:.0f} ms",
            f"{base:.0f} ms",
            ours / base,
            "<= 1.3x",
            ours / base <= 1.3,
            note=f"{ns.n} restarts under rebeam run, alternating with {ns.n} floor processes "
            "(import rebeam.runtime + connect to NATS)",
        )
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
                note="Ray: ray.kill(no_restart=False), then calls until the actor answers",
            )
        )
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
