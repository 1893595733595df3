"""The operator's scale benchmark (docs/operator.md, "Scale"), shared by the opt-in benchmark
and its small smoke test (test_operator_scale.py), reported as ratios measured in the same
run.

* The floor: one API round trip, a pod create issued by the watcher itself until its watch
  shows it. Measured with nothing running and again with every benchmark pod running, one
  sample after each restart sample, so that both see the same load.
* Restart latency: a pod's exit (its terminated status seen on the watch) to its replacement
  pod (seen on the same watch), for one Supervisor's child killed with SIGKILL, one restart at a
  time; with nothing else running, and again with every benchmark pod running.
* Scale: ``supervisors`` x ``children`` trivial pods applied at once: time until every
  Supervisor says all its children are ready, pods per second, the CPU seconds of each process
  (operator, kube-apiserver, etcd, kube-controller-manager, the process kubelet's thread) and the
  operator's peak RSS.

Timing targets are never asserted: the numbers are printed. What is asserted is correctness:
every Supervisor gets ready, and no benchmark pod ends while nobody stopped it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from infra.cluster import Cluster
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from kubernetes import client, watch
from operator_helpers import Objects, Operator, sleeper, supervisor

__all__ = ["Report", "run_benchmark"]

Json = dict[str, Any]


class PodClock:
    """Watches a namespace's pods and stamps, on arrival, when each pod was first seen, when
    its container was first seen running, the pod Ready and the container terminated; keeps
    the set of pods whose container runs."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.core = client.CoreV1Api(cluster.api_client())
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.started: dict[str, float] = {}  # its container first seen running
        self.ready: dict[str, float] = {}  # its Ready condition first seen True
        self.end_reasons: dict[str, str] = {}
        self.running: set[str] = set()
        self._closed = threading.Event()
        self._watch = watch.Watch(return_type="object")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # The API server ends a watch after 30-60 minutes, and the client's re-watch from its
        # last resourceVersion fails once that version is compacted away (410 Gone): a
        # 10,000-pod run can last that long. A new watch lists the pods again; the stamps are
        # first-seen, so seeing a pod again changes none of them.
        while not self._closed.is_set():
            with contextlib.suppress(Exception):  # the stream ends when close() stops it
                self._stream()
            if not self._closed.is_set():
                self._watch = watch.Watch(return_type="object")
                self._closed.wait(0.1)  # not a busy loop while the API server is away

    def _stream(self) -> None:
        # Plain dicts, no V1Pod models: deserializing thousands of pod events would take the
        # CPU (and the GIL) from the process kubelet, which runs in this process.
        for event in self._watch.stream(self.core.list_namespaced_pod, self.namespace):
            if self._closed.is_set():
                return
            now = time.monotonic()
            pod: Json = event["raw_object"]
            name = pod["metadata"]["name"]
            self.added.setdefault(name, now)
            if event["type"] == "DELETED":
                self.running.discard(name)
                continue
            status = pod.get("status") or {}
            for container in status.get("containerStatuses") or []:
                state = container.get("state") or {}
                if state.get("terminated"):
                    self.ended.setdefault(name, now)
                    self.end_reasons.setdefault(name, _describe(state["terminated"]))
                    self.running.discard(name)
                elif state.get("running"):
                    self.started.setdefault(name, now)
                    self.running.add(name)
            for condition in status.get("conditions") or []:
                if condition.get("type") == "Ready" and condition.get("status") == "True":
                    self.ready.setdefault(name, now)

    def close(self) -> None:
        self._closed.set()
        self._watch.stop()


def _describe(terminated: Json) -> str:
    parts = [f"exit {terminated.get('exitCode')}", str(terminated.get("reason"))]
    if terminated.get("signal"):
        parts.append(f"signal {terminated['signal']}")
    return " ".join(parts)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _floor_once(objects: Objects, clock: PodClock, name: str) -> float:
    """A create issued by a watcher until the watch shows it: one API round trip."""
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
    objects.core.create_namespaced_pod(objects.namespace, body, _preload_content=False).read()
    wait_for(lambda: name in clock.added, timeout=60, what=name, interval=0.001)
    sample = clock.added[name] - start
    objects.core.delete_namespaced_pod(
        name, objects.namespace, grace_period_seconds=0, _preload_content=False
    ).read()
    return sample


