"""What security costs a restart on Kubernetes: the same restart measured against a secured
and an open NATS in one run, the two interleaved so that load from anything else on the
machine falls on both alike.

Two sides run at once, each its own namespace, ``rebeam-operator`` and nats-server:

* **secured**: the e2e tier's NATS (accounts, auth callout) with the operator as its credential
  issuer, as the chart installs it;
* **open**: a nats-server without authentication and an operator without ``--issuer-secrets``:
  the comparison row, never a way to run (docs/security.md).

Each side runs one Supervisor whose child is a real Python actor (the demo's greeter, which
registers a name), so a restart includes what security adds: the new pod's projected token
checked by the issuer (a TokenReview), its user JWT signed, its connection placed in an
account with its permissions, its name claimed under them. Rounds alternate which side goes
first. Each sample is one SIGKILL of the current incarnation, timed from its exit (the pod's
terminated status on a watch) to the replacement pod (on the same watch) and to the
moment its runtime says it is ready (connected, registered, ``init`` returned: the line it
writes for the readiness probe, polled finely here) and to its ``started`` lifecycle event (the
pod Ready, as the probe, run once a second, sees it).

Nothing is asserted about the timings: the table is printed. What is asserted is that every
restart happened on both sides.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from operator_helpers import Lifecycle, Objects, Operator, actor, supervisor
from scale_bench import PodClock, percentile

__all__ = ["Side", "SideReport", "open_side", "run_paired", "side"]

SUPERVISOR, CHILD = "solo", "w"


@dataclass
class SideReport:
    to_pod: list[float] = field(default_factory=list)  # exit -> replacement pod seen
    to_ready: list[float] = field(default_factory=list)  # exit -> its runtime said ready
    to_started: list[float] = field(default_factory=list)  # exit -> replacement started


@dataclass
class Side:
    """One namespace with its operator and NATS, and the clocks that time its restarts."""

    name: str
    kubelet: ProcessKubelet
    objects: Objects
    clock: PodClock
    lifecycle: Lifecycle
    incarnation: int = 1
    report: SideReport = field(default_factory=SideReport)

    @property
    def namespace(self) -> str:
        return self.objects.namespace

    def deploy(self) -> None:
        greeter = actor(CHILD, "hello.greeter:Greeter", register="greeter", shutdown="brutal_kill")
        self.objects.apply(supervisor(SUPERVISOR, [greeter], intensity=1000, period="1s"))
        self._started_at(self.incarnation)

    def _started_at(self, incarnation: int) -> float:
        def started() -> float | None:
            for at, event in self.lifecycle.arrivals():
                if (
                    event.get("event") == "started"
                    and event.get("child") == CHILD
                    and event.get("incarnation") == incarnation
                ):
                    return at
            return None

        return wait_for(
            started,
            timeout=120,
            what=f"{self.name}: incarnation {incarnation} of {CHILD} started",
            interval=0.005,
        )

    def _ready_at(self, pod: str) -> float:
        """When the pod's runtime wrote its ready line (connected, name registered, init
        returned): the file its readiness probe reads, in the pod's HOME under the process
        kubelet. Polled finely: the probe itself runs once a second, too coarse to time this."""
        pods = self.kubelet.workdir / "pods"

        def ready() -> float | None:
            for home in pods.glob(f"{self.namespace}_{pod}_*"):
                with contextlib.suppress(OSError):
                    if (home / ".rebeam-ready").read_text().startswith("ready"):
                        return time.monotonic()
            return None

        return wait_for(ready, timeout=120, what=f"{self.name}: {pod} ready", interval=0.002)

    def restart_once(self) -> None:
        """SIGKILL the running incarnation; time its replacement."""
        inc = self.incarnation
        old, new = f"{SUPERVISOR}-{CHILD}-{inc}", f"{SUPERVISOR}-{CHILD}-{inc + 1}"
        wait_for(lambda: old in self.clock.running, timeout=120, what=f"{self.name}: {old} runs")
        self.kubelet.kill_container(self.namespace, old, "actor", signal.SIGKILL)
        ready = self._ready_at(new)
        started = self._started_at(inc + 1)
        wait_for(
            lambda: new in self.clock.added and old in self.clock.ended,
            timeout=120,
            what=f"{self.name}: {new} created",
        )
        ended = self.clock.ended[old]
        self.report.to_pod.append(self.clock.added[new] - ended)
        self.report.to_ready.append(ready - ended)
        self.report.to_started.append(started - ended)
        self.incarnation = inc + 1


@contextmanager
def side(
    name: str, cluster: Cluster, kubelet: ProcessKubelet, nats: E2ENats, namespace: str
) -> Iterator[Side]:
    """A side in ``namespace``, whose operator the caller runs against ``nats``."""
    objects = Objects(cluster, namespace)
    clock = PodClock(cluster, namespace)
    lifecycle = Lifecycle(nats, namespace)
    try:
        yield Side(name, kubelet, objects, clock, lifecycle)
    finally:
        lifecycle.close()
        clock.close()


@contextmanager
def open_side(
    cluster: Cluster, kubelet: ProcessKubelet, operator_kubeconfig: Path, workdir: Path
) -> Iterator[Side]:
    """The comparison row: an open nats-server, an operator that issues nothing, a namespace."""
    from rebeam.natsd import NatsServer, ServerOptions

    namespace = cluster.create_namespace("open-bench")
    try:
        with NatsServer.start(workdir / "nats", ServerOptions(secure=False)) as server:
            nats = E2ENats.open(server.url)
            (workdir / "operator").mkdir()
            operator = Operator(operator_kubeconfig, namespace, nats, workdir / "operator")
            operator.start()
            try:
                with side("open", cluster, kubelet, nats, namespace) as opened:
                    yield opened
                operator.check_running()
            finally:
                operator.stop()
    finally:
        cluster.delete_namespace(namespace)


def run_paired(secured: Side, opened: Side, rounds: int) -> None:
    """Deploy both sides, then ``rounds`` restarts on each, alternating which goes first."""
    secured.deploy()
    opened.deploy()
    for i in range(rounds):
        for one in (secured, opened) if i % 2 == 0 else (opened, secured):
            one.restart_once()


def lines(secured: SideReport, opened: SideReport, rounds: int) -> list[str]:
    def cell(values: list[float]) -> str:
        p50, p90 = (percentile(values, q) * 1000 for q in (0.5, 0.9))
        return f"p50 {p50:.0f} ms, p90 {p90:.0f} ms"

    def ratio(a: list[float], b: list[float]) -> str:
        # Each secured restart against the open one next to it in time: load that comes and
        # goes on a shared machine falls on both of a pair.
        return f"{statistics.median(x / y for x, y in zip(a, b, strict=True)):.2f}x"

    return [
        f"| restart, secured vs open NATS ({rounds} rounds each, interleaved) | secured | open "
        "| secured / open (median of pairs) |",
        "|---|---|---|---|",
        f"| exit -> replacement pod | {cell(secured.to_pod)} | {cell(opened.to_pod)} "
        f"| {ratio(secured.to_pod, opened.to_pod)} |",
        f"| exit -> replacement's runtime ready (connected, registered, init done) "
        f"| {cell(secured.to_ready)} | {cell(opened.to_ready)} "
        f"| {ratio(secured.to_ready, opened.to_ready)} |",
        f"| exit -> replacement started (pod Ready: probe every 1 s) "
        f"| {cell(secured.to_started)} | {cell(opened.to_started)} "
        f"| {ratio(secured.to_started, opened.to_started)} |",
    ]
