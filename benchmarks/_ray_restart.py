"""Ray actor restart latency, run by the benchmark venv's Python (Ray is never a project
dependency): ray.kill(no_restart=False), then calls until the restarted actor answers.

``ray.kill`` returns before the actor is dead, and a call made at once may still reach the old
incarnation: each incarnation answers with an id of its own, and only an answer from a new one
ends the measurement (as the rebeam figure ends with an answer from the next incarnation).

Prints one JSON line: {"p50_ms": ..., "n": ...}.
"""

import json
import statistics
import sys
import time
import uuid

import ray
from ray.exceptions import RayActorError

DEADLINE = 60.0  # seconds for one restart


@ray.remote(max_restarts=-1, max_task_retries=0)
class Pinger:
    def __init__(self):
        self.incarnation = uuid.uuid4().hex  # __init__ runs again in a restarted actor

    def ping(self):
        return self.incarnation


def _answer_from_another(actor, killed: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            if ray.get(actor.ping.remote(), timeout=30) != killed:
                return
        except RayActorError:  # dead or restarting (ActorUnavailableError is one)
            pass
        time.sleep(0.002)
    raise RuntimeError(f"the Ray actor did not answer from a new incarnation in {DEADLINE}s")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    actor = Pinger.remote()
    incarnation = ray.get(actor.ping.remote())
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        ray.kill(actor, no_restart=False)
        _answer_from_another(actor, incarnation)
        samples.append((time.perf_counter() - started) * 1000)
        incarnation = ray.get(actor.ping.remote())
    print(json.dumps({"p50_ms": statistics.median(samples), "n": n}))
    ray.shutdown()


if __name__ == "__main__":
    main()
