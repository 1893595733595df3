"""The ``Actor`` slot objects of a Supervisor's actor children: one per child, named
``<supervisor>-<child>``, owner of that child's pods. Its uid is the pid slot (pids are
``<namespace>.<slot uid>.<incarnation>``); its spec shows what the child runs now and its
status the current incarnation, pod, restarts and last exit. An Actor applied on its own is
its own slot: none of this applies to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rebeam.spec.models import Child
from rebeam.supervision import Supervisor
from rebeam_operator.cache import Cache
from rebeam_operator.children import manifest_child, slot_spec, slot_spec_patch
from rebeam_operator.effects import Effects
from rebeam_operator.hosts import (
    ANN_PATH,
    GROUP,
    LABEL_CHILD,
    LABEL_HOST,
    LABEL_MANAGED,
    LABEL_SUPERVISOR,
    MANAGED_BY,
    VERSION,
    Host,
)

__all__ = ["delete_unused", "ensure", "owner", "write"]

Json = dict[str, Any]


async def ensure(host: Host, cache: Cache, effects: Effects, spec: Child) -> str:
    """The uid of an actor child's Actor slot object (the pid slot), created if need be."""
    if host.standalone_actor:
        return host.uid
    uid = cache.slots.get(spec.name)
    if uid:
        return uid
    assert spec.actor is not None
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Actor",
        "metadata": {
            "name": host.slot_object(spec.name),
            "namespace": host.namespace,
            "labels": {
                LABEL_MANAGED: MANAGED_BY,
                LABEL_HOST: host.uid,
                LABEL_CHILD: spec.name,
                LABEL_SUPERVISOR: host.name[:63],
            },
            "annotations": {ANN_PATH: f"{host.path}/{spec.name}"},
            "ownerReferences": [host.owner_reference()],
        },
        "spec": slot_spec(spec),
    }
    created = await effects.create_object("actors", body)
    if created is None:
        created = await effects.get_object("actors", host.slot_object(spec.name))
    assert created is not None
    uid = str(created["metadata"]["uid"])
    cache.slots[spec.name] = uid
    cache.slot_specs[spec.name] = created.get("spec") or {}
    return uid


def owner(host: Host, slots: Mapping[str, str], spec: Child) -> Json:
    """The owner reference of an actor child's pods: its slot object."""
    if host.standalone_actor:
        return host.owner_reference()
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Actor",
        "name": host.slot_object(spec.name),
        "uid": slots[spec.name],
        "controller": True,
        "blockOwnerDeletion": False,
    }


async def write(
    host: Host, core: Supervisor, exits: Mapping[str, Json], cache: Cache, effects: Effects
) -> None:
    """The Actor objects of actor children show their slot (best effort), and the spec
    the child runs now (a replaced child's is new)."""
    if host.standalone_actor:
        return
    for info in core.which_children():
        if info.id not in cache.slots:
            continue
        child = manifest_child(core, info.id)
        patch = None
        current = cache.slot_specs.get(info.id) or {}
        checked = cache.slot_checked.get(info.id)
        # Comparing dumps both specs: done again only when the child or its slot's spec is
        # another object than the last time they were found to agree.
        fresh = checked is not None and checked[0] is child and checked[1] is current
        if child is not None and child.actor is not None and not fresh:
            patch = slot_spec_patch(child, current)
            if patch is None:
                cache.slot_checked[info.id] = (child, current)
        if patch is not None:
            name = host.slot_object(info.id)
            patched = await effects.patch_if_present("actors", name, patch)
            cache.slot_specs[info.id] = (patched or patch).get("spec") or {}
        inc = info.incarnation or core.incarnations.get(info.id, 0)
        status: Json = {
            "phase": info.status.value,
            "incarnation": inc,
            "pod": host.pod_name(info.id, inc) if inc else None,
            "pid": str(cache.pid(host, info.id, inc)) if inc else None,
            "restarts": max(0, core.incarnations.get(info.id, 0) - 1),
            "observedGeneration": host.generation,
        }
        if info.id in exits:
            status["lastExit"] = exits[info.id]
        if cache.slot_status.get(info.id) == status:
            continue
        await effects.patch_status("actors", host.slot_object(info.id), status)
        cache.slot_status[info.id] = status


async def delete_unused(host: Host, core: Supervisor, cache: Cache, effects: Effects) -> None:
    """Delete the slot objects of children the core no longer has (removed from the
    manifest, dynamic ones ended) once their last pod has ended."""
    if host.standalone_actor:
        return
    present = {info.id for info in core.which_children()}
    for child_id in [c for c in cache.slots if c not in present]:
        if not cache.gone_for_good(child_id):
            continue
        await effects.delete_object("actors", host.slot_object(child_id))
        cache.slots.pop(child_id, None)
        cache.slot_specs.pop(child_id, None)
        cache.slot_status.pop(child_id, None)
        cache.slot_checked.pop(child_id, None)
        cache.pid_memo.pop(child_id, None)
