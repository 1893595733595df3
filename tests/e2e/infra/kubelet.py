"""The process kubelet: a stand-in Kubernetes node that runs pods as local processes.

It is the only fake part of the e2e tier; everything it talks to is a real API server. What it
does, like a kubelet:

- registers a Ready ``Node`` and renews its ``Lease`` in ``kube-node-lease`` (the heartbeat);
- binds unscheduled pods (default scheduler) to its node: there is no kube-scheduler;
- runs each container's ``command`` + ``args`` as a local process (the image is ignored), with
  ``env`` (values, ``$(VAR)`` expansion, ``fieldRef``, ``configMapKeyRef``, ``secretKeyRef``,
  ``envFrom``) and ``workingDir``; each container is its own process group;
- writes pod status: phase, conditions, ``containerStatuses`` (waiting / running / terminated
  with exitCode, reason and message), restart counts; a container killed by signal N ends with
  exit code 128+N and reason ``Error`` (what containerd reports), one that cannot start with exit
  code 128 and reason ``StartError``; restarts follow ``restartPolicy`` with a back-off (1 s
  doubling to 60 s) shown as ``CrashLoopBackOff``;
- completes deletions: SIGTERM to every container, the grace period, SIGKILL, final status,
  then ``DELETE`` with grace 0 and a UID precondition.

Where it differs from a kubelet (deliberately; documented in tests/e2e/README.md):

- The termination-message file: ``terminationMessagePath`` names a path inside a container, which
  a local process cannot have to itself. Each container gets a file of its own instead, passed in
  the env var ``REBEAM_TERMINATION_LOG``; its content (at most 4096 bytes) becomes the terminated
  state's ``message``, and ``FallbackToLogsOnError`` falls back to the log's tail as a kubelet does.
  On a real cluster a pod gets the same behaviour by setting ``REBEAM_TERMINATION_LOG`` to its
  ``terminationMessagePath``.
- The ServiceAccount token: instead of a projected volume, a container gets ``KUBECONFIG`` naming a
  kubeconfig with a token for the pod's ServiceAccount (TokenRequest bound to the pod), unless
  ``automountServiceAccountToken`` is false. Clients that try in-cluster config first fall back
  to it.
- No images, volumes, probes, init containers, resource limits or ``kubectl logs``/``exec``: a
  pod with init containers fails; probes are ignored (a running container is ready). Logs are
  files under the kubelet's work directory (:meth:`ProcessKubelet.log_path`). All pods share the
  loopback network: podIP and hostIP are 127.0.0.1.
- It acts with the admin credentials, not as ``system:node:<name>``.

Fault switches for tests (thread-safe, called from the test's thread): :meth:`kill_container`,
:meth:`fail_start`, :meth:`lose_node` / :meth:`recover_node`.

It runs an asyncio loop in a thread of its own, which lives as long as the kubelet: containers are
forked from it with ``PR_SET_PDEATHSIG``, so none outlives the test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig
from kubernetes.aio import watch as awatch

from .procs import die_with_parent

__all__ = ["ProcessKubelet", "StartFault"]

log = logging.getLogger("rebeam.e2e.kubelet")

T = TypeVar("T")
Json = dict[str, Any]

HOST_IP = "127.0.0.1"
LEASE_SECONDS = 40
RENEW_SECONDS = 3.0  # kube-controller-manager runs with --node-monitor-grace-period=15s
BACKOFF_INITIAL, BACKOFF_MAX = 1.0, 60.0
MAX_MESSAGE = 4096
MERGE_PATCH = "application/merge-patch+json"
KUBELET_CONDITIONS = {"PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class StartFault:
    """Make matching container starts fail (None matches anything); ``times`` None = forever."""

    namespace: str
    pod: str | None = None
    container: str | None = None
    times: int | None = 1
    message: str = "injected start failure (process kubelet fault switch)"

    def matches(self, namespace: str, pod: str, container: str) -> bool:
        return (
            self.namespace == namespace
            and self.pod in (None, pod)
            and self.container in (None, container)
            and (self.times is None or self.times > 0)
        )


class ProcessKubelet:
    """One node. :meth:`start` registers it and returns once it is Ready; :meth:`stop` ends it."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        server: str,
        ca_cert: Path,
        workdir: Path,
        node_name: str = "rebeam-e2e-node",
        path: str | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.server = server
        self.ca_cert = ca_cert
        self.workdir = workdir
        self.node_name = node_name
        # A second, unschedulable node that only heartbeats. With one node, losing it would be
        # "all nodes not ready": the node lifecycle controller then assumes a control-plane
        # network problem and neither taints nor marks pods not ready. With a spare, node loss
        # looks as it does in any multi-node cluster.
        self.spare_node = f"{node_name}-spare"
        # Containers find `python` & co. first beside this interpreter (the project venv).
        self.path = path or os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        )
        self.lost = False
        self.online: asyncio.Event | None = None  # set while not lost (created in the loop)
        self._faults: list[StartFault] = []
        self._faults_lock = threading.Lock()
        self._pods: dict[str, Json] = {}  # uid -> latest pod seen (the informer cache)
        self._workers: dict[str, PodWorker] = {}  # uid -> worker of a pod bound here
        self._done: set[str] = set()  # uids whose worker has finished: never run again
        self._binding: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._api: aclient.ApiClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle (called from the test thread) ------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._main(ready, failure))
            finally:
                loop.close()

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=run, name=f"kubelet-{self.node_name}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"process kubelet not ready within {timeout:.0f}s")
        if failure:
            raise RuntimeError("process kubelet failed to start") from failure[0]

    def stop(self, timeout: float = 30.0) -> None:
        """Kill every container (SIGTERM, 2 s, SIGKILL) and end the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop may already be closing
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        thread.join(timeout)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        assert self._loop is not None, "kubelet not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- fault switches (called from the test thread) --------------------------------------------

    def kill_container(
        self, namespace: str, pod: str, container: str | None = None, sig: int = signal.SIGKILL
    ) -> int:
        """Send ``sig`` to a running container's process group; returns its pid."""

        async def kill() -> int:
            run = self._container(namespace, pod, container)
            if run.process is None or run.process.returncode is not None:
                raise LookupError(
                    f"container {container or '(first)'} of {namespace}/{pod} is not running"
                )
            os.killpg(run.process.pid, sig)
            return run.process.pid

        return self._call(kill())

    def fail_start(
        self,
        namespace: str,
        pod: str | None = None,
        container: str | None = None,
        *,
        times: int | None = 1,
        message: str = "injected start failure (process kubelet fault switch)",
    ) -> StartFault:
        """Make the next ``times`` starts of matching containers fail (exit 128, StartError)."""
        fault = StartFault(namespace, pod, container, times, message)
        with self._faults_lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def lose_node(self) -> None:
        """Node loss: heartbeats and all API traffic stop, processes go on running. Within the
        node monitor grace period (15 s) the node lifecycle controller marks the Node
        Ready=Unknown, taints it unreachable and marks its pods not ready."""
        self._call(self._lose())

    def recover_node(self) -> None:
        """The node is back: Ready again, heartbeats resume, every pod is synced afresh."""
        self._call(self._recover())

    # -- inspection (called from the test thread) ------------------------------------------------

    def container_pid(self, namespace: str, pod: str, container: str | None = None) -> int | None:
        async def pid() -> int | None:
            run = self._container(namespace, pod, container)
            if run.process is None or run.process.returncode is not None:
                return None
            return run.process.pid

        return self._call(pid())

    def log_path(self, namespace: str, pod: str, container: str | None = None) -> Path:
        """The log file of a container's current (or last) run."""

        async def path() -> Path:
            return self._container(namespace, pod, container).log_path

        return self._call(path())

    def _container(self, namespace: str, pod: str, container: str | None) -> ContainerRun:
        for worker in self._workers.values():
            meta = worker.pod["metadata"]
            if meta["namespace"] == namespace and meta["name"] == pod:
                if container is None:
                    return next(iter(worker.containers.values()))
                return worker.containers[container]
        raise LookupError(f"no pod {namespace}/{pod} on node {self.node_name}")

    # -- the loop ----------------------------------------------------------------------------------

    async def _main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._stopping = asyncio.Event()
        self.online = asyncio.Event()
        self.online.set()
        try:
            configuration = aclient.Configuration()
            await aconfig.load_kube_config(
                config_file=str(self.kubeconfig), client_configuration=configuration
            )
            self._api = aclient.ApiClient(configuration)
            self.core = aclient.CoreV1Api(self._api)
            self.coordination = aclient.CoordinationV1Api(self._api)
            for name in (self.node_name, self.spare_node):
                await self._register_node(name, unschedulable=name == self.spare_node)
                await self._renew_lease(name)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            if self._api is not None:
                await self._api.close()
            return
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._watch_pods(), name="watch-pods"),
        ]
        ready.set()
        await self._stopping.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._api.close()

    async def _shutdown(self) -> None:
        self.lost = True  # no more API writes: the control plane may already be going
        workers = list(self._workers.values())
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        assert self._stopping is not None
        self._stopping.set()

    # -- node and heartbeat ------------------------------------------------------------------

    def _ready_condition(self, status: str, reason: str, message: str) -> Json:
        return {
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now(),
            "lastTransitionTime": now(),
        }

    async def _register_node(self, name: str, *, unschedulable: bool) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "spec": {"unschedulable": unschedulable},
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "rebeam.io/process-kubelet": "true",
                },
            },
        }
        try:
            await self.core.create_node(node)
        except aclient.ApiException as exc:
            if exc.status != 409:
                raise
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": "16Gi", "pods": "250"}
        pressure = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHasNo{kind}",
                "message": "process kubelet",
                "lastHeartbeatTime": now(),
                "lastTransitionTime": now(),
            }
            for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]
        status = {
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [
                    {"type": "InternalIP", "address": HOST_IP},
                    {"type": "Hostname", "address": name},
                ],
                "conditions": [
                    *pressure,
                    self._ready_condition("True", "KubeletReady", "process kubelet is ready"),
                ],
                "nodeInfo": {
                    "machineID": "rebeam-e2e",
                    "systemUUID": "rebeam-e2e",
                    "bootID": "rebeam-e2e",
                    "kernelVersion": os.uname().release,
                    "osImage": "process kubelet",
                    "containerRuntimeVersion": "process://1",
                    "kubeletVersion": "v0.0.0-process",
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            }
        }
        await self.core.patch_node_status(name, status, _content_type=MERGE_PATCH)

    async def _set_ready(self, status: str, reason: str, message: str) -> None:
        node = await self.core.read_node_status(self.node_name)
        conditions = [
            c for c in self._api_dict(node)["status"].get("conditions", []) if c["type"] != "Ready"
        ]
        conditions.append(self._ready_condition(status, reason, message))
        await self.core.patch_node_status(
            self.node_name, {"status": {"conditions": conditions}}, _content_type=MERGE_PATCH
        )

    async def _renew_lease(self, name: str) -> None:
        lease_ns = "kube-node-lease"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_now(),
        }
        try:
            await self.coordination.patch_namespaced_lease(
                name, lease_ns, {"spec": spec}, _content_type=MERGE_PATCH
            )
        except aclient.ApiException as exc:
            if exc.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": lease_ns},
                "spec": spec,
            }
            await self.coordination.create_namespaced_lease(lease_ns, lease)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self._renew_lease(self.spare_node)
                if not self.lost:
                    await self._renew_lease(self.node_name)
            except Exception:
                log.exception("lease renewal failed")

    async def _lose(self) -> None:
        # Silence only: the node lifecycle controller notices the stale lease within its grace
        # period and does what it does on a real cluster (Ready=Unknown, unreachable taint,
        # pods marked not ready). Writing Ready=Unknown here would hide that transition from it.
        self.lost = True
        assert self.online is not None
        self.online.clear()

    async def _recover(self) -> None:
        await self._renew_lease(self.node_name)
        await self._set_ready("True", "KubeletReady", "process kubelet is ready")
        self.lost = False
        assert self.online is not None
        self.online.set()
        live = await self.core.list_pod_for_all_namespaces()
        self._pods = {p["metadata"]["uid"]: p for p in self._api_dict(live)["items"]}
        for uid, worker in list(self._workers.items()):
            if uid not in self._pods:
                worker.gone()
        for pod in list(self._pods.values()):
            self._sync(pod)
        for worker in self._workers.values():
            worker.status_changed()

    # -- pods ------------------------------------------------------------------------------------

    def _api_dict(self, obj: Any) -> Json:
        assert self._api is not None
        data: Json = self._api.sanitize_for_serialization(obj)
        return data

    async def _watch_pods(self) -> None:
        """List, then watch from the list's resourceVersion; on any error list again."""
        while True:
            try:
                listing = self._api_dict(await self.core.list_pod_for_all_namespaces())
                seen = {p["metadata"]["uid"] for p in listing["items"]}
                for uid in list(self._pods):
                    if uid not in seen:
                        self._on_event("DELETED", self._pods[uid])
                for pod in listing["items"]:
                    self._on_event("ADDED", pod)
                version = listing["metadata"]["resourceVersion"]
                while True:
                    # return_type "object": events stay plain dicts (raw_object), no models.
                    async with awatch.Watch(return_type="object") as stream:
                        async for event in stream.stream(
                            self.core.list_pod_for_all_namespaces,
                            resource_version=version,
                            timeout_seconds=60,
                            allow_watch_bookmarks=True,
                        ):
                            pod = event["raw_object"]
                            version = pod["metadata"]["resourceVersion"]
                            if event["type"] != "BOOKMARK":
                                self._on_event(event["type"], pod)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("pod watch ended (%s); listing again", exc)
                await asyncio.sleep(0.2)

    def _on_event(self, kind: str, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        if kind == "DELETED":
            self._pods.pop(uid, None)
            if not self.lost and uid in self._workers:
                self._workers[uid].gone()
            return
        self._pods[uid] = pod
        if not self.lost:
            self._sync(pod)

    def _sync(self, pod: Json) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        node = spec.get("nodeName")
        if not node:
            default = spec.get("schedulerName", "default-scheduler") == "default-scheduler"
            if default and "deletionTimestamp" not in meta and uid not in self._binding:
                self._binding.add(uid)
                self._spawn_task(self._bind(pod))
            return
        if node != self.node_name:
            return
        worker = self._workers.get(uid)
        if worker is None:
            if uid in self._done or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return  # a late event of a pod that has finished here
            if "deletionTimestamp" in meta:  # deleted before it ever started
                self._done.add(uid)
                self._spawn_task(self._finish_deletion(meta["namespace"], meta["name"], uid))
                return
            worker = PodWorker(self, pod)
            self._workers[uid] = worker
            worker.task = self._spawn_task(worker.run())
        else:
            worker.update(pod)

    async def _bind(self, pod: Json) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            # The response is a Status, not a Binding: take it raw.
            response = await self.core.create_namespaced_pod_binding_without_preload_content(
                meta["name"], meta["namespace"], binding
            )
            await response.read()
            if response.status >= 300 and response.status not in (404, 409):
                log.warning(
                    "binding %s/%s: HTTP %s", meta["namespace"], meta["name"], response.status
                )
        except aclient.ApiException as exc:
            if exc.status not in (404, 409):  # gone, or bound meanwhile
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], exc)
        finally:
            self._binding.discard(meta["uid"])

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("kubelet task failed", exc_info=task.exception())

    def _take_fault(self, namespace: str, pod: str, container: str) -> StartFault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.matches(namespace, pod, container):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    async def _finish_deletion(self, namespace: str, name: str, uid: str) -> None:
        """DELETE with grace 0 and a UID precondition: this node has stopped the pod."""
        try:
            await self.core.delete_namespaced_pod(
                name,
                namespace,
                # With a body, the API server reads DeleteOptions from it alone.
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
            )
        except aclient.ApiException as exc:
            if exc.status not in (404, 409):  # gone already, or another pod of that name
                raise

    def forget(self, uid: str) -> None:
        self._workers.pop(uid, None)
        self._done.add(uid)


