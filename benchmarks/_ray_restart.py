"""Ray actor restart latency, run by the benchmark venv's Python (Ray is never a project
dependency): ray.kill(no_restart=False), then calls until the restarted actor answers.

Prints one JSON line: {"p50_ms": ..., "n": ...}.
"""

import json
import statistics
import sys
import time

import ray
from ray.exceptions import RayActorError


@ray.remote(max_restarts=-1, max_task_retries=0)
class Pinger:
    def ping(self):
        return "pong"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    actor = Pinger.remote()
    ray.get(actor.ping.remote())
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        ray.kill(actor, no_restart=False)
        while True:
            try:
                ray.get(actor.ping.remote(), timeout=30)
                break
            except RayActorError:
                time.sleep(0.002)
        samples.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"p50_ms": statistics.median(samples), "n": n}))
    ray.shutdown()


if __name__ == "__main__":
    main()
