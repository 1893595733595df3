"""The bank on Kubernetes (docs/soak.md, "On Kubernetes"): the manifest of ``rebeam run``
applied as a Supervisor object to the test control plane of tests/e2e (a real kube-apiserver,
the operator as a process with exactly its RBAC, the process kubelet running each actor's pod
as a local process), under SIGKILL storms on actor pods, kills of the operator in the middle
of a restart, and the loss of the node; checked and reported by the same checker and report
as the soak on ``rebeam run``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import rebeam
from tests.soak import faults, procs
from tests.soak.check import check
from tests.soak.manifest import APP, Bank, manifest
from tests.soak.observer import Observer
from tests.soak.orphans import orphans_of
from tests.soak.soak import (
    Phase,
    Result,
    Schedule,
    acks_of,
    drain,
    run_phases,
    wait_flowing,
)

E2E = Path(__file__).resolve().parents[1] / "e2e"
for _path in (E2E, E2E / "operator"):  # the e2e tier's infra and operator helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from infra.cluster import Cluster  # noqa: E402
from infra.e2enats import E2ENats  # noqa: E402
from infra.kubelet import ProcessKubelet  # noqa: E402
from infra.procs import wait_for  # noqa: E402
from operator_helpers import (  # noqa: E402
    Lifecycle,
    Objects,
    Operator,
    Watchdog,
    operator_kubeconfig_for,
)

KUBE_FAULTS = ("kill", "hang", "operator", "node", "overload")
START_DEADLINE = 180.0  # pods of a cold cluster on a busy 2-core machine
STOP_DEADLINE = 90.0
CHILD_LABEL = "rebeam.io/child"
PODS_OVERLAP = "two live incarnations (pods)"  # the Watchdog's, a row of its own


@dataclass(frozen=True)
class KubeRates:
    operator_every: float = 10.0  # seconds between operator kills
    operator_down: float = 1.0  # seconds the operator stays dead
    node_down: float = 20.0  # seconds the node stays lost (> the 15 s node grace period)
    node_every: float = 10.0  # seconds between node losses


@dataclass
class KubeSite:
    """What the bank runs on: the cluster, its kubelet's fault switches, the NATS the pods
    reach, and a fresh namespace."""

    cluster: Cluster
    kubelet: ProcessKubelet
    nats: E2ENats
    namespace: str


def bank_object(bank: Bank, data: Path) -> dict[str, Any]:
    """The manifest of ``rebeam run``, as it is, plus where the pods find the bank's code."""
    body: dict[str, Any] = yaml.safe_load(manifest(bank, data))
    for child in body["spec"]["children"]:
        child["actor"]["env"] = [{"name": "PYTHONPATH", "value": str(APP)}]
    return body


@dataclass
class KubeObserver(Observer):
    """The soak's observer, on the pods' processes: the process kubelet runs each container
    as a child of this process, so the bank's family is the ``rebeam.runtime`` processes
    among this process's descendants (the control plane, NATS and the operator are not)."""

    family_marker = "rebeam.runtime"

    namespace: str = ""  # the soak's: a process of a pod elsewhere is not the bank's
    kubelet: ProcessKubelet | None = None  # asked, for a report, which container a pid is

    def heads(self) -> list[int]:
        return []

    def label(self, os_pid: int) -> str:
        return self.owners.get(os_pid, "other")

    def parent(self, ppid: int) -> str:
        if ppid == self.run_pid:
            return "the test process, whose test kubelet starts every container"
        return super().parent(ppid)

    def where(self, os_pid: int) -> str:
        """The pod it was started for (from its environment: the kubelet gives each
        container a termination-log file in the pod's own directory, named
        ``<namespace>_<pod>_<uid>``), and what the kubelet says of it now."""
        pod = pod_of(procs.environ(os_pid))
        said = "pod unknown" if pod is None else f"pod {pod[0]}/{pod[1]}"
        if pod is not None and pod[0] != self.namespace:
            said += f" (not the soak's namespace {self.namespace})"
        if self.kubelet is not None:
            said += f"; the kubelet: {self.kubelet.describe_pid(os_pid)}"
        return said


def pod_of(env: dict[str, str]) -> tuple[str, str] | None:
    """(namespace, pod name) of a process kubelet's container, from its environment."""
    log = env.get("REBEAM_TERMINATION_LOG")
    if not log:
        return None
    directory = Path(log).parent.parent.name  # <pod dir>/<container>/termination-log
    namespace, _, rest = directory.partition("_")
    name = rest.rpartition("_")[0]
    return (namespace, name) if namespace and name else None


class EventsTap:
    """The operator's lifecycle events from NATS, written to a file as ``rebeam run
    --events`` writes them, for the observer and the checker."""

    def __init__(self, nats: E2ENats, namespace: str, path: Path) -> None:
        self.lifecycle = Lifecycle(nats, namespace)
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        written = 0
        with self.path.open("a") as out:
            while True:
                stopping = self._stop.wait(0.05)
                events = self.lifecycle.events()
                for event in events[written:]:
                    out.write(json.dumps(event) + "\n")
                out.flush()
                written = len(events)
                if stopping:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.lifecycle.close()


