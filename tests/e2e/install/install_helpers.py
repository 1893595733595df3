"""Helpers of the install tests: the release's values and NATS Secrets, the lifecycle events
of a namespace as they arrive on NATS, and the release's operator log (`kubectl logs`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.hostnet import share_host_network
from tools.images import Engine

Json = dict[str, Any]


def release_values(
    cluster: Cluster,
    nats_url: str,
    app_namespace: str,
    image: str,
    images: Engine | None = None,
) -> Json:
    """The chart's values for a release that watches only ``app_namespace`` and uses the
    test's nats-server (the NATS chart cannot be fetched here). ``images``: the release runs
    on a node in container mode, from the images ``make images`` built, with the chart's
    defaults otherwise (the exit record is the containers' terminationMessagePath)."""
    operator: Json = {"watchNamespaces": [app_namespace], "logFormat": "text"}
    metrics: Json = {}
    if images is not None or cluster.kubelet is not None:
        metrics = share_host_network(operator)
    if images is not None:
        repository, _, tag = images.name("operator").rpartition(":")
        operator["image"] = {"repository": repository, "tag": tag}
        operator["actorImage"] = images.name("actor")
    elif cluster.kubelet is not None:
        # Each process-kubelet container has a termination-message file of its own, named by
        # $REBEAM_TERMINATION_LOG; `$$` keeps the operator's own container from expanding it.
        operator["exitRecord"] = "$$(REBEAM_TERMINATION_LOG)"
    else:
        # On kind or a hosted cluster: the images built from images/ (scripts/kind-e2e.sh).
        repository, _, tag = os.environ.get("REBEAM_E2E_OPERATOR_IMAGE", "").rpartition(":")
        if repository:
            operator["image"] = {"repository": repository, "tag": tag}
        operator["actorImage"] = image
    return {
        "nats": {"enabled": False},
        "natsUrl": nats_url,
        "operator": operator,
        "metrics": metrics,
    }


def apply_nats_secrets(cluster: Cluster, namespace: str, nats: E2ENats, workdir: Path) -> None:
    """What the install docs say to do first: ``rebeam nats-secrets | kubectl apply -f -``,
    here for the test's NATS server (its issuer.json)."""
    rebeam = str(Path(sys.executable).parent / "rebeam")
    made = subprocess.run(
        [rebeam, "nats-secrets", "--namespace", namespace, "--issuer-file", str(nats.issuer_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    secrets = workdir / "nats-secrets.yaml"
    secrets.touch(mode=0o600)
    secrets.write_text(made.stdout)
    cluster.kubectl("apply", "-f", str(secrets))


class EventTap:
    """Collects ``rebeam.<namespace>.events.>`` in a thread of its own."""

    def __init__(self, nats: E2ENats, namespace: str) -> None:
        self.url = nats.url
        self.namespace = namespace
        self.token = nats.admin_token(namespace)
        self.subject = f"rebeam.{namespace}.events.>"
        self._events: list[Json] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            raise RuntimeError(f"could not subscribe to {self.subject}: {self._error}")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __init__ or lines()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        import nats

        from rebeam import _subjects
        from rebeam.pids import Pid

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        pid = Pid.for_client(self.namespace)
        nc = await nats.connect(
            self.url,
            connect_timeout=5,
            token=self.token,
            name=str(pid),
            inbox_prefix=f"{_subjects.inbox_prefix(pid)}.t",
        )

        async def got(msg: Any) -> None:
            with self._lock:
                self._events.append(json.loads(msg.data))

        await nc.subscribe(self.subject, cb=got)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()

    def events(self) -> list[Json]:
        with self._lock:
            return list(self._events)

    def lines(self) -> list[str]:
        """``event child reason-kind``, in arrival order."""
        out = []
        for e in self.events():
            reason = e.get("reason")
            kind = (reason if isinstance(reason, str) else next(iter(reason))) if reason else ""
            out.append(" ".join(p for p in (e["event"], e.get("child") or "", kind) if p))
        return out

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def operator_log(cluster: Cluster, namespace: str, deployment: str) -> str:
    """The tail of the operator container's log, for failure messages (`kubectl logs`, which
    the test kubelet serves in both modes)."""
    try:
        result = cluster.kubectl(
            "logs", "-n", namespace, f"deployment/{deployment}", "--tail=60", check=False
        )
        return result.stdout + result.stderr
    except Exception as exc:  # a diagnostic must never hide the real failure
        return f"(no operator log: {exc})"
