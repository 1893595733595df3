"""The operator's metrics and its HTTP health endpoints, on one port (docs/observability.md).

Served from the operator's own event loop (aiohttp, which kopf already brings): ``/healthz``
answering at all means the loop is not stuck, which is what liveness should catch;
``/readyz`` says whether the operator has started (its world exists) and reached NATS;
``/metrics`` is the Prometheus exposition of the process: these families, supervision
(rebeam.metrics_supervision, fed by every driver) and the process collector.

The hooks are one line each: a reconcile pass is timed by :func:`timed_pass`; an ended pod
is noted by :func:`pod_seen` and its replacement's creation by :func:`replaced`, which
gives the restart latency as the operator sees it (exit observed to new pod created).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from kubernetes.client.exceptions import ApiException
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "api_error",
    "counted",
    "expose",
    "gc_paused",
    "pod_seen",
    "replaced",
    "serve",
    "timed_pass",
]

T = TypeVar("T")
Json = dict[str, Any]

PASSES = Counter(
    "rebeam_operator_passes", "Reconcile passes of the drivers, by result.", ["result"]
)
PASS_SECONDS = Histogram(
    "rebeam_operator_pass_seconds",
    "How long one reconcile pass took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
for _result in ("ok", "conflict", "failed"):
    PASSES.labels(_result)  # at zero from the start: a rate works before the first failure
API_ERRORS = Counter(
    "rebeam_operator_api_errors",
    "Kubernetes API calls that failed, by verb and HTTP status (an expected 404 or 409 "
    "included: alert on 5xx and 429).",
    ["verb", "code"],
)
RESTART_SECONDS = Histogram(
    "rebeam_operator_restart_seconds",
    "From a child's pod seen ended to its replacement pod created.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
GC_SECONDS = Histogram(
    "rebeam_operator_gc_seconds",
    "Pauses of the garbage collector, by generation (2: a full collection; heap.py).",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DRIVERS = Gauge("rebeam_operator_drivers", "Supervisors (and lone Actors) being driven.")
QUEUED = Gauge("rebeam_operator_queued", "Drivers woken by an event and waiting for a pass.")
READY = Gauge("rebeam_operator_ready", "1 once the operator has started and reached NATS.")
SHARDS_OWNED = Gauge(
    "rebeam_operator_shards_owned",
    "Shards (of namespaces) this replica holds the Lease of and acts on; 0 without sharding.",
)

_VERBS = ("create", "delete", "get", "list", "patch", "replace", "read")
_ENDED_AT: dict[str, float] = {}  # pod name -> when it was first seen ended
_MAX_ENDED = 10_000  # pods seen ended whose replacement is pending: bounded all the same


async def timed_pass(reconcile: Awaitable[T], conflict: type[Exception]) -> T:
    """Run one reconcile pass, counted by result (ok, conflict: the object changed under
    it, failed) and timed."""
    started = time.monotonic()
    result = "failed"
    try:
        outcome = await reconcile
        result = "ok"
        return outcome
    except conflict:
        result = "conflict"
        raise
    finally:
        PASSES.labels(result).inc()
        PASS_SECONDS.observe(time.monotonic() - started)


def gc_paused(generation: int, seconds: float) -> None:
    GC_SECONDS.labels(str(generation)).observe(seconds)


def api_error(verb: str, status: int | None) -> None:
    """A call that failed (status None: no answer), for calls made without ``counted``."""
    API_ERRORS.labels(verb, str(status or "none")).inc()


def counted(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` (a blocking Kubernetes client method), counting its failures by verb: the
    first word of its name (create_namespaced_pod is a create)."""
    verb = fn.__name__.split("_", 1)[0]
    verb = verb if verb in _VERBS else "other"

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            API_ERRORS.labels(verb, str(exc.status or "none")).inc()
            raise
        except Exception:
            API_ERRORS.labels(verb, "none").inc()  # no answer: the connection failed
            raise

    return call


def pod_seen(pod: Json) -> None:
    """Note when an actor pod was first seen ended."""
    name = (pod.get("metadata") or {}).get("name")
    if not name or name in _ENDED_AT:
        return
    if _ended(pod):
        if len(_ENDED_AT) >= _MAX_ENDED:
            _ENDED_AT.pop(next(iter(_ENDED_AT)))
        _ENDED_AT[name] = time.monotonic()


def _ended(pod: Json) -> bool:
    """The pod's container has terminated (read here, not with observation.py: the API
    client imports this module, and must not import the layers above it)."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    return any(
        "terminated" in (c.get("state") or {}) for c in status.get("containerStatuses") or []
    )


def replaced(previous_pod: str) -> None:
    """The replacement of ``previous_pod`` was created: the restart latency, if its end
    was seen (not for a first start, nor after an operator restart)."""
    ended = _ENDED_AT.pop(previous_pod, None)
    if ended is not None:
        RESTART_SECONDS.observe(time.monotonic() - ended)


async def serve(port: int, ready: Callable[[], bool], drivers: Callable[[], list[Any]]) -> Any:
    """Serve /metrics, /healthz and /readyz on ``port`` (every interface: the pod's port)."""

    async def metrics(_: web.Request) -> web.Response:
        live = drivers()
        DRIVERS.set(len(live))
        QUEUED.set(sum(1 for d in live if d.wake.is_set()))
        READY.set(1 if ready() else 0)
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: starting, or NATS not reached\n")

    app = web.Application()
    app.add_routes(
        [web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)]
    )
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


def expose(pod: Json, port: int | None) -> None:
    """Have an actor pod's runtime serve its metrics on ``port``, and say so the way
    Prometheus' Kubernetes discovery reads it (annotations) and a PodMonitor does (a named
    container port). None: nothing (and never for a command: it has no runtime)."""
    if port is None:
        return
    pod["metadata"].setdefault("annotations", {}).update(
        {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
    )
    container = pod["spec"]["containers"][0]
    container["env"].append({"name": "REBEAM_METRICS_PORT", "value": str(port)})
    container.setdefault("ports", []).append(
        {"name": "metrics", "containerPort": port, "protocol": "TCP"}
    )
