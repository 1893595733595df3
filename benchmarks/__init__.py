"""rebeam's benchmark suite: ``python -m benchmarks`` (``make bench``).

Every figure is a ratio against a baseline measured in the same run, on the same machine, the
same nats-server and, where it applies, the same two processes and connections: absolute
numbers on a shared 2-core machine say little, ratios say what rebeam adds. Everything runs on
a secured server, as users run rebeam (``_harness.py``). The targets (docs/sdk.md,
"Performance"):

* call round trip p50 <= 1.25x a raw nats-py request/reply between the same two processes;
* call p50 <= 0.5x a Ray actor call (Ray lives only in ``.cache/venv-bench``, set up by this
  command; never a project dependency);
* one-way cast throughput >= 0.7x raw publish -> subscriber between the same processes;
* whereis p50 <= 20 us cached, and <= 1.3x a raw KV get uncached;
* idle actor RSS <= 1.3x a bare Python process that imports nats and connects;
* security on against security off (``bench_security.py``, ``bench_restart.py``): call p50
  <= 1.05x, cast throughput >= 0.95x, restart latency under ``rebeam run`` <= 1.10x.
"""
