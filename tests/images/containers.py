"""Run a container of our images as Kubernetes would run a pod's container, with podman.

:func:`pod_run_args` turns what a pod spec says (the chart's Deployment, the operator's actor
pods) into ``podman run`` flags: the security contexts, env, the emptyDir at /tmp and the files
the kubelet would mount. A field it does not know is an error, not ignored, so that a hardening
the chart or the operator adds later cannot pass here untested.

A :class:`Container` is the ``podman run`` process (its pid is the test's handle): SIGTERM to
it reaches the container's entry point as the kubelet's would; a container that ends before
it is ready fails the test with its exit code and output, never a hang.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tools.images import IMAGES, Engine, ImageError, engine

from tests.images.report import SIZES

Json = dict[str, Any]

START_TIMEOUT = 60.0  # a container start is ~1.5 s; a busy 2-core machine gets margin
STOP_TIMEOUT = 30.0


def built_images() -> Engine:
    """The engine holding every image of images/ (``make images`` built them there); fails
    the test when one is missing. Records their sizes for the report."""
    try:
        eng = engine()
    except ImageError as exc:
        pytest.fail(str(exc))
    missing = [eng.name(i) for i in IMAGES if not eng.exists(eng.name(i))]
    if missing:
        pytest.fail(f"images not built: {', '.join(missing)}: run `make images`")
    for image in IMAGES:
        SIZES[eng.name(image)] = eng.size(eng.name(image))
    return eng


class ContainerFailed(AssertionError):
    """The container ended (or did not get ready) when the test needed it running."""


def _pod_security(context: Json) -> list[str]:
    args: list[str] = []
    user = context.pop("runAsUser", None)
    group = context.pop("runAsGroup", None)
    if user is not None:
        args.append(f"--user={user}:{group}" if group is not None else f"--user={user}")
    if context.pop("runAsNonRoot", False) and user == 0:
        raise ValueError("runAsNonRoot with runAsUser 0: the kubelet refuses to start it")
    if (fs_group := context.pop("fsGroup", None)) is not None:
        args.append(f"--group-add={fs_group}")
    seccomp = context.pop("seccompProfile", {"type": "RuntimeDefault"})
    if seccomp != {"type": "RuntimeDefault"}:  # podman's default profile is the runtime's
        raise ValueError(f"seccompProfile {seccomp} is not translated")
    if context:
        raise ValueError(f"pod securityContext fields not translated: {sorted(context)}")
    return args


def _container_security(context: Json) -> list[str]:
    args: list[str] = []
    if context.pop("privileged", False):
        raise ValueError("a privileged container is not what the chart runs")
    if context.pop("allowPrivilegeEscalation", True) is False:
        args.append("--security-opt=no-new-privileges")
    if context.pop("readOnlyRootFilesystem", False):
        args.append("--read-only")
    capabilities = context.pop("capabilities", {})
    args += [f"--cap-drop={c}" for c in capabilities.pop("drop", [])]
    args += [f"--cap-add={c}" for c in capabilities.pop("add", [])]
    if capabilities or context:
        raise ValueError(f"container securityContext fields not translated: {sorted(context)}")
    return args


def pod_run_args(pod_spec: Json, container: Json, files: dict[str, Path]) -> list[str]:
    """``podman run`` flags for ``container`` of ``pod_spec``: security, env and volumes.

    ``files`` maps a volume name (or ``termination-log``) to the host path that stands for it:
    a directory for a secret or projected volume, a file for the termination log."""
    args = _pod_security(dict(pod_spec.get("securityContext", {})))
    args += _container_security(dict(container.get("securityContext", {})))
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" not in var:
            raise ValueError(f"env {var['name']}: only literal values are translated")
        env[var["name"]] = expand(var["value"], env)
        args.append(f"--env={var['name']}={env[var['name']]}")
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        target = mount["mountPath"]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            options = f"type=tmpfs,destination={target},tmpfs-mode=1777"
            args.append(f"--mount={options}" + (f",tmpfs-size={_bytes(size)}" if size else ""))
        else:
            readonly = ":ro" if mount.get("readOnly") else ""
            args.append(f"--volume={files[mount['name']]}:{target}{readonly}")
    if "termination-log" in files:
        path = container.get("terminationMessagePath", "/dev/termination-log")
        args.append(f"--volume={files['termination-log']}:{path}")
    if container.get("workingDir"):
        args.append(f"--workdir={container['workingDir']}")
    return args


def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of an env value: ``$(NAME)`` of a variable defined before it,
    ``$$`` for a literal ``$``; anything else stays as written."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return re.sub(r"\$\$|\$\((\w+)\)", one, value)


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def readable_by_container(path: Path, uid: int = 10001) -> None:
    """Give the container's user what the kubelet would: its files (fsGroup)."""
    for entry in [path, *path.rglob("*")] if path.is_dir() else [path]:
        try:
            os.chown(entry, uid, uid)
        except PermissionError:  # not root (rootless podman maps 10001 elsewhere): open them
            entry.chmod(0o777 if entry.is_dir() else 0o666)


