"""Issue 7's benchmark, reported as ratios measured in the same run (run it on purpose:
``REBEAM_E2E_OPERATOR_BENCH=1 pytest tests/e2e/operator/test_operator_scale.py -s``).

* Restart latency: a pod's exit (its terminated status seen on a watch) to its replacement pod
  (seen on the same watch), against the floor of one API round trip measured the same way: a
  create issued by the watcher itself until the watch shows it.
* Scale: ``SUPERVISORS`` x ``CHILDREN`` trivial pods (``REBEAM_E2E_BENCH_SUPERVISORS`` and
  ``REBEAM_E2E_BENCH_CHILDREN``): time to all Ready, the operator's CPU time and peak memory,
  and the restart latency again with all of them running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from typing import Any

import pytest
from infra.cluster import Cluster
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from kubernetes import client, watch
from operator_helpers import Objects, Operator, sleeper, supervisor

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.environ.get("REBEAM_E2E_OPERATOR_BENCH"), reason="set REBEAM_E2E_OPERATOR_BENCH=1"
    ),
    pytest.mark.timeout(2400),
]

SUPERVISORS = int(os.environ.get("REBEAM_E2E_BENCH_SUPERVISORS", "20"))
CHILDREN = int(os.environ.get("REBEAM_E2E_BENCH_CHILDREN", "10"))
RESTARTS = 20


class PodClock:
    """Watches a namespace's pods and stamps, on arrival, when each pod was first seen and
    when its container was first seen terminated."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.core = client.CoreV1Api(cluster.api_client())
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when close() stops it
            self._stream()

    def _stream(self) -> None:
        for event in self._watch.stream(self.core.list_namespaced_pod, self.namespace):
            now = time.monotonic()
            pod: Any = event["object"]
            name = pod.metadata.name
            self.added.setdefault(name, now)
            for status in pod.status.container_statuses or []:
                if status.state and status.state.terminated:
                    self.ended.setdefault(name, now)

    def close(self) -> None:
        self._watch.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _floor(objects: Objects, clock: PodClock, n: int) -> list[float]:
    """A create issued by a watcher until the watch shows it: one API round trip."""
    samples = []
    for i in range(n):
        name = f"floor-{i}"
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "schedulerName": "nobody",  # never bound: nothing runs
                "containers": [{"name": "c", "image": "none", "command": ["true"]}],
            },
        }
        start = time.monotonic()
        objects.core.create_namespaced_pod(objects.namespace, body)
        wait_for(lambda name=name: name in clock.added, timeout=30, what=name, interval=0.001)
        samples.append(clock.added[name] - start)
        objects.core.delete_namespaced_pod(name, objects.namespace, grace_period_seconds=0)
    return samples


def _restarts(
    objects: Objects, clock: PodClock, kubelet: ProcessKubelet, sup: str, first: int, n: int
) -> list[float]:
    """Kill incarnations ``first`` .. ``first + n - 1`` of ``sup``'s child w, one at a time."""
    samples = []
    for incarnation in range(first, first + n):
        old, new = f"{sup}-w-{incarnation}", f"{sup}-w-{incarnation + 1}"

        def running(old: str = old) -> bool:
            return old in objects.running_pods()

        def replaced(old: str = old, new: str = new) -> bool:
            return new in clock.added and old in clock.ended

        wait_for(running, timeout=60, what=f"{old} running", interval=0.05)
        kubelet.kill_container(objects.namespace, old, "actor", signal.SIGKILL)
        wait_for(replaced, timeout=60, what=f"{new} created")
        samples.append(clock.added[new] - clock.ended[old])
    return samples


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    return cpu, peak * 1024


def test_restart_latency_and_scale(
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    cluster: Cluster,
    namespace: str,
) -> None:
    clock = PodClock(cluster, namespace)
    try:
        floor = _floor(objects, clock, RESTARTS)
        objects.apply(
            supervisor("solo", [sleeper("w", shutdown="brutal_kill")], intensity=1000, period="1s")
        )
        empty = _restarts(objects, clock, kubelet, "solo", 1, RESTARTS)

        assert operator.popen is not None
        cpu0, _ = _cpu_and_rss(operator.popen.pid)
        start = time.monotonic()
        for i in range(SUPERVISORS):
            # A start may wait long for the process kubelet (one Python thread) under load.
            children = [
                {
                    "name": f"c{j}",
                    "shutdown": "brutal_kill",
                    "startTimeout": "1500s",
                    "actor": {"command": ["sleep", "7200"]},  # outlives the benchmark
                }
                for j in range(CHILDREN)
            ]
            objects.apply(supervisor(f"s{i}", children))
        total = f"{CHILDREN}/{CHILDREN}"

        def all_ready() -> bool:
            items = objects.custom.list_namespaced_custom_object(
                "rebeam.io", "v1alpha1", namespace, "supervisors"
            )["items"]
            ready = [o for o in items if (o.get("status") or {}).get("ready") == total]
            return len(ready) == SUPERVISORS

        wait_for(all_ready, timeout=1500, what="every Supervisor ready", interval=1.0)
        to_ready = time.monotonic() - start
        cpu1, peak = _cpu_and_rss(operator.popen.pid)
        loaded = _restarts(objects, clock, kubelet, "solo", RESTARTS + 1, RESTARTS)
    finally:
        clock.close()

    f50, e50, l50 = (statistics.median(x) for x in (floor, empty, loaded))
    report = [
        f"floor (create -> watch): p50 {f50 * 1000:.0f} ms, "
        f"p99 {_percentile(floor, 0.99) * 1000:.0f} ms",
        f"restart, idle operator: p50 {e50 * 1000:.0f} ms ({e50 / f50:.1f}x floor), "
        f"p99 {_percentile(empty, 0.99) * 1000:.0f} ms",
        f"{SUPERVISORS} Supervisors x {CHILDREN} pods: all Ready in {to_ready:.1f} s, "
        f"operator CPU {cpu1 - cpu0:.1f} s, peak RSS {peak / 2**20:.0f} MiB",
        f"restart with them running: p50 {l50 * 1000:.0f} ms ({l50 / f50:.1f}x floor), "
        f"p99 {_percentile(loaded, 0.99) * 1000:.0f} ms",
    ]
    print("\n" + "\n".join(report))
    operator.check_running()
