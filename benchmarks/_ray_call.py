"""Ray actor call p50, run by the benchmark venv's Python (Ray is never a project dependency).

Driven by the benchmark over stdin so that its rounds alternate with rebeam's (the machine's
other load falls on both alike): prints ``ready``, then for each line ``n`` on stdin makes n
calls and prints one JSON line ``{"p50_us": ..., "n": ...}``; ends at end of input.
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
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    actor = Echo.remote()
    ray.get(actor.echo.remote(0))
    payload = {"n": 1, "data": "x" * 32}  # what the rebeam call carries (benchmarks._measure)
    for _ in range(300):  # as many warm-up calls as rebeam's
        ray.get(actor.echo.remote(payload))
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        samples = []
        for _ in range(n):
            started = time.perf_counter_ns()
            ray.get(actor.echo.remote(payload))
            samples.append(time.perf_counter_ns() - started)
        print(json.dumps({"p50_us": statistics.median(samples) / 1000, "n": n}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
