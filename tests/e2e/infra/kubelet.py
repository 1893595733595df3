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
  then ``DELETE`` with grace 0 and a UID precondition;
- posts the kubelet's core/v1 Events on pods (``Pulled``, ``Created``, ``Started``,
  ``Killing``, ``Failed``, ``BackOff``), aggregated and rate-bounded as a kubelet's recorder
  does (:mod:`.events`).

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
- Volumes: only ``secret`` volumes and ``projected`` ``serviceAccountToken`` sources (audience,
  expiration, bound to the pod) are made, as files in the pod's directory; an env value naming
  a path under the container's ``mountPath`` is rewritten to the real file. Projected tokens
  are not renewed (no test runs for an hour).
- No images (unless in container mode, below), other volumes, liveness/startup probes, init
  containers, resource limits or ``kubectl exec``: a pod with init containers fails; only
  ``exec`` readiness probes run (a container without one is ready while it runs). Logs are
  files under the kubelet's work directory (:meth:`ProcessKubelet.log_path`), served to
  ``kubectl logs`` by :mod:`.logserver` when the kubelet is given the cluster's PKI. All pods
  share the loopback network: podIP and hostIP are 127.0.0.1.
- It acts with the admin credentials, not as ``system:node:<name>``.

Container mode (``containers=True``): each container runs from its image with podman and runc
(:mod:`.containers`); the differences above about termination messages, tokens and volumes
do not apply there. Several kubelets may share an API server: a :class:`Placement` says which
one binds a namespace's pods.

