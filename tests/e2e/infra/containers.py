"""Container mode of the process kubelet: each container of a pod runs from its image, with
podman and runc (``ProcessKubelet(..., containers=True)``).

What a pod spec says becomes ``podman create`` flags, as a kubelet hands it to its runtime:

- ``image`` (never pulled: a missing one leaves the container waiting with ``ErrImagePull``,
  then ``ImagePullBackOff``), ``command`` (replaces the entry point) and ``args`` (replace
  the image's CMD), with ``$(VAR)`` expanded; ``workingDir``;
- ``env`` as the process mode resolves it, plus ``KUBERNETES_SERVICE_HOST``/``_PORT`` naming
  the API server, so that in-cluster config works. Values reach podman through its own
  environment (``--env NAME``), never its argv (they may be secrets, or a multi-line CA);
- the pod's and the container's ``securityContext``: runAsUser/runAsGroup (the container's
  first), runAsNonRoot (uid 0 is refused, as a kubelet does), fsGroup and supplementalGroups,
  allowPrivilegeEscalation, privileged, readOnlyRootFilesystem (without podman's extra
  writable tmpfs mounts, which Kubernetes does not add), capabilities, seccompProfile;
- volumes: ``emptyDir`` (a directory of the pod, or tmpfs for ``medium: Memory``),
  ``secret``, and ``projected`` with serviceAccountToken (a TokenRequest bound to the pod, as
  in process mode), configMap, secret and downwardAPI sources. That includes the
  ``kube-api-access-*`` volume the API server's ServiceAccount admission adds to every pod
  that does not opt out with ``automountServiceAccountToken: false``: token, ca.crt and
  namespace at /var/run/secrets/kubernetes.io/serviceaccount, what in-cluster config reads.
  Files are given to the container's user (``runAsUser``, group ``fsGroup``). The
  termination-message file is a host file bind-mounted at ``terminationMessagePath``: the
  process mode's ``REBEAM_TERMINATION_LOG`` is not needed here;
- the host network (pods are all 127.0.0.1, as in process mode).

A container is ``podman start --attach`` of the created one: that process is the container's
handle on the kubelet's loop (a pidfd), its output is the container's log file. Signals go
through ``podman kill``; a deletion is SIGTERM, the grace period, SIGKILL, as in process mode.
An entry point that cannot run leaves the container in podman's ``created`` state: that is
``StartError``, with podman's message. Every container is removed (``podman rm``) once it
ended, and all of a kubelet's containers (by label) when it stops; containers left by a
kubelet whose process died are removed when the next one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from tools.images import Engine, engine

from .events import NORMAL
from .localproc import LocalProcess, spawn
from .podworker import ContainerRun, StartError, WaitingError, _expand

if TYPE_CHECKING:
    from .podworker import PodWorker

__all__ = ["LABEL_NODE", "ContainerRuntime", "remove_leftovers"]

log = logging.getLogger("rebeam.e2e.kubelet")

Json = dict[str, Any]

LABEL_NODE = "io.rebeam.e2e.node"
LABEL_OWNER = "io.rebeam.e2e.kubelet-pid"  # the test process that runs the kubelet
PODMAN_TIMEOUT = 60.0  # one podman command on a busy 2-core machine


class ContainerRuntime:
    """Runs a node's containers with podman (the engine ``make images`` uses)."""

    id_prefix = "podman://"

    def __init__(self, node: str, server: str, ca_cert: Path, eng: Engine | None = None) -> None:
        self.engine = eng or engine()
        self.node = node
        api = urlparse(server)
        self.api_host, self.api_port = api.hostname or "127.0.0.1", str(api.port or 443)
        self.ca_cert = ca_cert
        self.start_seconds: list[float] = []  # image check + create of each container (a figure)
        self._known_images: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- podman --

    def _podman(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = PODMAN_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.engine.argv(*args),
            env={**self.engine.environ(), **(env or {})},
            text=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )

    async def _apodman(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self._podman, *args, **kwargs)

    def remove_leftovers(self) -> None:
        remove_leftovers(self.engine, self.node)

    def remove_all(self) -> None:
        """Every container this kubelet process made (the kubelet stops)."""
        if self.start_seconds:
            times = sorted(self.start_seconds)
            log.info(
                "node %s: %d containers created (image check, podman create): "
                "median %.2f s, max %.2f s",
                self.node, len(times), times[len(times) // 2], times[-1],
            )  # fmt: skip
        listing = self._podman(
            "ps", "--all", "--quiet",
            "--filter", f"label={LABEL_NODE}={self.node}",
            "--filter", f"label={LABEL_OWNER}={os.getpid()}",
        )  # fmt: skip
        idents = listing.stdout.split()
        if idents:
            self._podman("rm", "--force", "--time=0", *idents)

    # -- the Runtime protocol (podworker.Runtime) --

    async def start(self, worker: PodWorker, run: ContainerRun) -> LocalProcess:
        began = time.monotonic()
        spec = run.spec
        image = spec.get("image") or ""
        if not image:
            raise StartError("the container has no image")
        if image not in self._known_images:
            found = await self._apodman("image", "exists", image)
            if found.returncode != 0:
                # What a kubelet says before its pull fails (the worker records the failure).
                worker.record(run, NORMAL, "Pulling", f'Pulling image "{image}"')
                raise WaitingError(
                    "ErrImagePull",
                    f'image "{image}" is not on node {self.node} (it pulls nothing: '
                    "`make images` builds ours)",
                    "ImagePullBackOff",
                    pull=True,
                )
            self._known_images.add(image)
        worker.image_present(run)
        env = run.env = await self._environment(worker, run)
        name = f"k8s_{run.name}_{worker.name}_{worker.namespace}_{worker.uid[:8]}_{run.restarts}"
        args = [
            "create", f"--name={name}", "--pull=never", "--network=host",
            f"--label={LABEL_NODE}={self.node}", f"--label={LABEL_OWNER}={os.getpid()}",
            *security_args(worker.pod["spec"], spec),
            *await self._volume_args(worker, run),
            *[f"--env={key}" for key in env],
        ]  # fmt: skip
        if spec.get("workingDir"):
            args.append(f"--workdir={spec['workingDir']}")
        command = [_expand(a, env) for a in spec.get("command") or []]
        rest = [_expand(a, env) for a in spec.get("args") or []]
        if command:
            args.append(f"--entrypoint={json.dumps(command)}")
        created = await self._apodman(*args, image, *rest, env=env)
        if created.returncode != 0:
            raise StartError(f"podman create: {created.stderr.strip()[-2000:]}")
        run.container_id = name
        try:
            worker.created(run)
        except StartError:  # the fault switch
            await self._apodman("rm", "--force", "--time=0", name)
            raise
        log_file = open(run.log_path, "ab")  # noqa: SIM115, ASYNC230 - handed to the child
        try:
            process = spawn(
                self.engine.argv("start", "--attach", name),
                cwd=str(worker.directory),
                env=self.engine.environ(),
                stdout=log_file,
            )
        except OSError as exc:
            await self._apodman("rm", "--force", "--time=0", name)
            raise StartError(f"podman start: {exc}") from exc
        finally:
            log_file.close()
        self.start_seconds.append(time.monotonic() - began)
        return process

    async def ended(self, worker: PodWorker, run: ContainerRun, code: int) -> int:
        name = run.container_id
        assert name is not None
        state = await self._apodman(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name
        )
        status, _, exit_code = state.stdout.strip().partition(" ")
        if status == "running":  # our `podman start` went, the container did not
            await self._apodman("kill", "--signal=KILL", name)
            exit_code = str(128 + signal.SIGKILL)
        await self._apodman("rm", "--force", "--time=0", name)
        if status == "created":  # the entry point never ran; podman said why in the log
            raise StartError(_tail(run.log_path) or f"podman start exited {code}")
        if exit_code.isdigit():
            return int(exit_code)
        return 128 - code if code < 0 else code

    def signal(self, run: ContainerRun, sig: int) -> None:
        name = run.container_id
        if name is None:
            return
        task = asyncio.get_running_loop().create_task(self._kill(run, name, sig))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kill(self, run: ContainerRun, name: str, sig: int) -> None:
        result = await self._apodman("kill", f"--signal={int(sig)}", name)
        if result.returncode == 0:
            return
        log.info("podman kill %s %s: %s", sig, name, result.stderr.strip())
        if sig == signal.SIGKILL and run.process is not None and run.process.returncode is None:
            # A kill must end the run whatever state podman is in: end our `podman start`;
            # ended() then finds the container and removes it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.process.pid, signal.SIGKILL)

    async def exec_probe(
        self, worker: PodWorker, run: ContainerRun, command: list[str], timeout: float
    ) -> bool:
        if run.container_id is None:
            return False
        try:
            result = await self._apodman(
                "exec", run.container_id, *command, timeout=timeout + PODMAN_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    # -- what the container gets --

    async def _environment(self, worker: PodWorker, run: ContainerRun) -> dict[str, str]:
        base = {
            "HOSTNAME": worker.name,
            "KUBERNETES_SERVICE_HOST": self.api_host,
            "KUBERNETES_SERVICE_PORT": self.api_port,
            "KUBERNETES_SERVICE_PORT_HTTPS": self.api_port,
        }
        return await worker._declared_environment(run, base)

    async def _write_projected(self, worker: PodWorker, projected: Json, local: Path) -> None:
        """Every source a projected volume has on a cluster: the ServiceAccount admission
        plugin's ``kube-api-access-*`` volume (token, ca.crt from ``kube-root-ca.crt``, the
        namespace) is one, and it is what in-cluster config reads."""
        await worker._write_projected(projected, local)  # the serviceAccountToken sources
        for source in projected.get("sources") or []:
            if "configMap" in source or "secret" in source:
                kind = "configmap" if "configMap" in source else "secret"
                ref = source.get("configMap") or source["secret"]
                data = await worker._read_data(kind, ref["name"], ref.get("optional"))
                for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                    if item["key"] in data:
                        _write(local / item["path"], data[item["key"]])
                    elif not ref.get("optional"):
                        raise StartError(f"couldn't find key {item['key']} in {kind}")
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    if "fieldRef" not in item:
                        raise StartError("downwardAPI: only fieldRef items are supported here")
                    _write(local / item["path"], worker._field(item["fieldRef"]["fieldPath"]))

    async def _volume_args(self, worker: PodWorker, run: ContainerRun) -> list[str]:
        pod_spec = worker.pod["spec"]
        owner = _owner(pod_spec, run.spec)
        volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
        args: list[str] = []
        for mount in run.spec.get("volumeMounts") or []:
            volume = volumes.get(mount.get("name"))
            if volume is None:
                raise StartError(f"volumeMount {mount.get('name')}: no such volume")
            target, readonly = mount["mountPath"], ",ro" if mount.get("readOnly") else ""
            local = worker.directory / "volumes" / volume["name"]
            if "emptyDir" in volume:
                if (volume["emptyDir"] or {}).get("medium") == "Memory":
                    args.append(f"--mount=type=tmpfs,destination={target},tmpfs-mode=1777")
                    continue
                local.mkdir(parents=True, exist_ok=True)
                local.chmod(0o777)  # as a kubelet makes an emptyDir
            elif "secret" in volume:
                local.mkdir(parents=True, exist_ok=True)
                await worker._write_secret(volume["secret"], local)
                _give(local, owner)
            elif "projected" in volume:
                local.mkdir(parents=True, exist_ok=True)
                await self._write_projected(worker, volume["projected"], local)
                _give(local, owner)
            else:
                kinds = sorted(set(volume) - {"name"})
                raise StartError(f"volume {volume['name']}: {kinds} not supported here")
            args.append(f"--mount=type=bind,source={local},destination={target}{readonly}")
        # The termination-message file: writable by whoever the container runs as.
        run.termination_log.chmod(0o666)
        path = run.spec.get("terminationMessagePath") or "/dev/termination-log"
        args.append(f"--mount=type=bind,source={run.termination_log},destination={path}")
        return args


def remove_leftovers(eng: Engine, node: str) -> None:
    """Containers of ``node`` whose kubelet process is gone (a test run or a dev cluster
    killed hard: their conmon keeps them running)."""
    listing = subprocess.run(
        eng.argv(
            "ps", "--all", "--filter", f"label={LABEL_NODE}={node}",
            "--format", "{{.ID}} {{index .Labels \"" + LABEL_OWNER + "\"}}",
        ),
        env=eng.environ(), text=True, capture_output=True, timeout=PODMAN_TIMEOUT, check=False,
    )  # fmt: skip
    stale = []
    for line in listing.stdout.splitlines():
        ident, _, owner = line.partition(" ")
        if not owner.isdigit() or not _alive(int(owner)):
            stale.append(ident)
    if stale:
        eng.run("rm", "--force", "--time=0", *stale, check=False, capture=True)


def security_args(pod_spec: Json, container: Json) -> list[str]:
    """podman flags for the pod's and the container's securityContext."""
    pod = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}
    args: list[str] = []
    user, group = (
        own.get("runAsUser", pod.get("runAsUser")),
        own.get("runAsGroup", pod.get("runAsGroup")),
    )
    if own.get("runAsNonRoot", pod.get("runAsNonRoot")) and user == 0:
        raise StartError("container's runAsUser breaks non-root policy (runAsUser 0)")
    if user is not None:
        args.append(f"--user={user}:{group}" if group is not None else f"--user={user}")
    for extra in [pod.get("fsGroup"), *(pod.get("supplementalGroups") or [])]:
        if extra is not None:
            args.append(f"--group-add={extra}")
    if own.get("privileged"):
        args.append("--privileged")
    if own.get("allowPrivilegeEscalation") is False:
        args.append("--security-opt=no-new-privileges")
    if own.get("readOnlyRootFilesystem"):
        # podman would add writable tmpfs at /tmp, /var/tmp and /run; Kubernetes does not.
        args += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = own.get("capabilities") or {}
    args += [f"--cap-drop={c}" for c in capabilities.get("drop") or []]
    args += [f"--cap-add={c}" for c in capabilities.get("add") or []]
    seccomp = own.get("seccompProfile") or pod.get("seccompProfile") or {}
    if seccomp.get("type") == "Unconfined":
        args.append("--security-opt=seccomp=unconfined")
    return args


def _owner(pod_spec: Json, container: Json) -> tuple[int, int] | None:
    """Who should own volume files: the container's user and the pod's fsGroup (a kubelet
    makes them the fsGroup's); None when the spec does not say (the image's user)."""
    pod = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}
    user = own.get("runAsUser", pod.get("runAsUser"))
    if user is None:
        return None
    group = pod.get("fsGroup", own.get("runAsGroup", pod.get("runAsGroup", user)))
    return int(user), int(group)


def _give(directory: Path, owner: tuple[int, int] | None) -> None:
    """Files of a volume, readable by the container's user only (world-readable when the
    spec does not name the user)."""
    for entry in [directory, *directory.rglob("*")]:
        if owner is None:
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        else:
            try:
                os.chown(entry, *owner)
            except PermissionError:  # not root: the user cannot be given them, open them
                entry.chmod(0o755 if entry.is_dir() else 0o644)
                continue
            entry.chmod(0o750 if entry.is_dir() else 0o640)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, limit: int = 2048) -> str:
    try:
        return path.read_bytes()[-limit:].decode(errors="replace").strip()
    except OSError:
        return ""
