"""A watch of the operator's pods for the whole of a test: when each incarnation was live, and
whether two incarnations of one child were ever live at once.

An incarnation (a pod) is live from the event that first shows it until the event that shows
its container terminated or the pod deleted. The watch delivers a namespace's pod events in
resourceVersion order, which is the order the API server committed them, so "at once" is exact:
two incarnations of one child overlap when the second is created before an event ended the
first. (The polling :class:`~operator_helpers.Watchdog` samples; this misses nothing.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from infra.cluster import Cluster
from kubernetes import client, watch

__all__ = ["PodTimeline"]

Json = dict[str, Any]

LABEL_HOST = "rebeam.io/host-uid"
LABEL_CHILD = "rebeam.io/child"
LABEL_INCARNATION = "rebeam.io/incarnation"


@dataclass
class _Pod:
    name: str
    child: str  # "<host uid>/<child>"
    incarnation: int
    live: bool = True


@dataclass
class _State:
    pods: dict[str, _Pod] = field(default_factory=dict)  # by uid
    overlaps: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # pod names, in creation order
    ended: list[str] = field(default_factory=list)  # pod names, in the order they stopped living
    version: str = ""


def _ended(pod: Json) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if (status.get("state") or {}).get("terminated"):
            return True
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class PodTimeline:
    """Watches the rebeam pods of one namespace from a thread of its own until :meth:`close`."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.namespace = namespace
        self.api = client.CoreV1Api(cluster.api_client())
        self._state = _State()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        listing = self.api.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/managed-by=rebeam-operator"
        )
        for pod in listing.items:
            self._on("ADDED", self.api.api_client.sanitize_for_serialization(pod))
        self._state.version = listing.metadata.resource_version
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._watch = watch.Watch()
            try:
                for event in self._watch.stream(
                    self.api.list_namespaced_pod,
                    self.namespace,
                    label_selector="app.kubernetes.io/managed-by=rebeam-operator",
                    resource_version=self._state.version,
                    timeout_seconds=5,
                    allow_watch_bookmarks=True,
                ):
                    pod = event["raw_object"]
                    self._state.version = pod["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._on(event["type"], pod)
                    if self._stop.is_set():
                        break
            except Exception as exc:  # 410 Gone would lose events: say so, never hide it
                if not self._stop.is_set():
                    with self._lock:
                        self._state.overlaps.append(f"pod watch broke: {exc!r}")
                return

    def _on(self, kind: str, pod: Json) -> None:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        uid = meta["uid"]
        with self._lock:
            state = self._state
            known = state.pods.get(uid)
            if known is None:
                if kind == "DELETED":
                    return
                known = _Pod(
                    name=meta["name"],
                    child=f"{labels.get(LABEL_HOST)}/{labels.get(LABEL_CHILD)}",
                    incarnation=int(labels.get(LABEL_INCARNATION, "0")),
                )
                state.pods[uid] = known
                state.created.append(known.name)
                others = [
                    p.name
                    for p in state.pods.values()
                    if p.live and p.child == known.child and p is not known
                ]
                if others:
                    state.overlaps.append(f"{known.name} created while {others} live")
            if known.live and (kind == "DELETED" or _ended(pod)):
                known.live = False
                state.ended.append(known.name)

    def overlaps(self) -> list[str]:
        with self._lock:
            return list(self._state.overlaps)

    def created(self) -> list[str]:
        """Every pod name seen, in creation order."""
        with self._lock:
            return list(self._state.created)

    def ended(self) -> list[str]:
        """Every pod that stopped living, in that order."""
        with self._lock:
            return list(self._state.ended)

    def live(self) -> set[str]:
        with self._lock:
            return {p.name for p in self._state.pods.values() if p.live}

    def close(self) -> list[str]:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(15)
        return self.overlaps()
