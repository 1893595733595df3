"""Running one pod as local processes: the process kubelet's pod worker (see kubelet.py).

A :class:`PodWorker` takes a pod bound to the node from its first start to its deletion: it
starts each container (``command`` + ``args``, env, workingDir), restarts it as
``restartPolicy`` says, runs ``exec`` readiness probes, writes the pod's status, and carries
out a deletion (SIGTERM, grace period, SIGKILL, final status, DELETE with grace 0 and a UID
precondition).

Two kinds of volume are made, as files in the pod's own directory: ``secret`` volumes and
the ``serviceAccountToken`` sources of ``projected`` volumes (a TokenRequest for the pod's
ServiceAccount with the source's audience and expiration, bound to the pod). A process cannot
see them at their ``mountPath``, so an env value that names a path under a container's
mountPath is rewritten to the real file, as ``HOME`` and the termination log are given real
paths. Other volumes are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kubernetes.aio import client as aclient

from .events import NORMAL, WARNING, PodRef
from .localproc import LocalProcess, spawn

if TYPE_CHECKING:
    from .kubelet import ProcessKubelet

__all__ = [
    "HOST_IP",
    "MERGE_PATCH",
    "ContainerRun",
    "PodWorker",
    "Runtime",
    "StartError",
    "WaitingError",
    "now",
]

log = logging.getLogger("rebeam.e2e.kubelet")

Json = dict[str, Any]

HOST_IP = "127.0.0.1"  # every pod's podIP and hostIP: they all share the loopback network
BACKOFF_INITIAL, BACKOFF_MAX = 1.0, 60.0  # CrashLoopBackOff (the kubelet's reduced decay)
MAX_MESSAGE = 4096  # bytes of a termination message kept, as a kubelet does
MERGE_PATCH = "application/merge-patch+json"
KUBELET_CONDITIONS = {"PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StartError(Exception):
    """A container could not be started (its message goes into the terminated state)."""


class WaitingError(Exception):
    """A container cannot be created yet (its image is missing, ...): it stays waiting with
    ``reason`` and the message, and the worker tries again after a back-off, as a kubelet does
    with ``ErrImagePull`` / ``ImagePullBackOff``."""

    def __init__(
        self, reason: str, message: str, backoff_reason: str | None = None, *, pull: bool = False
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.backoff_reason = backoff_reason or reason
        self.pull = pull  # the image could not be pulled (the events say "Failed to pull")


class Runtime(Protocol):
    """How a node runs containers other than as local processes (infra/containers.py). The
    process path of :class:`PodWorker` is used when the kubelet has no runtime."""

    id_prefix: str

    async def start(self, worker: PodWorker, run: ContainerRun) -> LocalProcess:
        """Start ``run``; the returned process ends when the container does."""

    async def ended(self, worker: PodWorker, run: ContainerRun, code: int) -> int:
        """The container's exit code once its process ended with ``code``; removes it.
        Raises StartError when its entry point never ran."""

    def signal(self, run: ContainerRun, sig: int) -> None:
        """Deliver ``sig`` to the container's main process (without waiting)."""

    async def exec_probe(
        self, worker: PodWorker, run: ContainerRun, command: list[str], timeout: float
    ) -> bool:
        """Run an exec probe inside the container; True if it exited 0 in time."""


@dataclass
class ContainerRun:
    """One container of a pod: its spec, its current process and the status a kubelet reports."""

    spec: Json
    directory: Path
    process: LocalProcess | None = None
    restarts: int = 0
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    started_once: bool = False
    probe_ready: bool = False  # the readiness probe's verdict on the current run
    env: dict[str, str] = field(default_factory=dict)
    will_restart: bool = True  # until it ends for good
    container_id: str | None = None  # the runtime's name for the current run (container mode)

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
        if self.container_id is not None:
            status["containerID"] = f"{pid_prefix}{self.container_id}"
        elif self.process is not None:
            status["containerID"] = f"{pid_prefix}{self.process.pid}"
        return status


