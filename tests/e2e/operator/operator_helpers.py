"""Helpers of the operator e2e tests: the operator process, admin-side reads of objects and
pods, the lifecycle events on NATS, and a watchdog for two live incarnations of one child.

The operator is the NATS server's credential issuer (``--issuer-secrets``); the tests' own
clients get their credentials from the e2e NATS's secondary issuer (``E2ENats``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from infra.binaries import REPO
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.procs import die_with_parent, wait_for
from kubernetes import client

from rebeam import _subjects
from rebeam.pids import Pid

RBAC = REPO / "operator" / "deploy" / "rbac.yaml"
OPERATOR_NAMESPACE = "rebeam-system"
ACCOUNT = "rebeam-operator"
GROUP, VERSION = "rebeam.io", "v1alpha1"

Json = dict[str, Any]


def operator_kubeconfig_for(cluster: Cluster, workdir: Path) -> Path:
    """Apply rbac.yaml as admin; a kubeconfig (in ``workdir``) with a token of the operator's
    ServiceAccount, so that the operator runs with exactly that RBAC, never as admin."""
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    cluster.kubectl("apply", "-f", str(RBAC))
    token = cluster.service_account_token(OPERATOR_NAMESPACE, ACCOUNT, expiration_seconds=6 * 3600)
    return cluster.token_kubeconfig(token, workdir / "kubeconfig", user=ACCOUNT)


class Operator:
    """One ``rebeam-operator`` process at a time; its log is ``log_path``."""

    def __init__(self, kubeconfig: Path, namespace: str, nats: E2ENats, workdir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.nats_url = nats.url
        self.issuer_file = nats.issuer_file
        self.log_path = workdir / "operator.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.lease_ttl = "3"
        self.also_watch: tuple[str, ...] = ()  # namespaces beyond the test's (set before start)

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "REBEAM_OPERATOR_LOG_FORMAT": "json",
            **(extra_env or {}),
        }
        args = [
            str(Path(sys.executable).parent / "rebeam-operator"),
            *(f"--namespace={ns}" for ns in (self.namespace, *self.also_watch)),
            "--nats-url",
            self.nats_url,
            "--log-level",
            "DEBUG" if os.environ.get("REBEAM_E2E_OPERATOR_DEBUG") else "INFO",
            # The process kubelet gives each container a termination-message file of its own.
            "--exit-record",
            "$(REBEAM_TERMINATION_LOG)",
            "--lease-ttl",
            self.lease_ttl,
            *(["--issuer-secrets", str(self.issuer_file)] if self.issuer_file else []),
        ]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )

    def kill(self) -> None:
        """SIGKILL: the operator dies wherever it is."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself (a failpoint); its return code."""
        assert self.popen is not None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the operator still runs after {timeout:.0f}s:\n{self.log_tail()}"
            ) from None

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_running(self) -> None:
        assert self.popen is not None
        assert self.popen.poll() is None, f"the operator exited:\n{self.log_tail()}"


class Objects:
    """Admin-side reads and writes of the test's rebeam objects and pods."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(cluster.api_client())
        self.core = client.CoreV1Api(cluster.api_client())

    def apply(self, body: Json) -> Json:
        plural = "supervisors" if body["kind"] == "Supervisor" else "actors"
        result: Json = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        )
        return result

    def get(self, name: str, plural: str = "supervisors") -> Json | None:
        try:
            result: Json = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
            return result
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, name: str, plural: str = "supervisors") -> Json:
        obj = self.get(name, plural)
        return dict((obj or {}).get("status") or {})

    def delete(self, name: str, plural: str = "supervisors") -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def pods(self) -> dict[str, Json]:
        listing = self.core.list_namespaced_pod(
            self.namespace, label_selector="app.kubernetes.io/managed-by=rebeam-operator"
        )
        return {
            p.metadata.name: self.cluster.api_client().sanitize_for_serialization(p)
            for p in listing.items
        }

    def running_pods(self) -> set[str]:
        """Pods whose container runs (alive incarnations)."""
        alive = set()
        for name, pod in self.pods().items():
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if (status.get("state") or {}).get("running"):
                    alive.add(name)
        return alive

    def events(self, name: str) -> list[Json]:
        listing = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        items = sorted(
            listing.items, key=lambda e: (e.metadata.creation_timestamp, e.metadata.name)
        )
        return [{"reason": e.reason, "message": e.message, "type": e.type} for e in items]

    def wait_status(
        self,
        name: str,
        check: Any,
        *,
        timeout: float = 60.0,
        what: str = "",
        plural: str = "supervisors",
    ) -> Json:
        def ready() -> Json | None:
            status = self.status(name, plural)
            return status if status and check(status) else None

        return wait_for(ready, timeout=timeout, what=what or f"status of {name}", interval=0.2)


class Lifecycle:
    """The lifecycle events the operator publishes on NATS for one namespace, collected by a
    subscriber in a thread of its own."""

    def __init__(self, nats: E2ENats, namespace: str) -> None:
        self.url = nats.url
        self.token = nats.admin_token(namespace)
        self.namespace = namespace
        self._events: list[Json] = []
        self._arrivals: list[float] = []  # time.monotonic() of each event's arrival
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("could not subscribe to lifecycle events")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await admin_connect(self.url, self.namespace, self.token)

        async def got(msg: Any) -> None:
            with self._lock:
                self._events.append(json.loads(msg.data))
                self._arrivals.append(time.monotonic())

        await nc.subscribe(f"rebeam.{self.namespace}.events.>", cb=got)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def events(self) -> list[Json]:
        with self._lock:
            return list(self._events)

    def arrivals(self) -> list[tuple[float, Json]]:
        """Each event with the moment it arrived here (time.monotonic())."""
        with self._lock:
            return list(zip(self._arrivals, self._events, strict=True))

    poll = events  # the attack suite's name for it (tests/security/harness.py)

    def lines(self, *, since: int = 0) -> list[str]:
        """``event child reason`` strings (reason: its kind only), in arrival order."""
        return event_lines(self.events()[since:])

    def wait(self, line: str, *, count: int = 1, timeout: float = 60.0) -> list[str]:
        return wait_for(
            lambda: self.lines() if self.lines().count(line) >= count else None,
            timeout=timeout,
            what=f"{count}x lifecycle event '{line}' (got {self.lines()})",
            interval=0.1,
        )


async def admin_connect(url: str, namespace: str, token: str, **options: Any) -> Any:
    """A raw NATS connection with an admin credential of ``namespace``: named with a fresh
    client pid, its inboxes under that pid's (what the issuer and its grant require)."""
    import nats

    pid = Pid.for_client(namespace)
    return await nats.connect(
        url,
        token=token,
        name=str(pid),
        inbox_prefix=f"{_subjects.inbox_prefix(pid)}.t",
        **options,
    )