def _restarts(
    clock: PodClock,
    kubelet: ProcessKubelet,
    objects: Objects,
    sup: str,
    first: int,
    n: int,
    tag: str,
) -> tuple[list[float], list[float]]:
    """Kill incarnations ``first`` .. ``first + n - 1`` of ``sup``'s child w, one at a time,
    each followed by a floor sample: (floors, restarts). Taken in turns, both see the same
    load; taken one phase after the other, a load that came or went between the phases (the
    machine is shared) moved the ratio more than anything measured."""
    floors, samples = [], []
    for incarnation in range(first, first + n):
        old, new = f"{sup}-w-{incarnation}", f"{sup}-w-{incarnation + 1}"

        def replaced(old: str = old, new: str = new) -> bool:
            return new in clock.added and old in clock.ended

        wait_for(lambda old=old: old in clock.running, timeout=120, what=f"{old} running")
        kubelet.kill_container(objects.namespace, old, "actor", signal.SIGKILL)
        wait_for(replaced, timeout=120, what=f"{new} created", interval=0.01)
        samples.append(clock.added[new] - clock.ended[old])
        floors.append(_floor_once(objects, clock, f"floor-{tag}-{incarnation}"))
    return floors, samples


def _bench_pod(name: str) -> bool:
    """A pod of the scale phase (Supervisors s0, s1, ...), not of the restart probe "solo"."""
    return name.startswith("s") and not name.startswith("solo-")


