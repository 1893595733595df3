"""The kubelet's core/v1 Events on pods, recorded as a real kubelet's event recorder does.

A pod worker calls :meth:`EventRecorder.record` (never blocks, never raises); one task of the
kubelet's loop sends what was recorded (:meth:`EventRecorder.run`). What reaches the API
server is what ``kubectl get events`` / ``kubectl describe pod`` show on a cluster:

- ``involvedObject`` is the pod, with ``fieldPath: spec.containers{NAME}`` for a container's
  events; ``source`` is ``kubelet`` on the node, ``reportingComponent`` ``kubelet`` and
  ``reportingInstance`` the node;
- aggregation: an event with the same key as one sent before (source, involved object with its
  fieldPath, type, reason, message) is not a new object: the earlier one is PATCHed with
  ``count`` + 1 and a new ``lastTimestamp`` (:class:`Correlator`). A back-off that fires every
  few seconds is one Event whose count grows;
- a bounded rate: a token bucket per source, object and type (25 at once, then one per 5
  minutes), as the recorder's spam filter; events over it are dropped and counted. As in the
  recorder, a dropped event still counts: the next one of its key that gets through carries
  the count of all.

Reason strings, types and messages are those of the kubelet of the pinned Kubernetes version
(``Container created``, ``Back-off pulling image "X"``, ...; the table in tests/e2e/README.md).
The recorder's other aggregation, of similar events whose messages differ ("combined from
similar events"), is not made: the messages here repeat exactly.

A kubelet's recorder retries a failed write a few times; this one counts it, logs at a bounded
rate and moves on. Events of a lost node (no API traffic) are dropped, as its queue would be
lost with it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.aio import client as aclient

__all__ = [
    "NORMAL",
    "WARNING",
    "Correlator",
    "EventRecorder",
    "event_key",
    "spam_key",
]

log = logging.getLogger("rebeam.e2e.kubelet")

Json = dict[str, Any]

NORMAL, WARNING = "Normal", "Warning"
COMPONENT = "kubelet"
MERGE_PATCH = "application/merge-patch+json"
QUEUE_SIZE = 1000  # events waiting to be sent; more are dropped (counted), never waited for
CACHE_SIZE = 4096  # event keys remembered for aggregation (least recently used go first)
SPAM_BURST, SPAM_REFILL_SECONDS = 25, 300.0  # the recorder's spam filter: 25, then 1 per 5 min
MAX_MESSAGE = 1024  # characters of a message kept (an Event is no place for a whole log)
MAX_NAME = 253  # an object's name, at most


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_key(event: Json) -> tuple[str, ...]:
    """What makes two events the same one, counted rather than sent twice: everything but
    the times and the count (the recorder's aggregation key)."""
    ref, source = event["involvedObject"], event["source"]
    return (
        source.get("component", ""),
        source.get("host", ""),
        ref.get("kind", ""),
        ref.get("namespace", ""),
        ref.get("name", ""),
        ref.get("fieldPath", ""),
        ref.get("uid", ""),
        ref.get("apiVersion", ""),
        event["type"],
        event["reason"],
        event["message"],
    )


def spam_key(event: Json) -> tuple[str, ...]:
    """The spam filter's bucket: the object (not its container) and the type."""
    key = event_key(event)
    return key[:5] + key[6:9]


@dataclass
class _Seen:
    name: str
    count: int
    first: str


class Correlator:
    """Aggregation and the spam filter. :meth:`correlate` returns the event to write (its
    ``count`` > 1 means: PATCH the existing object of that name), or None when the spam filter
    drops it."""

    def __init__(
        self,
        *,
        cache_size: int = CACHE_SIZE,
        burst: int = SPAM_BURST,
        refill_seconds: float = SPAM_REFILL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_size, self.burst, self.refill = cache_size, burst, refill_seconds
        self.clock = clock
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self._buckets: OrderedDict[tuple[str, ...], tuple[float, float]] = OrderedDict()

    def correlate(self, event: Json) -> Json | None:
        key = event_key(event)
        seen = self._seen.pop(key, None)
        if seen is None:
            seen = _Seen(event["metadata"]["name"], 0, event["firstTimestamp"])
        seen.count += 1
        self._remember(self._seen, key, seen)
        out = dict(event)
        out["metadata"] = {**event["metadata"], "name": seen.name}
        out["count"], out["firstTimestamp"] = seen.count, seen.first
        return out if self._allow(spam_key(event)) else None

    def _allow(self, key: tuple[str, ...]) -> bool:
        now = self.clock()
        tokens, since = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - since) / self.refill)
        allowed = tokens >= 1.0
        self._remember(self._buckets, key, (tokens - 1.0 if allowed else tokens, now))
        return allowed

    def _remember(self, table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value  # popped before: now the most recently used
        while len(table) > self.cache_size:
            table.popitem(last=False)


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str


class EventRecorder:
    """One node's recorder: :meth:`record` queues, :meth:`run` (a task of the loop) sends."""

    def __init__(self, node: str, correlator: Correlator | None = None) -> None:
        self.node = node
        self.correlator = correlator or Correlator()
        self.queue: asyncio.Queue[Json] = asyncio.Queue(QUEUE_SIZE)
        # What happened to recorded events (read by tests and the kubelet's log).
        self.counts = {"created": 0, "patched": 0, "full": 0, "spam": 0, "lost": 0, "failed": 0}
        self._last_warning = float("-inf")
        self._unwarned = 0

    def record(
        self, pod: PodRef, container: str | None, kind: str, reason: str, message: str
    ) -> None:
        """Queue one event on ``pod`` (its ``container``'s, if named)."""
        ref: Json = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
        }
        if container is not None:
            ref["fieldPath"] = f"spec.containers{{{container}}}"
        stamp = _timestamp()
        suffix = f".{time.time_ns():x}"
        event: Json = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": pod.name[: MAX_NAME - len(suffix)] + suffix,
                "namespace": pod.namespace,
            },
            "involvedObject": ref,
            "type": kind,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "source": {"component": COMPONENT, "host": self.node},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._failed("full", "event queue full: %s %s dropped", reason, pod.name)

    async def run(self, core: aclient.CoreV1Api, lost: Callable[[], bool]) -> None:
        """Send queued events until cancelled; ``lost``: the node has no API traffic now."""
        while True:
            event = await self.queue.get()
            if lost():
                self.counts["lost"] += 1
                continue
            out = self.correlator.correlate(event)
            if out is None:
                self.counts["spam"] += 1
                continue
            try:
                await self._send(core, out)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the worker must never notice: count, log, go on
                name = out["involvedObject"]["name"]
                self._failed("failed", "event %s on %s: %s", out["reason"], name, exc)

    async def _send(self, core: aclient.CoreV1Api, event: Json) -> None:
        meta = event["metadata"]
        if event["count"] > 1:
            patch = {k: event[k] for k in ("count", "lastTimestamp", "message")}
            response = await core.patch_namespaced_event_without_preload_content(
                meta["name"], meta["namespace"], patch, _content_type=MERGE_PATCH
            )
            body = await response.read()
            if response.status < 300:
                self.counts["patched"] += 1
                return
            if response.status != 404:
                raise RuntimeError(f"HTTP {response.status} {body[:200]!r}")
            # The earlier object expired (the API server's event TTL): make it again.
        response = await core.create_namespaced_event_without_preload_content(
            meta["namespace"], event
        )
        body = await response.read()
        if response.status >= 300:
            raise RuntimeError(f"HTTP {response.status} {body[:200]!r}")
        self.counts["created"] += 1

    def _failed(self, counter: str, message: str, *args: Any) -> None:
        """Count, and log at most one warning per 10 s (saying how many went unlogged)."""
        self.counts[counter] += 1
        now = time.monotonic()
        if now - self._last_warning < 10.0:
            self._unwarned += 1
            return
        if self._unwarned:
            message += f" (and {self._unwarned} more event problems not logged)"
        log.warning(message, *args)
        self._last_warning, self._unwarned = now, 0
