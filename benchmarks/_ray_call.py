"""Ray actor call p50, run by the benchmark venv's Python (Ray is never a project dependency).

Prints one JSON line: {"p50_us": ..., "n": ...}.
"""

import json
import statistics
import sys
import time

import ray


@ray.remote
class Echo:
    def echo(self, value):
        return value


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    actor = Echo.remote()
    ray.get(actor.echo.remote(0))
    payload = {"n": 1, "data": "x" * 32}  # what the rebeam call carries (benchmarks._measure)
    for _ in range(300):  # as many warm-up calls as rebeam's
        ray.get(actor.echo.remote(payload))
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        ray.get(actor.echo.remote(payload))
        samples.append(time.perf_counter_ns() - started)
    print(json.dumps({"p50_us": statistics.median(samples) / 1000, "n": n}))
    ray.shutdown()


if __name__ == "__main__":
    main()
