"""Which manifest ``Child`` a core child runs: asked of the core, never of the manifest.

The core holds the spec each child runs under now. That is the manifest's child for a static
child, but not always: a dynamic child of a simple_one_for_one supervisor (``worker-1``,
``worker-2``, ...) is made from the template with its own arguments, and while an edited
manifest is being converged a child still runs under its old spec until it is replaced. Pods
are made and stopped from what the core says, so an old incarnation is stopped with its old
shutdown and the new one started from the new spec.
"""

from __future__ import annotations

from typing import Any

from rebeam.spec.models import ActorSpec, Child
from rebeam.supervision import StartCodec, Supervisor

__all__ = ["CODEC", "manifest_child", "slot_spec", "slot_spec_patch", "spec_replacing"]


def _encode(start: Any) -> Any:
    if isinstance(start, Child):
        return start.model_dump(mode="json", by_alias=True, exclude_none=True)
    return start


def _decode(data: Any) -> Any:
    return Child.model_validate(data) if isinstance(data, dict) else data


# Specs in the core's snapshot (added or replaced children, requests waiting) carry the
# manifest's Child as their start payload: stored as its JSON form.
CODEC = StartCodec(encode=_encode, decode=_decode)


def manifest_child(core: Supervisor, child_id: str) -> Child | None:
    spec = core.child_spec(child_id)
    if spec is None or not isinstance(spec.start, Child):
        return None
    child = spec.start
    if child.name == child_id:
        return child
    # A dynamic child: the template under the child's own name, with its combined args.
    update: dict[str, Any] = {"name": child_id}
    if child.actor is not None:
        update["actor"] = child.actor.model_copy(update={"args": spec.args})
    return child.model_copy(update=update)


def slot_spec(child: Child) -> dict[str, Any]:
    """The spec of an actor child's ``Actor`` slot object: its template and the child fields
    an Actor has (restart, shutdown, startTimeout)."""
    as_json = child.model_dump(mode="json", by_alias=True, exclude_none=True)
    merged = {
        **as_json["actor"],
        **{k: as_json[k] for k in ("restart", "shutdown", "startTimeout") if k in as_json},
    }
    spec: dict[str, Any] = ActorSpec.model_validate(merged).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    return spec


def slot_spec_patch(child: Child, current: dict[str, Any]) -> dict[str, Any] | None:
    """The merge patch that makes a slot object show the spec its child runs now (a replaced
    child runs a new one), or None when it does already."""
    wanted = slot_spec(child)
    try:  # compared as the model reads them: the API server fills in the schema's defaults
        same = (
            ActorSpec.model_validate(current).model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
            == wanted
        )
    except ValueError:
        same = False
    if same:
        return None
    return spec_replacing(current, wanted)


def spec_replacing(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that makes an object's spec ``wanted``: a merge patch cannot remove
    keys by leaving them out, so every key no longer there is nulled."""
    removed = {k: None for k in current if k not in wanted}
    return {"spec": {**removed, **wanted}}