class StartError(Exception):
    """A container could not be started (its message goes into the terminated state)."""


@dataclass
class ContainerRun:
    """One container of a pod: its spec, its current process and the status a kubelet reports."""

    spec: Json
    directory: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    started_once: bool = False
    probe_ready: bool = False  # the readiness probe's verdict on the current run
    env: dict[str, str] = field(default_factory=dict)
    will_restart: bool = True  # until it ends for good

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.restarts}.log"

    @property
    def termination_log(self) -> Path:
        return self.directory / "termination-log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def ready(self) -> bool:
        """Running, and its exec readiness probe (if any) last succeeded."""
        return self.running and ("readinessProbe" not in self.spec or self.probe_ready)

    def status(self, pid_prefix: str = "process://") -> Json:
        status: Json = {
            "name": self.name,
            "image": self.spec.get("image") or "none",
            "imageID": self.spec.get("image") or "none",
            "ready": self.ready,
            "started": self.running,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.process is not None:
            status["containerID"] = f"{pid_prefix}{self.process.pid}"
        return status


class PodWorker:
    """Runs one pod bound to this node, from its first start to its deletion."""

    def __init__(self, kubelet: ProcessKubelet, pod: Json) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.directory = kubelet.workdir / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.containers = {
            c["name"]: ContainerRun(c, self.directory / c["name"])
            for c in pod["spec"]["containers"]
        }
        self.task: asyncio.Task[None] | None = None
        self.start_time = now()
        self.terminating = False
        self.deadline: float | None = None
        self.wake = asyncio.Event()  # ends back-off waits when terminating
        self.transitions: dict[str, tuple[str, str]] = {}  # condition -> (status, since)
        self.write_lock = asyncio.Lock()
        self.pending_write = False
        self.deleted = False  # gone from the API

    # -- events from the kubelet --

    def update(self, pod: Json) -> None:
        self.pod = pod
        meta = pod["metadata"]
        if "deletionTimestamp" in meta:
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            self.request_termination(grace)

    def gone(self) -> None:
        """The pod was removed from the API (force-deleted): just stop its processes."""
        self.deleted = True
        spec_grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds", spec_grace)
        self.request_termination(float(grace or 0))

    def request_termination(self, grace: float) -> None:
        deadline = asyncio.get_running_loop().time() + grace
        if self.terminating:
            if self.deadline is not None and deadline < self.deadline:
                self.deadline = deadline  # a second delete with a shorter grace period
            return
        self.terminating, self.deadline = True, deadline
        self.wake.set()
        self.kubelet._spawn_task(self._terminate())

    def status_changed(self) -> None:
        self.kubelet._spawn_task(self.write_status())

    # -- running --

    async def run(self) -> None:
        spec = self.pod["spec"]
        if spec.get("initContainers"):
            for run in self.containers.values():
                run.state = {"waiting": {"reason": "Unsupported"}}
                run.will_restart = False
            await self.write_status(
                phase="Failed", message="the process kubelet does not run initContainers"
            )
            return
        await self.write_status()
        await asyncio.gather(*(self._run_container(run) for run in self.containers.values()))
        await self.write_status()

    async def _run_container(self, run: ContainerRun) -> None:
        backoff = BACKOFF_INITIAL
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.terminating:
            started_at = now()
            try:
                await self._start(run)
                assert run.process is not None
                if self.terminating:  # deleted while it was starting
                    _signal_group(run.process.pid, signal.SIGTERM)
                run.state = {"running": {"startedAt": started_at}}
                run.started_once = True
                self.status_changed()
                probing = asyncio.create_task(self._probe_readiness(run))
                try:
                    code = await run.process.wait()
                finally:
                    probing.cancel()
                    run.probe_ready = False
                exit_code, sig = (128 - code, -code) if code < 0 else (code, None)
                reason = "Completed" if exit_code == 0 else "Error"
            except Exception as exc:  # StartError, or the API failing us while preparing
                exit_code, sig, reason = 128, None, "StartError"
                (run.directory / "start-error").write_text(str(exc))
            terminated: Json = {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": started_at,
                "finishedAt": now(),
            }
            if sig is not None:
                terminated["signal"] = sig
            message = self._termination_message(run, exit_code, reason)
            if message:
                terminated["message"] = message
            if run.process is not None and reason != "StartError":
                terminated["containerID"] = f"process://{run.process.pid}"
            run.state = {"terminated": terminated}
            restart = not self.terminating and (
                policy == "Always" or (policy == "OnFailure" and exit_code != 0)
            )
            if not restart:
                run.will_restart = False
                self.status_changed()
                return
            run.last_state = run.state
            run.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff:.0f}s restarting failed container={run.name} "
                    f"pod={self.name}_{self.namespace}({self.uid})",
                }
            }
            self.status_changed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            if not self.terminating:
                run.restarts += 1
        run.will_restart = False

    async def _start(self, run: ContainerRun) -> None:
        run.directory.mkdir(parents=True, exist_ok=True)
        run.termination_log.write_bytes(b"")
        run.process = None
        fault = self.kubelet._take_fault(self.namespace, self.name, run.name)
        if fault is not None:
            raise StartError(fault.message)
        spec = run.spec
        env = run.env = await self._environment(run)
        argv = [_expand(a, env) for a in [*spec.get("command", []), *spec.get("args", [])]]
        if not spec.get("command"):
            raise StartError("the process kubelet ignores images: a container needs a `command`")
        cwd = spec.get("workingDir") or str(self.directory)
        if not Path(cwd).is_dir():  # noqa: ASYNC240 - local and instant
            raise StartError(f"workingDir {cwd} does not exist on this host")
        log_file = open(run.log_path, "ab")  # noqa: SIM115, ASYNC230 - handed to the child
        try:
            run.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals reach its children too
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise StartError(f"failed to start {argv[0]!r}: {exc}") from exc
        finally:
            log_file.close()

    async def _probe_readiness(self, run: ContainerRun) -> None:
        """Run an ``exec`` readinessProbe as a kubelet does (other probe kinds: always ready)."""
        probe = run.spec.get("readinessProbe")
        if probe is None:
            return
        if "exec" not in probe:
            run.probe_ready = True
            self.status_changed()
            return
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        streak = {True: 0, False: 0}
        needed = {True: probe.get("successThreshold", 1), False: probe.get("failureThreshold", 3)}
        while True:
            ok = await self._exec_probe(
                run, probe["exec"]["command"], probe.get("timeoutSeconds", 1)
            )
            streak[ok], streak[not ok] = streak[ok] + 1, 0
            if streak[ok] >= needed[ok] and run.probe_ready != ok:
                run.probe_ready = ok
                self.status_changed()
            await asyncio.sleep(probe.get("periodSeconds", 10))

    async def _exec_probe(self, run: ContainerRun, command: list[str], timeout: float) -> bool:
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=run.spec.get("workingDir") or str(self.directory),
                env=run.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError:
            return False
        try:
            return await asyncio.wait_for(process.wait(), timeout) == 0
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            return False
        finally:
            if process.returncode is None:  # cancelled with the container
                _signal_group(process.pid, signal.SIGKILL)
                await asyncio.shield(process.wait())

    def _termination_message(self, run: ContainerRun, exit_code: int, reason: str) -> str:
        if reason == "StartError":
            return (run.directory / "start-error").read_text()
        with contextlib.suppress(OSError):
            message = run.termination_log.read_bytes()[:MAX_MESSAGE]
            if message:
                return message.decode(errors="replace")
        policy = run.spec.get("terminationMessagePolicy", "File")
        if policy == "FallbackToLogsOnError" and exit_code != 0:
            with contextlib.suppress(OSError):
                lines = run.log_path.read_bytes().splitlines()[-80:]
                return b"\n".join(lines)[-2048:].decode(errors="replace")
        return ""

    async def _environment(self, run: ContainerRun) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": self.kubelet.path,
            "HOME": str(self.directory),
            "HOSTNAME": self.name,
            "REBEAM_TERMINATION_LOG": str(run.termination_log),
        }
        if self.pod["spec"].get("automountServiceAccountToken", True):
            env["KUBECONFIG"] = str(await self._service_account_kubeconfig())
        for source in run.spec.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = await self._read_data("configmap", ref["name"], ref.get("optional"))
            else:
                ref = source["secretRef"]
                data = await self._read_data("secret", ref["name"], ref.get("optional"))
            env.update({prefix + k: v for k, v in data.items()})
        for var in run.spec.get("env", []):
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = _expand(var.get("value", ""), env)
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                env[name] = self._field(source["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in source or "secretKeyRef" in source:
                kind = "configmap" if "configMapKeyRef" in source else "secret"
                ref = source.get("configMapKeyRef") or source["secretKeyRef"]
                data = await self._read_data(kind, ref["name"], ref.get("optional"))
                if ref["key"] in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise StartError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
            else:
                raise StartError(f"env {name}: only fieldRef, configMapKeyRef, secretKeyRef")
        # Ours, whatever the spec says (it may name the in-container terminationMessagePath).
        env["REBEAM_TERMINATION_LOG"] = str(run.termination_log)
        return env

    async def _read_data(self, kind: str, name: str, optional: bool | None) -> dict[str, str]:
        import base64

        core = self.kubelet.core
        try:
            if kind == "configmap":
                obj = self.kubelet._api_dict(
                    await core.read_namespaced_config_map(name, self.namespace)
                )
                return dict(obj.get("data") or {})
            obj = self.kubelet._api_dict(await core.read_namespaced_secret(name, self.namespace))
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        except aclient.ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise StartError(f"{kind} {self.namespace}/{name}: {exc.reason}") from exc

    def _field(self, path: str) -> str:
        pod = self.pod
        meta = pod["metadata"]
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
            "status.hostIP": HOST_IP,
            "status.hostIPs": HOST_IP,
            "status.podIP": HOST_IP,
            "status.podIPs": HOST_IP,
        }
        if path in simple:
            return str(simple[path])
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            return str((meta.get(match[1]) or {}).get(match[2], ""))
        raise StartError(f"fieldRef {path} is not supported by the process kubelet")

    async def _service_account_kubeconfig(self) -> Path:
        account = self.pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.name,
                    "uid": self.uid,
                },
            },
        }
        try:
            response = await self.kubelet.core.create_namespaced_service_account_token(
                account, self.namespace, request
            )
        except aclient.ApiException as exc:
            raise StartError(f"token for serviceaccount {account}: {exc.reason}") from exc
        token = self.kubelet._api_dict(response)["status"]["token"]
        path = self.directory / "serviceaccount.kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "cluster",
                    "cluster": {
                        "server": self.kubelet.server,
                        "certificate-authority": str(self.kubelet.ca_cert),
                    },
                }
            ],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "pod",
                    "context": {"cluster": "cluster", "user": account, "namespace": self.namespace},
                }
            ],
            "current-context": "pod",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # -- stopping --

    async def _terminate(self) -> None:
        loop = asyncio.get_running_loop()
        for run in self.containers.values():
            if run.running:
                assert run.process is not None
                _signal_group(run.process.pid, signal.SIGTERM)
        while any(r.running for r in self.containers.values()):
            assert self.deadline is not None
            if loop.time() >= self.deadline:
                break
            await asyncio.sleep(0.05)
        await self.kill_all(grace=0.0)
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        if self.deleted:
            self.kubelet.forget(self.uid)
            return
        assert self.kubelet.online is not None
        await self.kubelet.online.wait()  # a lost node finishes the deletion once it is back
        if self.deleted:
            self.kubelet.forget(self.uid)
            return
        await self.write_status()
        await self.kubelet._finish_deletion(self.namespace, self.name, self.uid)
        self.kubelet.forget(self.uid)

    async def shutdown(self) -> None:
        """The kubelet stops: end every container (no restarts, no API writes)."""
        self.terminating = True
        self.wake.set()
        await self.kill_all(grace=2.0)
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def kill_all(self, grace: float) -> None:
        """SIGTERM (if ``grace``), wait up to ``grace``, SIGKILL every running container."""
        runs = [r for r in self.containers.values() if r.running]
        if grace > 0:
            for run in runs:
                assert run.process is not None
                _signal_group(run.process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(r.process.wait() for r in runs if r.process)), grace
                )
        for run in runs:
            if run.running:
                assert run.process is not None
                _signal_group(run.process.pid, signal.SIGKILL)
                await run.process.wait()
        for run in runs:
            # Anything the container left in its group goes too.
            assert run.process is not None
            _signal_group(run.process.pid, signal.SIGKILL)

    # -- status --

    def _phase(self) -> str:
        runs = self.containers.values()
        if any(not r.started_once and r.will_restart for r in runs):
            return "Pending"
        if any(r.running or r.will_restart for r in runs):
            return "Running"
        codes = [r.state.get("terminated", {}).get("exitCode", 1) for r in runs]
        return "Succeeded" if all(c == 0 for c in codes) else "Failed"

    def _condition(self, kind: str, ok: bool) -> Json:
        status = "True" if ok else "False"
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != status:
            self.transitions[kind] = (status, now())
        return {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.transitions[kind][1],
        }

    async def write_status(self, phase: str | None = None, message: str | None = None) -> None:
        if self.deleted:
            return
        if self.kubelet.lost:
            self.pending_write = True
            return
        if self.write_lock.locked():
            self.pending_write = True  # the write in progress will be followed by another
            return
        async with self.write_lock:
            self.pending_write = True
            while self.pending_write and not self.kubelet.lost:
                self.pending_write = False
                await self._write_status_once(phase, message)

    async def _write_status_once(self, phase: str | None, message: str | None) -> None:
        runs = list(self.containers.values())
        ready = all(r.ready for r in runs)
        kept = [
            c
            for c in self.pod.get("status", {}).get("conditions", [])
            if c["type"] not in KUBELET_CONDITIONS
        ]
        conditions = [
            *kept,
            self._condition("PodReadyToStartContainers", True),
            self._condition("Initialized", True),
            self._condition("ContainersReady", ready),
            self._condition("Ready", ready),
        ]
        status: Json = {
            "phase": phase or self._phase(),
            "conditions": conditions,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": HOST_IP,
            "podIPs": [{"ip": HOST_IP}],
            "startTime": self.start_time,
            "containerStatuses": [r.status() for r in runs],
        }
        if message:
            status["message"] = message
        try:
            await self.kubelet.core.patch_namespaced_pod_status(
                self.name, self.namespace, {"status": status}, _content_type=MERGE_PATCH
            )
        except aclient.ApiException as exc:
            if exc.status == 404:
                self.deleted = True
            else:
                log.warning("status of %s/%s: %s", self.namespace, self.name, exc)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _VAR.sub(replace, text)