class PodWorker:
    """Runs one pod bound to this node, from its first start to its deletion."""

    def __init__(self, kubelet: ProcessKubelet, pod: Json) -> None:
        self.kubelet = kubelet
        self.runtime: Runtime | None = kubelet.runtime
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
        self.ref = PodRef(self.namespace, self.name, self.uid)

    def record(self, run: ContainerRun, kind: str, reason: str, message: str) -> None:
        """An Event on the container, as a kubelet posts it (infra/events.py: never blocks)."""
        self.kubelet.events.record(self.ref, run.name, kind, reason, message)

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
        self.kubelet.spawn_task(self._terminate())

    def status_changed(self) -> None:
        self.kubelet.spawn_task(self.write_status())

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
                self.record(run, NORMAL, "Started", "Container started")
                if self.terminating:  # deleted while it was starting
                    self._signal(run, signal.SIGTERM)
                run.state = {"running": {"startedAt": started_at}}
                run.started_once = True
                self.status_changed()
                probing = asyncio.create_task(self._probe_readiness(run))
                try:
                    code = await run.process.wait()
                finally:
                    probing.cancel()
                    run.probe_ready = False
                    # Its probe command is killed and reaped before the container is seen
                    # ended: left pending, the probe was still waiting for that command when
                    # the kubelet's loop closed ("Task was destroyed but it is pending").
                    await asyncio.wait([probing])
                if self.runtime is not None:
                    # A container's exit code is already 128+N for signal N (as containerd
                    # reports it, with no separate signal).
                    exit_code, sig = await self.runtime.ended(self, run, code), None
                else:
                    exit_code, sig = (128 - code, -code) if code < 0 else (code, None)
                reason = "Completed" if exit_code == 0 else "Error"
            except WaitingError as exc:  # not created: wait, then try again (no restart)
                await self._wait_to_create(run, exc, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except Exception as exc:  # StartError, or the API failing us while preparing
                exit_code, sig, reason = 128, None, "StartError"
                (run.directory / "start-error").write_text(str(exc))
                self.record(run, WARNING, "Failed", f"Error: {exc}")
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
                terminated["containerID"] = run.status(self._id_prefix)["containerID"]
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
            self.record(
                run,
                WARNING,
                "BackOff",
                f"Back-off restarting failed container {run.name} in pod "
                f"{self.name}_{self.namespace}({self.uid})",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            if not self.terminating:
                run.restarts += 1
        run.will_restart = False

    async def _wait_to_create(self, run: ContainerRun, exc: WaitingError, backoff: float) -> None:
        """ErrImagePull (the message says why), then ImagePullBackOff for the back-off, whose
        message still says why (as the pinned kubelet's does), with the kubelet's events."""
        image = run.spec.get("image", "")
        if exc.pull:
            self.record(run, WARNING, "Failed", f'Failed to pull image "{image}": {exc}')
        self.record(run, WARNING, "Failed", f"Error: {exc.reason}")
        run.state = {"waiting": {"reason": exc.reason, "message": str(exc)}}
        self.status_changed()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), min(backoff, BACKOFF_INITIAL))
        if self.terminating:
            return
        self.record(run, NORMAL, "BackOff", f'Back-off pulling image "{image}"')
        self.record(run, WARNING, "Failed", f"Error: {exc.backoff_reason}")
        run.state = {
            "waiting": {
                "reason": exc.backoff_reason,
                "message": f'Back-off pulling image "{image}": {exc.reason}: {exc}',
            }
        }
        self.status_changed()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), backoff)

    @property
    def _id_prefix(self) -> str:
        return self.runtime.id_prefix if self.runtime is not None else "process://"

    def _signal(self, run: ContainerRun, sig: int) -> None:
        if self.runtime is not None:
            self.runtime.signal(run, sig)
        elif run.process is not None:
            _signal_group(run.process.pid, sig)

    async def _start(self, run: ContainerRun) -> None:
        run.directory.mkdir(parents=True, exist_ok=True)
        run.termination_log.write_bytes(b"")
        run.process = None
        run.container_id = None
        if self.runtime is not None:  # it says what became of the image, and calls created()
            run.process = await self.runtime.start(self, run)
            return
        # No images here: whatever a pod names is "present" (what a kubelet says when it is).
        self.image_present(run)
        spec = run.spec
        env = run.env = await self._environment(run)
        argv = [_expand(a, env) for a in [*spec.get("command", []), *spec.get("args", [])]]
        if not spec.get("command"):
            raise StartError("the process kubelet ignores images: a container needs a `command`")
        cwd = spec.get("workingDir") or str(self.directory)
        if not Path(cwd).is_dir():  # noqa: ASYNC240 - local and instant
            raise StartError(f"workingDir {cwd} does not exist on this host")
        self.created(run)
        log_file = open(run.log_path, "ab")  # noqa: SIM115, ASYNC230 - handed to the child
        try:
            run.process = spawn(argv, cwd=cwd, env=env, stdout=log_file)
        except OSError as exc:
            raise StartError(f"failed to start {argv[0]!r}: {exc}") from exc
        finally:
            log_file.close()

    def image_present(self, run: ContainerRun) -> None:
        image = run.spec.get("image", "")
        self.record(
            run,
            NORMAL,
            "Pulled",
            f'Container image "{image}" already present on machine and can be accessed by the pod',
        )

    def created(self, run: ContainerRun) -> None:
        """The container exists and is about to start: a start that fails from here on (the
        fault switch too) is the runtime's, after ``Created``, as on a kubelet."""
        self.record(run, NORMAL, "Created", "Container created")
        fault = self.kubelet.take_fault(self.namespace, self.name, run.name)
        if fault is not None:
            raise StartError(fault.message)

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
        if self.runtime is not None:
            return await self.runtime.exec_probe(self, run, command, timeout)
        try:
            process = spawn(
                command, cwd=run.spec.get("workingDir") or str(self.directory), env=run.env
            )
        except OSError:
            return False
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for answers a cancellation
            # that comes as the command ends with the command's result. The probe of a
            # container that ended then went on probing it, and the container's run, which
            # waits for its probe, never ended (its pod was never deleted; tests/e2e/README.md).
            async with asyncio.timeout(timeout):
                return await process.wait() == 0
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
        env = await self._declared_environment(run)
        mounts = await self._mount_volumes(run)
        for name, value in env.items():
            for mount_path, local in mounts.items():
                if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                    env[name] = str(local) + value[len(mount_path.rstrip("/")) :]
                    break
        # Ours, whatever the spec says (it may name the in-container terminationMessagePath).
        env["REBEAM_TERMINATION_LOG"] = str(run.termination_log)
        return env

    async def _mount_volumes(self, run: ContainerRun) -> dict[str, Path]:
        """Make the container's secret and projected-token volumes; mountPath -> directory."""
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in run.spec.get("volumeMounts") or []:
            volume = volumes.get(mount.get("name"))
            if volume is None or not ({"secret", "projected"} & volume.keys()):
                continue  # emptyDir and the rest: not made (see the module's docstring)
            local = self.directory / "volumes" / volume["name"]
            local.mkdir(parents=True, exist_ok=True)
            local.chmod(0o700)
            if "secret" in volume:
                await self._write_secret(volume["secret"], local)
            else:
                await self._write_projected(volume["projected"], local)
            mounts[mount["mountPath"]] = local
        return mounts

    async def _write_secret(self, source: Json, local: Path) -> None:
        data = await self._read_data("secret", source["secretName"], source.get("optional"))
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] in data:
                _write_file(local / item["path"], data[item["key"]])
            elif not source.get("optional"):
                raise StartError(f"couldn't find key {item['key']} in secret")

    async def _write_projected(self, projected: Json, local: Path) -> None:
        for source in projected.get("sources") or []:
            token = source.get("serviceAccountToken")
            if token is None:
                continue  # configMap, downwardAPI, ...: not made (KUBECONFIG stands in for them)
            audience = token.get("audience")
            value = await self._request_token(
                int(token.get("expirationSeconds", 3600)), [audience] if audience else None
            )
            _write_file(local / token["path"], value)

    async def _declared_environment(
        self, run: ContainerRun, base: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The container's env as the spec declares it, on top of ``base`` (default: what a
        local process needs: PATH, HOME, the termination log, a ServiceAccount kubeconfig)."""
        if base is None:
            base = {
                "PATH": self.kubelet.path,
                "HOME": str(self.directory),
                "HOSTNAME": self.name,
                "REBEAM_TERMINATION_LOG": str(run.termination_log),
            }
            if self.pod["spec"].get("automountServiceAccountToken", True):
                base["KUBECONFIG"] = str(await self._service_account_kubeconfig())
        env = dict(base)
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
        return env

    async def _read_data(self, kind: str, name: str, optional: bool | None) -> dict[str, str]:
        core = self.kubelet.core
        try:
            if kind == "configmap":
                obj = self.kubelet.api_dict(
                    await core.read_namespaced_config_map(name, self.namespace)
                )
                return dict(obj.get("data") or {})
            obj = self.kubelet.api_dict(await core.read_namespaced_secret(name, self.namespace))
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

    async def _request_token(self, expiration: int, audiences: list[str] | None) -> str:
        """A token of the pod's ServiceAccount, bound to the pod (TokenRequest)."""
        account = self.pod["spec"].get("serviceAccountName") or "default"
        spec: Json = {
            "expirationSeconds": expiration,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.name,
                "uid": self.uid,
            },
        }
        if audiences:
            spec["audiences"] = audiences
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            create = (
                self.kubelet.core.create_namespaced_service_account_token_without_preload_content
            )
            response = await create(account, self.namespace, request)
            answer = json.loads(await response.read())
        except aclient.ApiException as exc:
            raise StartError(f"token for serviceaccount {account}: {exc.reason}") from exc
        if response.status >= 300:
            reason = answer.get("message") if isinstance(answer, dict) else answer
            raise StartError(f"token for serviceaccount {account}: {reason}")
        return str(answer["status"]["token"])

    async def _service_account_kubeconfig(self) -> Path:
        account = self.pod["spec"].get("serviceAccountName") or "default"
        token = await self._request_token(3600, None)
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
        path.write_text(json.dumps(config))  # JSON is YAML, and much cheaper to write
        path.chmod(0o600)
        return path

    # -- stopping --

    async def _terminate(self) -> None:
        loop = asyncio.get_running_loop()
        for run in self.containers.values():
            if run.running:
                self.record(run, NORMAL, "Killing", f"Stopping container {run.name}")
                self._signal(run, signal.SIGTERM)
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
        await self.kubelet.finish_deletion(self.namespace, self.name, self.uid)
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
                self._signal(run, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(r.process.wait() for r in runs if r.process)), grace
                )
        for run in runs:
            if run.running:
                assert run.process is not None
                self._signal(run, signal.SIGKILL)
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
            "containerStatuses": [r.status(self._id_prefix) for r in runs],
        }
        if message:
            status["message"] = message
        # The response is not turned into a V1Pod: nobody reads it, and deserializing a pod
        # model per status write was a large share of the kubelet's CPU with many pods.
        try:
            response = await self.kubelet.core.patch_namespaced_pod_status_without_preload_content(
                self.name, self.namespace, {"status": status}, _content_type=MERGE_PATCH
            )
            body = await response.read()
        except aclient.ApiException as exc:  # not an HTTP answer (connection refused, ...)
            log.warning("status of %s/%s: %s", self.namespace, self.name, exc)
            return
        if response.status == 404:
            self.deleted = True
        elif response.status >= 300:
            log.warning(
                "status of %s/%s: HTTP %s %s", self.namespace, self.name, response.status, body
            )


def _write_file(path: Path, text: str) -> None:
    """A volume's file, readable by the pod's processes only (they run as this user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)


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