class Watchdog:
    """Polls the pods of a namespace and records every moment two incarnations of one child
    ran at once (what users must never see)."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.overlaps: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                pods = self.objects.pods()
            except Exception:
                continue
            running: dict[str, list[str]] = {}
            for name, pod in pods.items():
                labels = pod["metadata"].get("labels") or {}
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                if any((s.get("state") or {}).get("running") for s in statuses):
                    key = f"{labels.get('rebeam.io/host-uid')}/{labels.get('rebeam.io/child')}"
                    running.setdefault(key, []).append(name)
            for names in running.values():
                if len(names) > 1:
                    self.overlaps.append(", ".join(sorted(names)))

    def close(self) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        return self.overlaps


def supervisor(name: str, children: list[Json], **spec: Any) -> Json:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Supervisor",
        "metadata": {"name": name},
        "spec": {**spec, "children": children},
    }


def sleeper(name: str, **child: Any) -> Json:
    """A command child that runs until it is stopped (SIGTERM ends it: exit shutdown)."""
    return {"name": name, **child, "actor": {"command": ["sleep", "600"]}}


DEMO = REPO / "examples" / "demo"


def actor(name: str, module: str, *, register: str | None = None, **child: Any) -> Json:
    """A Python actor child hosted by ``python -m rebeam.runtime`` (modules of examples/demo)."""
    template: Json = {"module": module, "env": [{"name": "PYTHONPATH", "value": str(DEMO)}]}
    if register:
        template["register"] = register
    return {"name": name, **child, "actor": template}


SLOW_STOP = (
    "import pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (time.sleep({delay}), sys.exit(0)))\n"
    "if len(sys.argv) > 1:\n"
    "    pathlib.Path(sys.argv[1]).touch()  # the handler is in place\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


def slow_stopper(name: str, delay: float, armed: Path | None = None, **child: Any) -> Json:
    """A command child that takes ``delay`` seconds to stop after SIGTERM (then exits 0).

    A command child counts as started once its pod runs, which can be before Python has
    installed the SIGTERM handler; with ``armed``, the child creates that file once it has,
    and a test that stops it waits for the file first (:func:`wait_armed`)."""
    code = SLOW_STOP.format(delay=delay)
    command = ["python", "-c", code, *([str(armed)] if armed else [])]
    return {"name": name, **child, "actor": {"command": command}}


def wait_armed(armed: Path) -> None:
    wait_for(armed.exists, timeout=60, what=f"{armed.name}: the SIGTERM handler in place")


def child_state(status: Json, name: str) -> Json:
    return next(c for c in status.get("children") or [] if c["name"] == name)


def event_lines(events: list[Json]) -> list[str]:
    """``event child reason-kind`` for each lifecycle event: what both backends must agree on
    (pids, times and os pids differ by nature)."""
    out = []
    for e in events:
        reason = e.get("reason")
        kind = (reason if isinstance(reason, str) else next(iter(reason))) if reason else ""
        out.append(" ".join(p for p in (e["event"], e.get("child") or "", kind) if p))
    return out
