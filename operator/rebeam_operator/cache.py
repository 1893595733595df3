"""A driver's cache: what the watches (and its own writes) showed of the objects it owns, and
what it did since it started. Memory only: a restarted operator lists the objects again
(``Driver.seed``) and trusts only its record (record.py) for what it decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rebeam.pids import Pid
from rebeam.spec.models import Child
from rebeam.supervision import Supervisor
from rebeam_operator.hosts import LABEL_CHILD, Host
from rebeam_operator.observation import PodPhase, disrupted, observe_pod

__all__ = ["Cache", "pod_alive", "version_of"]

Json = dict[str, Any]


# How many deleted child objects are remembered against late views of them: stale views
# arrive within one write's round trip, so the last few deletions are the ones that matter.
_TOMBSTONES = 256


def version_of(body: Json) -> int:
    """An object's resourceVersion, as an order: one API server's versions are its storage
    revisions, which only grow (the watches' bookmarks rely on the same)."""
    return int(body["metadata"].get("resourceVersion") or 0)


def pod_alive(pod: Json) -> bool:
    return observe_pod(pod, stop_requested=True).phase is not PodPhase.ENDED


def _last_state(deleted: Json, before: Json | None) -> Json:
    """What a deleted pod last said of its end. The deletion's own body may lack the final
    container state the pod showed just before (a kubelet that SIGKILLed it at the end of its
    grace period wrote exit 137, then deleted it): a pass that comes after the deletion reads
    the end from here, not as a vanished pod's guess."""
    if before is not None and not _ended(deleted) and _ended(before):
        return before
    return deleted


def _ended(pod: Json) -> bool:
    return observe_pod(pod, stop_requested=True).phase is PodPhase.ENDED


@dataclass
class Cache:
    pods: dict[str, Json] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # pods we saw deleted
    last_seen: dict[str, Json] = field(default_factory=dict)  # deleted pods: how they ended
    kill_due: dict[str, float] = field(default_factory=dict)  # pods stopped: SIGKILL due at
    kill_ordered: dict[str, float] = field(default_factory=dict)  # brutal_kill: told when
    child_objects: dict[str, Json] = field(default_factory=dict)  # child Supervisor objects
    deleted_objects: dict[str, int] = field(default_factory=dict)  # name -> version deleted at
    slots: dict[str, str] = field(default_factory=dict)  # actor child -> its slot object's uid
    slot_specs: dict[str, Json] = field(default_factory=dict)  # actor child -> slot spec
    slot_status: dict[str, Json] = field(default_factory=dict)  # actor child -> status written
    # actor child -> the Child and slot spec (the very objects) last found to agree
    slot_checked: dict[str, tuple[Child, Json]] = field(default_factory=dict)
    pid_memo: dict[str, tuple[tuple[str, str, int], Pid]] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)  # pods created since the driver started
    fenced: set[str] = field(default_factory=set)
    disrupted: set[str] = field(default_factory=set)  # pods Kubernetes took away
    lease_checked: dict[str, float] = field(default_factory=dict)
    early: set[str] = field(default_factory=set)  # created ahead of their status write
    unrecorded: dict[str, Json] = field(default_factory=dict)  # decisions never persisted

    def on_pod(self, body: Json, deleted: bool) -> None:
        name = body["metadata"]["name"]
        if deleted:
            before = self.pods.pop(name, None)
            if name not in self.unrecorded:  # an unrecorded pod's name is used again
                self.gone.add(name)
                self.last_seen[name] = _last_state(body, before)
            if disrupted(body):  # its end is reported from this, its last state
                self.disrupted.add(name)
        elif name not in self.gone:
            old = self.pods.get(name)
            if old is None or version_of(old) <= version_of(body):
                self.pods[name] = body

    def on_child_object(self, body: Json, deleted: bool) -> None:
        """Keep the newest view of a child Supervisor object. Views arrive out of order: a
        write's response can be read after the watch event of a later change (the child's
        own driver runs in the same loop), and a LIST answered during a watch is older than
        the events delivered meanwhile. A stale view kept would hide the child's last phase
        until something else changes it — for a terminated child, never."""
        name = body["metadata"]["name"]
        version = version_of(body)
        if deleted:
            self.child_objects.pop(name, None)
            self.deleted_objects.pop(name, None)
            self.deleted_objects[name] = version
            while len(self.deleted_objects) > _TOMBSTONES:  # the oldest first: dicts keep order
                del self.deleted_objects[next(iter(self.deleted_objects))]
            return
        if version <= self.deleted_objects.get(name, 0):
            return  # a view from before its deletion
        old = self.child_objects.get(name)
        if old is None or version_of(old) <= version:
            self.child_objects[name] = body

    def may_create(self, name: str) -> bool:
        """No pod of that name was ever seen or made (an incarnation's pod is made once)."""
        return not (
            name in self.pods
            or name in self.created
            or name in self.gone
            or name in self.unrecorded
        )

    def gone_for_good(self, child: str) -> bool:
        """No pod of the child is still alive (its last incarnation has ended)."""
        for pod in self.pods.values():
            labels = pod["metadata"].get("labels") or {}
            if labels.get(LABEL_CHILD) == child and pod_alive(pod):
                return False
        return True

    def pid(self, host: Host, child: str, incarnation: int) -> Pid | None:
        """The pid of a child's incarnation: its slot is its Actor object's uid (the host's
        own for an Actor applied on its own); None while the slot is not known."""
        slot = host.uid if host.standalone_actor else self.slots.get(child)
        if slot is None or incarnation < 1:
            return None
        # Kept per child: a pass asks for each child's pid several times, every pass, and
        # building one checks its parts (a fifth of a pass at rest with 10,000 pods).
        key = (host.namespace, slot, incarnation)
        known = self.pid_memo.get(child)
        if known is not None and known[0] == key:
            return known[1]
        pid = Pid.for_incarnation(*key)
        self.pid_memo[child] = (key, pid)
        return pid

    def pids(self, host: Host, core: Supervisor) -> dict[str, str]:
        """The pid of every child's current incarnation, as status shows them."""
        found = {}
        for info in core.which_children():
            pid = self.pid(host, info.id, info.incarnation or 0)
            if pid is not None:
                found[info.id] = str(pid)
        return found

    def keep_only(self, names: set[str]) -> None:
        """What is remembered of a pod name is only looked up for a child's latest
        incarnation: forget the rest, or a long-lived tree's restarts would pile up."""
        for kept in (self.gone, self.created, self.fenced, self.disrupted):
            kept &= names
        self.last_seen = {k: v for k, v in self.last_seen.items() if k in names}
        self.kill_due = {k: v for k, v in self.kill_due.items() if k in names}
        self.kill_ordered = {k: v for k, v in self.kill_ordered.items() if k in names}
        self.lease_checked = {k: v for k, v in self.lease_checked.items() if k in names}
