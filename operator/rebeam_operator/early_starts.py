"""Pods created before the status write that records the decision to start them.

A restart was two API round trips in a row: the status PUT that persists the decision, then
the create of the replacement pod. Each costs about as much as the other, so a restart took
a little over twice the floor (one round trip), and anything that slowed either one pushed it
past three times. Now the pods a pass starts are created *first*, and the decision is
persisted right after (:func:`create_ahead`, then the driver's status write). Everything
else still waits for the write: stops, child Supervisors, notifications, replies. A start
is the one act that can be taken back, because an incarnation's pod name is fixed: a second
process of it can never be created. (Creating and writing concurrently was measured too: the
two requests then compete for the API server, and the create, which is what a restart waits
for, came later.)

The price is one new state after a crash. If the operator is killed after such a create and
before the write lands, a pod exists that no stored decision asks for: an *unrecorded* pod.
Every pod says which status write its decision belongs to (the annotation
``rebeam.io/decided-seq``). A driver treats as unrecorded a pod whose seq is above its
persisted ``seq``, unless it is one of its own creates whose write is still pending
(the cache's ``early``). It removes such a pod before anything else of that child happens:

1. it deletes the pod with a grace period of a second, so that the kubelet confirms the
   container has stopped (a grace-0 delete would remove the object at once and let the
   process linger), and while the pod exists it is neither observed nor created again;
2. once the pod is gone, it releases the names and the lease of the pod's pid. The
   incarnation that replaces it has the same pod name and the same pid, and must find both
   free;
3. then the restored core's own decision runs as if the early create had never happened. It
   was never persisted, so the exit is fed once and the restart counted once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from rebeam.pids import Pid
from rebeam_operator import failpoints
from rebeam_operator.cache import Cache
from rebeam_operator.carry_out import CarryOut
from rebeam_operator.effects import Effects
from rebeam_operator.hosts import ANN_DECIDED_SEQ, ANN_PID, LABEL_CHILD, LABEL_INCARNATION

__all__ = ["create_ahead", "decided_seq", "remove_unrecorded", "unrecorded"]

Log = logging.LoggerAdapter[logging.Logger]

Json = dict[str, Any]

UNRECORDED_GRACE: Final = 1  # seconds: long enough for the kubelet to confirm the stop


def decided_seq(pod: Json) -> int:
    """The status write a pod's decision belongs to; 0 for pods from before the annotation."""
    value = (pod["metadata"].get("annotations") or {}).get(ANN_DECIDED_SEQ, "0")
    try:
        return int(value)
    except ValueError:
        return 0


def unrecorded(pods: dict[str, Json], persisted_seq: int, pending: set[str]) -> list[str]:
    """Names of the pods created for a decision that never reached status."""
    return sorted(
        name
        for name, pod in pods.items()
        if name not in pending and decided_seq(pod) > persisted_seq
    )


async def create_ahead(hands: CarryOut, seq: int) -> list[str]:
    """Create the pods the pass's decision starts, for status write ``seq``; the names of
    those pods (the driver persists the decision next)."""
    starts = hands.pending_actor_starts()
    names = [hands.host.pod_name(spec.name, command.incarnation) for spec, command in starts]
    hands.cache.early.update(names)
    for spec, command in starts:
        await hands.start_actor(spec, command.incarnation, decided_seq=seq)
    if starts:
        failpoints.hit("created-unpersisted")
    return names


async def remove_unrecorded(
    cache: Cache,
    effects: Effects,
    persisted_seq: int,
    pid_rule: Callable[[str, int], Pid | None],
    log: Log,
) -> None:
    """Delete unrecorded pods; release the pid of each one that is gone (see the module).
    ``pid_rule`` makes a child incarnation's pid."""
    for name in unrecorded(cache.pods, persisted_seq, cache.early):
        pod = cache.pods[name]
        if name not in cache.unrecorded:
            log.warning(
                "pod %s was created for a decision that was never persisted: deleting it", name
            )
            cache.unrecorded[name] = pod
            cache.created.discard(name)
        if "deletionTimestamp" not in pod["metadata"]:
            await effects.delete_pod(name, UNRECORDED_GRACE, pod["metadata"]["uid"])
    for name, pod in list(cache.unrecorded.items()):
        if name in cache.pods:
            continue  # not gone yet
        pid = _pid_of(pod, pid_rule, log)
        if pid is not None:
            await effects.release(pid)
            await effects.drop_lease(pid)
        del cache.unrecorded[name]
        log.info("unrecorded pod %s is gone; its pid is free again", name)


def _pid_of(pod: Json, pid_rule: Callable[[str, int], Pid | None], log: Log) -> Pid | None:
    """The pid the pod ran as: its annotation, or (if someone mangled that) the pid its
    child and incarnation labels make."""
    meta = pod["metadata"]
    text = (meta.get("annotations") or {}).get(ANN_PID)
    if text:
        try:
            return Pid.parse(text)
        except ValueError as exc:
            log.warning("pod %s: %s; using its labels", meta.get("name"), exc)
    labels = meta.get("labels") or {}
    incarnation = labels.get(LABEL_INCARNATION, "")
    if not incarnation.isdigit():
        return None
    return pid_rule(labels.get(LABEL_CHILD, ""), int(incarnation))