@dataclass
class KubeRun:
    """The bank as a Supervisor object; what the phases need of it (soak.Running)."""

    workdir: Path
    objects: Objects
    operator: Operator
    _checked: float = 0.0
    _ended: bool = False

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def ended(self) -> bool:
        """The tree gave up or was stopped (looked at once a second: it is an API call)."""
        if time.monotonic() - self._checked >= 1.0:
            self._checked = time.monotonic()
            with contextlib.suppress(Exception):
                phase = self.objects.status("bank").get("phase")
                self._ended = phase in ("Terminated", "GaveUp", "Failed")
        return self._ended

    def log(self) -> str:
        return f"operator log:\n{self.operator.log_tail()}"

    def running_pod(self, child: str) -> str | None:
        for name, pod in self.objects.pods().items():
            labels = pod["metadata"].get("labels") or {}
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            running = any((s.get("state") or {}).get("running") for s in statuses)
            if labels.get(CHILD_LABEL) == child and running:
                return name
        return None


def _kill_pod(on: KubeSite, run: KubeRun, child: str) -> int | None:
    """SIGKILL of ``child``'s running pod through the kubelet; its pid, or None."""
    pod = run.running_pod(child)
    if pod is None:
        return None
    with contextlib.suppress(LookupError):
        return on.kubelet.kill_container(on.namespace, pod, "actor", signal.SIGKILL)
    return None


async def pod_kills(
    on: KubeSite,
    run: KubeRun,
    children: list[str],
    rates: faults.Rates,
    log: faults.FaultLog,
    rng: random.Random,
) -> None:
    while True:
        await asyncio.sleep(rng.expovariate(rates.kills_per_s))
        child = rng.choice(children)
        os_pid = await asyncio.to_thread(_kill_pod, on, run, child)
        if os_pid is not None:
            log.add("kill", f"{child} ({os_pid})")


async def operator_kills(
    on: KubeSite,
    run: KubeRun,
    children: list[str],
    rates: KubeRates,
    log: faults.FaultLog,
    rng: random.Random,
) -> None:
    """A child's pod killed, then the operator killed (-9) while it restarts that child,
    a random moment into its reaction, and started again."""
    try:
        while True:
            child = rng.choice(children)
            os_pid = await asyncio.to_thread(_kill_pod, on, run, child)
            if os_pid is not None:
                log.add("kill", f"{child} ({os_pid})")
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            await asyncio.to_thread(run.operator.kill)
            log.add("operator", f"while restarting {child}")
            await asyncio.sleep(rates.operator_down)
            await asyncio.to_thread(run.operator.start)
            await asyncio.sleep(rates.operator_every)
    finally:
        if run.operator.popen is None or run.operator.popen.poll() is not None:
            run.operator.start()  # the phase may end while it is down


async def node_losses(
    on: KubeSite,
    run: KubeRun,
    children: list[str],
    rates: KubeRates,
    log: faults.FaultLog,
    rng: random.Random,
) -> None:
    """The node lost (no heartbeats, no API traffic; its processes go on), a child killed
    while it is lost (no one can see it die until the node is back), then the node back."""
    try:
        while True:
            await asyncio.to_thread(on.kubelet.lose_node)
            log.add("node", "lost")
            await asyncio.sleep(rates.node_down / 2)
            child = rng.choice(children)
            os_pid = await asyncio.to_thread(_kill_pod, on, run, child)
            if os_pid is not None:
                log.add("kill", f"{child} ({os_pid})")
            await asyncio.sleep(rates.node_down / 2)
            await asyncio.to_thread(on.kubelet.recover_node)
            await asyncio.sleep(rates.node_every)
    finally:
        on.kubelet.recover_node()  # idempotent; also when the phase ends while it is lost