def _run_argv(
    engine: Engine, name: str, run_args: list[str], image: str, command: list[str]
) -> list[str]:
    """``run`` of ``command`` in place of the image's entry point (a pod's ``command``)."""
    argv = engine.argv("run", "--rm", f"--name={name}", "--network=host", *run_args)
    if engine.command == "podman" and "--read-only" in run_args:
        # podman would add writable tmpfs at /tmp, /var/tmp and /run; Kubernetes does not.
        argv.append("--read-only-tmpfs=false")
    if command:
        return [*argv, f"--entrypoint={command[0]}", image, *command[1:]]
    return [*argv, image]


def _force_remove(engine: Engine, name: str) -> None:
    extra = ["--time=0"] if engine.command == "podman" else []
    engine.run("rm", "--force", *extra, name, check=False, capture=True)


@dataclass
class Container:
    engine: Engine
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls, engine: Engine, image: str, run_args: list[str], command: list[str], log: Path
    ) -> Container:
        """``podman run`` of ``command`` (a pod's ``command``: it replaces the entry point)
        in the background; loopback is the host's, so the test's nats-server is reachable."""
        name = f"rebeam-test-{uuid.uuid4().hex[:12]}"
        argv = _run_argv(engine, name, run_args, image, command)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                env=engine.environ(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(engine, name, proc, log)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def exec(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return self.engine.run("exec", self.name, *command, check=False, capture=True)

    def wait_ready(self, probe: list[str], timeout: float = START_TIMEOUT) -> None:
        """Run the readiness probe as the kubelet does until it passes; fail at once when the
        container ends, and at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                code = self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self.exec(probe).returncode == 0:
                    return
                continue
            raise ContainerFailed(
                f"container {self.name} ended with exit code {code} before it was ready; "
                f"its output:\n{self.output()}"
            )
        raise ContainerFailed(
            f"container {self.name} was not ready within {timeout:.0f} s; "
            f"its output:\n{self.output()}"
        )

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ContainerFailed(
                f"container {self.name} still running after {timeout:.0f} s; "
                f"its output:\n{self.output()}"
            ) from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM to our ``podman run`` (it passes the signal to the entry point), as the
        kubelet stops a container; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def remove(self) -> None:
        """Teardown: the container gone whatever happened, then our process."""
        if self.proc.poll() is None:
            with contextlib.suppress(ContainerFailed):
                self.stop(timeout=10)
        if self.proc.poll() is None:
            _force_remove(self.engine, self.name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_once(
    engine: Engine,
    image: str,
    run_args: list[str],
    command: list[str],
    timeout: float = START_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a container to its end; its exit code and output (a timeout fails the test)."""
    name = f"rebeam-test-{uuid.uuid4().hex[:12]}"
    argv = _run_argv(engine, name, run_args, image, command)
    try:
        return subprocess.run(
            argv,
            env=engine.environ(),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        _force_remove(engine, name)
        raise ContainerFailed(f"{' '.join(command)} in {image} did not end in {timeout} s") from exc
