"""Ray actor restart latency, measured as rebeam's is: the actor's OS process is SIGKILLed by
its pid, and the clock stops at the first answer from a process with another pid. Run by the
benchmark venv's Python (Ray is never a project dependency).

Why not ``ray.kill(actor, no_restart=False)``: it returns before the actor is dead, so a call
made at once may still be answered by the old process, or queued behind the kill — the figure
then measured the race (2 ms in one run, 2 s in another), not a restart. Here each answer
names the OS process that gave it, the killed process is checked to be gone, and only an
answer from a new process ends a sample.

Prints one JSON line: {"p50_ms": ..., "n": ...}.
"""

import json
import os
import signal
import statistics
import sys
import time

import ray
from ray.exceptions import GetTimeoutError, RayActorError

DEADLINE = 60.0  # seconds for one restart
RETRY = 0.002  # seconds between calls while the actor is down, as rebeam's caller retries


@ray.remote(max_restarts=-1, max_task_retries=0)
class Pinger:
    def ping(self) -> int:
        return os.getpid()  # the OS process answering


def _gone(pid: int) -> bool:
    """The killed worker is dead (a zombie of the raylet counts: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _answer_from_another(actor, killed: int) -> int:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            pid = ray.get(actor.ping.remote(), timeout=30)
            if pid != killed:
                return pid
        except (RayActorError, GetTimeoutError):  # dead or restarting
            pass
        time.sleep(RETRY)
    raise RuntimeError(f"the Ray actor did not answer from a new process in {DEADLINE}s")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    actor = Pinger.remote()
    pid = ray.get(actor.ping.remote())
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        new = _answer_from_another(actor, pid)
        samples.append((time.perf_counter() - started) * 1000)
        if not _gone(pid):
            raise RuntimeError(f"the killed Ray worker {pid} still runs: not a restart")
        pid = new
    print(json.dumps({"p50_ms": statistics.median(samples), "n": n}))
    ray.shutdown()


if __name__ == "__main__":
    main()