async def kube_soak(
    workdir: Path,
    on: KubeSite,
    bank: Bank | None = None,
    schedule: Schedule | None = None,
    rates: faults.Rates | None = None,
    kube_rates: KubeRates | None = None,
    seed: int = 1,
) -> Result:
    bank, schedule = bank or Bank(), schedule or Schedule(faults=KUBE_FAULTS)
    rates, kube_rates = rates or faults.Rates(), kube_rates or KubeRates()
    (workdir / "data").mkdir(parents=True)
    operator = Operator(
        operator_kubeconfig_for(on.cluster, workdir), on.namespace, on.nats, workdir
    )
    objects = Objects(on.cluster, on.namespace)
    run = KubeRun(workdir, objects, operator)
    events = workdir / "events.jsonl"
    observer = KubeObserver(
        os.getpid(), run.data, events, namespace=on.namespace, kubelet=on.kubelet
    )
    observer.start()
    operator.start()
    tap = EventsTap(on.nats, on.namespace, events)
    watchdog = Watchdog(objects)
    exit_code: int | None = None
    try:
        objects.apply(bank_object(bank, run.data))
        # Flowing first: the operator sets the namespace up on NATS (its buckets) as it
        # starts the tree, and a client that connects before that is refused.
        await wait_flowing(run, bank, observer, START_DEADLINE)
        async with rebeam.connect(  # no lease: the harness measures, it is no bank process
            on.nats.url, namespace=on.namespace, credentials=on.cluster.admin_token(), lease=False
        ) as node:
            phases, log = await _phases(
                run, on, bank, schedule, rates, kube_rates, observer, node, seed
            )
            drained_in, live_total = await drain(node, bank)
    finally:
        exit_code, stopped = await asyncio.to_thread(_stop, run)
        observer.sample()
        observer.stop()
        overlaps = watchdog.close()
        tap.close()
        operator.stop()
    orphans = orphans_of(observer)
    findings = check(bank, run.data, observer, live_total)
    findings.more_kinds.append(PODS_OVERLAP)
    for overlap in overlaps:
        findings.add(PODS_OVERLAP, overlap)
    return Result(
        bank, phases, findings, observer, log, acks_of(run, bank), orphans,
        exit_code, drained_in, workdir, notes=[stopped], backend="the operator",
    )  # fmt: skip


def _stop(run: KubeRun) -> tuple[int | None, str]:
    """Delete the Supervisor object, as a user would: 0 once every pod is gone, else None;
    and how long that took, or which pods were left and in what state (their processes are
    still running: the orphans then found are theirs)."""
    started = time.monotonic()
    with contextlib.suppress(Exception):
        run.objects.delete("bank")
    left: dict[str, Any] = {}

    def gone() -> bool:
        nonlocal left
        with contextlib.suppress(Exception):
            left = run.objects.pods()
            return not left
        return False

    with contextlib.suppress(Exception):
        wait_for(gone, timeout=STOP_DEADLINE, what="pods gone")
        return 0, f"every pod was gone {time.monotonic() - started:.1f}s after the deletion"
    pods = "; ".join(_pod_state(name, pod) for name, pod in sorted(left.items()))
    return None, f"{len(left)} pods still there {STOP_DEADLINE:g}s after the deletion: {pods}"


def _pod_state(name: str, pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    states = [next(iter(s.get("state") or {}), "?") for s in status.get("containerStatuses") or []]
    deleting = pod["metadata"].get("deletionTimestamp")
    since = f", deleted at {deleting}" if deleting else ", not deleted"
    return f"{name} ({status.get('phase')}, container {'/'.join(states) or 'none'}{since})"


async def _phases(
    run: KubeRun,
    on: KubeSite,
    bank: Bank,
    schedule: Schedule,
    rates: faults.Rates,
    kube_rates: KubeRates,
    observer: Observer,
    node: rebeam.Node,
    seed: int,
) -> tuple[list[Phase], faults.FaultLog]:
    rng = random.Random(seed)
    log = faults.FaultLog()
    targets = [*bank.account_names(), *bank.teller_names(), "auditor"]

    async def set_rate(rate: float) -> None:
        for teller in bank.teller_names():
            await node.cast(teller, {"rate": rate})

    makers: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "kill": lambda: pod_kills(on, run, targets, rates, log, rng),
        "hang": lambda: faults.hangs(observer, targets, rates, log, rng),
        "operator": lambda: operator_kills(on, run, targets, kube_rates, log, rng),
        "node": lambda: node_losses(on, run, targets, kube_rates, log, rng),
        "overload": lambda: faults.overload(set_rate, bank.rate, rates, log),
    }
    return await run_phases(schedule, makers, run), log


@contextlib.contextmanager
def local_cluster(workdir: Path) -> Iterator[KubeSite]:
    """The e2e tier's cluster and NATS, outside pytest (``python -m tests.soak
    --kubernetes``): needs the binaries of ``make controlplane``."""
    from rebeam.auth.serverconf import SHARED_ACCOUNT
    from rebeam.natsd import NatsServer, ServerOptions

    crds = Path(__file__).resolve().parents[2] / "crds"
    with Cluster.local(workdir / "cluster", crds=crds) as cluster:
        cluster.apply_crds(crds)
        assert cluster.kubelet is not None
        options = ServerOptions(shared_account=SHARED_ACCOUNT, primary_issuer=False)
        (workdir / "nats").mkdir()
        with NatsServer.start(workdir / "nats", options) as server:
            nats = E2ENats(server.url, workdir / "nats" / "issuer.json", server.issuer)
            namespace = cluster.create_namespace("soak")
            try:
                yield KubeSite(cluster, cluster.kubelet, nats, namespace)
            finally:
                cluster.delete_namespace(namespace)
