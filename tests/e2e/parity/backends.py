"""The two :class:`~tests.e2e.parity.harness.Backend` implementations: ``rebeam run`` as a user
runs it (the local tier's ``rebeam_run``), and the operator on the test control plane with the
process kubelet. Both are driven by the same ``rebeam`` CLI: locally it finds the run by its
namespace, on the cluster it is pointed at the cluster's NATS and namespace and the operator
answers."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from tests.e2e.operator.operator_helpers import Lifecycle, Objects, Operator
from tests.e2e.parity.harness import DEADLINE, REBEAM, Json
from tests.local.conftest import Run, StartRun

import rebeam
from rebeam.exits import ExitReason


def _started(events: list[Json], path: str, incarnation: int) -> Json:
    return next(
        e
        for e in events
        if e["event"] == "started"
        and f"{e['supervisor']}/{e['child']}" == path
        and e["incarnation"] == incarnation
    )


class LocalBackend:
    """``rebeam run MANIFEST --events FILE``; stopped with SIGTERM, as Ctrl-C does."""

    name = "local"

    def __init__(self, start: StartRun, workdir: Path) -> None:
        self._start = start
        self.workdir = workdir
        self._run: Run | None = None

    @property
    def run(self) -> Run:
        assert self._run is not None, "apply a manifest first"
        return self._run

    def apply(self, manifest: Json) -> None:
        self._run = self._start(yaml.safe_dump(manifest, sort_keys=False))
        # Its instance file names its NATS: the CLI finds it. A run whose start fails
        # removes the file as it ends, maybe before it is seen.
        run = self.run
        wait_for(
            lambda: run.process.poll() is not None or bool(run.instance_files()),
            timeout=DEADLINE,
            what=f"the instance file of pid {run.process.pid}",
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run.rebeam(*args, timeout=DEADLINE)

    def events(self) -> list[Json]:
        return list(self.run.events.poll())

    def kill(self, path: str, incarnation: int) -> None:
        os.kill(int(_started(self.events(), path, incarnation)["os_pid"]), signal.SIGKILL)

    def stop(self) -> None:
        self.run.signal(signal.SIGTERM)
        self.run.exit_code(DEADLINE)

    def connect(self) -> Any:
        info = self.run.instance()
        return rebeam.connect(
            info["nats_url"], namespace=self.run.namespace, credentials=info["credentials"]
        )

    def start_failure(self) -> str:
        code = self.run.exit_code(DEADLINE)
        said = [line for line in self.run.stderr().splitlines() if "failed to start" in line]
        assert said, f"rebeam run ended with {code}, and no failed start said"
        return said[-1].removeprefix("rebeam: ")


class ClusterBackend:
    """A Supervisor object for the operator; kill -9 through the process kubelet; stopped by
    deleting the object. The CLI acts as the cluster's admin (``REBEAM_CREDENTIALS``)."""

    name = "operator"

    def __init__(
        self,
        *,
        operator: Operator,
        objects: Objects,
        lifecycle: Lifecycle,
        kubelet: ProcessKubelet,
        nats_url: str,
        admin_token: str,
        workdir: Path,
    ) -> None:
        self.operator = operator
        self.objects = objects
        self.lifecycle = lifecycle
        self.kubelet = kubelet
        self.nats_url = nats_url
        self.admin_token = admin_token
        self.workdir = workdir
        self.namespace = objects.namespace
        self._top: str | None = None

    def apply(self, manifest: Json) -> None:
        # The operator answers requests for its namespaces' supervisors only: until one
        # exists a request gets no answer, so its log says when it has subscribed.
        wait_for(
            lambda: "answering control requests" in self.operator.log_tail(),
            timeout=DEADLINE,
            what=f"the operator subscribed to requests:\n{self.operator.log_tail()}",
        )
        top = self._top = manifest["metadata"]["name"]
        self.objects.apply(manifest)
        # Requests about a supervisor the operator has not taken up yet get no answer.
        self.objects.wait_status(
            top, lambda s: bool(s.get("phase")), timeout=DEADLINE, what=f"{top} taken up"
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [REBEAM, *args, "--nats-url", self.nats_url, "--namespace", self.namespace],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            env=dict(os.environ, REBEAM_CREDENTIALS=self.admin_token),
            check=False,
        )

    def events(self) -> list[Json]:
        return self.lifecycle.events()

    def kill(self, path: str, incarnation: int) -> None:
        pid = _started(self.events(), path, incarnation)["pid"]
        pod = wait_for(
            lambda: next(
                (
                    name
                    for name, body in self.objects.pods().items()
                    if (body["metadata"].get("annotations") or {}).get("rebeam.io/pid") == pid
                ),
                None,
            ),
            timeout=DEADLINE,
            what=f"the pod of {pid}",
        )
        self.kubelet.kill_container(self.namespace, pod, None, signal.SIGKILL)

    def stop(self) -> None:
        assert self._top is not None, "apply a manifest first"
        self.objects.delete(self._top)
        wait_for(
            lambda: self.objects.get(self._top or "") is None,
            timeout=DEADLINE,
            what=f"Supervisor {self._top} gone",
        )

    def connect(self) -> Any:
        return rebeam.connect(self.nats_url, namespace=self.namespace, credentials=self.admin_token)

    def start_failure(self) -> str:
        top = self._top or ""
        status = self.objects.wait_status(
            top, lambda s: s.get("phase") == "Failed", timeout=DEADLINE, what=f"{top} Failed"
        )
        failed = status["initFailed"]
        reason = ExitReason.from_wire(failed["reason"])
        return f"{top} failed to start: child {failed['child']}: {reason}"