Fault switches for tests (thread-safe, called from the test's thread): :meth:`kill_container`,
:meth:`fail_start`, :meth:`lose_node` / :meth:`recover_node`.

This module is the node (registration, heartbeats, the pod watch, binding, fault switches);
:mod:`.podworker` runs each pod. It runs an asyncio loop in a thread of its own, which lives as
long as the kubelet: containers are forked from it with ``PR_SET_PDEATHSIG``, so none outlives
the test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig
from kubernetes.aio import watch as awatch

from .containers import ContainerRuntime
from .events import EventRecorder
from .logserver import LogServer
from .pki import Pki
from .podworker import HOST_IP, MERGE_PATCH, ContainerRun, PodWorker, now

__all__ = ["Placement", "ProcessKubelet", "StartFault"]

log = logging.getLogger("rebeam.e2e.kubelet")

T = TypeVar("T")
Json = dict[str, Any]

LEASE_SECONDS = 40
RENEW_SECONDS = 3.0  # kube-controller-manager runs with --node-monitor-grace-period=15s


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


class Placement:
    """Where unscheduled pods go when several kubelets share one API server (there is no
    scheduler): a namespace handed to a node with :meth:`route` is bound there, all others to
    the default node. Shared by the kubelets; read and written on their loops and the test's
    thread (a dict's get and set are atomic)."""

    def __init__(self, default: str) -> None:
        self.default = default
        self._routes: dict[str, str] = {}

    def route(self, namespace: str, node: str) -> None:
        self._routes[namespace] = node

    def unroute(self, namespace: str) -> None:
        self._routes.pop(namespace, None)

    def node_for(self, namespace: str) -> str:
        return self._routes.get(namespace, self.default)


# A stop sees every container end: SIGTERM, their exits on the loop, at most 2 s of grace.
# 30 s was enough for hundreds; 10,000 exits on a loaded 2-core machine took longer.
STOP_BASE_SECONDS = 30.0
STOP_SECONDS_PER_CONTAINER = 0.01


def stop_timeout(containers: int) -> float:
    """How long a stop waits for ``containers`` running containers to end."""
    return STOP_BASE_SECONDS + STOP_SECONDS_PER_CONTAINER * containers


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
        containers: bool = False,
        placement: Placement | None = None,
        spare: bool = True,
        pki: Pki | None = None,
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
        self.spare_node = f"{node_name}-spare" if spare else None
        # Container mode: each container from its image (infra/containers.py); else processes.
        self.runtime: ContainerRuntime | None = (
            ContainerRuntime(node_name, server, ca_cert) if containers else None
        )
        # Which node binds an unscheduled pod, when several kubelets share the API server.
        self.placement = placement or Placement(node_name)
        # Container logs for `kubectl logs`, when it has the cluster's CA to serve with.
        self.logs = (
            LogServer(pki, workdir / "pki", node_name, HOST_IP, self._log_source)
            if pki is not None
            else None
        )
        # Containers find `python` & co. first beside this interpreter (the project venv).
        self.path = path or os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        )
        self.events = EventRecorder(node_name)  # core/v1 Events on its pods (infra/events.py)
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
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()  # a set: thousands come and go

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
        if self.runtime is not None:
            self.runtime.remove_leftovers()
        self._thread = threading.Thread(target=run, name=f"kubelet-{self.node_name}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"process kubelet not ready within {timeout:.0f}s")
        if failure:
            raise RuntimeError("process kubelet failed to start") from failure[0]

    def stop(self, timeout: float | None = None) -> None:
        """Kill every container (SIGTERM, 2 s, SIGKILL) and end the loop. The loop has to
        see every exit, so the time it is given grows with the containers (``stop_timeout``);
        whatever still runs when it is out is killed from here, by its pid."""
        loop, thread = self._loop, self._thread
        if timeout is None:
            timeout = stop_timeout(len(self._pids()))
        try:
            if loop is None or thread is None or not thread.is_alive():
                return
            # RuntimeError: the loop may already be closing; TimeoutError: out of time, the
            # containers are killed below all the same.
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
            thread.join(timeout)
        finally:
            self._kill_left()
            if self.runtime is not None:  # whatever happened above, no container outlives us
                self.runtime.remove_all()

    def _pids(self) -> list[int]:
        """The process (group) ids of the containers running now, read from the test thread
        while the loop may still change them: a copy, taken again if it changed under us."""
        for _ in range(100):
            with contextlib.suppress(RuntimeError):  # "changed size during iteration"
                return [
                    run.process.pid
                    for worker in list(self._workers.values())
                    for run in list(worker.containers.values())
                    if run.process is not None and run.running
                ]
        return []

    def describe_pid(self, pid: int) -> str:
        """What this node knows of a process now, for a test's failure message: the
        container it is (or was) and the state of that container and of its pod. Read from
        the test thread, as :meth:`_pids` reads."""
        for _ in range(100):
            with contextlib.suppress(RuntimeError):  # "changed size during iteration"
                for worker in list(self._workers.values()):
                    for run in list(worker.containers.values()):
                        if run.process is not None and run.process.pid == pid:
                            return _container_state(worker, run)
                return "no container of a pod it runs has this pid (its pod is finished here)"
        return "unknown (its pods kept changing)"

    def _kill_left(self) -> None:
        """SIGKILL the group of every container the loop did not see end (a stop that ran out
        of time): none outlives the test, each killed by its own pid."""
        if self.runtime is not None:
            return  # containers: remove_all() ends them
        left = self._pids()
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if left:
            log.warning("node %s: %d containers killed after the stop", self.node_name, len(left))

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
            if self.runtime is not None:
                self.runtime.signal(run, sig)
            else:
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

    def _log_source(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> tuple[Path, Callable[[], bool]]:
        """The log file of a container's current run (or the one before), and whether that
        run is still going (on the loop: the log server runs there)."""
        try:
            run = self._container(namespace, pod, container)
        except KeyError:
            raise LookupError(f'container "{container}" is not in pod "{pod}"') from None
        restarts = run.restarts
        if not previous:
            return run.log_path, lambda: run.restarts == restarts and run.running
        if restarts == 0:
            raise LookupError(
                f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        return run.directory / f"{restarts - 1}.log", lambda: False

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
            # No proxies or netrc for a loopback API server: with trust_env, aiohttp looked
            # both up again (in a worker thread) for every request.
            configuration.client_session_kwargs = {"trust_env": False}
            self._api = aclient.ApiClient(configuration)
            self.core = aclient.CoreV1Api(self._api)
            self.coordination = aclient.CoordinationV1Api(self._api)
            if self.logs is not None:
                await self.logs.start()
            for name in self._nodes():
                await self._register_node(name, unschedulable=name == self.spare_node)
                await self._renew_lease(name)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            if self.logs is not None:
                await self.logs.stop()
            if self._api is not None:
                await self._api.close()
            return
        self._tasks = {
            asyncio.create_task(self._watch_pods(), name="watch-pods"),
            asyncio.create_task(self.events.run(self.core, lambda: self.lost), name="events"),
        }
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"heartbeat-{self.node_name}", daemon=True
        )
        self._beat.start()
        ready.set()
        await self._stopping.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("node %s: events %s", self.node_name, self.events.counts)
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join(10)
        if self.logs is not None:
            await self.logs.stop()
        await self._api.close()

    async def _shutdown(self) -> None:
        self.lost = True  # no more API writes: the control plane may already be going
        workers = list(self._workers.values())
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        assert self._stopping is not None
        self._stopping.set()

    # -- node and heartbeat ------------------------------------------------------------------

    def _nodes(self) -> list[str]:
        return [self.node_name, *([self.spare_node] if self.spare_node else [])]

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
                # Where the API server reaches this node's log endpoint (infra/logserver.py).
                "daemonEndpoints": {
                    "kubeletEndpoint": {"Port": self.logs.port if self.logs else 0}
                },
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
                    "containerRuntimeVersion": "podman://4" if self.runtime else "process://1",
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
            c for c in self.api_dict(node)["status"].get("conditions", []) if c["type"] != "Ready"
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

    def _heartbeat(self) -> None:
        """Renew both leases every RENEW_SECONDS, in a thread of its own with a blocking client
        of its own. On the pods' event loop, renewals waited behind the work of a thousand pods
        past the node monitor's grace period: the node went NotReady, was tainted, and its pods
        were evicted 300 s later (they ended with reason ``killed``)."""
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        coordination = client.CoordinationV1Api(api)
        try:
            while not self._beat_stop.wait(RENEW_SECONDS):
                for name in self._nodes():
                    if name == self.node_name and self.lost:
                        continue
                    try:
                        self._renew_lease_sync(coordination, name)
                    except Exception:
                        log.exception("lease renewal of %s failed", name)
        finally:
            api.close()

    def _renew_lease_sync(self, coordination: Any, name: str) -> None:
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS}
        spec["renewTime"] = micro_now()
        coordination.patch_namespaced_lease(
            name,
            "kube-node-lease",
            {"spec": spec},
            _content_type=MERGE_PATCH,
            _preload_content=False,
        ).read()

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
        self._pods = {p["metadata"]["uid"]: p for p in self.api_dict(live)["items"]}
        for uid, worker in list(self._workers.items()):
            if uid not in self._pods:
                worker.gone()
        for pod in list(self._pods.values()):
            self._sync(pod)
        for worker in self._workers.values():
            worker.status_changed()

    # -- pods ------------------------------------------------------------------------------------

    def api_dict(self, obj: Any) -> Json:
        assert self._api is not None
        data: Json = self._api.sanitize_for_serialization(obj)
        return data

    async def _watch_pods(self) -> None:
        """List, then watch from the list's resourceVersion; on any error list again."""
        while True:
            try:
                listing = self.api_dict(await self.core.list_pod_for_all_namespaces())
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
            here = self.placement.node_for(meta["namespace"]) == self.node_name
            if default and here and "deletionTimestamp" not in meta and uid not in self._binding:
                self._binding.add(uid)
                self.spawn_task(self._bind(pod))
            return
        if node != self.node_name:
            return
        worker = self._workers.get(uid)
        if worker is None:
            if uid in self._done or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return  # a late event of a pod that has finished here
            if "deletionTimestamp" in meta:  # deleted before it ever started
                self._done.add(uid)
                self.spawn_task(self.finish_deletion(meta["namespace"], meta["name"], uid))
                return
            worker = PodWorker(self, pod)
            self._workers[uid] = worker
            worker.task = self.spawn_task(worker.run())
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

    def spawn_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("kubelet task failed", exc_info=task.exception())

    def take_fault(self, namespace: str, pod: str, container: str) -> StartFault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.matches(namespace, pod, container):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    async def finish_deletion(self, namespace: str, name: str, uid: str) -> None:
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


def _container_state(worker: PodWorker, run: ContainerRun) -> str:
    code = run.process.returncode if run.process is not None else None
    process = "running" if run.running else f"ended with {code}"
    pod = "deleted" if worker.deleted else "terminating" if worker.terminating else "live"
    return f"container {run.name} of pod {worker.namespace}/{worker.name}: {process}; pod {pod}"