def _proc_cpu(pid: int, tid: int | None = None) -> float:
    """CPU seconds (user + system) of a process, or of one of its threads."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


class CpuMeter:
    """CPU seconds of the processes that do the work, by name."""

    def __init__(self, cluster: Cluster, operator: Operator, kubelet: ProcessKubelet) -> None:
        assert operator.popen is not None
        self.sources: dict[str, tuple[int, int | None]] = {"operator": (operator.popen.pid, None)}
        if cluster.control_plane is not None:
            for process in cluster.control_plane.processes:
                self.sources[process.name] = (process.pid, None)
        thread = kubelet._thread
        if thread is not None and thread.native_id is not None:
            self.sources["process kubelet (thread)"] = (os.getpid(), thread.native_id)

    def read(self) -> dict[str, float]:
        out = {}
        for name, (pid, tid) in self.sources.items():
            with contextlib.suppress(OSError):
                out[name] = _proc_cpu(pid, tid)
        return out


@dataclass
class Report:
    supervisors: int
    children: int
    floor_idle: list[float]
    restart_idle: list[float]
    to_ready: float
    cpu: dict[str, float]
    operator_peak_rss: int
    floor_full: list[float]
    restart_full: list[float]
    progress: list[tuple[float, int]] = field(default_factory=list)  # (seconds, pods running)

    @property
    def pods(self) -> int:
        return self.supervisors * self.children

    def lines(self) -> list[str]:
        def ms(values: list[float], q: float) -> str:
            return f"{percentile(values, q) * 1000:.0f} ms"

        f_idle, f_full = statistics.median(self.floor_idle), statistics.median(self.floor_full)
        r_idle, r_full = statistics.median(self.restart_idle), statistics.median(self.restart_full)
        rows = [
            f"| scale: {self.supervisors} Supervisors x {self.children} pods | |",
            "|---|---|",
            f"| time to all Ready | {self.to_ready:.1f} s "
            f"({self.pods / self.to_ready:.1f} pods/s) |",
        ]
        for name, seconds in sorted(self.cpu.items(), key=lambda kv: -kv[1]):
            rows.append(
                f"| CPU {name} | {seconds:.1f} s ({seconds / self.pods * 1000:.0f} ms/pod) |"
            )
        rows += [
            f"| operator peak RSS | {self.operator_peak_rss / 2**20:.0f} MiB |",
            f"| floor (create -> watch), idle | p50 {ms(self.floor_idle, 0.5)}, "
            f"p99 {ms(self.floor_idle, 0.99)} |",
            f"| restart (exit -> new pod), idle | p50 {ms(self.restart_idle, 0.5)} "
            f"({r_idle / f_idle:.1f}x floor p50), p99 {ms(self.restart_idle, 0.99)} "
            f"({percentile(self.restart_idle, 0.99) / f_idle:.1f}x floor p50) |",
            f"| floor (create -> watch), all {self.pods} running | p50 {ms(self.floor_full, 0.5)},"
            f" p99 {ms(self.floor_full, 0.99)} |",
            f"| restart, all {self.pods} running | p50 {ms(self.restart_full, 0.5)} "
            f"({r_full / f_full:.1f}x floor p50), p99 {ms(self.restart_full, 0.99)} "
            f"({percentile(self.restart_full, 0.99) / f_full:.1f}x floor p50) |",
            f"| restart p50 full / idle | {r_full / r_idle:.2f} |",
        ]
        if self.progress:
            marks = ", ".join(f"{n} @ {t:.0f}s" for t, n in self.progress)
            rows.append(f"| pods running over time | {marks} |")
        return rows


def run_benchmark(
    *,
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    cluster: Cluster,
    namespace: str,
    supervisors: int,
    children: int,
    restarts: int,
    ready_timeout: float,
) -> Report:
    clock = PodClock(cluster, namespace)
    meter = CpuMeter(cluster, operator, kubelet)
    try:
        # Its child outlives the benchmark, as the benchmark pods do: a sleeper's 10 minutes
        # ended during a 10,000-pod run, and the restarts after it waited for a pod long gone.
        solo = {**sleeper("w", shutdown="brutal_kill"), "actor": {"command": ["sleep", "86400"]}}
        objects.apply(supervisor("solo", [solo], intensity=1000, period="1s"))
        floor_idle, restart_idle = _restarts(clock, kubelet, objects, "solo", 1, restarts, "idle")

        cpu0 = meter.read()
        start = time.monotonic()
        for i in range(supervisors):
            pods = [
                {
                    "name": f"c{j}",
                    "shutdown": "brutal_kill",
                    # Generous: a start under load may wait long for the process kubelet; a
                    # start that overran it would show as a benchmark pod that ended.
                    "startTimeout": f"{ready_timeout:.0f}s",
                    "actor": {"command": ["sleep", "86400"]},  # outlives the benchmark
                }
                for j in range(children)
            ]
            objects.apply(supervisor(f"s{i}", pods))
        total = f"{children}/{children}"
        progress: list[tuple[float, int]] = []
        step = max(100, supervisors * children // 10)

        def all_ready() -> bool:
            running = sum(1 for name in list(clock.running) if _bench_pod(name))
            if running >= (len(progress) + 1) * step:
                progress.append((time.monotonic() - start, running))
            if running < supervisors * children:
                # Listing 200 Supervisors (large statuses) every poll took a fifth of this
                # process's CPU from the kubelet: list only once every pod runs.
                return False
            items = objects.custom.list_namespaced_custom_object(
                "rebeam.io", "v1alpha1", namespace, "supervisors"
            )["items"]
            ready = [
                o
                for o in items
                if o["metadata"]["name"] != "solo" and (o.get("status") or {}).get("ready") == total
            ]
            return len(ready) == supervisors

        wait_for(all_ready, timeout=ready_timeout, what="every Supervisor ready", interval=2.0)
        to_ready = time.monotonic() - start
        cpu1 = meter.read()
        assert operator.popen is not None
        peak = _peak_rss(operator.popen.pid)
        floor_full, restart_full = _restarts(
            clock, kubelet, objects, "solo", restarts + 1, restarts, "full"
        )
        ended = {n: clock.end_reasons.get(n, "?") for n in list(clock.ended) if _bench_pod(n)}
    finally:
        clock.close()
    assert not ended, f"benchmark pods ended while nobody stopped them: {ended}"
    return Report(
        supervisors=supervisors,
        children=children,
        floor_idle=floor_idle,
        restart_idle=restart_idle,
        to_ready=to_ready,
        cpu={name: cpu1[name] - cpu0.get(name, 0.0) for name in cpu1},
        operator_peak_rss=peak,
        floor_full=floor_full,
        restart_full=restart_full,
        progress=progress,
    )
