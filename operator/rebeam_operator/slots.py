"""The ``Actor`` slot objects of a Supervisor's actor children: one per child, named
``<supervisor>-<child>``, owner of that child's pods. Its uid is the pid slot (pids are
``<namespace>.<slot uid>.<incarnation>``); its spec shows what the child runs now and its
status the current incarnation, pod, restarts and last exit. An Actor applied on its own is
its own slot: none of this applies to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rebeam.spec.models import Child
from rebeam.supervision import Supervisor
from rebeam_operator.children import slot_spec, slot_spec_patch
from rebeam_operator.hosts import (
    ANN_PATH,
    GROUP,
    LABEL_CHILD,
    LABEL_HOST,
    LABEL_MANAGED,
    LABEL_SUPERVISOR,
    MANAGED_BY,
    VERSION,
)

if TYPE_CHECKING:
    from rebeam_operator.driver import Driver

__all__ = ["delete_unused", "ensure", "owner", "write"]

Json = dict[str, Any]


async def ensure(driver: Driver, spec: Child) -> str:
    """The uid of an actor child's Actor slot object (the pid slot), created if need be."""
    if driver.host.standalone_actor:
        return driver.host.uid
    uid = driver.slots.get(spec.name)
    if uid:
        return uid
    kube, host = driver.world.kube, driver.host
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
    created = await kube.create_object(host.namespace, "actors", body)
    if created is None:
        created = await kube.get_object(host.namespace, "actors", host.slot_object(spec.name))
    assert created is not None
    uid = str(created["metadata"]["uid"])
    driver.slots[spec.name] = uid
    driver.slot_specs[spec.name] = created.get("spec") or {}
    return uid


def owner(driver: Driver, spec: Child) -> Json:
    """The owner reference of an actor child's pods: its slot object."""
    if driver.host.standalone_actor:
        return driver.host.owner_reference()
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Actor",
        "name": driver.host.slot_object(spec.name),
        "uid": driver.slots[spec.name],
        "controller": True,
        "blockOwnerDeletion": False,
    }


async def write(driver: Driver, core: Supervisor) -> None:
    """The Actor objects of actor children show their slot (best effort), and the spec
    the child runs now (a replaced child's is new)."""
    if driver.host.standalone_actor:
        return
    for info in core.which_children():
        if info.id not in driver.slots:
            continue
        child = driver._child(info.id)
        patch = None
        if child is not None and child.actor is not None:
            patch = slot_spec_patch(child, driver.slot_specs.get(info.id) or {})
        if patch is not None:
            patched = await driver.world.kube.patch_object(
                driver.host.namespace,
                "actors",
                driver.host.slot_object(info.id),
                patch,
                missing_ok=True,
            )
            driver.slot_specs[info.id] = (patched or patch).get("spec") or {}
        inc = info.incarnation or core.incarnations.get(info.id, 0)
        status: Json = {
            "phase": info.status.value,
            "incarnation": inc,
            "pod": driver.host.pod_name(info.id, inc) if inc else None,
            "pid": str(driver._pid(info.id, inc)) if inc else None,
            "restarts": max(0, core.incarnations.get(info.id, 0) - 1),
            "observedGeneration": driver.host.generation,
        }
        if info.id in driver.child_exits:
            status["lastExit"] = driver.child_exits[info.id]
        if driver.slot_status.get(info.id) == status:
            continue
        await driver.world.kube.patch_status(
            driver.host.namespace, "actors", driver.host.slot_object(info.id), status
        )
        driver.slot_status[info.id] = status


async def delete_unused(driver: Driver, core: Supervisor) -> None:
    """Delete the slot objects of children the core no longer has (removed from the
    manifest, dynamic ones ended) once their last pod has ended."""
    if driver.host.standalone_actor:
        return
    present = {info.id for info in core.which_children()}
    for child_id in [c for c in driver.slots if c not in present]:
        if not driver._gone_for_good(child_id):
            continue
        await driver.world.kube.delete_object(
            driver.host.namespace, "actors", driver.host.slot_object(child_id)
        )
        driver.slots.pop(child_id, None)
        driver.slot_specs.pop(child_id, None)
        driver.slot_status.pop(child_id, None)
